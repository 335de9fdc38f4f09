// Rollout evaluation (SPEC §3), the same algorithm as graycast-protocol's `rollout` module:
// the console's subject simulator computes exactly what the server and the SDKs compute.
// Checked against protocol/testdata/rollout-vectors.json by web/tests/rollout.test.mjs.

export const BUCKETS = 10000;

// Version numbers are 64-bit in the Rust implementation; larger ones are handled as it does.
const U64_MAX = 18446744073709551615n;

const encoder = new TextEncoder();

/** MurmurHash3 x86 32-bit of a byte array, as an unsigned 32-bit number. */
export function murmur3(bytes, seed = 0) {
  const c1 = 0xcc9e2d51;
  const c2 = 0x1b873593;
  let h = seed >>> 0;
  const blocks = bytes.length >> 2;
  for (let i = 0; i < blocks; i++) {
    const o = i * 4;
    let k = bytes[o] | (bytes[o + 1] << 8) | (bytes[o + 2] << 16) | (bytes[o + 3] << 24);
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const tail = blocks * 4;
  let k = 0;
  switch (bytes.length & 3) {
    case 3:
      k ^= bytes[tail + 2] << 16;
    // falls through
    case 2:
      k ^= bytes[tail + 1] << 8;
    // falls through
    case 1:
      k ^= bytes[tail];
      k = Math.imul(k, c1);
      k = (k << 15) | (k >>> 17);
      k = Math.imul(k, c2);
      h ^= k;
  }
  h ^= bytes.length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The sticky bucket of a subject: murmur3(utf8(salt + ":" + subject)) mod 10000. */
export function bucket(salt, subject) {
  return murmur3(encoder.encode(`${salt}:${subject}`)) % BUCKETS;
}

/** The number of buckets (from 0) in the gray variant at a percent. */
export function threshold(percent) {
  return Math.min(BUCKETS, Math.max(0, Math.round(percent * 100)));
}

/** Parses MAJOR.MINOR.PATCH[-PRE][+BUILD] (optional leading v); null when invalid. */
export function parseSemver(text) {
  let rest = text.startsWith('v') ? text.slice(1) : text;
  const plus = rest.indexOf('+');
  if (plus >= 0) {
    if (plus === rest.length - 1) return null;
    rest = rest.slice(0, plus);
  }
  let pre = '';
  const dash = rest.indexOf('-');
  if (dash >= 0) {
    pre = rest.slice(dash + 1);
    rest = rest.slice(0, dash);
    if (pre === '') return null;
  }
  const parts = rest.split('.');
  if (parts.length !== 3) return null;
  const numbers = [];
  for (const part of parts) {
    if (!/^(0|[1-9][0-9]*)$/.test(part) || BigInt(part) > U64_MAX) return null;
    numbers.push(BigInt(part));
  }
  if (pre !== '' && !pre.split('.').every((id) => /^[0-9A-Za-z-]+$/.test(id))) return null;
  return { major: numbers[0], minor: numbers[1], patch: numbers[2], pre };
}

/** Semver precedence: negative, zero or positive like a comparator. */
export function compareSemver(a, b) {
  for (const field of ['major', 'minor', 'patch']) {
    if (a[field] !== b[field]) return a[field] < b[field] ? -1 : 1;
  }
  if (a.pre === b.pre) return 0;
  if (a.pre === '') return 1;
  if (b.pre === '') return -1;
  const x = a.pre.split('.');
  const y = b.pre.split('.');
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    if (i >= x.length) return -1;
    if (i >= y.length) return 1;
    // A numeric identifier beyond 64 bits compares as text, as in the Rust implementation.
    const xn = /^[0-9]+$/.test(x[i]) && BigInt(x[i]) <= U64_MAX;
    const yn = /^[0-9]+$/.test(y[i]) && BigInt(y[i]) <= U64_MAX;
    let order;
    if (xn && yn) {
      const xi = BigInt(x[i]);
      const yi = BigInt(y[i]);
      order = xi === yi ? 0 : xi < yi ? -1 : 1;
    } else if (xn) {
      order = -1;
    } else if (yn) {
      order = 1;
    } else {
      order = x[i] === y[i] ? 0 : x[i] < y[i] ? -1 : 1;
    }
    if (order !== 0) return order;
  }
  return 0;
}

/** Whether attributes satisfy a rule; a missing attribute matches no rule. */
export function ruleMatches(rule, attrs) {
  if (!Object.prototype.hasOwnProperty.call(attrs, rule.attribute)) return false;
  const value = String(attrs[rule.attribute]);
  const values = rule.values || [];
  switch (rule.op) {
    case 'in':
      return values.includes(value);
    case 'not_in':
      return !values.includes(value);
    case 'eq':
      return values[0] === value;
    case 'prefix':
      return values.some((p) => value.startsWith(p));
    case 'semver_gte':
    case 'semver_lt': {
      const have = parseSemver(value);
      const want = values.length > 0 ? parseSemver(values[0]) : null;
      if (!have || !want) return false;
      const order = compareSemver(have, want);
      return rule.op === 'semver_gte' ? order >= 0 : order < 0;
    }
    default:
      return false;
  }
}

/**
 * Evaluates a gray section for a subject (null: none) and attributes.
 * Returns {variant: 'stable'|'gray', reason, bucket: number|null}.
 */
export function evaluate(gray, subject, attrs = {}, roll = () => Math.floor(Math.random() * BUCKETS)) {
  const decision = (variant, reason, b = null) => ({ variant, reason, bucket: b });
  if (!gray) return decision('stable', 'no_gray');
  if (subject !== null && subject !== undefined) {
    if ((gray.deny || []).includes(subject)) return decision('stable', 'deny');
    if ((gray.allow || []).includes(subject)) return decision('gray', 'allow');
  }
  if (!(gray.rules || []).every((rule) => ruleMatches(rule, attrs))) {
    return decision('stable', 'rule_mismatch');
  }
  const limit = threshold(gray.percent);
  if (subject === null || subject === undefined) {
    return decision(roll() % BUCKETS < limit ? 'gray' : 'stable', 'random');
  }
  const b = bucket(gray.salt, subject);
  return decision(b < limit ? 'gray' : 'stable', 'percent', b);
}
