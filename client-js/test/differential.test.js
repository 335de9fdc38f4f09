// The client's evaluation against the server's (`GET /v1/release`) on random releases,
// subjects and attributes: they must never disagree.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { createClient } from '../src/graycast.js';
import { TestServer } from './server.js';
import { inParallel, random, randomAttrs, randomRelease, randomSubject } from './cases.js';

const CASES = Number(process.env.GRAYCAST_DIFF_CASES || 10000);
const KEYS = 24;
// Requests in flight at once: enough to keep a debug server busy on two cores.
const CONCURRENCY = 32;

test(`${CASES} random cases: the client and the server decide the same`, async (t) => {
  const seed = Number(process.env.GRAYCAST_SEED || Math.floor(Math.random() * 2 ** 32));
  t.diagnostic(`seed ${seed} (GRAYCAST_SEED replays it)`);
  const rng = random(seed);
  const server = await TestServer.start();
  try {
    for (let k = 0; k < KEYS; k++) {
      await server.call('PUT', `/v1/configs/diff/k${k}`, { value: { stable: k } });
      // A few keys run no release: `no_gray`.
      if (k % 8 !== 0) await server.call('PUT', `/v1/configs/diff/k${k}/gray`, randomRelease(rng));
    }
    const client = createClient({ url: server.url, namespaces: ['diff'] });
    await client.ready();
    const cases = Array.from({ length: CASES }, () => ({ key: `k${rng.int(KEYS)}`, subject: randomSubject(rng), attrs: randomAttrs(rng) }));
    const disagreements = [];
    const reasons = {};
    await inParallel(cases, CONCURRENCY, async ({ key, subject, attrs }) => {
      const query = new URLSearchParams({ subject });
      for (const [name, value] of Object.entries(attrs)) query.set(`attr.${name}`, value);
      const remote = await server.call('GET', `/v1/release/diff/${key}?${query}`);
      const local = client.evaluate('diff', key, { subject, attrs });
      const theirs = { value: remote.value, variant: remote.variant, reason: remote.reason, bucket: remote.bucket ?? null, revision: remote.revision };
      reasons[local.reason] = (reasons[local.reason] || 0) + 1;
      try {
        assert.deepEqual(local, theirs);
      } catch {
        disagreements.push({ key, subject, attrs, local, remote: theirs, gray: client.entries('diff').find((e) => e.key === key).gray });
      }
    });
    client.close();
    t.diagnostic(`${CASES} cases, ${disagreements.length} disagreements; reasons ${JSON.stringify(reasons)}`);
    assert.deepEqual(disagreements.slice(0, 5), [], `${disagreements.length} disagreements`);
    // Every way to decide was exercised.
    for (const reason of ['no_gray', 'deny', 'allow', 'rule_mismatch', 'percent']) assert.ok(reasons[reason] > 0, reason);
  } finally {
    await server.close();
  }
});
