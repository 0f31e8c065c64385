import { describe, expect, it } from "vitest";
import { apiFor, type ErrorBody, expectValidation } from "./api";

/**
 * Issue 8, point 3: input Postgres cannot hold is a field-level 400 (it used to be a 500 for
 * U+0000, and lone surrogates were silently replaced); a known path under an unsupported method
 * is 405 with `Allow` (it used to be 404). Through the Worker, against real Postgres.
 */
const api = apiFor("input");

const NUL = "a\u0000b";
const LONE_HIGH = "x\ud800y";
const LONE_LOW = "\udc00";

describe("text Postgres cannot store", () => {
  // JSON.stringify writes NUL and lone surrogates as \u escapes, exactly as a client would send.
  const cases: [string, string, Record<string, unknown>, string][] = [
    ["POST", "/products", { sku: "nul-1", name: NUL, categoryId: 1, priceCents: 1 }, "name"],
    [
      "POST",
      "/products",
      { sku: "nul-2", name: "ok", description: LONE_HIGH, categoryId: 1, priceCents: 1 },
      "description",
    ],
    ["POST", "/products", { sku: `s${NUL}`, name: "ok", categoryId: 1, priceCents: 1 }, "sku"],
    ["PATCH", "/products/81", { name: LONE_LOW }, "name"],
    ["PATCH", "/products/81", { description: `d${NUL}` }, "description"],
    ["PATCH", "/categories/4", { name: NUL }, "name"],
    ["PATCH", "/categories/4", { description: LONE_HIGH }, "description"],
    ["PATCH", "/users/6", { name: NUL }, "name"],
    ["PATCH", "/users/6", { name: LONE_LOW }, "name"],
  ];

  for (const [method, path, body, field] of cases) {
    it(`${method} ${path} with ${JSON.stringify(body[field])} in ${field} → 400 on ${field}`, async () => {
      const res = await api(method, path, { body });
      expectValidation(res, field);
      const issue = (res.body as ErrorBody).error.details?.issues?.find((i) => i.path === field);
      expect(issue?.message).toMatch(/U\+0000|surrogate/);
    });
  }

  it("still accepts well-formed text outside the BMP (a surrogate pair) and stores it exactly", async () => {
    const name = "Pair \ud83d\ude00 ok";
    const res = await api<{ name: string; version: number }>("PATCH", "/products/82", {
      body: { name },
    });
    expect(res.status).toBe(200);
    expect(res.body.name).toBe(name);
    const read = await api<{ name: string }>("GET", "/products/82");
    expect(read.body.name).toBe(name);
  });
});

describe("names: never blank, never changed", () => {
  it("a blank name is a 400 on every entity; a padded one is stored exactly as sent", async () => {
    for (const [method, path, body] of [
      ["POST", "/products", { sku: "blank-1", name: "  ", categoryId: 1, priceCents: 1 }],
      ["PATCH", "/products/81", { name: "\t " }],
      ["PATCH", "/categories/4", { name: " " }],
      ["PATCH", "/users/6", { name: "   " }],
    ] as const) {
      const res = await api(method, path, { body });
      expectValidation(res, "name");
      const issue = (res.body as ErrorBody).error.details?.issues?.find((i) => i.path === "name");
      expect(issue?.message, `${method} ${path}`).toBe("must not be blank");
    }
    for (const path of ["/products/81", "/categories/4", "/users/6"]) {
      const before = (await api<{ name: string }>("GET", path)).body.name;
      const res = await api<{ name: string }>("PATCH", path, { body: { name: " Padded  " } });
      expect(res.status, path).toBe(200);
      expect(res.body.name, path).toBe(" Padded  ");
      expect((await api<{ name: string }>("GET", path)).body.name, path).toBe(" Padded  ");
      // The seeded name back, for the other files that read these rows.
      expect((await api("PATCH", path, { body: { name: before } })).status).toBe(200);
    }
  });
});

describe("415 Unsupported Media Type", () => {
  it.each(["text/plain", "application/x-www-form-urlencoded", "application/vnd.v2+json"])(
    "a %s body where JSON is expected → 415 unsupported_media_type, in the JSON shape",
    async (type) => {
      const res = await api("PATCH", "/categories/4", {
        body: JSON.stringify({ name: "x" }),
        headers: { "content-type": type },
      });
      expect(res.status).toBe(415);
      expect(res.headers.get("content-type")).toContain("application/json");
      expect((res.body as ErrorBody).error.code).toBe("unsupported_media_type");
      // Says what to send, and what came (curl -d without -H sends form encoding).
      expect((res.body as ErrorBody).error.message).toBe(
        `Send the body as JSON with Content-Type: application/json (got ${type})`,
      );
    },
  );
});

describe("media type parameters: any JSON Content-Type RFC 9110 allows", () => {
  // Empty parameters (a trailing or doubled ';'), whitespace before ';', and parameter names
  // with '_' (a token character) are all valid; @hono/zod-openapi's gate refused them with 415.
  it.each([
    "application/json;",
    "application/json; charset=utf-8;",
    "application/json ;",
    "application/json ; charset=utf-8",
    "application/json; x_y=1",
    "application/json;;charset=utf-8",
    "application/json;charset=UTF-8",
    'application/json; charset="utf-8"',
    "APPLICATION/JSON; Charset=UTF-8; q_1=2 ;",
    "application/merge-patch+json;",
  ])("%s: the JSON body is read, valid or not", async (type) => {
    const headers = { "content-type": type };
    const current = (await api<{ name: string }>("GET", "/categories/4")).body.name;
    const ok = await api("PATCH", "/categories/4", {
      body: JSON.stringify({ name: current }),
      headers,
    });
    expect(ok.status).toBe(200);
    const malformed = await api("PATCH", "/categories/4", { body: '{"name":', headers });
    expect(malformed.status).toBe(400);
    expect((malformed.body as ErrorBody).error.code).toBe("validation_failed");
  });
});

/** `parts` as one body: strings as UTF-8, numbers as raw bytes. */
function bytes(...parts: (string | number)[]): Uint8Array {
  const chunks = parts.map((p) =>
    typeof p === "string" ? new TextEncoder().encode(p) : Uint8Array.of(p),
  );
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.byteLength;
  }
  return out;
}

describe("JSON bodies are UTF-8 (RFC 8259 §8.1)", () => {
  it.each([
    ["PATCH", "/categories/4"],
    ["PATCH", "/users/6"],
    ["PATCH", "/products/81"],
  ])("%s %s: bytes that are not UTF-8 → 400 on (root), nothing stored", async (method, path) => {
    const before = (await api<{ name: string }>("GET", path)).body.name;
    // 0xFF and 0xFE never occur in UTF-8: they used to be stored as U+FFFD U+FFFD.
    const res = await api(method, path, { body: bytes('{"name":"A', 0xff, 0xfe, 'B"}') });
    expect(res.status).toBe(400);
    const error = (res.body as ErrorBody).error;
    expect(error.code).toBe("validation_failed");
    expect(error.details?.issues).toEqual([{ path: "(root)", message: "body is not valid UTF-8" }]);
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect((await api<{ name: string }>("GET", path)).body.name).toBe(before);
  });

  it("a truncated multi-byte sequence is refused too (0xC3 without its continuation byte)", async () => {
    const res = await api("PATCH", "/categories/4", { body: bytes('{"name":"caf', 0xc3, '"}') });
    expect(res.status).toBe(400);
    expect((res.body as ErrorBody).error.details?.issues?.[0]?.message).toBe(
      "body is not valid UTF-8",
    );
  });

  it.each([
    "application/json; charset=iso-8859-1",
    'application/json; charset="ISO-8859-1"',
    "application/json;charset=windows-1252",
    "application/json; charset=utf-16",
  ])("Content-Type %s → 415 asking for UTF-8", async (type) => {
    const res = await api("PATCH", "/categories/4", {
      body: bytes('{"name":"caf', 0xe9, '"}'),
      headers: { "content-type": type },
    });
    expect(res.status).toBe(415);
    const error = (res.body as ErrorBody).error;
    expect(error.code).toBe("unsupported_media_type");
    expect(error.message).toMatch(/UTF-8/);
  });

  it("well-formed UTF-8 (multi-byte, quoted charset) is still read and stored exactly", async () => {
    const before = (await api<{ name: string }>("GET", "/categories/4")).body.name;
    const name = "Caf\u00e9 \u65e5\u672c \ud83d\ude00";
    for (const type of ["application/json", 'application/json; charset="UTF-8"']) {
      const res = await api<{ name: string }>("PATCH", "/categories/4", {
        body: new TextEncoder().encode(JSON.stringify({ name })),
        headers: { "content-type": type },
      });
      expect(res.status, type).toBe(200);
      expect(res.body.name).toBe(name);
      expect((await api<{ name: string }>("GET", "/categories/4")).body.name).toBe(name);
    }
    expect((await api("PATCH", "/categories/4", { body: { name: before } })).status).toBe(200);
  });

  it("the body is looked at only where a route reads one: 404, 405 and 413 are unchanged", async () => {
    const bad = bytes('{"name":"A', 0xff, '"}');
    expect((await api("POST", "/nope", { body: bad })).status).toBe(404);
    expect((await api("PUT", "/categories/4", { body: bad })).status).toBe(405);
    const huge = await api("PATCH", "/categories/4", {
      body: bytes('{"name":"', "x".repeat(70_000), 0xff, '"}'),
    });
    expect(huge.status).toBe(413);
    expect((huge.body as ErrorBody).error.code).toBe("payload_too_large");
    // A body that is not JSON at all is the media type's 415, whatever its bytes.
    for (const type of ["text/plain", "application/vnd.v2+json"]) {
      const other = await api("PATCH", "/categories/4", {
        body: bad,
        headers: { "content-type": type },
      });
      expect(other.status, type).toBe(415);
    }
  });
});

describe("Content-Encoding on a request body (RFC 9110 §15.5.16)", () => {
  async function gzip(text: string): Promise<Uint8Array> {
    const stream = new Blob([text]).stream().pipeThrough(new CompressionStream("gzip"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  it("a gzip body → 415 naming the coding, with Accept-Encoding: identity", async () => {
    const res = await api("PATCH", "/categories/4", {
      body: await gzip(JSON.stringify({ name: "zipped" })),
      headers: { "content-type": "application/json", "content-encoding": "gzip" },
    });
    expect(res.status).toBe(415);
    const error = (res.body as ErrorBody).error;
    expect(error.code).toBe("unsupported_media_type");
    expect(error.message).toBe(
      "Content-Encoding gzip is not supported: send the body uncompressed",
    );
    expect(res.headers.get("accept-encoding")).toBe("identity");
  });

  it.each(["br", "deflate", "identity, gzip", "x-custom"])(
    "Content-Encoding %s on a plain body → 415, nothing stored",
    async (encoding) => {
      const before = (await api<{ name: string }>("GET", "/categories/4")).body.name;
      const res = await api("PATCH", "/categories/4", {
        body: { name: "Never" },
        headers: { "content-encoding": encoding },
      });
      expect(res.status).toBe(415);
      expect((res.body as ErrorBody).error.code).toBe("unsupported_media_type");
      expect((await api<{ name: string }>("GET", "/categories/4")).body.name).toBe(before);
    },
  );

  it("Content-Encoding identity is no coding at all: the body is read", async () => {
    const current = (await api<{ name: string }>("GET", "/categories/4")).body.name;
    const res = await api("PATCH", "/categories/4", {
      body: { name: current },
      headers: { "content-encoding": "Identity" },
    });
    expect(res.status).toBe(200);
  });
});

describe("405 Method Not Allowed", () => {
  const cases: [string, string, string][] = [
    ["PUT", "/products/1", "DELETE, GET, HEAD, PATCH"],
    ["DELETE", "/products", "GET, HEAD, POST"],
    ["DELETE", "/categories", "GET, HEAD"],
    ["POST", "/categories/1", "GET, HEAD, PATCH"],
    ["GET", "/products/1/reserve", "POST"],
    ["POST", "/health", "GET, HEAD"],
    ["PATCH", "/sessions/abc", "DELETE, GET, HEAD"],
  ];
  for (const [method, path, allow] of cases) {
    it(`${method} ${path} → 405, Allow: ${allow}`, async () => {
      const res = await api(method, path, {
        body: method === "GET" || method === "DELETE" ? undefined : {},
      });
      expect(res.status).toBe(405);
      expect(res.headers.get("allow")).toBe(allow);
      expect(res.headers.get("cache-control")).toBe("no-store");
      const body = res.body as ErrorBody;
      expect(body.error.code).toBe("method_not_allowed");
      expect(body.error.details?.allow).toEqual(allow.split(", "));
    });
  }

  it("routing and the method come before the body: a malformed one changes neither 404 nor 405", async () => {
    const wrongMethod = await api("PUT", "/products/1", { body: "{" });
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get("allow")).toBe("DELETE, GET, HEAD, PATCH");
    const unknown = await api("POST", "/nope", { body: "{" });
    expect(unknown.status).toBe(404);
    expect((unknown.body as ErrorBody).error.code).toBe("not_found");
    // Where a route reads the body, it is the field-level 400 it always was.
    const malformed = await api("PATCH", "/categories/4", { body: "{" });
    expect(malformed.status).toBe(400);
    const error = (malformed.body as ErrorBody).error;
    expect(error.code).toBe("validation_failed");
    expect(error.message).toMatch(/^Invalid json: Malformed JSON: /);
    const empty = await api("PATCH", "/categories/4", {
      body: "",
      headers: { "content-type": "application/json" },
    });
    expect(empty.status).toBe(400);
    expect((empty.body as ErrorBody).error.message).toBe(
      "Invalid json: Request body is empty; expected a JSON object",
    );
  });

  it("keeps 404 for paths no route has", async () => {
    for (const path of ["/nope", "/products/1/nope", "/products/"]) {
      const res = await api("PUT", path, { body: {} });
      expect(res.status, path).toBe(404);
      expect((res.body as ErrorBody).error.code).toBe("not_found");
      expect(res.headers.get("cache-control"), path).toBe("no-store");
      expect(res.headers.get("allow")).toBeNull();
    }
  });
});
