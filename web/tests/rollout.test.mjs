// The console's evaluation against the shared vectors (generated with the mmh3 package).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { bucket, evaluate, murmur3, parseSemver, compareSemver, ruleMatches } from '../rollout.js';

const vectorsPath = fileURLToPath(new URL('../../protocol/testdata/rollout-vectors.json', import.meta.url));
const vectors = JSON.parse(readFileSync(vectorsPath, 'utf8'));
const encoder = new TextEncoder();

test('at least a thousand vectors', () => {
  assert.ok(vectors.cases.length >= 1000);
});

test('every hash and bucket matches', () => {
  for (const c of vectors.cases) {
    const input = `${c.salt}:${c.subject}`;
    assert.equal(murmur3(encoder.encode(input)), c.hash, `hash of ${JSON.stringify(input)}`);
    assert.equal(bucket(c.salt, c.subject), c.bucket, `bucket of ${JSON.stringify(input)}`);
  }
});

test('every variant at every percent matches', () => {
  for (const c of vectors.cases) {
    for (const p of vectors.percents) {
      const gray = { percent: p, salt: c.salt, allow: [], deny: [], rules: [] };
      const d = evaluate(gray, c.subject, {});
      const key = Number.isInteger(p) ? String(p) : String(p);
      assert.equal(d.variant, c.variants[key], `${JSON.stringify(c.subject)} at ${p}`);
      assert.equal(d.reason, 'percent');
      assert.equal(d.bucket, c.bucket);
    }
  }
});

test('decision order: no gray, deny, allow, rules, random', () => {
  const gray = {
    percent: 0, salt: 'ns/key', allow: ['vip', 'both'], deny: ['blocked', 'both'],
    rules: [{ attribute: 'region', op: 'in', values: ['eu'] }],
  };
  assert.equal(evaluate(null, 'x').reason, 'no_gray');
  assert.deepEqual(evaluate(gray, 'both', { region: 'eu' }), { variant: 'stable', reason: 'deny', bucket: null });
  assert.deepEqual(evaluate(gray, 'vip', { region: 'us' }), { variant: 'gray', reason: 'allow', bucket: null });
  assert.equal(evaluate(gray, 'u', { region: 'us' }).reason, 'rule_mismatch');
  assert.equal(evaluate(gray, 'u', {}).reason, 'rule_mismatch');
  assert.equal(evaluate({ ...gray, percent: 100 }, null, { region: 'eu' }, () => 9999).variant, 'gray');
  assert.equal(evaluate({ ...gray, percent: 0 }, null, { region: 'eu' }, () => 0).variant, 'stable');
});

test('rules and semver', () => {
  const rule = (op, values) => ({ attribute: 'v', op, values });
  assert.ok(ruleMatches(rule('prefix', ['eu-']), { v: 'eu-west' }));
  assert.ok(!ruleMatches(rule('not_in', ['a']), {}));
  assert.ok(ruleMatches(rule('semver_gte', ['1.2.0']), { v: '1.10.0' }));
  assert.ok(!ruleMatches(rule('semver_gte', ['1.2.0']), { v: '1.2.0-rc.1' }));
  assert.ok(ruleMatches(rule('semver_lt', ['2.0.0']), { v: 'v1.99.99' }));
  const ordered = ['1.0.0-alpha', '1.0.0-alpha.1', '1.0.0-alpha.beta', '1.0.0-beta', '1.0.0-beta.2',
    '1.0.0-beta.11', '1.0.0-rc.1', '1.0.0', '1.0.1+build.5', '1.1.0', '2.0.0'];
  for (let i = 1; i < ordered.length; i++) {
    assert.ok(compareSemver(parseSemver(ordered[i - 1]), parseSemver(ordered[i])) < 0, ordered[i]);
  }
  for (const bad of ['', '1', '1.2', '1.2.3.4', '01.2.3', '1.2.x', '1.2.3-', '1.2.3+', '1.2.3-a..b']) {
    assert.equal(parseSemver(bad), null, bad);
  }
});

test('versions beyond 64 bits behave as in the Rust implementation', () => {
  assert.equal(parseSemver('18446744073709551616.0.0'), null);
  assert.ok(parseSemver('18446744073709551615.0.0'));
  // Pre-release identifiers too large for 64 bits compare as text.
  const a = parseSemver('1.0.0-99999999999999999999');
  const b = parseSemver('1.0.0-alpha');
  assert.ok(compareSemver(a, b) < 0, 'digits sort before letters as text');
});
