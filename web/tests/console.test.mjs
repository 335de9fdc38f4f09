// The web console in a real headless Chromium (Debian's, driven by playwright-core) against
// a real graycast server started by the test. Screenshots go to web/tests/screenshots/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { Server, subscribe } from './fixture.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const shots = join(here, 'screenshots');
const DEADLINE = 15_000;

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
async function withConsole(body, viewport = { width: 1280, height: 900 }, serverOptions = {}) {
  const server = await new Server().start('127.0.0.1:0', serverOptions);
  const page = await browser.newPage({ viewport });
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) problems.push(`CSP violation: ${m.text()}`);
  });
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

/** Types the key's name into the open confirmation dialog and confirms. */
async function confirmByName(page, name, comment) {
  await page.waitForSelector('#confirm[open]', { timeout: DEADLINE });
  await page.fill('#confirm-name', name);
  if (comment) await page.fill('#confirm-comment', comment);
  await page.click('#confirm-ok');
  await page.waitForSelector('#confirm', { state: 'hidden', timeout: DEADLINE });
}

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
    // The rollback confirms, showing the diff it applies; no name to type.
    await page.waitForSelector('#confirm[open]');
    assert.match(await page.textContent('#confirm-extra'), /-\s+"primary": "red"[\s\S]*\+\s+"primary": "blue"/);
    assert.equal(await page.isVisible('#confirm-name'), false);
    await page.click('#confirm-ok');
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
    assert.match(await page.textContent('#gray-ramp-state'), /step 1 of 2 \(12\.5%\)/);
    // The ramp's next step (after a 1 s hold) shows up without reload.
    await page.waitForFunction(() => /step 2 of 2 \(40%\)/.test(document.querySelector('#gray-ramp-state')?.textContent ?? ''), null, { timeout: DEADLINE });
    // Promote from the page, confirmed by the key's name.
    await page.click('#gray-promote');
    await confirmByName(page, 'timeout_ms');
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

// ---------------------------------------------------------------------------
// The items 1, 5, 6, 7, 8 and 9, each at a desktop and a phone width.

const WIDTHS = [
  { name: '1280', viewport: { width: 1280, height: 800 } },
  { name: '375', viewport: { width: 375, height: 812 } },
];

const TOKENS = [
  { name: 'root', secret: 'admin-secret-1', role: 'admin', namespaces: ['*'] },
  { name: 'viewer', secret: 'read-secret-1', role: 'read', namespaces: ['*'] },
  { name: 'pay-writer', secret: 'write-secret-1', role: 'write', namespaces: ['pay*'] },
];

async function shot(page, name) {
  await page.screenshot({ path: join(shots, `${name}.png`) });
}

/** The document never scrolls sideways (narrow screens). */
async function assertNoHorizontalOverflow(page, what) {
  const [scrollWidth, innerWidth] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  assert.ok(scrollWidth <= innerWidth, `${what}: document is ${scrollWidth} px wide in a ${innerWidth} px window`);
}

/** Every visible button under `selector` lies inside the window's width (reachable at 375 px). */
async function assertButtonsReachable(page, selector) {
  const outside = await page.$$eval(`${selector} button`, (buttons) => buttons
    .filter((b) => b.offsetParent !== null)
    .map((b) => [b.textContent.trim(), b.getBoundingClientRect()])
    .filter(([, r]) => r.left < 0 || r.right > window.innerWidth + 0.5)
    .map(([text, r]) => `${text} at ${Math.round(r.left)}..${Math.round(r.right)}`));
  assert.deepEqual(outside, [], `buttons outside the window under ${selector}`);
}

async function setToken(page, token) {
  await page.fill('#token', token);
  await page.press('#token', 'Enter');
}

const visibleErrors = (page) => page.$$eval('#messages .message.error', (nodes) => nodes.length);

for (const { name: width, viewport } of WIDTHS) {
  test(`item 1 (${width}): missing and refused tokens are named, a read token gets a read-only console`, { timeout: 60_000 }, async () => {
    await withConsole(async (server, page) => {
      await server.put('payments', 'timeout_ms', 250);
      await server.put('payments', 'timeout_ms', 300);
      await server.put('search', 'boost', 1.5);
      await page.goto(server.url);

      // No token on a server that needs one: said plainly, not "Reconnecting…".
      await page.waitForSelector('#conn-status[data-state="auth"]', { timeout: DEADLINE });
      assert.equal(await page.getAttribute('#conn-status', 'data-reason'), 'missing');
      assert.match(await page.textContent('#access-banner'), /This server needs an access token/);
      assert.doesNotMatch(await page.textContent('#conn-status'), /Reconnecting/);
      assert.ok(await visibleErrors(page) >= 1, 'the missing token is also an error message');

      // A wrong token: refused, named as such.
      await setToken(page, 'not-a-token');
      await page.waitForSelector('#conn-status[data-reason="refused"]', { timeout: DEADLINE });
      assert.match(await page.textContent('#access-banner'), /The token was refused/);
      assert.doesNotMatch(await page.textContent('#conn-status'), /Reconnecting/);
      assert.ok(await visibleErrors(page) >= 1);

      // A read token: live, every namespace visible, nothing to write with; stale errors gone.
      await setToken(page, 'read-secret-1');
      await page.waitForSelector('#conn-status[data-state="live"]', { timeout: DEADLINE });
      await page.waitForSelector(row('search', 'boost'), { timeout: DEADLINE });
      assert.equal(await visibleErrors(page), 0, 'error messages of the refused token were cleared');
      assert.equal(await page.isVisible('#access-banner'), false);
      assert.match(await page.textContent('#whoami'), /viewer\s*read-only/);
      assert.equal(await page.isVisible('#new-key'), false);
      assert.equal(await page.isVisible('#show-clients'), false);
      assert.ok(await page.isVisible('[data-testid="ns-link"][data-ns="payments"]'));
      assert.ok(await page.isVisible(row('payments', 'timeout_ms')));
      const writeControls = await page.$$eval(
        'button[data-action="edit"], button[data-action="delete"], button[data-action="gray"], [data-ns-action="describe"]',
        (nodes) => nodes.length,
      );
      assert.equal(writeControls, 0, 'a read token sees no write control');
      await assertNoHorizontalOverflow(page, 'read-only console');
      await shot(page, `read-token-${width}`);

      // History reads, but offers no rollback to a read token.
      await page.click(`${row('payments', 'timeout_ms')} button[data-action="history"]`);
      await page.waitForSelector('#history li[data-rev]', { timeout: DEADLINE });
      assert.equal(await page.$$eval('#history button[data-action="rollback"]', (n) => n.length), 0);
      await page.click('#history .panel-close');

      // A write token on "pay*" reads and writes payments; search is outside its patterns.
      await setToken(page, 'write-secret-1');
      await page.waitForFunction(() => /pay-writer/.test(document.querySelector('#whoami')?.textContent ?? ''), null, { timeout: DEADLINE });
      await page.waitForSelector(`${row('payments', 'timeout_ms')} button[data-action="edit"]`, { timeout: DEADLINE });
      await page.waitForSelector('#conn-status[data-state="live"]');
      assert.equal(await page.$$eval(row('search', 'boost'), (n) => n.length), 0);
      assert.ok(await page.isVisible('#new-key'));
      assert.equal(await page.$$eval('[data-ns="payments"] [data-ns-action="describe"]', (n) => n.length), 1);
      // The editor refuses a namespace the token may not write, before sending.
      await page.click('#new-key');
      await page.fill('#editor-ns', 'search');
      await page.fill('#editor-key', 'x');
      await page.fill('#editor-value', '1');
      await page.click('#editor-save');
      await page.waitForFunction(() => /may not write namespace "search"/.test(document.querySelector('#editor-error')?.textContent ?? ''));
    }, viewport, { tokens: TOKENS });
  });

  test(`item 5 (${width}): delete, promote, abort and rollback confirm, then say what happened`, { timeout: 90_000 }, async () => {
    await withConsole(async (server, page) => {
      const first = await server.put('payments', 'timeout_ms', 250);
      const second = await server.put('payments', 'timeout_ms', 300);
      await server.put('payments', 'limit', 10);
      await openLive(server, page);
      await page.waitForSelector(row('payments', 'limit'));

      // Delete asks for the key's name and refuses a wrong one.
      await page.click(`${row('payments', 'limit')} button[data-action="delete"]`);
      await page.waitForSelector('#confirm[open]', { timeout: DEADLINE });
      await page.fill('#confirm-name', 'limits');
      await page.click('#confirm-ok');
      await page.waitForFunction(() => /does not match/.test(document.querySelector('#confirm-error')?.textContent ?? ''));
      assert.ok(await page.isVisible('#confirm'), 'the dialog stays open');
      assert.equal((await server.api('GET', '/v1/configs/payments/limit')).status, 200, 'nothing was deleted');
      await shot(page, `confirm-dialog-${width}`);
      await page.fill('#confirm-name', 'limit');
      await page.fill('#confirm-comment', 'limit moved to the gateway');
      await page.click('#confirm-ok');
      await page.waitForSelector(row('payments', 'limit'), { state: 'detached', timeout: DEADLINE });
      const undo = page.locator('#messages .message[data-kind="undo"]');
      await undo.waitFor({ timeout: DEADLINE });
      assert.match(await undo.textContent(), /Deleted payments\/limit at revision \d+/);
      assert.equal(await undo.getAttribute('data-sticky'), 'true', 'the Undo stays until dismissed');
      const deleted = await server.api('GET', '/v1/configs/payments/limit/history');
      assert.equal(deleted.body.items[0].op, 'delete');
      assert.equal(deleted.body.items[0].comment, 'limit moved to the gateway');
      await undo.locator('button.message-action').click();
      await page.waitForSelector(row('payments', 'limit'), { timeout: DEADLINE });
      assert.equal((await server.api('GET', '/v1/configs/payments/limit')).body.value, 10);

      // Rollback: not offered on the current value, confirmed with the diff it applies.
      await page.click(`${row('payments', 'timeout_ms')} button[data-action="history"]`);
      await page.waitForSelector(`#history li[data-rev="${first.revision}"] button[data-action="rollback"]`, { timeout: DEADLINE });
      assert.equal(await page.$$eval(`#history li[data-rev="${second.revision}"] button[data-action="rollback"]`, (n) => n.length), 0);
      await page.click(`#history li[data-rev="${first.revision}"] button[data-action="rollback"]`);
      await page.waitForSelector('#confirm[open]');
      assert.match(await page.textContent('#confirm-extra'), /- 300[\s\S]*\+ 250/);
      await page.fill('#confirm-comment', 'back to the old timeout');
      await page.click('#confirm-ok');
      await page.waitForFunction(() => [...document.querySelectorAll('#messages .message-text')].some((n) => /Rolled payments\/timeout_ms back to the value of revision \d+ \(now revision \d+\)/.test(n.textContent)), null, { timeout: DEADLINE });
      assert.equal((await server.api('GET', '/v1/configs/payments/timeout_ms')).body.value, 250);
      await page.click('#history .panel-close');

      // Promote asks for the name, carries the comment, and says what happened.
      const started = await server.api('PUT', '/v1/configs/payments/timeout_ms/gray', { value: 400, percent: 10 });
      assert.equal(started.status, 200, JSON.stringify(started.body));
      await page.click(`${row('payments', 'timeout_ms')} button[data-action="gray"]`);
      await page.waitForSelector('#gray-running', { state: 'visible', timeout: DEADLINE });
      await page.click('#gray-promote');
      await confirmByName(page, 'timeout_ms', 'ship it');
      await page.waitForFunction(() => [...document.querySelectorAll('#messages .message-text')].some((n) => /^Promoted payments\/timeout_ms at revision \d+\.$/.test(n.textContent)), null, { timeout: DEADLINE });
      const promoted = await server.api('GET', '/v1/configs/payments/timeout_ms/history?limit=1');
      assert.equal(promoted.body.items[0].op, 'promote');
      assert.equal(promoted.body.items[0].comment, 'ship it');
      assert.equal(promoted.body.items[0].value, 400);
      // This console's own promote is not announced as news.
      assert.equal(await page.isVisible('#gray-ended'), false);

      // Abort likewise.
      await server.api('PUT', '/v1/configs/payments/timeout_ms/gray', { value: 500, percent: 5 });
      await page.waitForSelector('#gray-running', { state: 'visible', timeout: DEADLINE });
      await page.click('#gray-abort');
      await page.waitForSelector('#confirm[open]');
      await page.fill('#confirm-name', 'timeout');
      await page.click('#confirm-ok');
      await page.waitForFunction(() => /does not match/.test(document.querySelector('#confirm-error')?.textContent ?? ''));
      assert.ok((await server.api('GET', '/v1/configs/payments/timeout_ms')).body.gray, 'a wrong name aborts nothing');
      await page.fill('#confirm-name', 'timeout_ms');
      await page.click('#confirm-ok');
      await page.waitForFunction(() => [...document.querySelectorAll('#messages .message-text')].some((n) => /^Aborted the gray release of payments\/timeout_ms at revision \d+/.test(n.textContent)), null, { timeout: DEADLINE });
      await page.waitForSelector('#gray-form', { state: 'visible', timeout: DEADLINE });
      assert.equal((await server.api('GET', '/v1/configs/payments/timeout_ms')).body.gray, null);

      // History: a gray item only offers to restore its stable value, and says so.
      await page.click('#gray-panel .panel-close');
      await page.click(`${row('payments', 'timeout_ms')} button[data-action="history"]`);
      await page.waitForSelector('#history li.op-gray', { timeout: DEADLINE });
      const grayItems = await page.$$eval('#history li.op-gray', (items) => items.map((li) => li.querySelector('button[data-action="rollback"]')?.textContent ?? ''));
      assert.ok(grayItems.length >= 1);
      for (const text of grayItems) assert.match(text, /^(Restore stable value of r\d+…)?$/);
      assert.ok(grayItems.some((t) => t !== ''), 'a gray item whose stable value differs is restorable');
      assert.match(await page.textContent('#history li.op-gray .rollback-line'), /gray release is not restarted/);
      if (width === '375') await assertNoHorizontalOverflow(page, 'history at 375 px');
    }, viewport);
  });

  test(`item 5 (${width}): a guard abort of the open release is announced with its note`, { timeout: 60_000 }, async () => {
    await withConsole(async (server, page) => {
      await server.put('payments', 'timeout_ms', 250);
      await server.put('payments', 'retries', 3);
      await openLive(server, page);
      await page.click(`${row('payments', 'timeout_ms')} button[data-action="gray"]`);
      await page.waitForSelector('#gray-form', { state: 'visible' });
      const started = await server.api('PUT', '/v1/configs/payments/timeout_ms/gray', {
        value: 300, percent: 50, guard: { max_error_rate: 0.1, min_samples: 10 },
      });
      assert.equal(started.status, 200, JSON.stringify(started.body));
      await page.waitForSelector('#gray-running', { state: 'visible', timeout: DEADLINE });
      const report = await server.api('POST', '/v1/configs/payments/timeout_ms/gray/report', { variant: 'gray', ok: 10, errors: 10 });
      assert.equal(report.status, 200, JSON.stringify(report.body));
      await page.waitForSelector('#gray-ended', { state: 'visible', timeout: DEADLINE });
      assert.match(await page.textContent('#gray-ended-text'),
        /^The guard aborted the release: gray error rate 50% over 20 outcomes exceeds 10%\.$/);
      assert.match(await page.textContent('#gray-ended-detail'), /Server note: guard: gray error rate 0\.5000/);
      assert.equal(await page.getAttribute('#gray-ended', 'role'), 'alert');
      assert.ok(await page.isVisible('#gray-form'), 'the start form is back');
      await page.locator('#gray-ended').scrollIntoViewIfNeeded();
      await shot(page, `guard-abort-${width}`);
      if (width === '375') await assertNoHorizontalOverflow(page, 'guard abort at 375 px');

      // An abort by someone else is announced too, with who and the comment.
      await server.api('PUT', '/v1/configs/payments/timeout_ms/gray', { value: 301, percent: 5 });
      await page.waitForSelector('#gray-ended', { state: 'hidden', timeout: DEADLINE });
      const aborted = await server.raw('DELETE', '/v1/configs/payments/timeout_ms/gray?comment=error%20budget%20spent');
      assert.equal(aborted.status, 200, aborted.text);
      await page.waitForSelector('#gray-ended', { state: 'visible', timeout: DEADLINE });
      assert.match(await page.textContent('#gray-ended-text'), /anonymous aborted the release at revision \d+/);
      assert.match(await page.textContent('#gray-ended-detail'), /Comment: error budget spent/);

      // A guard abort of a release not on screen still reaches the user.
      await page.click('#gray-panel .panel-close');
      await server.api('PUT', '/v1/configs/payments/retries/gray', { value: 5, percent: 50, guard: { max_error_rate: 0.1, min_samples: 10 } });
      await server.api('POST', '/v1/configs/payments/retries/gray/report', { variant: 'gray', ok: 0, errors: 20 });
      await page.waitForFunction(() => [...document.querySelectorAll('#messages .message[data-kind="alert"]')]
        .some((n) => /payments\/retries: The guard aborted the release: gray error rate 100% over 20 outcomes exceeds 10%/.test(n.textContent)), null, { timeout: DEADLINE });
    }, viewport);
  });

  test(`item 6 (${width}): big integers, exact decimals and key order survive display, edit and push`, { timeout: 60_000 }, async () => {
    await withConsole(async (server, page) => {
      const stored = await server.raw('PUT', '/v1/configs/ids/account',
        '{"value":{"id":12345678901234567890,"ratio":1.50,"2":"b","1":"a","n":1}}');
      assert.ok(stored.status === 201, stored.text);
      await openLive(server, page);
      const cell = `${row('ids', 'account')} td.value`;
      await page.waitForSelector(cell);
      assert.equal((await page.textContent(cell)).trim(), '{"id":12345678901234567890,"ratio":1.50,"2":"b","1":"a","n":1}');

      // Re-saved from the page: every digit, the decimal and the key order as written.
      await page.click(`${row('ids', 'account')} button[data-action="edit"]`);
      await page.waitForSelector('#editor', { state: 'visible' });
      const text = await page.inputValue('#editor-value');
      assert.match(text, /"id": 12345678901234567890,/);
      await page.fill('#editor-value', text.replace('"n": 1', '"n": 2'));
      await page.click('#editor-save');
      await page.waitForFunction((selector) => /"n":2/.test(document.querySelector(selector)?.textContent ?? ''), cell, { timeout: DEADLINE });
      const readBack = await server.raw('GET', '/v1/configs/ids/account');
      assert.match(readBack.text, /"value":\{"id":12345678901234567890,"ratio":1.50,"2":"b","1":"a","n":2\}/);

      // Pushed over the WebSocket: the same.
      await server.raw('PUT', '/v1/configs/ids/balance', '{"value":-98765432109876543210123}');
      await page.waitForSelector(`${row('ids', 'balance')} td.value`, { timeout: DEADLINE });
      assert.equal((await page.textContent(`${row('ids', 'balance')} td.value`)).trim(), '-98765432109876543210123');

      // The gray value too (the simulator shows the value an allowed subject gets).
      const gray = await server.raw('PUT', '/v1/configs/ids/balance/gray', '{"value":98765432109876543210124,"allow":["qa"]}');
      assert.equal(gray.status, 200, gray.text);
      await page.click(`${row('ids', 'balance')} button[data-action="gray"]`);
      await page.fill('#sim-subject', 'qa');
      await page.waitForFunction(() => document.querySelector('#sim-value')?.textContent === '98765432109876543210124', null, { timeout: DEADLINE });
      assert.match(await page.textContent('#gray-status'), /98765432109876543210124/);

      // The parser and serializer themselves.
      const roundTrips = await page.evaluate(() => {
        const { parse, stringify } = window.graycastConsole.json;
        return ['{"value":[12345678901234567890,-0,1e400,0.1,1.0,3]}', '{"b":1,"10":2,"2":3}', '"\\u00e9\\n"', '[]', '{}']
          .map((t) => stringify(parse(t)));
      });
      assert.deepEqual(roundTrips, ['{"value":[12345678901234567890,-0,1e400,0.1,1.0,3]}', '{"b":1,"10":2,"2":3}', '"é\\n"', '[]', '{}']);
      if (width === '375') await assertNoHorizontalOverflow(page, 'big values at 375 px');
    }, viewport);
  });

  test(`item 7 (${width}): the gray form refuses an untouched value, previews drafts, reads holds and snaps percents`, { timeout: 90_000 }, async () => {
    await withConsole(async (server, page) => {
      await server.put('payments', 'timeout_ms', 250);
      await openLive(server, page);
      await page.click(`${row('payments', 'timeout_ms')} button[data-action="gray"]`);
      await page.waitForSelector('#gray-form', { state: 'visible' });

      // Placeholders read as examples, never as values.
      for (const id of ['#gray-allow', '#gray-deny', '#gray-ramp', '#gray-guard-rate', '#gray-guard-min', '#sim-subject', '#sim-attrs']) {
        assert.match(await page.getAttribute(id, 'placeholder'), /^e\.g\. /, id);
      }

      // Submitted untouched: refused before anything is sent.
      assert.equal(await page.inputValue('#gray-value'), '250');
      await page.click('#gray-start');
      await page.waitForFunction(() => /is the current value/.test(document.querySelector('#gray-error')?.textContent ?? ''));
      assert.equal((await server.api('GET', '/v1/configs/payments/timeout_ms/gray')).status, 404);

      // The simulator previews the draft: allow list, percent and salt, unsaved.
      await page.fill('#gray-value', '300');
      await page.fill('#gray-allow', 'qa-1');
      await page.fill('#sim-subject', 'qa-1');
      await page.waitForFunction(() => document.querySelector('#sim-variant').textContent === 'gray'
        && document.querySelector('#sim-reason').textContent === 'allow'
        && document.querySelector('#sim-value').textContent === '300');
      assert.match(await page.textContent('#sim-source'), /draft/);
      await page.fill('#sim-subject', 'user-77');
      await page.waitForFunction(() => document.querySelector('#sim-reason').textContent === 'percent'
        && document.querySelector('#sim-variant').textContent === 'stable');
      await page.fill('#gray-percent-number', '100');
      await page.waitForFunction(() => document.querySelector('#sim-variant').textContent === 'gray');
      await page.fill('#gray-salt', 'salt-2');
      await page.waitForFunction(() => /salt salt-2/.test(document.querySelector('#sim-source').textContent));
      // Two decimals at most.
      await page.fill('#gray-percent-number', '12.345');
      await page.click('#gray-start');
      await page.waitForFunction(() => /at most two decimals/.test(document.querySelector('#gray-error')?.textContent ?? ''));

      // The slider snaps to 0.5.
      await page.focus('#gray-percent');
      await page.keyboard.press('End');
      await page.keyboard.press('ArrowLeft');
      await page.keyboard.press('ArrowLeft');
      assert.equal(await page.inputValue('#gray-percent-number'), '99');
      await page.keyboard.press('ArrowLeft');
      assert.equal(await page.inputValue('#gray-percent-number'), '98.5');

      // Steps are numbered from 1 here and in the server's messages.
      await page.fill('#gray-salt', '');
      await page.fill('#gray-percent-number', '0');
      await page.fill('#gray-ramp', '50:1m, 10');
      await page.waitForFunction(() => document.querySelectorAll('#gray-steps .step-row').length === 2);
      assert.deepEqual(await page.$$eval('#gray-steps .step-number', (n) => n.map((x) => x.textContent)), ['Step 1', 'Step 2']);
      await page.click('#gray-start');
      await page.waitForFunction(() => /step 2 percent 10 is below/.test(document.querySelector('#gray-error')?.textContent ?? ''), null, { timeout: DEADLINE });

      // Holds in s, m, h, d or plain seconds; the ramp text fills the step rows.
      await page.fill('#gray-ramp', '1:30s, 2:90, 3:2h, 4:1d, 100');
      await page.waitForFunction(() => document.querySelectorAll('#gray-steps .step-row').length === 5);
      assert.deepEqual(await page.$$eval('#gray-steps .step-hold', (n) => n.map((x) => x.value)), ['30s', '90', '2h', '1d', '']);
      await page.fill('#gray-ramp', 'ten:5m');
      await page.waitForFunction(() => /not percent:hold/.test(document.querySelector('#gray-ramp-error')?.textContent ?? ''));
      await page.fill('#gray-ramp', '10:5m, 50:1h, 100');
      await page.waitForFunction(() => document.querySelectorAll('#gray-steps .step-row').length === 3);
      await page.fill('#gray-comment', 'canary for the new timeout');
      await page.click('#gray-start');
      await page.waitForSelector('#gray-running', { state: 'visible', timeout: DEADLINE });
      const running = await server.api('GET', '/v1/configs/payments/timeout_ms/gray');
      assert.deepEqual(running.body.gray.steps, [{ percent: 10, hold_secs: 300 }, { percent: 50, hold_secs: 3600 }, { percent: 100 }]);
      assert.equal(running.body.gray.percent, 10, 'an untouched percent starts at step 1');
      const history = await server.api('GET', '/v1/configs/payments/timeout_ms/history?limit=1');
      assert.equal(history.body.items[0].comment, 'canary for the new timeout');
      assert.match(await page.textContent('#gray-ramp-state'), /^step 1 of 3 \(10%\)$/);
      assert.match(await page.textContent('#gray-next'), /^step 2 \(50%\) in [45]:\d\d$/);

      // A running release: a typed percent is previewed before it is set.
      await page.fill('#gray-set-percent', '30');
      await page.waitForSelector('#sim-draft', { state: 'visible' });
      assert.match(await page.textContent('#sim-draft-title'), /At 30%/);
      await page.click('#gray-set');
      // After a manual change the ramp shows where it is and that the percent was set by hand.
      await page.waitForFunction(() => /step 1 of 3 \(10%\); percent set by hand to 30%/.test(document.querySelector('#gray-ramp-state')?.textContent ?? ''), null, { timeout: DEADLINE });
      assert.match(await page.textContent('.gray-headline'), /^30% of subjects/);
      await page.focus('#gray-set-range');
      await page.keyboard.press('ArrowRight');
      assert.equal(await page.inputValue('#gray-set-percent'), '30.5');
      await page.fill('#gray-set-percent', '33.333');
      await page.click('#gray-set');
      await page.waitForFunction(() => /at most two decimals/.test(document.querySelector('#gray-action-error')?.textContent ?? ''));
      if (width === '375') {
        await assertNoHorizontalOverflow(page, 'gray panel at 375 px');
        await assertButtonsReachable(page, '#gray-panel');
      }
      await shot(page, `gray-running-${width}`);
    }, viewport);
  });

  test(`item 8 (${width}): the layout holds with panels open, tables scroll, toasts stay in a corner`, { timeout: 90_000 }, async () => {
    await withConsole(async (server, page) => {
      const long = {};
      for (let i = 0; i < 24; i++) long[`setting_${i}`] = { endpoint: `https://service-${i}.internal.example.com/api/v2/resource`, timeout_ms: 1000 + i, tags: ['alpha', 'beta', `t${i}`] };
      await server.put('app', 'config', long);
      await server.put('app', 'flag', true);
      await server.put('app', 'a_rather_long_key_name_for_the_layout', 'short');
      const subscriber = subscribe(server, ['app']);
      await subscriber.ready();
      await openLive(server, page);
      // The panel opens with its title in view, even where it is taller than the window.
      if (width === '375') await page.setViewportSize({ width: 375, height: 420 });
      await page.click(`${row('app', 'config')} button[data-action="gray"]`);
      await page.waitForSelector('#gray-form', { state: 'visible' });
      const titleTop = await page.$eval('#gray-panel h2', (h) => h.getBoundingClientRect().top);
      const windowHeight = await page.evaluate(() => innerHeight);
      assert.ok(titleTop >= 0 && titleTop < windowHeight, `the gray panel's title at ${titleTop} px of ${windowHeight}`);
      await page.setViewportSize(viewport);
      await page.locator(row('app', 'config')).scrollIntoViewIfNeeded();
      if (width === '1280') {
        const valueWidth = await page.$eval(`${row('app', 'config')} td.value`, (td) => td.getBoundingClientRect().width);
        assert.ok(valueWidth >= 240, `value column ${valueWidth} px wide beside the panel`);
        // Opened, the long value reads as lines of JSON, not a character a line.
        await page.click(`${row('app', 'config')} td.value summary`);
        const lines = await page.$eval(`${row('app', 'config')} td.value pre`, (pre) => pre.getBoundingClientRect().height / parseFloat(getComputedStyle(pre).lineHeight || '18'));
        assert.ok(lines < 400, `the pretty value wraps to ${Math.round(lines)} lines`);
        const buttonRows = await page.$eval(`${row('app', 'config')} .row-actions`, (div) => new Set([...div.children].map((b) => Math.round(b.getBoundingClientRect().top))).size);
        assert.ok(buttonRows <= 2, `row buttons stack ${buttonRows} high`);
        await page.locator(row('app', 'config')).scrollIntoViewIfNeeded();
        await shot(page, 'gray-panel-long-json-1280');
      } else {
        // Cards keep each label beside its value with a panel open ("By anonymous").
        for (const cell of ['who', 'when', 'rev']) {
          const display = await page.$eval(`${row('app', 'config')} td.${cell}`, (td) => getComputedStyle(td).display);
          assert.equal(display, 'grid', `the ${cell} cell lays out its label beside its value`);
        }
        await assertNoHorizontalOverflow(page, 'gray panel and long JSON at 375 px');
        await assertButtonsReachable(page, '#layout');
        await shot(page, 'gray-panel-long-json-375');
      }
      await page.click('#gray-panel .panel-close');

      // Clients: the table scrolls inside its panel; ids are shortened with the full id on hover.
      await page.click('#show-clients');
      await page.waitForSelector('#clients-body tr[data-client-id]', { timeout: DEADLINE });
      await assertNoHorizontalOverflow(page, 'clients panel');
      const id = await page.$eval('#clients-body tr[data-client-id] .client-id', (code) => ({
        title: code.title, text: code.textContent, rows: Math.round(code.getBoundingClientRect().height / parseFloat(getComputedStyle(code).lineHeight || '18')),
      }));
      assert.equal(id.title, id.text, 'the full id on hover');
      assert.ok(id.rows <= 1, 'an id stays on one line');
      assert.ok(await page.isVisible('#clients-body button.copy'));
      await shot(page, `clients-${width}`);
      await page.click('#clients-panel .panel-close');
      subscriber.close();

      // Toasts: at most three (two on a phone), clear of the editor's buttons.
      for (let i = 0; i < 4; i++) {
        await page.click(`${row('app', 'flag')} button[data-action="edit"]`);
        await page.fill('#editor-value', String(i % 2 === 0));
        await page.click('#editor-save');
        await page.waitForSelector('#editor', { state: 'hidden', timeout: DEADLINE });
      }
      await page.click(`${row('app', 'flag')} button[data-action="edit"]`);
      await page.locator('#editor-save').scrollIntoViewIfNeeded();
      const messages = await page.$$eval('#messages .message', (nodes) => nodes.filter((n) => n.offsetParent !== null).map((n) => n.getBoundingClientRect().toJSON()));
      assert.ok(messages.length >= 1 && messages.length <= (width === '375' ? 2 : 3), `${messages.length} toasts visible`);
      const buttons = await page.$$eval('#editor .buttons button', (nodes) => nodes.filter((n) => n.offsetParent !== null).map((n) => n.getBoundingClientRect().toJSON()));
      const overlaps = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
      for (const m of messages) for (const b of buttons) assert.ok(!overlaps(m, b), 'a toast covers an editor button');
      const stackHeight = await page.$eval('#messages', (n) => n.getBoundingClientRect().height);
      assert.ok(stackHeight <= viewport.height / (width === '375' ? 4 : 2), `toasts ${stackHeight} px tall`);
      await shot(page, `toasts-${width}`);
      await page.click('#editor-save');
      await page.waitForSelector('#editor', { state: 'hidden', timeout: DEADLINE });
    }, viewport);
  });

  test(`item 9 (${width}): natural order, pages, search, collapse, descriptions and recent changes`, { timeout: 120_000 }, async () => {
    await withConsole(async (server, page) => {
      for (let i = 1; i <= 60; i++) await server.put('many', `key_${i}`, { n: i, label: `item ${i}` });
      await server.put('payments', 'timeout_ms', 'needle-value');
      await openLive(server, page);
      const keysOf = (ns) => page.$$eval(`tr[data-ns="${ns}"][data-key]`, (rows) => rows.filter((r) => r.offsetParent !== null).map((r) => r.dataset.key));

      // Natural order, 25 a page.
      await page.waitForSelector(row('many', 'key_25'));
      assert.deepEqual(await keysOf('many'), Array.from({ length: 25 }, (_, i) => `key_${i + 1}`));
      assert.match(await page.textContent('[data-ns="many"] .pager'), /Showing 25 of 60 keys/);
      const height = await page.evaluate(() => document.documentElement.scrollHeight);
      await page.click('[data-ns="many"] [data-ns-action="more"]');
      await page.waitForSelector(row('many', 'key_50'));
      assert.equal((await keysOf('many')).length, 50);
      await page.click('[data-ns="many"] [data-ns-action="all"]');
      await page.waitForSelector(row('many', 'key_60'));
      const all = await keysOf('many');
      assert.equal(all.length, 60);
      assert.ok(all.indexOf('key_9') < all.indexOf('key_10') && all.indexOf('key_2') < all.indexOf('key_10'));
      await page.click('[data-ns="many"] [data-ns-action="fewer"]');
      await page.waitForFunction(() => document.querySelectorAll('tr[data-ns="many"][data-key]').length === 25);
      assert.ok(height < (width === '375' ? 9000 : 4000), `page is ${height} px tall with 60 keys`);

      // Search across namespaces, by key and by value.
      await page.fill('#key-search', 'key_5');
      await page.waitForFunction(() => document.querySelectorAll('tr[data-ns="many"][data-key]').length === 11);
      assert.deepEqual(await keysOf('many'), ['key_5', ...Array.from({ length: 10 }, (_, i) => `key_${50 + i}`)]);
      assert.equal(await page.isVisible('[data-testid="ns-table"][data-ns="payments"]'), false);
      assert.match(await page.textContent('#search-summary'), /11 keys in 1 namespace match/);
      await page.fill('#key-search', 'NEEDLE');
      await page.waitForSelector(row('payments', 'timeout_ms'), { state: 'visible' });
      assert.equal(await page.isVisible('[data-testid="ns-table"][data-ns="many"]'), false);
      await shot(page, `search-${width}`);
      await page.fill('#key-search', '');
      await page.waitForSelector('[data-testid="ns-table"][data-ns="many"]', { state: 'visible' });

      // Collapse a namespace.
      await page.click('[data-ns="many"] .ns-toggle');
      await page.waitForSelector(row('many', 'key_1'), { state: 'hidden' });
      assert.equal(await page.getAttribute('[data-ns="many"] .ns-toggle', 'aria-expanded'), 'false');
      await page.click('[data-ns="many"] .ns-toggle');
      await page.waitForSelector(row('many', 'key_1'), { state: 'visible' });

      // Describe a namespace from the page; the description arrives live, graycast.meta stays hidden.
      await page.click('[data-ns="payments"] [data-ns-action="describe"]');
      await page.fill('#describe-text-payments', 'Timeouts of the payment service');
      await page.fill('#describe-comment-payments', 'document the namespace');
      await page.click('[data-ns="payments"] .describe-form button[type="submit"]');
      await page.waitForFunction(() => document.querySelector('[data-ns="payments"] .ns-desc')?.textContent === 'Timeouts of the payment service', null, { timeout: DEADLINE });
      const listed = await server.api('GET', '/v1/namespaces');
      assert.equal(listed.body.namespaces.find((n) => n.name === 'payments').description, 'Timeouts of the payment service');
      await server.api('PUT', '/v1/namespaces/many', { description: 'Sixty keys' });
      await page.waitForFunction(() => document.querySelector('[data-ns="many"] .ns-desc')?.textContent === 'Sixty keys', null, { timeout: DEADLINE });
      await server.api('PUT', '/v1/namespaces/described-only', { description: 'No keys yet' });
      await page.waitForSelector('[data-testid="ns-table"][data-ns="described-only"]', { timeout: DEADLINE });
      assert.equal(await page.$$eval('[data-ns="graycast.meta"]', (n) => n.length), 0, 'graycast.meta is not a namespace of the UI');
      assert.equal(await page.$$eval('#ns-list li', (items) => items.map((li) => li.dataset.ns).includes('graycast.meta')), false);

      // Recent changes, global: newest first, and live.
      await page.click('#show-changes');
      await page.waitForSelector('#changes-list li[data-rev]', { timeout: DEADLINE });
      const revs = await page.$$eval('#changes-list li[data-rev]', (items) => items.map((li) => Number(li.dataset.rev)));
      assert.deepEqual(revs, [...revs].sort((a, b) => b - a), 'newest first');
      assert.match(await page.textContent('#changes-list li[data-rev]:first-child'), /description of described-only set/);
      const pushed = await server.api('PUT', '/v1/configs/payments/timeout_ms', { value: 'changed', comment: 'live one' });
      await page.waitForSelector(`#changes-list li[data-rev="${pushed.body.revision}"]:first-child`, { timeout: DEADLINE });
      assert.match(await page.textContent(`#changes-list li[data-rev="${pushed.body.revision}"]`), /payments\/timeout_ms[\s\S]*Comment: live one/);
      const gone = await server.api('DELETE', '/v1/configs/many/key_60');
      await page.waitForFunction((rev) => /by anonymous/.test(document.querySelector(`#changes-list li[data-rev="${rev}"]`)?.textContent ?? ''), gone.body.revision, { timeout: DEADLINE });
      await shot(page, `recent-changes-${width}`);

      // Per namespace.
      await page.click('[data-ns="payments"] [data-ns-action="changes"]');
      await page.waitForFunction(() => /Recent changes in payments/.test(document.querySelector('#changes-title').textContent));
      await page.waitForFunction(() => {
        const items = [...document.querySelectorAll('#changes-list li[data-rev]')];
        return items.length >= 2 && items.every((li) => /payments\/timeout_ms/.test(li.textContent));
      }, null, { timeout: DEADLINE });
      if (width === '375') {
        await assertNoHorizontalOverflow(page, 'changes at 375 px');
        await assertButtonsReachable(page, '#layout');
      }
    }, viewport);
  });
}
