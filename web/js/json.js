// Lossless JSON: every JSON text from the server (REST bodies and pushed messages) goes
// through `parseJson`, never `JSON.parse`, and writes go out through `stringifyJson`.
//
// JSON.parse turns every number into a double, so 12345678901234567890 becomes
// 12345678901234567000 and would be saved back that way; it also reorders object
// keys that look like array indices ({"b":1,"2":2} comes out as {"2":2,"b":1}).
// This parser keeps both: a number a double cannot hold becomes a JsonNumber holding
// its source text, and an object whose key order JS would change remembers its order.
//
// Inside configuration values (a member named "value" and all below it, or a whole
// text parsed with `exact`), every number whose text a double would not reproduce
// (1.0, 1e3, -0, 12345678901234567890) is kept as text, so a value reads and saves
// back exactly as written. Elsewhere (revisions, percents, counts) numbers are plain
// doubles unless a double would change their value.

// Deeper JSON is refused by the parser instead of overflowing the stack (the server
// itself refuses values nested more than 64 levels).
const MAX_JSON_DEPTH = 2000;

/** A JSON number kept as its source text. Arithmetic still works through valueOf. */
export class JsonNumber {
  constructor(text) {
    this.text = text;
  }

  valueOf() {
    return Number(this.text);
  }

  toString() {
    return this.text;
  }
}

export class JsonSyntaxError extends Error {}

const KEY_ORDER = Symbol('graycast.keyOrder');
const NUMBER_RE = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const PLAIN_CHARS_RE = /[^"\\\u0000-\u001f]*/y;
const INTEGER_TEXT_RE = /^-?[0-9]+$/;
const INDEX_KEY_RE = /^(?:0|[1-9][0-9]{0,9})$/;
const ESCAPES = { __proto__: null, '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };

/** A decimal's value as text independent of its notation: "1.50e2" and "150" agree. */
function decimalKey(text) {
  const m = /^(-?)([0-9]+)(?:\.([0-9]+))?(?:[eE]([+-]?[0-9]+))?$/.exec(text);
  if (!m) return text;
  let digits = m[2] + (m[3] ?? '');
  let point = m[2].length + Number(m[4] ?? 0);
  const lead = /^0*/.exec(digits)[0].length;
  digits = digits.slice(lead).replace(/0+$/, '');
  point -= lead;
  return digits === '' ? '0' : `${m[1]}${digits}e${point}`;
}

/** Whether a double keeps the number `text` stands for (value, and integer-ness). */
function doubleHolds(text, number) {
  if (!Number.isFinite(number)) return false;
  if (INTEGER_TEXT_RE.test(text)) return Number.isSafeInteger(number);
  return decimalKey(text) === decimalKey(String(number));
}

/**
 * Parses JSON text (RFC 8259, strictly). `exact`: the whole text is a configuration
 * value (see above). Throws a JsonSyntaxError naming line and column.
 */
export function parseJson(text, { exact = false } = {}) {
  let at = 0;
  const fail = (what, where = at) => {
    const before = text.slice(0, where);
    const line = before.split('\n').length;
    const column = where - before.lastIndexOf('\n');
    throw new JsonSyntaxError(`${what} at line ${line}, column ${column}`);
  };
  const unexpected = () => (at >= text.length
    ? fail('unexpected end of text')
    : fail(`unexpected ${JSON.stringify(text[at])}`));
  const skipSpace = () => {
    while (at < text.length) {
      const c = text.charCodeAt(at);
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
      at += 1;
    }
  };

  const parseString = () => {
    at += 1; // the opening quote
    let out = '';
    for (;;) {
      PLAIN_CHARS_RE.lastIndex = at;
      PLAIN_CHARS_RE.exec(text);
      out += text.slice(at, PLAIN_CHARS_RE.lastIndex);
      at = PLAIN_CHARS_RE.lastIndex;
      if (at >= text.length) fail('unterminated string');
      const c = text[at];
      if (c === '"') {
        at += 1;
        return out;
      }
      if (c !== '\\') fail('control character in a string (write it as an escape such as \\n)');
      const escape = text[at + 1];
      if (escape !== undefined && ESCAPES[escape] !== undefined) {
        out += ESCAPES[escape];
        at += 2;
      } else if (escape === 'u') {
        const hex = text.slice(at + 2, at + 6);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail('invalid \\u escape');
        out += String.fromCharCode(parseInt(hex, 16));
        at += 6;
      } else {
        fail('invalid escape');
      }
    }
  };

  const parseNumber = (exactHere) => {
    NUMBER_RE.lastIndex = at;
    const match = NUMBER_RE.exec(text);
    if (!match) unexpected();
    at = NUMBER_RE.lastIndex;
    const source = match[0];
    const number = Number(source);
    const keep = exactHere ? String(number) !== source : !doubleHolds(source, number);
    return keep ? new JsonNumber(source) : number;
  };

  let parseValue;

  const parseArray = (depth, exactHere) => {
    at += 1;
    const array = [];
    skipSpace();
    if (text[at] === ']') {
      at += 1;
      return array;
    }
    for (;;) {
      array.push(parseValue(depth + 1, exactHere));
      skipSpace();
      if (text[at] === ',') {
        at += 1;
      } else if (text[at] === ']') {
        at += 1;
        return array;
      } else {
        unexpected();
      }
    }
  };

  const parseObject = (depth, exactHere) => {
    at += 1;
    const object = {};
    const order = [];
    skipSpace();
    if (text[at] === '}') {
      at += 1;
      return object;
    }
    for (;;) {
      skipSpace();
      if (text[at] !== '"') unexpected();
      const key = parseString();
      skipSpace();
      if (text[at] !== ':') unexpected();
      at += 1;
      const member = parseValue(depth + 1, exactHere || key === 'value');
      if (!Object.prototype.hasOwnProperty.call(object, key)) order.push(key);
      // "__proto__" is data here, not the prototype.
      Object.defineProperty(object, key, { value: member, enumerable: true, writable: true, configurable: true });
      skipSpace();
      if (text[at] === ',') {
        at += 1;
      } else if (text[at] === '}') {
        at += 1;
        break;
      } else {
        unexpected();
      }
    }
    // JS lists array-index keys first, in numeric order: remember the text's order.
    if (order.some((key) => INDEX_KEY_RE.test(key))) Object.defineProperty(object, KEY_ORDER, { value: order });
    return object;
  };

  parseValue = (depth, exactHere) => {
    if (depth > MAX_JSON_DEPTH) fail(`nested deeper than ${MAX_JSON_DEPTH} levels`);
    skipSpace();
    const c = text[at];
    if (c === '{') return parseObject(depth, exactHere);
    if (c === '[') return parseArray(depth, exactHere);
    if (c === '"') return parseString();
    if (c === 't' && text.startsWith('true', at)) {
      at += 4;
      return true;
    }
    if (c === 'f' && text.startsWith('false', at)) {
      at += 5;
      return false;
    }
    if (c === 'n' && text.startsWith('null', at)) {
      at += 4;
      return null;
    }
    return parseNumber(exactHere);
  };

  const result = parseValue(0, exact);
  skipSpace();
  if (at < text.length) fail('unexpected text after the JSON value');
  return result;
}

/**
 * Serializes like JSON.stringify(value, null, indent), but writes JsonNumbers as their
 * text and objects in their remembered key order.
 */
export function stringifyJson(value, indent = 0) {
  const out = [];
  const step = ' '.repeat(indent);
  const newline = indent ? '\n' : '';
  const colon = indent ? ': ' : ':';
  const write = (v, pad) => {
    if (v instanceof JsonNumber) {
      out.push(v.text);
      return;
    }
    switch (typeof v) {
      case 'string':
        out.push(JSON.stringify(v));
        return;
      case 'number':
        out.push(Number.isFinite(v) ? String(v) : 'null');
        return;
      case 'boolean':
        out.push(v ? 'true' : 'false');
        return;
      case 'bigint':
        out.push(v.toString());
        return;
      case 'object':
        if (v !== null) break;
      // falls through
      default:
        out.push('null');
        return;
    }
    const inner = pad + step;
    if (Array.isArray(v)) {
      if (v.length === 0) {
        out.push('[]');
        return;
      }
      out.push('[');
      v.forEach((item, i) => {
        if (i > 0) out.push(',');
        out.push(newline, inner);
        write(item, inner);
      });
      out.push(newline, pad, ']');
      return;
    }
    const keys = (v[KEY_ORDER] ?? Object.keys(v))
      .filter((k) => v[k] !== undefined && typeof v[k] !== 'function');
    if (keys.length === 0) {
      out.push('{}');
      return;
    }
    out.push('{');
    keys.forEach((k, i) => {
      if (i > 0) out.push(',');
      out.push(newline, inner, JSON.stringify(k), colon);
      write(v[k], inner);
    });
    out.push(newline, pad, '}');
  };
  write(value, '');
  return out.join('');
}

export function compactJson(value) {
  return stringifyJson(value);
}

export function prettyJson(value) {
  return stringifyJson(value, 2);
}

/** Whether two values serialize alike (same text, key order included). */
export function sameJson(a, b) {
  return stringifyJson(a) === stringifyJson(b);
}
