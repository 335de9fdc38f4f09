// Random releases, subjects and attributes for the differential tests (Node and Chromium),
// from a seeded generator so that a failing seed can be replayed.

/** A small seeded generator (mulberry32), so that a failing seed can be replayed. */
export function random(seed) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n) => Math.floor(next() * n);
  const pick = (items) => items[int(items.length)];
  const some = (items, most) => Array.from({ length: int(most + 1) }, () => pick(items));
  return { next, int, pick, some };
}

const SUBJECTS = ['alice', 'bob', 'user-1', 'user-42', 'tenant/7', 'ünïcødé', '🙂 emoji', 'a+b&c=d', 'x'.repeat(40), '0'];
const ATTRIBUTES = ['region', 'plan', 'version'];
const VALUES = {
  region: ['eu', 'eu-west', 'eu-north', 'us', 'us-east', 'asia'],
  plan: ['free', 'pro', 'Pro', 'enterprise'],
  version: ['1.0.0', '1.2.0', '1.10.0', 'v1.2.3', '2.0.0-rc.1', '2.0.0', '1.2.3+build.5', '1.2', 'x.y.z', '18446744073709551616.0.0', '1.0.0-alpha.10', '1.0.0-alpha.9'],
};
// Valid versions, for the values of semver rules.
const VERSIONS = ['1.0.0', '1.2.0', '1.10.0', 'v1.2.3', '2.0.0-rc.1', '2.0.0', '1.0.0-alpha.9'];
const OPS = ['in', 'not_in', 'eq', 'prefix', 'semver_gte', 'semver_lt'];

export function randomSubject(rng) {
  // Fresh subjects spread over the buckets; known ones meet the allow and deny lists.
  return rng.next() < 0.5 ? `s-${rng.int(1e9)}` : rng.pick(SUBJECTS);
}

function randomRule(rng) {
  const attribute = rng.pick(ATTRIBUTES);
  const op = rng.pick(OPS);
  if (op.startsWith('semver')) return { attribute, op, values: [rng.pick(VERSIONS)] };
  // The server takes exactly one value for `eq` and the semver ops.
  const pool = VALUES[attribute];
  return { attribute, op, values: op === 'eq' ? [rng.pick(pool)] : [rng.pick(pool), ...rng.some(pool, 2)] };
}

export function randomRelease(rng) {
  return {
    value: { gray: rng.int(1000) },
    percent: rng.pick([0, 0.01, 100, rng.int(10001) / 100, rng.int(101)]),
    ...(rng.next() < 0.5 ? { salt: `salt-${rng.int(100)}` } : {}),
    allow: rng.some(SUBJECTS, 2),
    deny: rng.some(SUBJECTS, 2),
    // Few rules, so that most cases reach the percent.
    rules: rng.next() < 0.5 ? [] : Array.from({ length: 1 + rng.int(2) }, () => randomRule(rng)),
  };
}

export function randomAttrs(rng) {
  const attrs = {};
  for (const name of ATTRIBUTES) {
    // An empty value is a value (rules cannot name it, but attributes can carry it).
    if (rng.next() < 0.8) attrs[name] = rng.next() < 0.05 ? '' : rng.pick(VALUES[name]);
  }
  return attrs;
}

/** Runs `work` over `items` with at most `limit` in flight. */
export async function inParallel(items, limit, work) {
  let index = 0;
  const worker = async () => {
    while (index < items.length) await work(items[index++]);
  };
  await Promise.all(Array.from({ length: limit }, worker));
}
