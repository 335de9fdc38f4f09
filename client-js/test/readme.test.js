// The README's "Browser and Node" examples, run as written against a real server: the Node
// one as a script inside this package (so that `@graycast/client` resolves to it, as after an
// install), the browser one in headless Chromium from a page on another origin.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';

import { TestServer } from './server.js';

const HEADING = 'Browser and Node';

/** The fenced blocks in `lang` under the README's section `HEADING`. */
function examples(lang) {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const section = readme.split(/^## /m).find((s) => s.startsWith(`${HEADING}\n`));
  assert.ok(section, `a README section "${HEADING}"`);
  return [...section.matchAll(/^```(\w+)\n([\s\S]*?)^```$/gm)].filter((m) => m[1] === lang).map((m) => m[2]);
}

test('the Node example runs as written', async () => {
  const [script] = examples('js');
  const server = await TestServer.start();
  const file = new URL(`../readme-${process.pid}.mjs`, import.meta.url);
  try {
    await server.call('PUT', '/v1/configs/payments/timeout_ms', { value: 250 });
    writeFileSync(file, script);
    const { stdout } = await promisify(execFile)(process.execPath, [file.pathname], {
      env: { ...process.env, GRAYCAST_SERVER: server.url },
      timeout: 15000,
    });
    assert.match(stdout, /user-42 gets timeout_ms = 250/);
    assert.match(stdout, /timeout_ms changed: 250/, 'the initial state comes as a change');
  } finally {
    rmSync(file, { force: true });
    await server.close();
  }
});

test('the page example runs as written in Chromium, from another origin', async () => {
  const { chromium } = await import('playwright-core');
  const { createServer } = await import('node:http');
  const { once } = await import('node:events');
  const [html] = examples('html');
  // The page's own origin, which the server lists in --allowed-origins.
  let page = '';
  const origin = createServer((req, res) => res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page));
  origin.listen(0, '127.0.0.1');
  await once(origin, 'listening');
  const pageUrl = `http://127.0.0.1:${origin.address().port}`;
  const server = await TestServer.start({ args: ['--allowed-origins', pageUrl] });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'],
  });
  try {
    await server.call('PUT', '/v1/configs/web/banner', { value: 'Hello from graycast' });
    page = `<!doctype html><title>example</title>${html.replaceAll('http://127.0.0.1:8080', server.url)}`;
    const tab = await browser.newPage();
    const errors = [];
    tab.on('pageerror', (error) => errors.push(error));
    await tab.goto(pageUrl);
    const banner = tab.locator('#banner');
    await banner.filter({ hasText: 'Hello from graycast' }).waitFor({ timeout: 15000 });
    // Pushed the moment it changes.
    await server.call('PUT', '/v1/configs/web/banner', { value: 'Changed live' });
    await banner.filter({ hasText: 'Changed live' }).waitFor({ timeout: 15000 });
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    await server.close();
    origin.close();
  }
});
