// The browser tests' fixture: a real graycast process on a temporary data dir, a
// WebSocket subscriber, and a headless Chromium page on the console. typed.test.mjs and
// requests.test.mjs use it; console.test.mjs still carries its own copy of the same.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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
export const shots = join(here, 'screenshots');
export const DEADLINE = 15_000;

/**
 * A graycast process on a temporary data dir, restartable on the same port: open, or with `tokens` ([{name, secret, role,
 * namespaces}], written as the TOML token file of the README's "Access tokens"), the first admin's then used by
 * `api` and `put`.
 */
export class Server {
  constructor({ tokens = null } = {}) {
    this.dir = mkdtempSync(join(tmpdir(), 'graycast-web-'));
    this.url = null;
    this.child = null;
    this.tokens = tokens;
    this.adminSecret = tokens?.find((t) => t.role === 'admin')?.secret ?? null;
  }

  /** Starts the process on `listen` (a restart passes its own port), with `tokens` if given. */
  async start(listen = '127.0.0.1:0', { tokens = this.tokens } = {}) {
    this.tokens = tokens;
    this.adminSecret = tokens?.find((t) => t.role === 'admin')?.secret ?? null;
    const args = ['--listen', listen, '--data-dir', join(this.dir, 'data'), '--heartbeat-ms', '1000'];
    if (this.tokens) {
      const file = join(this.dir, 'tokens.toml');
      writeFileSync(file, this.tokens.map((t) => [
        '[[token]]',
        `name = ${JSON.stringify(t.name)}`,
        `secret_sha256 = "${createHash('sha256').update(t.secret).digest('hex')}"`,
        `role = ${JSON.stringify(t.role)}`,
        `namespaces = ${JSON.stringify(t.namespaces ?? ['*'])}`,
        '',
      ].join('\n')).join('\n'));
      args.push('--tokens', file);
    }
    this.child = spawn(serverBin, args, {
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

  /** A graceful stop (SIGTERM); resolves when the process is gone. */
  async stop() {
    if (!this.child) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill('SIGTERM');
    await exited;
    this.child = null;
  }

  /** Stops and starts again on the same port and data dir. */
  async restart() {
    const listen = this.url.replace('http://', '');
    await this.stop();
    await this.start(listen);
  }

  /** Headers of the test's own requests: the admin token on a server with tokens. */
  authHeaders() {
    return this.adminSecret ? { authorization: `Bearer ${this.adminSecret}` } : {};
  }

  async dispose() {
    if (this.child) this.child.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }

  async api(method, path, body, headers = {}) {
    const { status, text } = await this.raw(method, path, body === undefined ? undefined : JSON.stringify(body), headers);
    return { status, body: text ? JSON.parse(text) : null };
  }

  /** A request with a body given as JSON text, answered as text (for numbers JSON.parse would round). */
  async raw(method, path, bodyText, headers = {}) {
    const response = await fetch(`${this.url}${path}`, {
      method,
      headers: { 'content-type': 'application/json', ...this.authHeaders(), ...headers },
      body: bodyText,
    });
    return { status: response.status, text: await response.text() };
  }

  async put(ns, key, value) {
    const { status, body } = await this.api('PUT', `/v1/configs/${ns}/${key}`, { value });
    assert.ok(status === 200 || status === 201, `put ${ns}/${key}: ${status} ${JSON.stringify(body)}`);
    return body;
  }

  /** Sets a namespace's schemas; `mode` strict or ratchet. */
  async schemas(ns, schemas, mode = 'strict') {
    const { status, body } = await this.api('PUT', `/v1/schemas/${ns}`, { schemas, mode });
    assert.equal(status, 200, `schemas of ${ns}: ${status} ${JSON.stringify(body)}`);
    return body;
  }
}

/** A WebSocket subscriber collecting the server's messages. */
export function subscribe(server, namespaces) {
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
    send(message) {
      ws.send(JSON.stringify(message));
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

export function launchBrowser() {
  return chromium.launch({
    executablePath: chromiumPath,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-quic'],
  });
}

/** Collects what must fail a test: page errors, CSP violations, requests leaving `server`. */
export function watchProblems(page, server) {
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) problems.push(`CSP violation: ${m.text()}`);
  });
  page.on('request', (r) => {
    const url = r.url();
    if (!url.startsWith(server.url) && !url.startsWith(server.url.replace('http', 'ws')) && !url.startsWith('data:')) {
      problems.push(`external request: ${url}`);
    }
  });
  return problems;
}

/**
 * Runs a test body with a fresh server and a page of `browser`; closes both. Page errors,
 * CSP violations and requests leaving the server fail the test.
 */
export async function withConsole(browser, body, viewport = { width: 1280, height: 900 }) {
  const server = await new Server().start();
  const page = await browser.newPage({ viewport });
  const problems = watchProblems(page, server);
  try {
    await body(server, page);
    assert.deepEqual(problems, []);
  } finally {
    await page.close();
    await server.dispose();
  }
}

export async function openLive(server, page) {
  await page.goto(server.url);
  await page.waitForSelector('#conn-status[data-state="live"]', { timeout: DEADLINE });
}

export const row = (ns, key) => `tr[data-ns="${ns}"][data-key="${key}"]`;
