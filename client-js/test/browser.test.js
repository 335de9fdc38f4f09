// The SDK in a real headless Chromium (Debian's, driven by playwright-core; CHROMIUM names
// another binary) against real servers: loaded by a page of another origin, allowed with
// --allowed-origins, over both transports and for reports; refused to an origin not listed;
// the shared vectors and a differential against the server, evaluated in the page; a
// bootstrapped page that never flips; a wrong token that stops at one error.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { once } from 'node:events';

import { chromium } from 'playwright-core';

import { TestServer } from './server.js';
import { inParallel, random, randomAttrs, randomRelease, randomSubject } from './cases.js';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ADMIN = 'admin-secret';
const REPORTER = 'report-secret';
const DEADLINE_MS = 15000;
// How long a refused client is watched for a retry: longer than the SDK's first backoff
// ceiling (1 s), so that a retry would have come.
const RETRY_WATCH_MS = 2500;
const CASES = Number(process.env.GRAYCAST_DIFF_CASES || 10000);
const DIFF_KEYS = 24;

const file = (path) => readFileSync(new URL(path, import.meta.url));
const SDK = file('../dist/graycast.min.js');
const VECTORS = JSON.parse(file('../../protocol/testdata/rollout-vectors.json'));

/** Pages by path, served by every page origin; `/graycast.min.js` is the built SDK. */
const pages = new Map([['/', '<!doctype html><title>page</title><body>']]);

/** A page origin on a free port of its own: `http://127.0.0.1:PORT`. */
async function pageOrigin() {
  const server = createServer((req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    if (path === '/graycast.min.js') return res.writeHead(200, { 'content-type': 'text/javascript' }).end(SDK);
    if (!pages.has(path)) return res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(pages.get(path));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, origin: `http://127.0.0.1:${server.address().port}` };
}

let browser;
let allowed; // the page origin the server lists in --allowed-origins
let other; // a page origin it does not list
let server;

before(async () => {
  [allowed, other] = await Promise.all([pageOrigin(), pageOrigin()]);
  server = await TestServer.start({
    tokens: { [ADMIN]: 'admin', [REPORTER]: 'report' },
    args: ['--allowed-origins', allowed.origin],
    heartbeatMs: 1000,
  });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-quic'],
  });
});

after(async () => {
  await browser?.close();
  await server?.close();
  allowed?.server.close();
  other?.server.close();
});

const admin = (method, path, body) => server.call(method, path, body, ADMIN);

/** A fresh page at `origin` + `path`; page errors fail the test. */
async function open(t, origin, path = '/') {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (error) => errors.push(error));
  t.after(async () => {
    await page.close();
    assert.deepEqual(errors, [], 'no uncaught error in the page');
  });
  await page.goto(origin + path);
  return page;
}

/**
 * Starts a client in the page as `window.client`, logging its events in `window.log` and
 * counting its connection attempts (WebSockets constructed, /v1/events fetched) in
 * `window.attempts`. `transport` `sse` passes `WebSocket: null`.
 */
function startClient(page, options) {
  return page.evaluate(async ({ transport, ...options }) => {
    const { createClient } = await import('/graycast.min.js');
    window.log = [];
    window.attempts = 0;
    class CountingSocket extends WebSocket {
      constructor(url) {
        window.attempts++;
        super(url);
      }
    }
    const pageFetch = window.fetch;
    window.fetch = (input, init) => {
      if (String(input).includes('/v1/events')) window.attempts++;
      return pageFetch(input, init);
    };
    const client = createClient({ ...options, WebSocket: transport === 'ws' ? CountingSocket : null, heartbeatMs: 1000 });
    window.client = client;
    const details = {
      change: (c) => ({ key: c.key, value: c.entry?.value, revision: c.revision }),
      error: (e) => ({ code: e.code, retryable: e.retryable }),
    };
    for (const event of ['ready', 'change', 'error', 'recovered', 'status', 'snapshot']) {
      client.on(event, (detail) => window.log.push({ event, detail: details[event] ? details[event](detail) : detail }));
    }
    client.ready().then(() => (window.readyState = 'resolved'), (error) => (window.readyState = `rejected ${error.code}`));
  }, options);
}

/** Waits until `accept(arg)`, run in the page, is true. */
function logged(page, accept, { arg, ms = DEADLINE_MS } = {}) {
  return page.waitForFunction(accept, arg, { timeout: ms, polling: 50 });
}

for (const transport of ['ws', 'sse']) {
  test(`${transport}: a page of an allowed origin follows, evaluates and reports across origins`, async (t) => {
    await admin('PUT', `/v1/configs/cors-${transport}/color`, { value: 'blue' });
    await admin('PUT', `/v1/configs/cors-${transport}/color/gray`, { value: 'green', percent: 50 });
    const page = await open(t, allowed.origin);
    const reports = [];
    page.on('request', (request) => request.url().endsWith('/gray/report') && reports.push(request.headers()));
    const sockets = [];
    page.on('websocket', (socket) => sockets.push(socket.url()));
    await startClient(page, { url: server.url, token: REPORTER, namespaces: [`cors-${transport}`], transport });
    await logged(page, () => window.readyState === 'resolved');
    assert.equal(sockets.length, transport === 'ws' ? 1 : 0, `the page's WebSockets: ${sockets}`);
    assert.equal(await page.evaluate(() => window.attempts), 1);

    for (const subject of ['u1', 'u2', 'u3', 'u4']) {
      const remote = await admin('GET', `/v1/release/cors-${transport}/color?subject=${subject}`);
      const local = await page.evaluate(([ns, s]) => window.client.evaluate(ns, 'color', { subject: s }), [`cors-${transport}`, subject]);
      assert.deepEqual([local.value, local.variant, local.bucket], [remote.value, remote.variant, remote.bucket], subject);
    }

    const put = await admin('PUT', `/v1/configs/cors-${transport}/size`, { value: 3 });
    await logged(page, (revision) => window.log.some((e) => e.event === 'change' && e.detail.revision === revision), { arg: put.revision });

    // A report is JSON with a bearer token: a request a browser preflights across origins.
    const before = await admin('GET', `/v1/configs/cors-${transport}/color/gray`);
    const counts = await page.evaluate((ns) => window.client.report(ns, 'color', 'gray', 5, 1), `cors-${transport}`);
    assert.ok(counts, 'the report is answered and readable');
    const after = await admin('GET', `/v1/configs/cors-${transport}/color/gray`);
    assert.notDeepEqual(after.counts, before.counts, 'the server counted the report');
    assert.equal(reports.length, 1);
    assert.match(reports[0]['content-type'], /^application\/json/);
    assert.equal(reports[0].authorization, `Bearer ${REPORTER}`);
    t.diagnostic(`${transport}: counts after the report ${JSON.stringify(after.counts)}`);
    await page.evaluate(() => window.client.close());
  });

  test(`${transport}: a page of an origin not allowed gets nothing, writes nothing, reports nothing`, async (t) => {
    const ns = `refused-${transport}`;
    await admin('PUT', `/v1/configs/${ns}/color`, { value: 'blue' });
    await admin('PUT', `/v1/configs/${ns}/color/gray`, { value: 'green', percent: 50 });
    const before = await admin('GET', `/v1/configs/${ns}/color/gray`);
    const page = await open(t, other.origin);
    await startClient(page, { url: server.url, token: REPORTER, namespaces: [ns], transport });
    // Refused again and again: the browser shows a refused origin as a network failure
    // (a WebSocket upgrade answered 403, a preflight without CORS headers), which the
    // client cannot tell from an outage, so it keeps retrying, quietly, and is never ready.
    await logged(page, () => window.attempts >= 2);
    const state = await page.evaluate(() => ({ ready: window.readyState, status: window.client.status, log: window.log }));
    assert.equal(state.ready, undefined, 'never ready');
    assert.equal(state.status, 'reconnecting');
    assert.deepEqual(state.log.filter((e) => e.event !== 'status'), [], 'no data, no error event');

    const refused = await page.evaluate(async ({ url, ns, admin }) => {
      const outcome = (promise) => promise.then((r) => `answered ${r.status}`, (e) => `failed: ${e.name}`);
      return {
        report: await outcome(window.client.report(ns, 'color', 'gray', 5, 1).then(() => ({ status: 'read' }))),
        write: await outcome(fetch(`${url}/v1/configs/${ns}/color`, {
          method: 'PUT', headers: { 'content-type': 'application/json', authorization: `Bearer ${admin}` }, body: '{"value": "red"}',
        })),
        // A request a browser sends without asking (no preflight): refused by the server.
        simple: await outcome(fetch(`${url}/v1/configs/${ns}/color/gray/report`, { method: 'POST', mode: 'no-cors', body: '{"variant":"gray","ok":1,"errors":1}' })),
      };
    }, { url: server.url, ns, admin: ADMIN });
    assert.deepEqual([refused.report, refused.write], ['failed: TypeError', 'failed: TypeError']);
    t.diagnostic(`${transport}: from ${other.origin}: ${JSON.stringify(refused)}`);
    assert.equal((await admin('GET', `/v1/configs/${ns}/color`)).value, 'blue', 'nothing written');
    assert.deepEqual((await admin('GET', `/v1/configs/${ns}/color/gray`)).counts, before.counts, 'nothing reported');
    await page.evaluate(() => window.client.close());
  });

  test(`${transport}: a wrong token is one error event, and no further connection attempt`, async (t) => {
    const page = await open(t, allowed.origin);
    await startClient(page, { url: server.url, token: 'wrong-secret', namespaces: ['app'], transport });
    await logged(page, () => window.log.some((e) => e.event === 'error'));
    // A retry would come within the first backoff ceiling: none may.
    const retried = await logged(page, () => window.attempts > 1, { ms: RETRY_WATCH_MS }).then(() => true, () => false);
    const state = await page.evaluate(() => ({ ready: window.readyState, status: window.client.status, log: window.log, attempts: window.attempts }));
    assert.equal(retried, false, `${state.attempts} connection attempts`);
    assert.deepEqual(state.log.filter((e) => e.event === 'error'), [{ event: 'error', detail: { code: 'unauthorized', retryable: false } }]);
    assert.equal(state.ready, 'rejected unauthorized');
    assert.equal(state.status, 'stopped');
  });
}

test('every vector and a differential against the server, evaluated in Chromium', async (t) => {
  const page = await open(t, allowed.origin);
  const vectors = await page.evaluate(async (vectors) => {
    const { bucket, evaluateGray, murmur3 } = await import('/graycast.min.js');
    const encoder = new TextEncoder();
    const wrong = [];
    let checked = 0;
    for (const c of vectors.cases) {
      if (murmur3(encoder.encode(`${c.salt}:${c.subject}`)) !== c.hash) wrong.push(['hash', c]);
      if (bucket(c.salt, c.subject) !== c.bucket) wrong.push(['bucket', c]);
      for (const p of vectors.percents) {
        const d = evaluateGray({ percent: p, salt: c.salt }, c.subject, {});
        if (d.variant !== c.variants[String(p)] || d.reason !== 'percent' || d.bucket !== c.bucket) wrong.push([p, c]);
        checked++;
      }
    }
    return { cases: vectors.cases.length, checked, wrong: wrong.slice(0, 5), wrongCount: wrong.length };
  }, VECTORS);
  t.diagnostic(`vectors in Chromium: ${vectors.cases} cases, ${vectors.checked} decisions, ${vectors.wrongCount} wrong`);
  assert.ok(vectors.cases >= 1000);
  assert.deepEqual(vectors.wrong, []);

  // The differential: releases on the server, the page's client following them across
  // origins and deciding every case, the server deciding the same cases over REST.
  const seed = Number(process.env.GRAYCAST_SEED || Math.floor(Math.random() * 2 ** 32));
  t.diagnostic(`seed ${seed} (GRAYCAST_SEED replays it)`);
  const rng = random(seed);
  for (let k = 0; k < DIFF_KEYS; k++) {
    await admin('PUT', `/v1/configs/diff/k${k}`, { value: { stable: k } });
    if (k % 8 !== 0) await admin('PUT', `/v1/configs/diff/k${k}/gray`, randomRelease(rng));
  }
  const cases = Array.from({ length: CASES }, () => ({ key: `k${rng.int(DIFF_KEYS)}`, subject: randomSubject(rng), attrs: randomAttrs(rng) }));
  await startClient(page, { url: server.url, token: REPORTER, namespaces: ['diff'], transport: 'ws' });
  await logged(page, () => window.readyState === 'resolved');
  const local = await page.evaluate((cases) => cases.map(({ key, subject, attrs }) => window.client.evaluate('diff', key, { subject, attrs })), cases);
  const disagreements = [];
  const reasons = {};
  await inParallel(cases.map((c, i) => [c, local[i]]), 32, async ([{ key, subject, attrs }, mine]) => {
    const query = new URLSearchParams({ subject });
    for (const [name, value] of Object.entries(attrs)) query.set(`attr.${name}`, value);
    const remote = await admin('GET', `/v1/release/diff/${key}?${query}`);
    const theirs = { value: remote.value, variant: remote.variant, reason: remote.reason, bucket: remote.bucket ?? null, revision: remote.revision };
    reasons[mine.reason] = (reasons[mine.reason] || 0) + 1;
    if (JSON.stringify(mine) !== JSON.stringify(theirs)) disagreements.push({ key, subject, attrs, mine, theirs });
  });
  t.diagnostic(`differential in Chromium: ${CASES} cases, ${disagreements.length} disagreements; reasons ${JSON.stringify(reasons)}`);
  assert.deepEqual(disagreements.slice(0, 5), [], `${disagreements.length} disagreements`);
  for (const reason of ['no_gray', 'deny', 'allow', 'rule_mismatch', 'percent']) assert.ok(reasons[reason] > 0, reason);
  await page.evaluate(() => window.client.close());
});

test('bootstrap: the first paint shows the value, nothing flips, and the subscribe resumes from it', async (t) => {
  await admin('PUT', '/v1/configs/boot/color', { value: 'blue' });
  await admin('PUT', '/v1/configs/boot/other', { value: 1 });
  const bootstrap = await admin('GET', '/v1/configs/boot');
  // The page a server renders: the value in the HTML, the state it came from beside it.
  // A classic script in <head> watches #value from before the first paint; the module
  // takes over and renders from the client at once and on every change.
  pages.set('/boot', `<!doctype html><title>boot</title>
<script>
  window.shown = [];
  window.paints = 0;
  new MutationObserver(() => window.shown.push(document.getElementById('value')?.textContent)).observe(document, { subtree: true, childList: true, characterData: true });
  requestAnimationFrame(() => (window.firstFrame = document.getElementById('value').textContent));
</script>
<body><output id="value">blue</output>
<script type="module">
  import { createClient } from '/graycast.min.js';
  const bootstrap = ${JSON.stringify(bootstrap).replace(/</g, '\\u003c')};
  const client = createClient({ url: ${JSON.stringify(server.url)}, token: ${JSON.stringify(REPORTER)}, namespaces: ['boot'], bootstrap, heartbeatMs: 1000 });
  window.client = client;
  window.renders = [];
  const render = () => {
    const value = client.get('boot', 'color', {}, '(none)');
    window.renders.push(value);
    document.getElementById('value').textContent = value;
  };
  render();
  window.log = [];
  for (const event of ['change', 'snapshot', 'recovered']) client.on(event, (detail) => window.log.push({ event, detail: event === 'change' ? detail.key : detail }));
  client.on('change', render);
</script>`);
  const page = await open(t, allowed.origin);
  const sent = [];
  page.on('websocket', (socket) => socket.on('framesent', ({ payload }) => sent.push(JSON.parse(payload))));
  await page.goto(`${allowed.origin}/boot`);
  await logged(page, () => window.log.some((e) => e.event === 'recovered'));
  // Something pushed after the resume still renders, and is rendered exactly once.
  await admin('PUT', '/v1/configs/boot/other', { value: 2 });
  await logged(page, () => window.log.some((e) => e.event === 'change'));
  const state = await page.evaluate(() => ({ firstFrame: window.firstFrame, shown: window.shown, renders: window.renders, log: window.log, text: document.getElementById('value').textContent }));
  assert.equal(state.firstFrame, 'blue', 'the first frame shows the value');
  assert.ok(state.renders.length >= 1 && state.renders.every((v) => v === 'blue'), `renders ${JSON.stringify(state.renders)}`);
  assert.ok(state.shown.every((v) => v === undefined || v === 'blue'), `shown ${JSON.stringify(state.shown)}`);
  assert.equal(state.text, 'blue');
  assert.deepEqual(state.log, [{ event: 'recovered', detail: { replayed: 0, snapshot: false } }, { event: 'change', detail: 'other' }], 'resumed by replay, no snapshot');
  const subscribe = sent.find((m) => m.type === 'subscribe');
  assert.equal(subscribe?.since, bootstrap.revision, 'the first subscribe sends since = the bootstrap revision');
  await page.evaluate(() => window.client.close());
});

test('ws: the browser going offline ends the connection at once, and coming online reconnects at once', async (t) => {
  await admin('PUT', '/v1/configs/online/k', { value: 1 });
  const page = await open(t, allowed.origin);
  // Listeners around the client's own: the first runs before it, the others after it.
  await page.evaluate(() => window.addEventListener('online', () => (window.attemptsBefore = window.attempts)));
  await startClient(page, { url: server.url, token: REPORTER, namespaces: ['online'], transport: 'ws' });
  await page.evaluate(() => {
    window.addEventListener('online', () => (window.attemptsAfter = window.attempts));
    window.addEventListener('offline', () => (window.statusAtOffline = window.client.status));
  });
  await logged(page, () => window.readyState === 'resolved');
  await page.context().setOffline(true);
  await logged(page, () => window.statusAtOffline !== undefined);
  assert.equal(await page.evaluate(() => window.statusAtOffline), 'reconnecting', 'the offline event ends the connection itself');
  await page.context().setOffline(false);
  await logged(page, () => window.attemptsAfter !== undefined);
  const [before, after] = await page.evaluate(() => [window.attemptsBefore, window.attemptsAfter]);
  assert.equal(after, before + 1, 'the online event connects at once, not after the backoff');
  await logged(page, () => window.client.status === 'live');
  await admin('PUT', '/v1/configs/online/k', { value: 2 });
  await logged(page, () => window.client.get('online', 'k') === 2);
});
