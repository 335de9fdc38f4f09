// A subscriber resuming with `since` gets every write the server acknowledged before it
// subscribed ahead of its first `progress`. The server once sent `progress` at a revision
// below such a write and the change only afterwards, as a live one: nothing was lost, but
// the client believed it was in sync while behind an acknowledged write, and
// `recovered.replayed` under-counted (a few rounds in 40 on /v1/events, fewer on /v1/watch).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';

import { TestServer } from './server.js';

const ROUNDS = 40;

/** Writes 1 + 3 values; resolves to the revision before the 3 and the last one. */
async function writeRound(server, round) {
  const since = (await server.call('PUT', '/v1/configs/app/color', { value: `x${round}` })).revision;
  let last;
  for (const value of ['green', 'red', 'black']) last = (await server.call('PUT', '/v1/configs/app/color', { value })).revision;
  return { since, last };
}

/** The messages of an SSE subscription from `since` up to its first progress. */
async function sseUntilProgress(server, since) {
  const abort = new AbortController();
  const response = await fetch(`${server.url}/v1/events?namespaces=app&since=${since}`, { signal: abort.signal });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let text = '';
  while (!/event: progress/.test(text)) text += (await reader.read()).value;
  abort.abort();
  return [...text.matchAll(/event: (\w+)\nid: (\d+)/g)].map(([, type, id]) => ({ type, revision: Number(id) }));
}

/** The same over /v1/watch. */
function watchUntilProgress(server, since) {
  const socket = new WebSocket(`${server.url.replace(/^http/, 'ws')}/v1/watch`);
  const messages = [];
  return new Promise((resolve, reject) => {
    socket.onerror = reject;
    socket.onopen = () => socket.send(JSON.stringify({ type: 'subscribe', namespaces: ['app'], since }));
    socket.onmessage = ({ data }) => {
      const { type, revision } = JSON.parse(data);
      messages.push({ type, revision });
      if (type === 'progress') {
        socket.close();
        resolve(messages);
      }
    };
  });
}

for (const [transport, subscribe] of [
  ['sse', sseUntilProgress],
  ['ws', watchUntilProgress],
]) {
  test(`${transport}: a resume replays every acknowledged write before its first progress`, async () => {
    const server = await TestServer.start();
    try {
      const late = [];
      for (let round = 0; round < ROUNDS; round++) {
        const { since, last } = await writeRound(server, round);
        const messages = await subscribe(server, since);
        const progress = messages.find((m) => m.type === 'progress');
        if (progress.revision < last) late.push({ round, since, last, messages: messages.map((m) => `${m.type} ${m.revision}`) });
      }
      assert.deepEqual(late.slice(0, 3), [], `${late.length}/${ROUNDS} resumes said progress before the last acknowledged write`);
    } finally {
      await server.close();
    }
  });
}
