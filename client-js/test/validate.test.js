// `validate`: a pushed value the application refuses is told to the server (a nack), which
// lists it in /v1/clients and counts it for a gray release's guard.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket as WsWebSocket } from 'ws';

import { createClient } from '../src/graycast.js';
import { TestServer, next } from './server.js';

const TRANSPORTS = { sse: undefined, ws: WsWebSocket };
const DEADLINE_MS = 15000;

/** Polls the server until `check` holds of /v1/clients, within the deadline. */
async function eventually(server, check) {
  const deadline = Date.now() + DEADLINE_MS;
  for (;;) {
    const list = await server.call('GET', '/v1/clients');
    if (check(list)) return list;
    assert.ok(Date.now() < deadline, `not within ${DEADLINE_MS} ms: ${JSON.stringify(list)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

for (const [transport, WebSocket] of Object.entries(TRANSPORTS)) {
  test(`${transport}: clients whose validate refuses a gray value abort it through the guard`, async () => {
    const server = await TestServer.start();
    const clients = [];
    try {
      await server.call('PUT', '/v1/configs/pay/limits', { value: { max: 10 } });
      const validate = (value) => {
        if (!Number.isInteger(value.max)) throw new Error(`max must be an integer, not ${JSON.stringify(value.max)}`);
      };
      for (let i = 0; i < 3; i++) {
        const client = createClient({ url: server.url, namespaces: ['pay'], WebSocket, validate, client: { id: `app-${i}` } });
        clients.push(client);
        await client.ready();
      }
      const aborted = Promise.all(clients.map((c) => next(c, 'change', (change) => change.op === 'abort')));
      const gray = { value: { max: 'ten' }, percent: 50, guard: { max_error_rate: 0.5, min_samples: 3 } };
      const { revision } = await server.call('PUT', '/v1/configs/pay/limits/gray', gray);
      const list = await eventually(server, (l) => l.rejections[0]?.clients === 3);
      assert.deepEqual(
        { ...list.rejections[0], error: undefined },
        { namespace: 'pay', key: 'limits', revision, clients: 3, error: undefined },
      );
      assert.match(list.rejections[0].error, /max must be an integer, not "ten"/);
      // Three errors in three samples: the guard aborts, and the clients hear of it.
      await aborted;
      assert.equal(clients[0].get('pay', 'limits').max, 10);
    } finally {
      clients.forEach((c) => c.close());
      await server.close();
    }
  });
}
