// The client against real servers, over both transports: server-sent events over fetch
// (Node 20 has no WebSocket) and the `ws` package passed as `WebSocket`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { WebSocket as WsWebSocket } from 'ws';

import { createClient } from '../src/graycast.js';
import { HEARTBEAT_MS, TestServer, next } from './server.js';

// `WebSocket: null` forces SSE even where there is a global WebSocket (Node ≥ 22).
const TRANSPORTS = { sse: null, ws: WsWebSocket };
const EXIT_DEADLINE_MS = 10000;

/** A Map behind the Web Storage methods the client uses. */
function memoryStorage() {
  const items = new Map();
  return { getItem: (k) => items.get(k) ?? null, setItem: (k, v) => items.set(k, v) };
}

/** Resolves when `client` is at `revision` or later (it may be already). */
function reach(client, revision) {
  return client.revision >= revision ? Promise.resolve() : next(client, 'revision', (r) => r >= revision);
}

/** Runs test/fixtures/exit.js with `env`; resolves to its exit code and output lines. */
async function runChild(env) {
  const child = spawn(process.execPath, [new URL('./fixtures/exit.js', import.meta.url).pathname], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  const timer = setTimeout(() => child.kill('SIGKILL'), EXIT_DEADLINE_MS);
  const [code, signal] = await once(child, 'exit');
  clearTimeout(timer);
  assert.equal(signal, null, `the process did not exit by itself within ${EXIT_DEADLINE_MS} ms: ${output}`);
  return { code, lines: output.trim().split('\n') };
}

for (const [transport, WebSocket] of Object.entries(TRANSPORTS)) {
  test(`${transport}: ready, get, evaluate, entries, change events, report`, async () => {
    const server = await TestServer.start();
    try {
      await server.call('PUT', '/v1/configs/payments/timeout_ms', { value: 250 });
      await server.call('PUT', '/v1/configs/payments/timeout_ms/gray', {
        value: 300, percent: 50, allow: ['vip'], rules: [{ attribute: 'region', op: 'in', values: ['eu', 'us'] }],
      });
      await server.call('PUT', '/v1/configs/other/x', { value: 'not followed' });
      const client = createClient({ url: server.url, namespaces: ['payments'], WebSocket, heartbeatMs: HEARTBEAT_MS });
      const readyEvent = next(client, 'ready');
      await client.ready();
      await readyEvent;
      assert.equal(client.get('payments', 'timeout_ms', { subject: 'vip' }), 300);
      assert.equal(client.get('payments', 'timeout_ms', { subject: 'vip2', attrs: { region: 'asia' } }), 250);
      for (const subject of ['u1', 'u2', 'u3', 'u4', 'u5', 'u6']) {
        const server_ = await server.call('GET', `/v1/release/payments/timeout_ms?subject=${subject}&attr.region=eu`);
        const local = client.evaluate('payments', 'timeout_ms', { subject, attrs: { region: 'eu' } });
        assert.deepEqual(local, { value: server_.value, variant: server_.variant, reason: server_.reason, bucket: server_.bucket, revision: server_.revision });
      }
      assert.equal(client.get('payments', 'missing', {}, 'fallback'), 'fallback');
      assert.equal(client.get('other', 'x'), undefined, 'a namespace not followed is not there');
      assert.deepEqual(client.entries('payments').map((e) => e.key), ['timeout_ms']);

      const reported = await client.report('payments', 'timeout_ms', 'gray', 7, 1);
      assert.ok(reported, 'the report is answered');

      const changed = next(client, 'change', (c) => c.key === 'retries');
      const put = await server.call('PUT', '/v1/configs/payments/retries', { value: 3, comment: 'more' });
      const change = await changed;
      assert.deepEqual([change.op, change.revision, change.entry.value, change.comment, change.previous], ['put', put.revision, 3, 'more', undefined]);
      assert.equal(client.get('payments', 'retries'), 3);
      assert.equal(client.revision, put.revision);

      const deleted = next(client, 'change', (c) => c.op === 'delete');
      await server.call('DELETE', '/v1/configs/payments/retries');
      assert.equal((await deleted).previous.value, 3);
      assert.equal(client.get('payments', 'retries'), undefined);
      client.close();
    } finally {
      await server.close();
    }
  });

  test(`${transport}: resumes by revision after kill -9, missing and reordering nothing`, async (t) => {
    const server = await TestServer.start();
    try {
      const client = createClient({ url: server.url, namespaces: ['ns'], WebSocket, heartbeatMs: HEARTBEAT_MS });
      await client.ready();
      const seen = [];
      client.on('change', (c) => seen.push(c.revision));
      const recoveries = [];
      client.on('recovered', (r) => recoveries.push(r));

      const put = (target, i) => target.call('PUT', `/v1/configs/ns/k${i % 7}`, { value: i });
      for (let i = 0; i < 10; i++) await put(server, i);
      // Writes in flight when the server dies: some may have become durable unanswered.
      const writer = (async () => {
        for (let i = 10; ; i++) await put(server, i);
      })().catch(() => {});
      await next(client, 'change', (c) => c.revision >= 15);
      const stale = next(client, 'stale');
      await server.kill();
      await writer;
      await stale;

      // Changes the client cannot have seen live: written through another process on the
      // same store while the client's port is dark.
      const other = await server.sibling();
      for (let i = 1000; i < 1005; i++) await put(other, i);
      await other.stop();
      const recovered = next(client, 'recovered');
      await server.restart();
      const { replayed, snapshot } = await recovered;
      assert.equal(snapshot, false, 'a resume is a replay');
      assert.ok(replayed >= 5, `replayed ${replayed}`);
      t.diagnostic(`${transport}: ${replayed} changes replayed after the restart`);

      const log = await server.call('GET', '/v1/changes?since=0&namespace=ns&limit=1000');
      assert.deepEqual(seen, log.items.map((item) => item.revision), 'every change, once, in order');
      for (let i = 0; i < 7; i++) {
        const entry = await server.call('GET', `/v1/configs/ns/k${i}`);
        assert.equal(client.get('ns', `k${i}`), entry.value);
      }
      assert.equal(recoveries.length, 1);
      client.close();
    } finally {
      await server.close();
    }
  });

  test(`${transport}: a stored cache and a bootstrap are read at once and resumed, not refetched`, async () => {
    const server = await TestServer.start();
    // Closed whatever happens: a client left retrying would keep the test process alive.
    const clients = [];
    try {
      await server.call('PUT', '/v1/configs/app/color', { value: 'blue' });
      const storage = memoryStorage();
      const first = createClient({ url: server.url, namespaces: ['app'], storage, WebSocket });
      clients.push(first);
      await first.ready();
      first.close();
      for (const value of ['green', 'red', 'black']) await server.call('PUT', '/v1/configs/app/color', { value });

      const second = createClient({ url: server.url, namespaces: ['app'], storage, WebSocket });
      clients.push(second);
      assert.equal(second.get('app', 'color'), 'blue', 'the cache is read before the network answers');
      const recovered = await next(second, 'recovered');
      assert.deepEqual(recovered, { replayed: 3, snapshot: false });
      assert.equal(second.get('app', 'color'), 'black');
      second.close();

      const bootstrap = await server.call('GET', '/v1/configs/app');
      const third = createClient({ url: server.url, namespaces: ['app'], bootstrap, WebSocket });
      clients.push(third);
      assert.equal(third.get('app', 'color'), 'black');
      assert.equal(third.revision, bootstrap.revision);
      assert.deepEqual(await next(third, 'recovered'), { replayed: 0, snapshot: false });
      third.close();
    } finally {
      clients.forEach((client) => client.close());
      await server.close();
    }
  });

  test(`${transport}: status goes connecting, live, reconnecting, live, stopped across a restart; revision follows`, async () => {
    const server = await TestServer.start();
    let client;
    try {
      client = createClient({ url: server.url, namespaces: ['ns'], WebSocket, heartbeatMs: HEARTBEAT_MS });
      const statuses = [client.status];
      client.on('status', (status) => statuses.push(status));
      const revisions = [];
      client.on('revision', (revision) => revisions.push(revision));
      await client.ready();
      const first = await server.call('PUT', '/v1/configs/ns/a', { value: 1 });
      await reach(client, first.revision);

      const reconnecting = next(client, 'status', (s) => s === 'reconnecting');
      await server.kill();
      await reconnecting;
      const live = next(client, 'status', (s) => s === 'live');
      await server.restart();
      await live;
      const second = await server.call('PUT', '/v1/configs/ns/a', { value: 2 });
      await reach(client, second.revision);
      client.close();

      assert.deepEqual(statuses, ['connecting', 'live', 'reconnecting', 'live', 'stopped']);
      assert.equal(client.status, 'stopped');
      assert.ok(revisions.every((r, i) => i === 0 || r > revisions[i - 1]), `revisions only grow: ${revisions}`);
      assert.ok(revisions.includes(first.revision) && revisions.at(-1) === second.revision, `revisions ${revisions}`);
      assert.equal(client.revision, second.revision);
    } finally {
      // A failure must not leave a client retrying and the test process alive.
      client?.close();
      await server.close();
    }
  });

  test(`${transport}: a parse option receives the server's raw text`, async () => {
    const server = await TestServer.start();
    let client;
    try {
      // A value a double cannot hold: the server keeps its digits.
      const big = '12345678901234567890';
      await fetch(`${server.url}/v1/configs/ns/big`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: `{"value": ${big}}` });
      const texts = [];
      // A small lossless parser: integers too long for a double become BigInts.
      const parse = (text) => {
        texts.push(text);
        const quoted = text.replace(/([:,[]\s*)(-?\d{16,})(?=\s*[,\]}])/g, '$1"#big:$2"');
        return JSON.parse(quoted, (_, v) => (typeof v === 'string' && v.startsWith('#big:') ? BigInt(v.slice(5)) : v));
      };
      client = createClient({ url: server.url, namespaces: ['ns'], WebSocket, parse });
      await client.ready();
      assert.ok(texts.some((text) => text.includes(`"value":${big}`)), 'the parser saw the digits as written');
      assert.equal(client.get('ns', 'big'), BigInt(big));
      const changed = next(client, 'change');
      await fetch(`${server.url}/v1/configs/ns/big`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: `{"value": ${big}1}` });
      assert.equal((await changed).entry.value, BigInt(`${big}1`));
    } finally {
      client?.close();
      await server.close();
    }
  });

  test(`${transport}: a refused token is one error event, and no retry keeps the process alive`, async () => {
    const server = await TestServer.start({ tokens: { 'right-secret': 'read' } });
    try {
      const env = { GRAYCAST_URL: server.url, GRAYCAST_TRANSPORT: transport };
      const refused = await runChild({ ...env, GRAYCAST_TOKEN: 'wrong-secret' });
      assert.equal(refused.code, 0);
      assert.deepEqual(refused.lines, ['error unauthorized false', 'ready rejected unauthorized']);
      // The same process with the right token is served, and exits by itself after close().
      const served = await runChild({ ...env, GRAYCAST_TOKEN: 'right-secret' });
      assert.equal(served.code, 0);
      assert.deepEqual(served.lines, ['ready', 'closed']);
    } finally {
      await server.close();
    }
  });
}
