/**
 * The first integer literal in a JSON text that a JSON number cannot hold exactly, or undefined.
 *
 * JSON.parse reads every number as an IEEE-754 double, which holds integers exactly only up to
 * 2^53 in magnitude: `9007199254740993` parses as …992, and a 64-bit id sent as a number would
 * be stored, and read back, as another id with no error anywhere. Literals with a fraction or an
 * exponent are left alone (a decimal is approximate by nature, and a number out of range
 * entirely, `1e400`, is refused as non-finite where it matters), and so is every digit inside a
 * string. One pass over the text, no parse: it runs on bodies the size limit already bounded.
 *
 * @example
 *   inexactInteger('{"id":9007199254740993}'); // "9007199254740993"
 *   inexactInteger('{"id":"9007199254740993","n":9007199254740992}'); // undefined
 */
export function inexactInteger(text: string): string | undefined {
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 34 /* " */) {
      // Skip the string, escapes included (the text already parsed, so it is well formed).
      i++;
      while (i < n && text.charCodeAt(i) !== 34) i += text.charCodeAt(i) === 92 /* \ */ ? 2 : 1;
      i++;
      continue;
    }
    if (c === 45 /* - */ || (c >= 48 && c <= 57)) {
      const start = i;
      i++;
      while (i < n && isNumberChar(text.charCodeAt(i))) i++;
      const literal = text.slice(start, i);
      // Up to 15 digits every integer is exact: only longer plain integers need the check.
      if (literal.length > 15 && /^-?\d+$/.test(literal)) {
        if (BigInt(literal) !== BigInt(Number(literal))) return literal;
      }
      continue;
    }
    i++;
  }
  return undefined;
}

/** Digits, sign, point and exponent: what can follow the first character of a JSON number. */
function isNumberChar(c: number): boolean {
  return (c >= 48 && c <= 57) || c === 46 || c === 101 || c === 69 || c === 43 || c === 45;
}
