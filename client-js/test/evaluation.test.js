// Evaluation against the shared vectors, the semver rules, and the one error table.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import { bucket, evaluateGray, murmur3, GraycastError } from '../src/graycast.js';

const testdata = (name) => JSON.parse(readFileSync(new URL(`../../protocol/testdata/${name}`, import.meta.url), 'utf8'));
const vectors = testdata('rollout-vectors.json');
const encoder = new TextEncoder();

test('every vector: hash, bucket, and the variant at every percent', (t) => {
  assert.ok(vectors.cases.length >= 1000);
  let checked = 0;
  for (const c of vectors.cases) {
    const input = `${c.salt}:${c.subject}`;
    assert.equal(murmur3(encoder.encode(input)), c.hash, `hash of ${JSON.stringify(input)}`);
    assert.equal(bucket(c.salt, c.subject), c.bucket, `bucket of ${JSON.stringify(input)}`);
    for (const p of vectors.percents) {
      const decision = evaluateGray({ percent: p, salt: c.salt }, c.subject, {});
      assert.deepEqual(decision, { variant: c.variants[String(p)], reason: 'percent', bucket: c.bucket }, `${input} at ${p}`);
      checked++;
    }
  }
  t.diagnostic(`vectors: ${vectors.cases.length} cases, ${checked} decisions`);
});

test('murmur3 known values', () => {
  assert.equal(murmur3(encoder.encode('')), 0);
  assert.equal(murmur3(encoder.encode(''), 1), 0x514e28b7);
  assert.equal(murmur3(encoder.encode('hello')), 0x248bfa47);
  assert.equal(murmur3(encoder.encode('The quick brown fox jumps over the lazy dog')), 0x2e4ff723);
});

test('decision order: no gray, deny, allow, rules, random', () => {
  const gray = {
    percent: 0, salt: 'ns/key', allow: ['vip', 'both'], deny: ['blocked', 'both'],
    rules: [{ attribute: 'region', op: 'in', values: ['eu'] }],
  };
  assert.deepEqual(evaluateGray(null, 'x'), { variant: 'stable', reason: 'no_gray', bucket: null });
  assert.deepEqual(evaluateGray(gray, 'both', { region: 'eu' }), { variant: 'stable', reason: 'deny', bucket: null });
  assert.deepEqual(evaluateGray(gray, 'vip', { region: 'us' }), { variant: 'gray', reason: 'allow', bucket: null });
  assert.equal(evaluateGray(gray, 'u', { region: 'us' }).reason, 'rule_mismatch');
  assert.equal(evaluateGray(gray, 'u', {}).reason, 'rule_mismatch');
  assert.equal(evaluateGray({ ...gray, percent: 100 }, null, { region: 'eu' }, () => 9999).variant, 'gray');
  assert.equal(evaluateGray(gray, null, { region: 'eu' }, () => 0).reason, 'random');
});

test('rules of every op, semver precedence included', () => {
  const matches = (op, values, v) => evaluateGray({ percent: 100, salt: 's', rules: [{ attribute: 'v', op, values }] }, 'x', v === undefined ? {} : { v }).variant === 'gray';
  assert.ok(matches('eq', ['a'], 'a') && !matches('eq', ['b', 'a'], 'a'));
  assert.ok(matches('in', ['a', 'b'], 'b') && !matches('in', ['a'], 'c'));
  assert.ok(matches('not_in', ['a'], 'b') && !matches('not_in', ['a'], undefined));
  assert.ok(matches('prefix', ['eu-'], 'eu-west') && !matches('prefix', ['eu-'], 'us-east'));
  assert.ok(matches('eq', ['1'], 1), 'numbers compare as their text');
  assert.ok(matches('semver_gte', ['1.2.0'], '1.10.0'));
  assert.ok(!matches('semver_gte', ['1.2.0'], '1.2.0-rc.1'));
  assert.ok(matches('semver_lt', ['2.0.0'], 'v1.99.99'));
  assert.ok(!matches('semver_lt', ['2.0.0'], 'not a version'));
  const ordered = ['1.0.0-alpha', '1.0.0-alpha.1', '1.0.0-alpha.beta', '1.0.0-beta', '1.0.0-beta.2',
    '1.0.0-beta.11', '1.0.0-rc.1', '1.0.0', '1.0.1+build.5', '1.1.0', '2.0.0', '18446744073709551615.0.0'];
  for (let i = 1; i < ordered.length; i++) {
    assert.ok(matches('semver_lt', [ordered[i]], ordered[i - 1]), `${ordered[i - 1]} < ${ordered[i]}`);
    assert.ok(matches('semver_gte', [ordered[i - 1]], ordered[i]), `${ordered[i]} >= ${ordered[i - 1]}`);
  }
  for (const bad of ['', '1', '1.2', '1.2.3.4', '01.2.3', '1.2.x', '1.2.3-', '1.2.3+', '1.2.3-a..b', '18446744073709551616.0.0']) {
    assert.ok(!matches('semver_gte', ['0.0.0'], bad), bad);
  }
  // Pre-release identifiers too large for 64 bits compare as text: digits before letters.
  assert.ok(matches('semver_lt', ['1.0.0-alpha'], '1.0.0-99999999999999999999'));
});

test('every code of the error table is retried or not as the table says', () => {
  for (const { code, status, retryable } of testdata('errors.json')) {
    assert.equal(new GraycastError(code, '', status).retryable, retryable, code);
    assert.equal(new GraycastError(undefined, '', status).retryable, retryable, `HTTP ${status} without a code`);
  }
  assert.ok(new GraycastError('network', 'gone').retryable);
});
