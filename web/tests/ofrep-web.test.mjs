// The published OpenFeature web provider (@openfeature/web-sdk with
// @openfeature/ofrep-web-provider) in a real headless Chromium, on a page of another origin
// (allowed with --allowed-origins): it fetches every flag through OFREP's bulk endpoint and
// follows the event stream the answer names, so a REST write reaches the page through a
// server-sent event (the provider polls nothing by default); after the server is killed
// (SIGKILL) and started again, it recovers and sees a later change.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

import { chromium } from 'playwright-core';

const here = fileURLToPath(new URL('.', import.meta.url));
const repo = join(here, '..', '..');
const targetDir = process.env.CARGO_TARGET_DIR || join(repo, 'target');
const serverBin = process.env.GRAYCAST_BIN || join(targetDir, 'debug', 'graycast');
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const DEADLINE = 15_000;

/**
 * The page's own origin: the page and the four ES modules it imports, nothing else. The
 * page evaluates against `target.url`, set once graycast runs.
 */
function pageServer(target) {
  const modules = {
    '/m/core.js': '@openfeature/core/dist/esm/index.js',
    '/m/web-sdk.js': '@openfeature/web-sdk/dist/esm/index.js',
    '/m/ofrep-core.js': '@openfeature/ofrep-core/index.esm.js',
    '/m/ofrep-web-provider.js': '@openfeature/ofrep-web-provider/index.esm.js',
  };
  const page = () => `<!doctype html><html><head><meta charset="utf-8"><title>ofrep</title>
<script type="importmap">${JSON.stringify({ imports: {
    '@openfeature/core': '/m/core.js',
    '@openfeature/web-sdk': '/m/web-sdk.js',
    '@openfeature/ofrep-core': '/m/ofrep-core.js',
    '@openfeature/ofrep-web-provider': '/m/ofrep-web-provider.js',
  } })}</script></head><body><p id="color">loading</p>
<script type="module">
import { OpenFeature, ProviderEvents } from '@openfeature/web-sdk';
import { OFREPWebProvider } from '@openfeature/ofrep-web-provider';
window.requests = [];
const fetchImplementation = (input, init) => { window.requests.push(typeof input === 'string' ? input : input.url); return fetch(input, init); };
await OpenFeature.setContext({ targetingKey: 'visitor-1' });
await OpenFeature.setProviderAndWait(new OFREPWebProvider({ baseUrl: ${JSON.stringify(target.url)}, fetchImplementation }));
const client = OpenFeature.getClient();
const show = () => { document.getElementById('color').textContent = client.getStringValue('web/color', 'none'); };
client.addHandler(ProviderEvents.ConfigurationChanged, show);
show();
</script></body></html>`;
  const server = createServer((req, res) => {
    if (req.url === '/') {
      res.writeHead(200, { 'content-type': 'text/html' }).end(page());
    } else if (modules[req.url]) {
      const file = normalize(join(here, 'node_modules', modules[req.url]));
      res.writeHead(200, { 'content-type': 'text/javascript' }).end(readFileSync(file));
    } else {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

let browser;
let dir;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'graycast-ofrep-web-'));
  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-quic'],
  });
});
after(async () => {
  await browser?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** graycast on the data dir, allowing the page's origin; resolves to [child, url]. */
async function startGraycast(listen, origin) {
  const child = spawn(serverBin, ['--listen', listen, '--data-dir', join(dir, 'data'), '--allowed-origins', origin], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, GRAYCAST_LOG: 'warn' },
  });
  const line = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('server announced no URL')), DEADLINE);
    createInterface({ input: child.stdout }).once('line', (l) => { clearTimeout(timer); resolve(l); });
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
  return [child, line.replace('graycast listening on ', '').trim()];
}

async function put(url, value) {
  const response = await fetch(`${url}/v1/configs/web/color`, {
    method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ value }),
  });
  assert.ok(response.ok, `put: ${response.status}`);
}

test('the OFREP web provider follows changes through the event stream, across a kill -9', async () => {
  // The page's origin is known before graycast starts: graycast allows it.
  const target = { url: null };
  const site = await pageServer(target);
  const origin = `http://127.0.0.1:${site.address().port}`;
  let [child, url] = await startGraycast('127.0.0.1:0', origin);
  target.url = url;
  try {
    await put(url, 'blue');
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(origin);
    await page.waitForFunction(() => document.getElementById('color').textContent === 'blue', null, { timeout: DEADLINE });

    // A REST write reaches the page through the stream's event (no polling is configured).
    await put(url, 'green');
    await page.waitForFunction(() => document.getElementById('color').textContent === 'green', null, { timeout: DEADLINE });
    const refetched = await page.evaluate(() => window.requests.some((u) => u.includes('flagConfigLastModified=')));
    assert.ok(refetched, `the refetch came from a refetchEvaluation event: ${JSON.stringify(await page.evaluate(() => window.requests))}`);

    // kill -9, start again on the same port: the provider recovers and sees a later change.
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    [child, url] = await startGraycast(url.replace('http://', ''), origin);
    await put(url, 'purple');
    await page.waitForFunction(() => document.getElementById('color').textContent === 'purple', null, { timeout: 45_000 });
    assert.deepEqual(errors, []);
  } finally {
    child.kill('SIGKILL');
    await new Promise((resolve) => site.close(resolve));
  }
});
