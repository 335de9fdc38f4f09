// Typed configs in the web console (issue 21): refusals beside the field, keys out of
// schema, the edit form built from a key's schema, and the clients' rejections, in a real
// headless Chromium against a real graycast server. Screenshots go to web/tests/screenshots/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

import { DEADLINE, launchBrowser, openLive, row, shots, subscribe, withConsole } from './fixture.mjs';

let browser;
before(async () => {
  mkdirSync(shots, { recursive: true });
  browser = await launchBrowser();
});
after(async () => { await browser?.close(); });

const LIMITS_SCHEMA = {
  type: 'object',
  properties: { timeout_ms: { type: 'integer', minimum: 1 } },
  additionalProperties: false,
};

// An object the form renders: every scalar kind, an enum, bounds, required members and
// descriptions.
const HTTP_SCHEMA = {
  type: 'object',
  required: ['host', 'enabled'],
  properties: {
    host: { type: 'string', minLength: 1, description: 'Upstream host name' },
    timeout_ms: { type: 'integer', minimum: 1, maximum: 60000, description: 'Per request, in milliseconds' },
    ratio: { type: 'number' },
    mode: { enum: ['fast', 'safe'] },
    enabled: { type: 'boolean' },
    verbose: { type: 'boolean' },
  },
};

const textOf = (page, selector) => page.textContent(selector).then((t) => (t ?? '').trim());

test('a value the schema refuses is shown beside the field, and nothing changes', { timeout: 60_000 }, async () => {
  await withConsole(browser, async (server, page) => {
    const before = await server.put('shop', 'limits', { timeout_ms: 100 });
    await server.schemas('shop', { limits: LIMITS_SCHEMA });
    await openLive(server, page);
    await page.click(`${row('shop', 'limits')} button[data-action="edit"]`);
    await page.waitForSelector('#editor-field-timeout_ms', { state: 'visible' });

    // Through the form: the violation sits under its field and in the list under the value.
    await page.fill('#editor-field-timeout_ms', '0');
    await page.click('#editor-save');
    await page.waitForSelector('#editor-violations:not([hidden])', { timeout: DEADLINE });
    assert.match(await textOf(page, '#editor-violations'), /\/timeout_ms\s+minimum: /);
    assert.match(await textOf(page, '[data-field="timeout_ms"] .field-violation'), /minimum/);
    assert.match(await textOf(page, '#editor-error'), /breaks this key's JSON Schema \(1 violation, listed under the value\)/);

    // Through the JSON editor: a member the schema forbids.
    await page.click('#editor-as-json');
    await page.fill('#editor-value', '{"timeout_ms": 5, "retries": 2}');
    await page.click('#editor-save');
    await page.waitForFunction(() => /additionalProperties/.test(document.querySelector('#editor-violations').textContent));
    assert.equal(await page.isVisible('#editor'), true);
    await page.screenshot({ path: join(shots, 'typed-refused.png'), fullPage: true });

    // A gray value the schema refuses, beside the gray value.
    await page.click('#editor-cancel');
    await page.click(`${row('shop', 'limits')} button[data-action="gray"]`);
    await page.waitForSelector('#gray-form', { state: 'visible' });
    await page.fill('#gray-value', '{"timeout_ms": "fast"}');
    await page.fill('#gray-percent-number', '10');
    await page.click('#gray-start');
    await page.waitForSelector('#gray-violations:not([hidden])', { timeout: DEADLINE });
    assert.match(await textOf(page, '#gray-violations'), /\/timeout_ms\s+type: /);

    const now = await server.api('GET', '/v1/configs/shop/limits');
    assert.deepEqual(now.body.value, { timeout_ms: 100 });
    assert.equal(now.body.revision, before.revision);
    assert.equal(now.body.gray ?? null, null);
  });
});

test('a ratchet schema over a bad value marks the key out of schema; graycast.schemas is no namespace', { timeout: 60_000 }, async () => {
  await withConsole(browser, async (server, page) => {
    await server.put('flags', 'retries', 'three');
    await server.put('flags', 'other', 'text');
    await openLive(server, page);
    await page.waitForSelector(row('flags', 'retries'));

    // Set while the console looks: it learns of it from the push.
    const answer = await server.schemas('flags', { 'retr*': { type: 'integer' } }, 'ratchet');
    assert.equal(answer.out_of_schema, 1);
    const badge = `${row('flags', 'retries')} [data-testid="out-of-schema"]`;
    await page.waitForSelector(badge, { timeout: DEADLINE });
    assert.match(await page.getAttribute(badge, 'title'), /type/);
    assert.equal(await page.isVisible(`${row('flags', 'other')} [data-testid="out-of-schema"]`), false);
    assert.match(await textOf(page, '[data-ns="flags"] .ns-typed'), /typed \(ratchet\)\s*1 value out of schema/);

    // A namespace with schemas and no keys yet is there, typed; the schemas' own
    // namespace is not.
    await server.schemas('empty-ns', { '*': { type: 'string' } });
    await page.waitForSelector('section[data-ns="empty-ns"] .badge.typed', { timeout: DEADLINE });
    assert.equal(await page.locator('section[data-ns="graycast.schemas"]').count(), 0);
    assert.equal(await page.locator('[data-testid="ns-link"][data-ns="graycast.schemas"]').count(), 0);

    // The same after a reload (from the snapshot, not the push).
    await page.reload();
    await page.waitForSelector(badge, { timeout: DEADLINE });
    assert.equal(await page.locator('section[data-ns="graycast.schemas"]').count(), 0);
    await page.screenshot({ path: join(shots, 'typed-out-of-schema.png'), fullPage: true });
    await page.setViewportSize({ width: 375, height: 800 });
    await page.waitForSelector(badge, { state: 'visible' });
    await page.screenshot({ path: join(shots, 'typed-out-of-schema-phone.png'), fullPage: true });

    // A burst of writes to the typed namespace costs a request or two, not one per write.
    let asked = 0;
    page.on('request', (r) => { if (r.url().endsWith('/v1/schemas/flags')) asked += 1; });
    await Promise.all(Array.from({ length: 20 }, (_, i) => server.put('flags', `burst_${i}`, 'x')));
    await page.waitForSelector(row('flags', 'burst_19'), { timeout: DEADLINE });
    // Counting requests that must not come needs their window (400 ms) to pass, twice over.
    await page.waitForTimeout(1000);
    assert.ok(asked >= 1 && asked <= 3, `asked ${asked} times`);

    // Fixed by a write: the marker goes.
    await server.put('flags', 'retries', 3);
    await page.waitForSelector(badge, { state: 'detached', timeout: DEADLINE });
    assert.doesNotMatch(await textOf(page, '[data-ns="flags"] .ns-typed'), /out of schema/);
  });
});

test('the form built from the schema edits an object and writes exactly the JSON expected', { timeout: 60_000 }, async () => {
  await withConsole(browser, async (server, page) => {
    await server.put('svc', 'http', { host: 'a.example', timeout_ms: 100, mode: 'fast', enabled: false, extra: [1, 2] });
    await server.schemas('svc', { http: HTTP_SCHEMA });
    await openLive(server, page);
    await page.click(`${row('svc', 'http')} button[data-action="edit"]`);
    await page.waitForSelector('#editor-schema-form', { state: 'visible' });
    assert.equal(await page.isVisible('#editor-value'), false);

    // Bounds as input attributes, required members marked, descriptions as help.
    assert.equal(await page.getAttribute('#editor-field-timeout_ms', 'min'), '1');
    assert.equal(await page.getAttribute('#editor-field-timeout_ms', 'max'), '60000');
    assert.equal(await page.getAttribute('#editor-field-timeout_ms', 'step'), '1');
    assert.match(await textOf(page, '[data-field="host"]'), /host \(required\)[\s\S]*Upstream host name/);
    assert.doesNotMatch(await textOf(page, '[data-field="timeout_ms"]'), /required/);
    assert.equal(await page.inputValue('#editor-field-host'), 'a.example');
    assert.equal(await page.isChecked('#editor-field-enabled'), false);
    assert.deepEqual(await page.$$eval('#editor-field-mode option', (os) => os.map((o) => o.textContent)), ['(not set)', '"fast"', '"safe"']);
    await page.screenshot({ path: join(shots, 'typed-form.png'), fullPage: true });

    await page.fill('#editor-field-host', 'b.example');
    await page.fill('#editor-field-timeout_ms', '2500');
    // More digits than a double holds: written as typed.
    await page.fill('#editor-field-ratio', '0.10000000000000000001');
    await page.selectOption('#editor-field-mode', { label: '"safe"' });
    await page.check('#editor-field-enabled');
    await page.selectOption('#editor-field-verbose', 'false');
    await page.click('#editor-save');
    await page.waitForSelector('#editor', { state: 'hidden', timeout: DEADLINE });

    const { text } = await server.raw('GET', '/v1/configs/svc/http');
    const value = text.slice(text.indexOf('"value":') + '"value":'.length);
    assert.match(value, /^\{"host":"b\.example","timeout_ms":2500,"mode":"safe","enabled":true,"extra":\[1,2\],"ratio":0\.10000000000000000001,"verbose":false\}/);

    // On a phone: the form is one column.
    await page.setViewportSize({ width: 375, height: 800 });
    await page.click(`${row('svc', 'http')} button[data-action="edit"]`);
    await page.waitForSelector('#editor-field-host', { state: 'visible' });
    await page.screenshot({ path: join(shots, 'typed-form-phone.png'), fullPage: true });
  });
});

test('Edit as JSON is one click away, and a schema beyond the form always gets the JSON editor', { timeout: 60_000 }, async () => {
  await withConsole(browser, async (server, page) => {
    await server.put('svc', 'http', { host: 'a.example', enabled: true, ratio: 1.50 });
    await server.put('svc', 'nested', { a: { b: 1 } });
    await server.schemas('svc', { http: HTTP_SCHEMA, 'nest*': { type: 'object', properties: { a: { type: 'object' } } } });
    await openLive(server, page);
    await page.click(`${row('svc', 'http')} button[data-action="edit"]`);
    await page.waitForSelector('#editor-field-host', { state: 'visible' });

    // Form to JSON: the form's value, as text.
    await page.fill('#editor-field-host', 'b.example');
    await page.click('#editor-as-json');
    assert.equal(await page.isVisible('#editor-value'), true);
    assert.equal(await page.isVisible('#editor-schema-form'), false);
    assert.equal((await textOf(page, '#editor-as-json')), 'Edit as form');
    const json = JSON.parse(await page.inputValue('#editor-value'));
    assert.deepEqual(json, { host: 'b.example', enabled: true, ratio: 1.5 });

    // JSON to form: the edited text fills the fields.
    await page.fill('#editor-value', '{"host": "c.example", "enabled": false, "timeout_ms": 30}');
    await page.click('#editor-as-json');
    assert.equal(await page.inputValue('#editor-field-host'), 'c.example');
    assert.equal(await page.inputValue('#editor-field-timeout_ms'), '30');
    assert.equal(await page.isChecked('#editor-field-enabled'), false);

    // A value the form cannot hold stays in the JSON editor, saying why.
    await page.click('#editor-as-json');
    await page.fill('#editor-value', '{"host": 5, "enabled": true}');
    await page.click('#editor-as-json');
    assert.match(await textOf(page, '#editor-error'), /does not fit the form/);
    assert.equal(await page.isVisible('#editor-value'), true);
    await page.fill('#editor-value', '{"host": "d.example", "enabled": true}');
    await page.click('#editor-save');
    await page.waitForSelector('#editor', { state: 'hidden', timeout: DEADLINE });
    assert.deepEqual((await server.api('GET', '/v1/configs/svc/http')).body.value, { host: 'd.example', enabled: true });

    // A nested schema (by its glob): the JSON editor, no toggle, and the schema to read.
    await page.click(`${row('svc', 'nested')} button[data-action="edit"]`);
    await page.waitForSelector('#editor-value', { state: 'visible' });
    assert.equal(await page.isVisible('#editor-as-json'), false);
    assert.match(await textOf(page, '#editor-schema-note'), /beyond the form/);
    assert.match(await textOf(page, '#editor-typed'), /Typed/);

    // A new key takes its schema's form once its name is typed.
    await page.click('#editor-cancel');
    await page.click('#new-key');
    await page.fill('#editor-ns', 'svc');
    await page.fill('#editor-key', 'http');
    await page.press('#editor-key', 'Tab');
    await page.waitForSelector('#editor-field-host', { state: 'visible' });
  });
});

test('a value a client rejected shows as "1 client rejected revision R" on its key and in the clients panel', { timeout: 60_000 }, async () => {
  await withConsole(browser, async (server, page) => {
    const entry = await server.put('app', 'port', '80a');
    await server.put('app', 'host', 'a.example');
    await openLive(server, page);
    await page.waitForSelector(row('app', 'port'));

    // An application that cannot use the value says so over its WebSocket.
    const subscriber = subscribe(server, ['app']);
    await subscriber.ready();
    subscriber.send({ type: 'nack', namespace: 'app', key: 'port', revision: entry.revision, error: 'port: invalid digit found in string' });
    const badge = `${row('app', 'port')} [data-testid="rejected"]`;
    await page.waitForSelector(badge, { timeout: DEADLINE });
    assert.equal(await textOf(page, badge), `1 client rejected revision ${entry.revision}`);
    assert.match(await page.getAttribute(badge, 'title'), /invalid digit found in string/);
    assert.equal(await page.locator(`${row('app', 'host')} [data-testid="rejected"]`).count(), 0);

    await page.click('#show-clients');
    await page.waitForSelector('[data-testid="rejection"]', { timeout: DEADLINE });
    assert.match(await textOf(page, '[data-testid="rejection"]'), new RegExp(`app/port\\s+1 client rejected revision ${entry.revision}: port: invalid digit`));
    await page.screenshot({ path: join(shots, 'typed-rejected.png'), fullPage: true });
    subscriber.close();
  });
});

test('the schema editor: a strict schema live values break lists them (409), ratchet saves, If-Match guards', { timeout: 60_000 }, async () => {
  await withConsole(browser, async (server, page) => {
    await server.put('pay', 'timeout_ms', 'slow');
    await server.put('pay', 'retries', 3);
    await openLive(server, page);
    await page.click('section[data-ns="pay"] [data-ns-action="schemas"]');
    await page.waitForSelector('#schema-panel', { state: 'visible' });
    await page.waitForFunction(() => /no schemas yet/.test(document.querySelector('#schema-notice').textContent));

    // Strict, over a value that breaks it: refused, the value listed with its key.
    await page.fill('#schema-doc', '{"timeout_ms": {"type": "integer", "minimum": 1}, "retr*": {"type": "integer"}}');
    await page.click('#schema-save');
    await page.waitForSelector('#schema-violations:not([hidden])', { timeout: DEADLINE });
    assert.match(await textOf(page, '#schema-violations'), /timeout_ms\s+\(the value\)\s+type: /);
    assert.match(await textOf(page, '#schema-error'), /1 live value of pay breaks these schemas/);
    assert.equal((await server.api('GET', '/v1/schemas/pay')).status, 404);
    await page.screenshot({ path: join(shots, 'typed-schema-editor.png'), fullPage: true });

    // Ratchet: saved; the key is marked out of schema.
    await page.selectOption('#schema-mode', 'ratchet');
    await page.click('#schema-save');
    await page.waitForSelector('#schema-panel', { state: 'hidden', timeout: DEADLINE });
    const saved = await server.api('GET', '/v1/schemas/pay');
    assert.equal(saved.body.mode, 'ratchet');
    assert.deepEqual(saved.body.schemas['retr*'], { type: 'integer' });
    await page.waitForSelector(`${row('pay', 'timeout_ms')} [data-testid="out-of-schema"]`, { timeout: DEADLINE });
    assert.match(await textOf(page, 'section[data-ns="pay"] .ns-typed'), /typed \(ratchet\)/);

    // Changed by someone else while open: the notice says so and the save is refused (412).
    await page.click('section[data-ns="pay"] [data-ns-action="schemas"]');
    await page.waitForFunction(() => /retr\*/.test(document.querySelector('#schema-doc').value));
    await server.schemas('pay', { 'retr*': { type: 'integer' } }, 'ratchet');
    await page.waitForFunction(() => /changed the schemas of pay/.test(document.querySelector('#schema-notice').textContent), null, { timeout: DEADLINE });
    await page.click('#schema-save');
    await page.waitForFunction(() => /changed since you opened them/.test(document.querySelector('#schema-error').textContent), null, { timeout: DEADLINE });
    assert.equal((await server.api('GET', '/v1/schemas/pay')).body.schemas.timeout_ms, undefined);

    // Removed after a confirmation: the namespace is untyped again.
    await page.click('#schema-cancel');
    await page.click('section[data-ns="pay"] [data-ns-action="schemas"]');
    await page.waitForSelector('#schema-remove', { state: 'visible', timeout: DEADLINE });
    await page.click('#schema-remove');
    await page.waitForSelector('#confirm[open]');
    await page.fill('#confirm-name', 'pay');
    await page.click('#confirm-ok');
    await page.waitForSelector('section[data-ns="pay"] .badge.typed', { state: 'detached', timeout: DEADLINE });
    assert.equal((await server.api('GET', '/v1/schemas/pay')).status, 404);
  });
});
