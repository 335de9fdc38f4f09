// Issue 20's memory budget: 1,000 clients in one Node process, each following a namespace
// of 100 keys, hold at most 150 MiB of RSS once all are ready.
//
// The clients run in a process of their own (test/fixtures/memory.js), so that the figure
// is theirs and not the test runner's. They use the `ws` package as their WebSocket, which
// is what a Node service gets by default where Node has a global WebSocket (≥ 22) and what
// Node 20 services pass for long-lived connections; SSE over Node 20's `fetch` is measured
// too and printed, not held to the budget: each of undici's streaming responses costs
// about 35 KB of heap, whatever the SDK does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';

import { TestServer } from './server.js';

const CLIENTS = 1000;
const KEYS = 100;
const BUDGET_MIB = 150;
const DEADLINE_MS = 60000;

/** A value of realistic size: a small JSON object of about 100 bytes. */
function value(k) {
  return { enabled: k % 2 === 0, limit: k * 10, region: 'eu-west-1', owner: 'team-payments', tags: ['checkout', `v${k}`] };
}

/** Runs the fixture's clients against `url`; resolves to what it printed. */
async function measure(url, transport) {
  const child = spawn(process.execPath, ['--expose-gc', new URL('./fixtures/memory.js', import.meta.url).pathname], {
    env: { ...process.env, GRAYCAST_URL: url, GRAYCAST_CLIENTS: String(CLIENTS), GRAYCAST_WAVE: '100', GRAYCAST_NAMESPACE: 'app', GRAYCAST_TRANSPORT: transport },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  const timer = setTimeout(() => child.kill('SIGKILL'), DEADLINE_MS);
  const [code] = await once(child, 'exit');
  clearTimeout(timer);
  assert.equal(code, 0, `the measuring process failed: ${output}`);
  return JSON.parse(output);
}

const mib = (bytes) => Math.round(bytes / 2 ** 20);

test(`memory: ${CLIENTS} clients × ${KEYS} keys in one process ≤ ${BUDGET_MIB} MiB RSS`, async (t) => {
  // A long heartbeat: the figure is about holding state, not about idle traffic.
  const server = await TestServer.start({ heartbeatMs: 15000 });
  try {
    for (let k = 0; k < KEYS; k++) await server.call('PUT', `/v1/configs/app/key-${k}`, { value: value(k) });
    const sample = await server.call('GET', '/v1/configs/app/key-1');
    t.diagnostic(`a value is ${JSON.stringify(sample.value).length} bytes, an entry ${JSON.stringify(sample).length}`);

    const ws = await measure(server.url, 'ws');
    assert.deepEqual([ws.clients, ws.keys], [CLIENTS, CLIENTS * KEYS], 'every client holds every key');
    console.log(`memory: ${CLIENTS.toLocaleString('en')} clients × ${KEYS} keys: ${mib(ws.rss)} MiB RSS (ws transport, ${mib(ws.heapUsed)} MiB of JS heap)`);

    const sse = await measure(server.url, 'sse');
    assert.equal(sse.keys, CLIENTS * KEYS);
    t.diagnostic(`sse over Node's fetch, not held to the budget: ${mib(sse.rss)} MiB RSS (${mib(sse.heapUsed)} MiB of JS heap)`);

    assert.ok(ws.rss <= BUDGET_MIB * 2 ** 20, `${mib(ws.rss)} MiB RSS is over the budget of ${BUDGET_MIB} MiB`);
  } finally {
    await server.close();
  }
});
