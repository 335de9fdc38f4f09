// Issue 20's crash test: 200 clients (half SSE over fetch, half over the `ws` package)
// follow one namespace while a writer makes 200 sequential writes, and the server is killed
// with SIGKILL in the middle of them and started again on the same port and data folder.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket as WsWebSocket } from 'ws';

import { createClient } from '../src/graycast.js';
import { TestServer, next } from './server.js';

const CLIENTS = 200;
const WRITES = 200;
const KILL_AFTER = 100;
const KEYS = 10;
const HEARTBEAT_MS = 1000;
// The bars of issue 20.
const REPLAY_SHARE = 0.99;
const CURRENT_WITHIN_MS = 2000;
const WINDOW_MS = 100;
const WINDOW_SHARE = 0.25;
const DEADLINE_MS = 20000;

/** The largest number of `times` (milliseconds) that fall in any window of `width`. */
function busiestWindow(times, width) {
  const sorted = [...times].sort((a, b) => a - b);
  let most = 0;
  for (let i = 0, j = 0; j < sorted.length; j++) {
    while (sorted[j] - sorted[i] >= width) i++;
    most = Math.max(most, j - i + 1);
  }
  return most;
}

/** `promise`, or a rejection naming `what` when it takes longer than `ms`. */
function within(promise, ms, what) {
  let timer;
  const late = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)));
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** Resolves when `client` is at `revision` or later. */
function reach(client, revision) {
  return client.revision >= revision ? Promise.resolve() : next(client, 'revision', (r) => r >= revision, DEADLINE_MS);
}

test(`kill -9 in the middle of ${WRITES} writes to ${CLIENTS} clients: nothing missed or reordered, resumed by replay, spread retries`, async (t) => {
  const server = await TestServer.start({ heartbeatMs: HEARTBEAT_MS });
  // Every connection attempt of every client, by client id: a WebSocket constructed, or a
  // fetch of /v1/events (whose query names the client).
  const attempts = new Map();
  const attempted = (id) => attempts.get(id).push(performance.now());
  const realFetch = globalThis.fetch;
  globalThis.fetch = (input, init) => {
    const url = new URL(String(input));
    if (url.pathname === '/v1/events') attempted(url.searchParams.get('client'));
    return realFetch(input, init);
  };
  const followers = [];
  try {
    for (let i = 0; i < CLIENTS; i++) {
      const id = `client-${i}`;
      attempts.set(id, []);
      const transport = i % 2 ? 'ws' : 'sse';
      const WebSocket = transport === 'ws' ? class extends WsWebSocket {
        constructor(url) {
          attempted(id);
          super(url);
        }
      } : null;
      const client = createClient({ url: server.url, namespaces: ['load'], client: { id }, WebSocket, heartbeatMs: HEARTBEAT_MS });
      const follower = { id, transport, client, seen: [], recoveries: [] };
      client.on('change', (c) => follower.seen.push(c.revision));
      client.on('recovered', (r) => follower.recoveries.push({ ...r, at: performance.now(), revision: client.revision }));
      followers.push(follower);
    }
    await within(Promise.all(followers.map((f) => f.client.ready())), DEADLINE_MS, 'all clients ready');

    // The writer: each write carries an idempotency key, so that one in flight when the
    // server dies is retried after the restart without becoming two changes.
    let back;
    const serverBack = new Promise((resolve) => (back = resolve));
    let halfway;
    const writtenHalf = new Promise((resolve) => (halfway = resolve));
    let lastRevision = 0;
    const write = async (i) => {
      for (;;) {
        let response;
        try {
          response = await realFetch(`${server.url}/v1/configs/load/k${i % KEYS}`, {
            method: 'PUT',
            headers: { 'content-type': 'application/json', 'idempotency-key': `write-${i}` },
            body: JSON.stringify({ value: { i } }),
          });
        } catch {
          // The server is down: try the same write again once it is back.
          await serverBack;
          continue;
        }
        assert.ok(response.ok, `write ${i}: ${response.status} ${await response.clone().text()}`);
        return (await response.json()).revision;
      }
    };
    const writer = (async () => {
      for (let i = 0; i < WRITES; i++) {
        lastRevision = await write(i);
        if (i + 1 === KILL_AFTER) halfway();
      }
    })();

    // A writer that failed says so here, rather than leaving the test waiting for halfway.
    await Promise.race([writtenHalf, writer]);
    const killedAt = performance.now();
    await server.kill();
    await server.restart();
    // Back: the restarted server printed its listening line.
    const backAt = performance.now();
    // The revision the server is at when back: everything made durable before the crash.
    const backRevision = (await server.call('GET', '/v1/configs/load')).revision;
    back();
    await within(writer, DEADLINE_MS, 'the writes');
    await Promise.all(followers.map((f) => reach(f.client, lastRevision)));
    const allFinalAt = performance.now();

    // Nothing missed, nothing reordered: each client applied the server's change log, in
    // order (a client resynced by a snapshot may skip revisions, never go back).
    const log = await server.call('GET', `/v1/changes?since=0&namespace=load&limit=${2 * WRITES}`);
    const revisions = log.items.map((item) => item.revision);
    assert.equal(revisions.length, WRITES, 'one change per write, none doubled by a retry');
    assert.equal(revisions.at(-1), lastRevision);
    const finals = await server.call('GET', '/v1/configs/load');
    for (const f of followers) {
      const bySnapshot = f.recoveries.some((r) => r.snapshot);
      if (bySnapshot) assert.ok(f.seen.every((r, i) => i === 0 || r > f.seen[i - 1]), `${f.id}: in order`);
      else assert.deepEqual(f.seen, revisions, `${f.id} (${f.transport}): every change, once, in order`);
      assert.equal(f.client.revision, lastRevision, f.id);
      for (const entry of finals.entries) assert.deepEqual(f.client.get('load', entry.key), entry.value, `${f.id}: ${entry.key}`);
    }

    // Resumed by replay: the first recovery after the restart says no snapshot was needed.
    const recovered = followers.map((f) => f.recoveries.find((r) => r.at > backAt));
    assert.ok(recovered.every(Boolean), 'every client recovered after the restart');
    const replayed = recovered.filter((r) => !r.snapshot).length;

    // Current: a client is current once it recovered (it is in sync with the server again)
    // and holds at least the revision the server was at when it came back; measured from
    // the restarted server's listening line. The writes that follow are pushed live.
    const currentMs = Math.max(...recovered.map((r) => r.at - backAt));
    assert.ok(recovered.every((r) => r.revision >= backRevision), 'in sync means at the revision the server came back at');

    // First retries: each client's first connection attempt after the kill.
    const firstRetries = followers.map((f) => attempts.get(f.id).find((at) => at > killedAt) - killedAt);
    const busiest = busiestWindow(firstRetries, WINDOW_MS);

    t.diagnostic(`server down ${(backAt - killedAt).toFixed(0)} ms; back at revision ${backRevision}, last write ${lastRevision}`);
    t.diagnostic(`resumed by replay: ${replayed}/${CLIENTS} (${((100 * replayed) / CLIENTS).toFixed(1)} %)`);
    t.diagnostic(`all current ${currentMs.toFixed(0)} ms after the server was back; all at the last write ${(allFinalAt - backAt).toFixed(0)} ms after`);
    t.diagnostic(`first retries over ${Math.max(...firstRetries).toFixed(0)} ms; busiest ${WINDOW_MS} ms window: ${busiest}/${CLIENTS}`);
    t.diagnostic(`connection attempts after the kill: ${followers.reduce((n, f) => n + attempts.get(f.id).filter((at) => at > killedAt).length, 0)}`);

    assert.ok(replayed >= REPLAY_SHARE * CLIENTS, `${replayed}/${CLIENTS} resumed by replay`);
    assert.ok(currentMs <= CURRENT_WITHIN_MS, `the last client was current ${currentMs.toFixed(0)} ms after the server was back`);
    assert.ok(busiest <= WINDOW_SHARE * CLIENTS, `${busiest} first retries in one ${WINDOW_MS} ms window`);
  } finally {
    globalThis.fetch = realFetch;
    followers.forEach((f) => f.client.close());
    await server.close();
  }
});
