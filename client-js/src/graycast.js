/**
 * @graycast/client — the browser and Node SDK of graycast.
 *
 * One client follows some namespaces of a graycast server: it holds their entries in memory,
 * keeps them current through the push protocol (a WebSocket, or server-sent events read over
 * `fetch` where there is no WebSocket), resumes from the last revision it applied after any
 * break, and evaluates gray releases locally with the server's own algorithm, so
 * that reads never wait on the network.
 *
 * Zero dependencies; the same file runs in browsers and in Node ≥ 20.
 */

/** The number of sticky buckets a subject can fall into. */
export const BUCKETS = 10000;

// Version numbers are 64-bit in the Rust implementation; larger ones are treated as it does.
const U64_MAX = 2n ** 64n - 1n;

/** The server's default heartbeat (`--heartbeat-ms`): it sends something at least this often. */
const HEARTBEAT_MS = 15000;

// Reconnection: full jitter over a ceiling that doubles from twice the base up to the cap,
// so that clients dropped together by a restart come back spread out, not as one wave.
const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 20000;
// A connection in sync this long counts as healthy: the next failure starts from the base.
const HEALTHY_MS = 60000;
// The ceiling is also never above how long the outage has lasted (this much at least): a
// client is back about as soon after the server as the server was away, even when a short
// restart cost it a few attempts.
const BACKOFF_FLOOR_MS = 1000;

// Writes to `storage` are coalesced: a burst of changes is one write of the cache.
const SAVE_DELAY_MS = 250;

// The codes of protocol/testdata/errors.json that are worth retrying; every other code is
// a refusal that retrying cannot change (a wrong token, a namespace not allowed).
const RETRYABLE_CODES = ['request_timeout', 'rate_limited', 'internal', 'unavailable', 'outcome_unknown'];

const encoder = new TextEncoder();

// ---------------------------------------------------------------------------------------
// Evaluation, identical to graycast-protocol's `rollout` module.

/** MurmurHash3 x86 32-bit of a byte array, as an unsigned 32-bit number. */
export function murmur3(bytes, seed = 0) {
  const c1 = 0xcc9e2d51;
  const c2 = 0x1b873593;
  const scramble = (k) => Math.imul(rotl(Math.imul(k, c1), 15), c2);
  const tail = bytes.length & ~3;
  let h = seed;
  for (let i = 0; i < tail; i += 4) {
    h ^= scramble(bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24));
    h = (Math.imul(rotl(h, 13), 5) + 0xe6546b64) | 0;
  }
  let k = 0;
  for (let i = bytes.length - 1; i >= tail; i--) k = (k << 8) | bytes[i];
  if (bytes.length > tail) h ^= scramble(k);
  h ^= bytes.length;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

function rotl(x, r) {
  return (x << r) | (x >>> (32 - r));
}

/** The sticky bucket of a subject: murmur3(utf8(salt + ":" + subject)) mod 10000. */
export function bucket(salt, subject) {
  return murmur3(encoder.encode(`${salt}:${subject}`)) % BUCKETS;
}

/** Parses MAJOR.MINOR.PATCH[-PRE][+BUILD] with an optional leading `v`; null when invalid. */
function parseSemver(text) {
  const match = /^v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+.+)?$/s.exec(text);
  if (!match) return null;
  const core = match.slice(1, 4);
  // Leading zeros are not allowed in the core; numbers must fit in 64 bits.
  if (core.some((n) => (n.length > 1 && n[0] === '0') || BigInt(n) > U64_MAX)) return null;
  return { core: core.map(BigInt), pre: match[4] ? match[4].split('.') : [] };
}

/** Semver precedence: negative, zero or positive, like a comparator. */
function compareSemver(a, b) {
  for (let i = 0; i < 3; i++) {
    if (a.core[i] !== b.core[i]) return a.core[i] < b.core[i] ? -1 : 1;
  }
  // A version without pre-release identifiers ranks above one with them.
  if (!a.pre.length || !b.pre.length) return b.pre.length - a.pre.length;
  for (let i = 0; i < Math.max(a.pre.length, b.pre.length); i++) {
    if (i >= a.pre.length) return -1;
    if (i >= b.pre.length) return 1;
    const order = compareIdentifiers(a.pre[i], b.pre[i]);
    if (order) return order;
  }
  return 0;
}

// Numeric identifiers compare as numbers and rank below alphanumeric ones; a numeric one
// beyond 64 bits compares as text, as in the Rust implementation.
function compareIdentifiers(x, y) {
  const xn = numericIdentifier(x);
  const yn = numericIdentifier(y);
  if (xn !== null && yn !== null) return xn === yn ? 0 : xn < yn ? -1 : 1;
  if (xn !== null) return -1;
  if (yn !== null) return 1;
  return x === y ? 0 : x < y ? -1 : 1;
}

function numericIdentifier(id) {
  if (!/^\d+$/.test(id)) return null;
  const n = BigInt(id);
  return n > U64_MAX ? null : n;
}

/** Whether attributes satisfy a rule; a missing attribute matches no rule. */
function ruleMatches(rule, attrs) {
  if (!Object.hasOwn(attrs, rule.attribute)) return false;
  const value = String(attrs[rule.attribute]);
  const values = rule.values || [];
  switch (rule.op) {
    case 'in':
      return values.includes(value);
    case 'not_in':
      return !values.includes(value);
    case 'eq':
      return values[0] === value;
    case 'prefix':
      return values.some((prefix) => value.startsWith(prefix));
    case 'semver_gte':
    case 'semver_lt': {
      const have = parseSemver(value);
      const want = values.length ? parseSemver(values[0]) : null;
      if (!have || !want) return false;
      return (compareSemver(have, want) >= 0) === (rule.op === 'semver_gte');
    }
    default:
      return false;
  }
}

/**
 * Decides which variant a subject (null: none) with attributes gets of a gray section
 * (null: no release): `{variant: 'stable'|'gray', reason, bucket}`, `bucket` null unless the
 * percent decided. `roll` draws the bucket of a subject-less evaluation.
 */
export function evaluateGray(gray, subject, attrs = {}, roll = () => Math.floor(Math.random() * BUCKETS)) {
  const decision = (inGray, reason, b = null) => ({ variant: inGray ? 'gray' : 'stable', reason, bucket: b });
  if (!gray) return decision(false, 'no_gray');
  if (subject != null) {
    if ((gray.deny || []).includes(subject)) return decision(false, 'deny');
    if ((gray.allow || []).includes(subject)) return decision(true, 'allow');
  }
  if (!(gray.rules || []).every((rule) => ruleMatches(rule, attrs))) return decision(false, 'rule_mismatch');
  const limit = Math.min(BUCKETS, Math.max(0, Math.round(gray.percent * 100)));
  if (subject == null) return decision(roll() % BUCKETS < limit, 'random');
  const b = bucket(gray.salt, subject);
  return decision(b < limit, 'percent', b);
}

// ---------------------------------------------------------------------------------------
// Errors

/**
 * What went wrong, with the code of the server's error table (`unauthorized`, `forbidden`…)
 * or `network` for a connection that failed. `retryable` false means retrying cannot help.
 */
export class GraycastError extends Error {
  constructor(code, message, status) {
    super(message);
    this.name = 'GraycastError';
    this.code = code;
    this.status = status;
    this.retryable = code === 'network' || RETRYABLE_CODES.includes(code) || (!code && retryableStatus(status));
  }
}

// The error table's rule for an answer without a code: timeouts, rate limits and server
// failures pass, except a full store (507), which waits for an operator.
function retryableStatus(status) {
  return status === 408 || status === 429 || (status >= 500 && status !== 507);
}

function networkError(message) {
  return new GraycastError('network', message);
}

/** The error of a failed HTTP answer, from its `{"error": {"code", "message"}}` body. */
async function answerError(response) {
  const body = await response.json().catch(() => ({}));
  const { code, message } = body.error || {};
  return new GraycastError(code, message || `the server answered HTTP ${response.status}`, response.status);
}

// ---------------------------------------------------------------------------------------
// The client

/**
 * Creates a client and starts following `namespaces`. See graycast.d.ts for the options.
 */
export function createClient(options) {
  const { url, token, namespaces, bootstrap, storage, validate, client = {} } = options;
  // `WebSocket: null` says "no WebSocket": a page can choose SSE over the browser's own.
  const Socket = options.WebSocket === undefined ? globalThis.WebSocket : options.WebSocket;
  const heartbeatMs = options.heartbeatMs || HEARTBEAT_MS;
  // How the server's JSON is read: a lossless parser keeps numbers a double cannot hold.
  const parse = options.parse || JSON.parse;
  const base = url.replace(/\/+$/, '');
  const id = client.id || crypto.randomUUID();
  const storageKey = `graycast:${base}:${namespaces.join(',')}`;
  const listeners = new Map();
  const nacked = new Set(); // the values `validate` refused that the server was told of

  let revision = 0;
  let cache = new Map(); // namespace → (key → entry)
  let session = null; // the connection under way
  let attempt = 0; // failures since the last healthy connection
  let brokenAt = 0; // when the first of them happened
  let stopped = false; // closed, or refused for good
  let stale = false;
  let status = null;
  let retryTimer, silenceTimer, healthyTimer, saveTimer;
  let settleReady;
  const readyPromise = new Promise((resolve, reject) => (settleReady = { resolve, reject }));
  // Nobody has to ask for ready(): a refusal must not become an unhandled rejection.
  readyPromise.catch(() => {});

  function emit(event, detail) {
    for (const fn of listeners.get(event) || []) {
      try {
        fn(detail);
      } catch (error) {
        // A listener's bug is the application's to see, and must not cut the connection.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }

  /** Says how the connection is: `connecting`, `live`, `reconnecting` or `stopped`. */
  function setStatus(next) {
    if (status !== next) emit('status', (status = next));
  }

  function find(namespace, key) {
    return cache.get(namespace)?.get(key);
  }

  // --- the cache -------------------------------------------------------------------------

  function put(entry) {
    if (!cache.has(entry.namespace)) cache.set(entry.namespace, new Map());
    cache.get(entry.namespace).set(entry.key, entry);
  }

  /** Takes a whole state (a snapshot, the bootstrap, the stored cache); returns what differs. */
  function replace(atRevision, entries) {
    const previous = cache;
    cache = new Map();
    entries.forEach(put);
    revision = atRevision;
    const changes = [];
    for (const entry of entries) {
      const before = previous.get(entry.namespace)?.get(entry.key);
      // Every change is a new revision: the same revision is the same entry.
      if (before?.revision !== entry.revision) {
        changes.push({ op: 'put', namespace: entry.namespace, key: entry.key, revision: entry.revision, entry, previous: before });
      }
    }
    for (const [namespace, keys] of previous) {
      for (const [key, before] of keys) {
        if (!find(namespace, key)) changes.push({ op: 'delete', namespace, key, revision: atRevision, entry: null, previous: before });
      }
    }
    return changes;
  }

  /** Applies a pushed change unless the cache has it already; returns its event. */
  function applyChange(message) {
    if (message.revision <= revision) return null;
    const { op, namespace, key, entry, comment, note } = message;
    const previous = find(namespace, key);
    revision = message.revision;
    if (entry) put(entry);
    else cache.get(namespace)?.delete(key);
    return { op, namespace, key, revision, entry, previous, comment, note };
  }

  /** Adopts a bootstrap document or the stored cache when it is newer than what is held. */
  function adopt(state) {
    if (state && state.revision > revision) replace(state.revision, state.entries || []);
  }

  function load() {
    try {
      return JSON.parse(storage.getItem(storageKey));
    } catch {
      // An unreadable cache is no cache: start from the server.
      return null;
    }
  }

  function save() {
    clearTimeout(saveTimer);
    saveTimer = null;
    const entries = [...cache.values()].flatMap((keys) => [...keys.values()]);
    try {
      storage.setItem(storageKey, JSON.stringify({ revision, entries }));
    } catch {
      // A full or unavailable storage costs the next start a snapshot, nothing more.
    }
  }

  function scheduleSave() {
    if (storage && !saveTimer) saveTimer = setTimeout(save, SAVE_DELAY_MS);
  }

  // --- messages --------------------------------------------------------------------------

  /** Applies one server message (§5) of a session. */
  function receive(current, message) {
    // Messages still buffered when a session was torn down belong to nobody.
    if (current.ended) return;
    const before = revision;
    if (message.type === 'snapshot') {
      replace(message.revision, message.entries).forEach(changed);
      emit('snapshot', { revision });
      synced(current, true);
    } else if (message.type === 'change') {
      const change = applyChange(message);
      if (change && !current.synced) current.replayed++;
      if (change) changed(change);
    } else if (message.type === 'progress') {
      revision = Math.max(revision, message.revision);
      // The server says `progress` when a replay is complete, and when idle.
      synced(current, false);
    } else if (message.type === 'error') {
      current.error = new GraycastError(message.code, message.message);
    }
    if (revision !== before) {
      scheduleSave();
      emit('revision', revision);
    }
  }

  /** Tells the application of a change, after its `validate` had a look at the values. */
  function changed(change) {
    const { entry } = change;
    if (validate && entry) {
      check(entry, 'stable', entry.value);
      if (entry.gray) check(entry, 'gray', entry.gray.value);
    }
    emit('change', change);
  }

  /**
   * Runs the application's `validate` on a pushed value; when it throws, tells the server
   * (`POST /v1/nacks`, once per value), where the rejection is counted and a gray
   * release's guard counts it as an error of its variant.
   */
  function check(entry, variant, value) {
    const { namespace, key, revision: at } = entry;
    try {
      validate(value, { namespace, key, variant });
    } catch (error) {
      const said = `${namespace}/${key}/${at}/${variant}`;
      if (nacked.has(said)) return;
      nacked.add(said);
      const body = { namespace, key, revision: at, variant, client: id, error: String(error?.message ?? error).slice(0, 1000) };
      fetch(`${base}/v1/nacks`, { method: 'POST', headers: { 'content-type': 'application/json', ...authorization() }, body: JSON.stringify(body) })
        // Feedback, not a write: a lost one costs a count.
        .catch(() => {});
    }
  }

  /** The session has caught up with the server. */
  function synced(current, bySnapshot) {
    if (current.synced) return;
    current.synced = true;
    stale = false;
    setStatus('live');
    healthyTimer = setTimeout(() => (attempt = brokenAt = 0), HEALTHY_MS);
    if (current.since) emit('recovered', { replayed: current.replayed, snapshot: bySnapshot });
    if (settleReady) {
      settleReady.resolve();
      settleReady = null;
      emit('ready');
    }
  }

  /** Something arrived: the server is there. */
  function heard() {
    clearTimeout(silenceTimer);
    silenceTimer = null;
    watchSilence();
  }

  // Only what arrives restarts the watch: reconnection attempts during an outage do not.
  function watchSilence() {
    silenceTimer ||= setTimeout(silent, 2 * heartbeatMs);
  }

  /** Two heartbeats of nothing, not even a `progress`: the values may be out of date. */
  function silent() {
    silenceTimer = null;
    if (!stale) emit('stale', { silentMs: 2 * heartbeatMs });
    stale = true;
    // A connection that brings nothing is dead or hung: try another.
    session?.end(networkError(`nothing from the server for ${2 * heartbeatMs} ms`));
  }

  // --- connections -----------------------------------------------------------------------

  function connect() {
    const current = { since: revision || undefined, synced: false, replayed: 0, ended: false };
    current.end = (error) => {
      if (current.ended) return;
      current.ended = true;
      current.teardown();
      ended(current, error);
    };
    session = current;
    setStatus(status ? 'reconnecting' : 'connecting');
    watchSilence();
    current.teardown = (Socket ? openWebSocket : openEventStream)(current);
  }

  function ended(current, error) {
    session = null;
    clearTimeout(healthyTimer);
    if (stopped) return;
    const failure = current.error || error;
    if (!failure.retryable) return refuse(failure);
    attempt++;
    brokenAt ||= Date.now();
    setStatus('reconnecting');
    const outage = Math.max(BACKOFF_FLOOR_MS, Date.now() - brokenAt);
    const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempt, outage);
    retryTimer = setTimeout(connect, Math.random() * ceiling);
  }

  /** A refusal that retrying cannot change (a token refused): say it once and stop. */
  function refuse(error) {
    stop();
    settleReady?.reject(error);
    settleReady = null;
    emit('error', error);
  }

  function stop() {
    stopped = true;
    setStatus('stopped');
    [retryTimer, silenceTimer, healthyTimer].forEach(clearTimeout);
    session?.end();
    if (saveTimer) save();
    globalThis.removeEventListener?.('online', online);
    globalThis.removeEventListener?.('offline', offline);
  }

  function subscribeMessage(current) {
    return { type: 'subscribe', namespaces, since: current.since, client: { id, labels: client.labels } };
  }

  /** §5 over a WebSocket; returns the teardown. */
  function openWebSocket(current) {
    const socket = new Socket(`${base.replace(/^http/, 'ws')}/v1/watch`);
    const send = (message) => socket.send(JSON.stringify(message));
    socket.onopen = () => {
      // The token goes in the first message, not the URL: a refusal then arrives as an error
      // message a browser can read, where a refused upgrade is only an anonymous failure.
      if (token) send({ type: 'auth', token });
      send(subscribeMessage(current));
    };
    socket.onmessage = (event) => {
      heard();
      let message;
      try {
        message = parse(event.data);
      } catch {
        // Thrown from here, it would be nobody's to catch: end this connection instead.
        return current.end(networkError('the server sent a message that is not JSON'));
      }
      receive(current, message);
      // Acknowledged as the Rust SDK does: after each message, the revision the client is
      // at. The acks also keep the server from dropping the connection as silent, since a
      // browser cannot send pings.
      if (message.type !== 'error' && !current.ended) send({ type: 'ack', revision });
    };
    socket.onclose = (event) => current.end(networkError(`the connection closed (${event.code})`));
    // A failure is followed by `close`, which says it; without a handler, `ws` would throw.
    socket.onerror = () => {};
    return () => socket.close();
  }

  /** §8's server-sent events, read over `fetch` streaming; returns the teardown. */
  function openEventStream(current) {
    const abort = new AbortController();
    const query = new URLSearchParams({ namespaces: namespaces.join(','), client: id });
    if (current.since) query.set('since', current.since);
    const headers = { accept: 'text/event-stream', ...authorization() };
    fetch(`${base}/v1/events?${query}`, { headers, signal: abort.signal })
      .then(async (response) => {
        if (!response.ok) throw await answerError(response);
        await readEvents(response.body, (message) => receive(current, message));
        throw networkError('the server ended the event stream');
      })
      .catch((error) => current.end(error instanceof GraycastError ? error : networkError(error.message)));
    return () => abort.abort();
  }

  /**
   * Reads an event stream, passing on each event's data as JSON (the type is inside);
   * resolves when the stream ends.
   */
  function readEvents(body, onMessage) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    let data = '';
    // A chain of callbacks rather than an `await` loop: a suspended async function keeps its
    // dead locals, which held each client's whole snapshot text until the next chunk came.
    return new Promise((resolve, reject) => {
      const step = ({ value, done }) => {
        if (done) return resolve();
        // Heartbeat comments count: they prove the server is there.
        heard();
        buffer += value;
        // A snapshot is one long line over many chunks: split only when a line is complete.
        if (value.includes('\n')) {
          const lines = buffer.split('\n');
          buffer = lines.pop();
          for (const line of lines.map((l) => l.replace(/\r$/, ''))) {
            if (line === '' && data) onMessage(parse(data));
            if (line === '') data = '';
            else if (line.startsWith('data:')) data += (data ? '\n' : '') + line.slice(5).replace(/^ /, '');
          }
        }
        next();
      };
      const next = () => reader.read().then(step).catch(reject);
      next();
    });
  }

  function authorization() {
    return token ? { authorization: `Bearer ${token}` } : {};
  }

  // Browsers know when the network comes and goes: do not wait out a backoff, nor a
  // connection that cannot be alive.
  function online() {
    if (!session && !stopped) {
      clearTimeout(retryTimer);
      connect();
    }
  }

  function offline() {
    session?.end(networkError('the browser went offline'));
  }

  // --- the public face -------------------------------------------------------------------

  function evaluate(namespace, key, context = {}) {
    const entry = find(namespace, key);
    if (!entry) return undefined;
    // Without a subject the client's id decides: each instance is in or out as a whole,
    // and a value does not flip from one call to the next.
    const subject = context.subject === undefined ? id : context.subject;
    const decision = evaluateGray(entry.gray, subject, context.attrs);
    const value = decision.variant === 'gray' ? entry.gray.value : entry.value;
    return { value, ...decision, revision: entry.revision };
  }

  async function report(namespace, key, variant, ok = 0, errors = 0) {
    // Name the release the outcomes were seen with, so that they never count for one that
    // replaced it meanwhile.
    const release = find(namespace, key)?.gray?.started_at;
    const path = `/v1/configs/${encodeURIComponent(namespace)}/${encodeURIComponent(key)}/gray/report`;
    const response = await fetch(base + path, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...authorization() },
      body: JSON.stringify({ variant, ok, errors, release }),
    });
    if (!response.ok) throw await answerError(response);
    return response.json();
  }

  adopt(bootstrap);
  if (storage) adopt(load());
  globalThis.addEventListener?.('online', online);
  globalThis.addEventListener?.('offline', offline);
  connect();

  return {
    ready: () => readyPromise,
    get: (namespace, key, context, fallback) => {
      const evaluation = evaluate(namespace, key, context);
      return evaluation ? evaluation.value : fallback;
    },
    evaluate,
    entries: (namespace) => [...(cache.get(namespace)?.values() || [])],
    get revision() {
      return revision;
    },
    get id() {
      return id;
    },
    get status() {
      return status;
    },
    report,
    on(event, fn) {
      if (!listeners.has(event)) listeners.set(event, new Set());
      listeners.get(event).add(fn);
      return () => listeners.get(event).delete(fn);
    },
    close: stop,
  };
}
