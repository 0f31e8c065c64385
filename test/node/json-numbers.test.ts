import { describe, expect, it } from "vitest";
import { inexactInteger } from "../../src/http/middleware/json-numbers";

describe("inexactInteger: integer literals a JSON number cannot hold exactly", () => {
  it.each([
    ['{"id":9007199254740993}', "9007199254740993"],
    ["[-9007199254740993]", "-9007199254740993"],
    ['{"a":"x","b":[1,2,{"c":18446744073709551615}]}', "18446744073709551615"],
    ["123456789012345678901234567890", "123456789012345678901234567890"],
  ])("finds it in %s", (text, literal) => {
    expect(inexactInteger(text)).toBe(literal);
  });

  it.each([
    '{"id":9007199254740992}', // 2^53: exact
    '{"id":-9007199254740992}',
    '{"id":9007199254740994}', // even above 2^53 some integers are exact
    '{"id":"9007199254740993"}', // in a string
    '{"k\\"9007199254740993":1}', // in a string after an escaped quote
    '{"x":1e400,"y":3.141592653589793238462643,"z":1.0e22,"w":-0}', // not plain integers
    '{"x":123456789012345}', // 15 digits
    "",
  ])("leaves %s alone", (text) => {
    expect(inexactInteger(text)).toBeUndefined();
  });
});
