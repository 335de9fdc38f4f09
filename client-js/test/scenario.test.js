// The scenario both SDKs run (protocol/testdata/sdk-scenario.json): subscribe, change, gray
// start, step, resume from a cache, promote, abort. The Rust SDK runs the same file in
// tests/tests/scenario.rs; both checking the file's expectations is what makes them agree.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { WebSocket as WsWebSocket } from 'ws';

import { createClient } from '../src/graycast.js';
import { HEARTBEAT_MS, TestServer, next } from './server.js';

const scenario = JSON.parse(readFileSync(new URL('../../protocol/testdata/sdk-scenario.json', import.meta.url)));
const TRANSPORTS = { sse: null, ws: WsWebSocket };

/** A Map behind the Web Storage methods the client uses. */
function memoryStorage() {
  const items = new Map();
  return { getItem: (k) => items.get(k) ?? null, setItem: (k, v) => items.set(k, v) };
}

for (const [transport, WebSocket] of Object.entries(TRANSPORTS)) {
  test(`${transport}: the shared scenario`, async () => {
    const server = await TestServer.start();
    const { namespace } = scenario;
    let storage;
    let client = null;
    let events = [];
    const start = () => {
      client = createClient({ url: server.url, namespaces: [namespace], storage, WebSocket, heartbeatMs: HEARTBEAT_MS });
      events = [];
      client.on('change', (change) => events.push(change));
    };
    try {
      for (const step of scenario.steps) {
        if (step.client === 'stop') {
          client.close();
          client = null;
        }
        for (const write of step.writes || []) {
          await server.call(write.method, write.path, write.body);
        }
        if (step.client === 'start') storage = memoryStorage();
        if (step.client === 'start' || step.client === 'resume') start();
        if (!step.expect) continue;

        const { revision } = await server.call('GET', `/v1/configs/${namespace}`);
        if (client.revision < revision) await next(client, 'revision', (r) => r >= revision);
        const seen = events.sort((a, b) => a.revision - b.revision).map((e) => [e.op, e.key]);
        assert.deepEqual(seen, step.expect.events, `${step.name}: the change events`);
        events = [];

        for (const [key, byContext] of Object.entries(step.expect.values)) {
          for (const [who, want] of Object.entries(byContext)) {
            const { value, variant, reason, bucket } = client.evaluate(namespace, key, scenario.contexts[who]);
            const got = { value, variant, reason };
            if ('bucket' in want) got.bucket = bucket;
            assert.deepEqual(got, want, `${step.name}: ${key} for ${who}`);
          }
        }
      }
    } finally {
      client?.close();
      await server.close();
    }
  });
}
