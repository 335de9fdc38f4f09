// The web console in a real headless Chromium (Debian's, driven by playwright-core) against
// a real graycast server started by the test. Screenshots go to web/tests/screenshots/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

import { chromium } from 'playwright-core';
import WebSocket from 'ws';

const here = fileURLToPath(new URL('.', import.meta.url));
const repo = join(here, '..', '..');
const targetDir = process.env.CARGO_TARGET_DIR || join(repo, 'target');
const serverBin = process.env.GRAYCAST_BIN || join(targetDir, 'debug', 'graycast');
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const shots = join(here, 'screenshots');
const DEADLINE = 15_000;

/** A graycast process on a temporary data dir; restartable on the same port. */
class Server {
  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), 'graycast-web-'));
    this.url = null;
    this.child = null;
  }

  async start(listen = '127.0.0.1:0') {
    this.child = spawn(serverBin, ['--listen', listen, '--data-dir', join(this.dir, 'data'), '--heartbeat-ms', '1000'], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, GRAYCAST_LOG: 'warn' },
    });
    const lines = createInterface({ input: this.child.stdout });
    const line = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('server announced no URL')), DEADLINE);
      lines.once('line', (l) => { clearTimeout(timer); resolve(l); });
      this.child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
    });
    this.url = line.replace('graycast listening on ', '').trim();
    return this;
  }

  async stop() {
    if (!this.child) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill('SIGTERM');
    await exited;
    this.child = null;
  }

  async restart() {
    const listen = this.url.replace('http://', '');
    await this.stop();
    await this.start(listen);
  }

  async dispose() {
    if (this.child) this.child.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }

  async api(method, path, body, headers = {}) {
    const response = await fetch(`${this.url}${path}`, {
      method,
      headers: { 'content-type': 'application/json', ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : null };
  }

  async put(ns, key, value) {
    const { status, body } = await this.api('PUT', `/v1/configs/${ns}/${key}`, { value });
    assert.ok(status === 200 || status === 201, `put ${ns}/${key}: ${status} ${JSON.stringify(body)}`);
    return body;
  }
}

/** A WebSocket subscriber collecting change messages. */
function subscribe(server, namespaces) {
  const ws = new WebSocket(`${server.url.replace('http://', 'ws://')}/v1/watch`);
  const messages = [];
  const waiters = [];
  ws.on('message', (data) => {
    const message = JSON.parse(data.toString());
    messages.push(message);
    for (const waiter of [...waiters]) waiter();
  });
  const opened = new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  return {
    ws,
    async ready() {
      await opened;
      ws.send(JSON.stringify({ type: 'subscribe', namespaces }));
      await this.waitFor((m) => m.type === 'snapshot');
    },
    waitFor(predicate) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = messages.find(predicate);
          if (found) { clearTimeout(timer); waiters.splice(waiters.indexOf(check), 1); resolve(found); }
        };
        const timer = setTimeout(() => reject(new Error('message never came')), DEADLINE);
        waiters.push(check);
        check();
      });
    },
    close() { ws.close(); },
  };
}

let browser;
before(async () => {
  mkdirSync(shots, { recursive: true });
  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-quic'],
  });
});
after(async () => { await browser?.close(); });

/** Runs a test body with a fresh server and page; closes both. */
async function withConsole(body, viewport = { width: 1280, height: 900 }) {
  const server = await new Server().start();
  const page = await browser.newPage({ viewport });
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => {
    if (!r.url().startsWith(server.url)) problems.push(`external request: ${r.url()}`);
  });
  page.on('request', (r) => {
    const url = r.url();
    if (!url.startsWith(server.url) && !url.startsWith(server.url.replace('http', 'ws')) && !url.startsWith('data:')) {
      problems.push(`external request: ${url}`);
    }
  });
  try {
    await body(server, page);
    assert.deepEqual(problems, []);
  } finally {
    await page.close();
    await server.dispose();
  }
}

async function openLive(server, page) {
  await page.goto(server.url);
  await page.waitForSelector('#conn-status[data-state="live"]', { timeout: DEADLINE });
}

const row = (ns, key) => `tr[data-ns="${ns}"][data-key="${key}"]`;

test('the page shows existing keys and goes live', { timeout: 60_000 }, async () => {
  await withConsole(async (server, page) => {
    await server.put('payments', 'timeout_ms', 250);
    await server.put('payments', 'retry', { attempts: 3, backoff_ms: [100, 200, 400] });
    const last = await server.put('search', 'boost', 1.5);
    await openLive(server, page);
    await page.waitForSelector(`${row('payments', 'timeout_ms')} td.value`, { timeout: DEADLINE });
    assert.match(await page.textContent(`${row('payments', 'timeout_ms')} td.value`), /250/);
    assert.match(await page.textContent(`${row('payments', 'retry')} td.value`), /attempts/);
    assert.equal((await page.textContent(`${row('search', 'boost')} td.rev`)).trim(), String(last.revision));
    assert.equal((await page.textContent('#revision')).trim(), String(last.revision));
    assert.ok(await page.isVisible('[data-testid="ns-link"][data-ns="search"]'));
    await page.screenshot({ path: join(shots, 'console-full.png'), fullPage: true });
    // And at phone width.
    await page.setViewportSize({ width: 375, height: 800 });
    await page.waitForSelector(`${row('payments', 'timeout_ms')}`, { state: 'visible' });
    await page.screenshot({ path: join(shots, 'console-phone.png'), fullPage: true });
  });
});

test('a PUT made by another client appears within a second, without reload', { timeout: 60_000 }, async () => {
  await withConsole(async (server, page) => {
    await server.put('app', 'existing', 1);
    await openLive(server, page);
    await page.waitForSelector(row('app', 'existing'));
    const entry = await server.put('app', 'pushed', { hello: 'world' });
    await page.waitForSelector(`${row('app', 'pushed')} td.value`, { timeout: 1000 });
    assert.match(await page.textContent(`${row('app', 'pushed')} td.value`), /world/);
    assert.equal((await page.textContent(`${row('app', 'pushed')} td.rev`)).trim(), String(entry.revision));
    // A brand-new namespace shows up too.
    await server.put('brand-new', 'k', true);
    await page.waitForSelector(row('brand-new', 'k'), { timeout: 1000 });
    // An update highlights the row and replaces the value.
    const updated = await server.put('app', 'existing', 2);
    await page.waitForFunction(
      ([selector, rev]) => document.querySelector(selector)?.textContent.trim() === rev,
      [`${row('app', 'existing')} td.rev`, String(updated.revision)],
      { timeout: 1000 },
    );
  });
});

test('an edit made in the page reaches a WebSocket subscriber', { timeout: 60_000 }, async () => {
  await withConsole(async (server, page) => {
    await server.put('app', 'feature', { enabled: false });
    const subscriber = subscribe(server, ['app']);
    await subscriber.ready();
    await openLive(server, page);
    await page.click(`${row('app', 'feature')} button[data-action="edit"]`);
    await page.waitForSelector('#editor', { state: 'visible' });
    // Invalid JSON is caught before anything is sent.
    await page.fill('#editor-value', '{"enabled": tru');
    await page.click('#editor-save');
    await page.waitForFunction(() => document.querySelector('#editor-error')?.textContent.trim().length > 0);
    await page.fill('#editor-value', '{"enabled": true, "by": "console"}');
    await page.click('#editor-save');
    const change = await subscriber.waitFor((m) => m.type === 'change' && m.key === 'feature');
    assert.deepEqual(change.entry.value, { enabled: true, by: 'console' });
    assert.equal(change.op, 'put');
    // Creating a key from the page.
    await page.click('#new-key');
    await page.fill('#editor-ns', 'app');
    await page.fill('#editor-key', 'created_in_page');
    await page.fill('#editor-value', '[1, 2, 3]');
    await page.click('#editor-save');
    const created = await subscriber.waitFor((m) => m.type === 'change' && m.key === 'created_in_page');
    assert.deepEqual(created.entry.value, [1, 2, 3]);
    subscriber.close();
  });
});

test('a conflicting edit is reported, not overwritten', { timeout: 60_000 }, async () => {
  await withConsole(async (server, page) => {
    await server.put('app', 'limit', 10);
    await openLive(server, page);
    await page.click(`${row('app', 'limit')} button[data-action="edit"]`);
    await page.waitForSelector('#editor', { state: 'visible' });
    // Someone else changes the key while the editor is open.
    const other = await server.put('app', 'limit', 20);
    await page.fill('#editor-value', '30');
    await page.click('#editor-save');
    await page.waitForFunction(() => /conflict/i.test(document.querySelector('#editor-error')?.textContent ?? ''), null, { timeout: DEADLINE });
    const current = await server.api('GET', '/v1/configs/app/limit');
    assert.equal(current.body.value, 20);
    assert.equal(current.body.revision, other.revision);
  });
});

test('history shows revisions with a diff, and rolls back', { timeout: 60_000 }, async () => {
  await withConsole(async (server, page) => {
    const first = await server.put('app', 'color', { primary: 'blue' });
    await server.put('app', 'color', { primary: 'red' });
    await openLive(server, page);
    await page.click(`${row('app', 'color')} button[data-action="history"]`);
    await page.waitForSelector(`#history li[data-rev="${first.revision}"]`, { timeout: DEADLINE });
    assert.match(await page.textContent(`#history li[data-rev="${first.revision}"] .diff`), /blue/);
    await page.click(`#history li[data-rev="${first.revision}"] button[data-action="rollback"]`);
    await page.waitForFunction(
      (selector) => /blue/.test(document.querySelector(selector)?.textContent ?? ''),
      `${row('app', 'color')} td.value`,
      { timeout: DEADLINE },
    );
    const current = await server.api('GET', '/v1/configs/app/color');
    assert.deepEqual(current.body.value, { primary: 'blue' });
  });
});

test('a gray release started in the page is visible over REST, and ramps live', { timeout: 60_000 }, async () => {
  await withConsole(async (server, page) => {
    await server.put('payments', 'timeout_ms', 250);
    await openLive(server, page);
    await page.click(`${row('payments', 'timeout_ms')} button[data-action="gray"]`);
    await page.waitForSelector('#gray-form', { state: 'visible' });
    await page.fill('#gray-value', '300');
    await page.fill('#gray-percent-number', '12.5');
    await page.fill('#gray-allow', 'qa-1, qa-2');
    await page.click('#gray-add-rule');
    await page.fill('#gray-rules .rule-attr', 'region');
    await page.selectOption('#gray-rules .rule-op', 'in');
    await page.fill('#gray-rules .rule-values', 'eu-west,eu-north');
    await page.click('#gray-add-step');
    await page.fill('#gray-steps .step-percent >> nth=0', '12.5');
    await page.fill('#gray-steps .step-hold >> nth=0', '1');
    await page.click('#gray-add-step');
    await page.fill('#gray-steps .step-percent >> nth=1', '40');
    await page.fill('#gray-guard-rate', '0.05');
    await page.fill('#gray-guard-min', '200');
    await page.click('#gray-start');
    await page.waitForSelector('#gray-status', { state: 'visible', timeout: DEADLINE });
    const status = await server.api('GET', '/v1/configs/payments/timeout_ms/gray');
    assert.equal(status.status, 200, JSON.stringify(status.body));
    const gray = status.body.gray;
    assert.equal(gray.value, 300);
    assert.deepEqual(gray.allow, ['qa-1', 'qa-2']);
    assert.deepEqual(gray.rules, [{ attribute: 'region', op: 'in', values: ['eu-west', 'eu-north'] }]);
    assert.deepEqual(gray.steps.map((s) => s.percent), [12.5, 40]);
    assert.deepEqual(gray.guard, { max_error_rate: 0.05, min_samples: 200 });
    await page.screenshot({ path: join(shots, 'console-gray.png'), fullPage: true });
    // The ramp's next step (after a 1 s hold) shows up without reload.
    await page.waitForFunction(() => /40%/.test(document.querySelector('#gray-status')?.textContent ?? ''), null, { timeout: DEADLINE });
    // Promote from the page.
    await page.click('#gray-promote');
    await page.waitForFunction(
      (selector) => /300/.test(document.querySelector(selector)?.textContent ?? ''),
      `${row('payments', 'timeout_ms')} td.value`,
      { timeout: DEADLINE },
    );
    const promoted = await server.api('GET', '/v1/configs/payments/timeout_ms');
    assert.equal(promoted.body.value, 300);
    assert.equal(promoted.body.gray, null);
  });
});

test('the subject simulator agrees with /v1/release for 200 subjects', { timeout: 120_000 }, async () => {
  await withConsole(async (server, page) => {
    await server.put('app', 'flow', 'old');
    const started = await server.api('PUT', '/v1/configs/app/flow/gray', {
      value: 'new', percent: 37.5, allow: ['subject-7'], deny: ['subject-9'],
      rules: [{ attribute: 'region', op: 'prefix', values: ['eu-'] }],
    });
    assert.equal(started.status, 200);
    await openLive(server, page);
    await page.click(`${row('app', 'flow')} button[data-action="gray"]`);
    await page.waitForSelector('#sim-subject', { state: 'visible' });
    let gray = 0;
    for (let i = 0; i < 200; i++) {
      const subject = i % 10 === 0 ? `用户-${i}` : `subject-${i}`;
      const region = i % 7 === 0 ? 'us-east' : 'eu-west';
      await page.fill('#sim-attrs', `region=${region}`);
      await page.fill('#sim-subject', subject);
      const query = new URLSearchParams({ subject, 'attr.region': region });
      const { body: decision } = await server.api('GET', `/v1/release/app/flow?${query}`);
      await page.waitForFunction(
        ([variant, reason]) => document.querySelector('#sim-variant')?.textContent.trim() === variant
          && document.querySelector('#sim-reason')?.textContent.trim() === reason,
        [decision.variant, decision.reason],
        { timeout: 2000 },
      ).catch(async () => {
        const shown = await page.evaluate(() => [document.querySelector('#sim-variant')?.textContent, document.querySelector('#sim-reason')?.textContent]);
        assert.fail(`simulator shows ${shown} for ${subject} (${region}); server says ${decision.variant}/${decision.reason}`);
      });
      const bucket = (await page.textContent('#sim-bucket')).trim();
      assert.equal(bucket, decision.bucket === null ? '-' : String(decision.bucket), `bucket of ${subject}`);
      if (decision.variant === 'gray') gray += 1;
    }
    assert.ok(gray > 20 && gray < 150, `${gray} of 200 in gray`);
  });
});

test('clients and convergence are shown', { timeout: 60_000 }, async () => {
  await withConsole(async (server, page) => {
    const entry = await server.put('app', 'k', 1);
    const subscriber = subscribe(server, ['app']);
    await subscriber.ready();
    subscriber.ws.send(JSON.stringify({ type: 'ack', revision: entry.revision }));
    await openLive(server, page);
    await page.click('#show-clients');
    await page.waitForSelector('#clients-panel', { state: 'visible' });
    await page.waitForFunction(
      () => /1\/1/.test(document.querySelector('[data-testid="convergence"][data-ns="app"]')?.textContent ?? ''),
      null,
      { timeout: DEADLINE },
    );
    subscriber.close();
  });
});

test('the page recovers after a server restart', { timeout: 60_000 }, async () => {
  await withConsole(async (server, page) => {
    await server.put('app', 'before', 1);
    await openLive(server, page);
    await page.waitForSelector(row('app', 'before'));
    await server.stop();
    await page.waitForSelector('#conn-status[data-state="reconnecting"]', { timeout: DEADLINE });
    await server.start(server.url.replace('http://', ''));
    await page.waitForSelector('#conn-status[data-state="live"]', { timeout: DEADLINE });
    const entry = await server.put('app', 'after', 2);
    await page.waitForSelector(row('app', 'after'), { timeout: DEADLINE });
    assert.equal((await page.textContent('#revision')).trim(), String(entry.revision));
  });
});
