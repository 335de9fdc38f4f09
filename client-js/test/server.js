// The test fixture: a real graycast server process on a free port, with its own data
// folder, that can be killed (SIGKILL) and started again on the same port.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { once } from 'node:events';

const BIN = process.env.GRAYCAST_BIN || new URL('../../target/debug/graycast-under-test', import.meta.url).pathname;
const START_DEADLINE_MS = 15000;

/** How long the fixture's servers wait between heartbeats: tests see `stale` quickly. */
export const HEARTBEAT_MS = 300;

export class TestServer {
  /**
   * Starts a server; `tokens` maps secrets to roles (read, report, write, admin), `args` are
   * more flags (`--allowed-origins …`), `heartbeatMs` its `--heartbeat-ms`.
   */
  static async start({ tokens, args = [], heartbeatMs = HEARTBEAT_MS } = {}) {
    const dir = mkdtempSync(join(tmpdir(), 'graycast-js-'));
    const server = new TestServer(dir, tokens && writeTokens(dir, tokens), [...args, '--heartbeat-ms', String(heartbeatMs)]);
    await server.launch('127.0.0.1:0');
    return server;
  }

  constructor(dir, tokenFile, args) {
    this.dir = dir;
    this.tokenFile = tokenFile;
    this.args = args;
  }

  /** Runs a server process on the data folder; returns it once it listens. */
  async launch(listen) {
    const args = ['--listen', listen, '--data-dir', join(this.dir, 'data'), ...this.args];
    if (this.tokenFile) args.push('--tokens', this.tokenFile);
    const child = spawn(BIN, args, { env: { ...process.env, GRAYCAST_LOG: 'warn' }, stdio: ['ignore', 'pipe', 'inherit'] });
    const lines = createInterface({ input: child.stdout });
    const deadline = AbortSignal.timeout(START_DEADLINE_MS);
    const [line] = await Promise.race([once(lines, 'line', { signal: deadline }), once(child, 'exit').then(() => [''])]);
    const url = /listening on (http:\/\/\S+)/.exec(line)?.[1];
    if (!url) throw new Error(`the server did not start: ${JSON.stringify(line)}`);
    // The server logs on; keep its pipe drained.
    lines.on('line', () => {});
    this.child = child;
    this.url = url;
    return child;
  }

  /** The server process dies at once, as in a crash; resolves when it is gone. */
  async kill() {
    const exited = once(this.child, 'exit');
    this.child.kill('SIGKILL');
    await exited;
  }

  /** Starts the server again on the same port and data folder. */
  async restart() {
    await this.launch(new URL(this.url).host);
  }

  /** Another server process on the same data folder, on another port (the first must be down). */
  async sibling() {
    const other = new TestServer(this.dir, this.tokenFile, this.args);
    await other.launch('127.0.0.1:0');
    return other;
  }

  /** A graceful stop (SIGTERM); resolves when the process is gone. */
  async stop() {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = once(this.child, 'exit');
    this.child.kill('SIGTERM');
    await exited;
  }

  async close() {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** A REST call; resolves to the answer's JSON, rejects on an error status. */
  async call(method, path, body, token) {
    const headers = { 'content-type': 'application/json' };
    if (token) headers.authorization = `Bearer ${token}`;
    const response = await fetch(this.url + path, { method, headers, body: body && JSON.stringify(body) });
    const answer = await response.json();
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${JSON.stringify(answer)}`);
    return answer;
  }
}

function writeTokens(dir, tokens) {
  const file = join(dir, 'tokens.toml');
  const sha256 = (text) => createHash('sha256').update(text).digest('hex');
  const entries = Object.entries(tokens).map(([secret, role]) =>
    `[[token]]\nname = "${role}-token"\nsecret_sha256 = "${sha256(secret)}"\nrole = "${role}"\nnamespaces = ["*"]\n`);
  writeFileSync(file, entries.join('\n'));
  return file;
}

/** The next `event` of a client whose detail satisfies `accept`, within a deadline. */
export function next(client, event, accept = () => true, ms = 15000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no ${event} event within ${ms} ms`));
    }, ms);
    const off = client.on(event, (detail) => {
      if (!accept(detail)) return;
      clearTimeout(timer);
      off();
      resolve(detail);
    });
  });
}
