// graycast console: a live view of every namespace the token may read, and an admin UI
// for keys, history, gray releases, namespace descriptions and the change feed.
//
// One module, in sections that read top to bottom:
//    1. constants                 2. lossless JSON           3. helpers
//    4. REST                      5. messages (toasts)       6. identity and rights
//    7. live state                8. WebSocket watch         9. namespace tables
//   10. confirmation dialog      11. panels                 12. editor
//   13. history                  14. gray release           15. subject simulator
//   16. recent changes           17. clients                18. token and start-up
//
// The watch is the single source of truth for entries: a REST write only reports
// success or failure, and the change it causes arrives over the WebSocket like
// anyone else's. That keeps the revision order of the table exactly the server's.
//
// Every JSON text from the server (REST bodies and pushed messages) goes through
// `parseJson`, never `JSON.parse`: a number a double cannot hold (12345678901234567890)
// stays its digits, and writes send it back verbatim through `stringifyJson`.

import { evaluate } from './rollout.js';

// ===========================================================================
// 1. Constants

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
// The reserved namespace holding namespace descriptions: data, never shown as a namespace.
const META_NAMESPACE = 'graycast.meta';
// `updated_by` of the aborts the server's guard makes (server/src/guard.rs GUARD_ACTOR).
const GUARD_ACTOR = 'guard';
const TOKEN_KEY = 'graycast.token';
const COLLAPSED_KEY = 'graycast.collapsed';
const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 5000;
const FLASH_MS = 1500;
const CLIENTS_POLL_MS = 5000;
const CLIENTS_DEBOUNCE_MS = 500;
const COUNTS_POLL_MS = 5000;
const HISTORY_DEBOUNCE_MS = 250;
const HISTORY_LIMIT = 50;
const CHANGES_LIMIT = 100;
const INFO_MESSAGE_MS = 6000;
// At most this many toasts at once; the narrow layout shows the newest two of them.
const MAX_MESSAGES = 3;
// Keys per page of a namespace table; "Show more" adds as many again.
const PAGE_SIZE = 25;
const MAX_COMMENT_CHARS = 1024;
const MAX_DESCRIPTION_CHARS = 1024;
// Largest LCS table the diff builds (cells); beyond it the changed middle is shown
// as removed-then-added, which stays correct, just less precise.
const LCS_MAX_CELLS = 1_000_000;
// Unchanged runs longer than this in a diff are folded to their edges.
const DIFF_CONTEXT = 2;
const INLINE_VALUE_CHARS = 80;
const UNFOLDED_VALUE_LINES = 8;
const RULE_OPS = ['in', 'not_in', 'eq', 'prefix', 'semver_gte', 'semver_lt'];
// Deeper JSON is refused by the parser instead of overflowing the stack (the server
// itself refuses values nested more than 64 levels).
const MAX_JSON_DEPTH = 2000;

// ===========================================================================
// 2. Lossless JSON
//
// JSON.parse turns every number into a double, so 12345678901234567890 becomes
// 12345678901234567000 and would be saved back that way; it also reorders object
// keys that look like array indices ({"b":1,"2":2} comes out as {"2":2,"b":1}).
// This parser keeps both: a number a double cannot hold becomes a JsonNumber holding
// its source text, and an object whose key order JS would change remembers its order.
//
// Inside configuration values (a member named "value" and all below it, or a whole
// text parsed with `exact`), every number whose text a double would not reproduce
// (1.0, 1e3, -0, 12345678901234567890) is kept as text, so a value reads and saves
// back exactly as written. Elsewhere (revisions, percents, counts) numbers are plain
// doubles unless a double would change their value.

/** A JSON number kept as its source text. Arithmetic still works through valueOf. */
class JsonNumber {
  constructor(text) {
    this.text = text;
  }

  valueOf() {
    return Number(this.text);
  }

  toString() {
    return this.text;
  }
}

class JsonSyntaxError extends Error {}

const KEY_ORDER = Symbol('graycast.keyOrder');
const NUMBER_RE = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const PLAIN_CHARS_RE = /[^"\\\u0000-\u001f]*/y;
const INTEGER_TEXT_RE = /^-?[0-9]+$/;
const INDEX_KEY_RE = /^(?:0|[1-9][0-9]{0,9})$/;
const ESCAPES = { __proto__: null, '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };

/** A decimal's value as text independent of its notation: "1.50e2" and "150" agree. */
function decimalKey(text) {
  const m = /^(-?)([0-9]+)(?:\.([0-9]+))?(?:[eE]([+-]?[0-9]+))?$/.exec(text);
  if (!m) return text;
  let digits = m[2] + (m[3] ?? '');
  let point = m[2].length + Number(m[4] ?? 0);
  const lead = /^0*/.exec(digits)[0].length;
  digits = digits.slice(lead).replace(/0+$/, '');
  point -= lead;
  return digits === '' ? '0' : `${m[1]}${digits}e${point}`;
}

/** Whether a double keeps the number `text` stands for (value, and integer-ness). */
function doubleHolds(text, number) {
  if (!Number.isFinite(number)) return false;
  if (INTEGER_TEXT_RE.test(text)) return Number.isSafeInteger(number);
  return decimalKey(text) === decimalKey(String(number));
}

/**
 * Parses JSON text (RFC 8259, strictly). `exact`: the whole text is a configuration
 * value (see above). Throws a JsonSyntaxError naming line and column.
 */
function parseJson(text, { exact = false } = {}) {
  let at = 0;
  const fail = (what, where = at) => {
    const before = text.slice(0, where);
    const line = before.split('\n').length;
    const column = where - before.lastIndexOf('\n');
    throw new JsonSyntaxError(`${what} at line ${line}, column ${column}`);
  };
  const unexpected = () => (at >= text.length
    ? fail('unexpected end of text')
    : fail(`unexpected ${JSON.stringify(text[at])}`));
  const skipSpace = () => {
    while (at < text.length) {
      const c = text.charCodeAt(at);
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
      at += 1;
    }
  };

  const parseString = () => {
    at += 1; // the opening quote
    let out = '';
    for (;;) {
      PLAIN_CHARS_RE.lastIndex = at;
      PLAIN_CHARS_RE.exec(text);
      out += text.slice(at, PLAIN_CHARS_RE.lastIndex);
      at = PLAIN_CHARS_RE.lastIndex;
      if (at >= text.length) fail('unterminated string');
      const c = text[at];
      if (c === '"') {
        at += 1;
        return out;
      }
      if (c !== '\\') fail('control character in a string (write it as an escape such as \\n)');
      const escape = text[at + 1];
      if (escape !== undefined && ESCAPES[escape] !== undefined) {
        out += ESCAPES[escape];
        at += 2;
      } else if (escape === 'u') {
        const hex = text.slice(at + 2, at + 6);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail('invalid \\u escape');
        out += String.fromCharCode(parseInt(hex, 16));
        at += 6;
      } else {
        fail('invalid escape');
      }
    }
  };

  const parseNumber = (exactHere) => {
    NUMBER_RE.lastIndex = at;
    const match = NUMBER_RE.exec(text);
    if (!match) unexpected();
    at = NUMBER_RE.lastIndex;
    const source = match[0];
    const number = Number(source);
    const keep = exactHere ? String(number) !== source : !doubleHolds(source, number);
    return keep ? new JsonNumber(source) : number;
  };

  let parseValue;

  const parseArray = (depth, exactHere) => {
    at += 1;
    const array = [];
    skipSpace();
    if (text[at] === ']') {
      at += 1;
      return array;
    }
    for (;;) {
      array.push(parseValue(depth + 1, exactHere));
      skipSpace();
      if (text[at] === ',') {
        at += 1;
      } else if (text[at] === ']') {
        at += 1;
        return array;
      } else {
        unexpected();
      }
    }
  };

  const parseObject = (depth, exactHere) => {
    at += 1;
    const object = {};
    const order = [];
    skipSpace();
    if (text[at] === '}') {
      at += 1;
      return object;
    }
    for (;;) {
      skipSpace();
      if (text[at] !== '"') unexpected();
      const key = parseString();
      skipSpace();
      if (text[at] !== ':') unexpected();
      at += 1;
      const member = parseValue(depth + 1, exactHere || key === 'value');
      if (!Object.prototype.hasOwnProperty.call(object, key)) order.push(key);
      // "__proto__" is data here, not the prototype.
      Object.defineProperty(object, key, { value: member, enumerable: true, writable: true, configurable: true });
      skipSpace();
      if (text[at] === ',') {
        at += 1;
      } else if (text[at] === '}') {
        at += 1;
        break;
      } else {
        unexpected();
      }
    }
    // JS lists array-index keys first, in numeric order: remember the text's order.
    if (order.some((key) => INDEX_KEY_RE.test(key))) Object.defineProperty(object, KEY_ORDER, { value: order });
    return object;
  };

  parseValue = (depth, exactHere) => {
    if (depth > MAX_JSON_DEPTH) fail(`nested deeper than ${MAX_JSON_DEPTH} levels`);
    skipSpace();
    const c = text[at];
    if (c === '{') return parseObject(depth, exactHere);
    if (c === '[') return parseArray(depth, exactHere);
    if (c === '"') return parseString();
    if (c === 't' && text.startsWith('true', at)) {
      at += 4;
      return true;
    }
    if (c === 'f' && text.startsWith('false', at)) {
      at += 5;
      return false;
    }
    if (c === 'n' && text.startsWith('null', at)) {
      at += 4;
      return null;
    }
    return parseNumber(exactHere);
  };

  const result = parseValue(0, exact);
  skipSpace();
  if (at < text.length) fail('unexpected text after the JSON value');
  return result;
}

/**
 * Serializes like JSON.stringify(value, null, indent), but writes JsonNumbers as their
 * text and objects in their remembered key order.
 */
function stringifyJson(value, indent = 0) {
  const out = [];
  const step = ' '.repeat(indent);
  const newline = indent ? '\n' : '';
  const colon = indent ? ': ' : ':';
  const write = (v, pad) => {
    if (v instanceof JsonNumber) {
      out.push(v.text);
      return;
    }
    switch (typeof v) {
      case 'string':
        out.push(JSON.stringify(v));
        return;
      case 'number':
        out.push(Number.isFinite(v) ? String(v) : 'null');
        return;
      case 'boolean':
        out.push(v ? 'true' : 'false');
        return;
      case 'bigint':
        out.push(v.toString());
        return;
      case 'object':
        if (v !== null) break;
      // falls through
      default:
        out.push('null');
        return;
    }
    const inner = pad + step;
    if (Array.isArray(v)) {
      if (v.length === 0) {
        out.push('[]');
        return;
      }
      out.push('[');
      v.forEach((item, i) => {
        if (i > 0) out.push(',');
        out.push(newline, inner);
        write(item, inner);
      });
      out.push(newline, pad, ']');
      return;
    }
    const keys = (v[KEY_ORDER] ?? Object.keys(v))
      .filter((k) => v[k] !== undefined && typeof v[k] !== 'function');
    if (keys.length === 0) {
      out.push('{}');
      return;
    }
    out.push('{');
    keys.forEach((k, i) => {
      if (i > 0) out.push(',');
      out.push(newline, inner, JSON.stringify(k), colon);
      write(v[k], inner);
    });
    out.push(newline, pad, '}');
  };
  write(value, '');
  return out.join('');
}

function compactJson(value) {
  return stringifyJson(value);
}

function prettyJson(value) {
  return stringifyJson(value, 2);
}

/** Whether two values serialize alike (same text, key order included). */
function sameJson(a, b) {
  return stringifyJson(a) === stringifyJson(b);
}

// ===========================================================================
// 3. Helpers

const $ = (selector) => document.querySelector(selector);

/**
 * Creates an element. Children are nodes or strings (strings become text
 * nodes, so server text is never parsed as HTML); null/false children are skipped.
 * Props: `class`, `on<event>` listeners, anything else as an attribute
 * (`true` for a boolean attribute, null/false/undefined to leave it out).
 */
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') node.className = value;
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

function entryId(ns, key) {
  return `${ns}/${key}`;
}

function truncate(text, max) {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** A percent as people write it: 12.5, 5, 0.25 (never 12.500000001). */
function formatPercent(percent) {
  return String(Number(Number(percent).toFixed(2)));
}

function plural(count, one, many = `${one}s`) {
  return `${count} ${count === 1 ? one : many}`;
}

// Keys and namespaces sort as people count: key_2 before key_10.
const collator = new Intl.Collator('en', { numeric: true, sensitivity: 'variant' });

function naturalCompare(a, b) {
  return collator.compare(a, b) || (a < b ? -1 : a > b ? 1 : 0);
}

/** A token's namespace pattern as a RegExp: `*` any run of characters, `?` one. */
function globRegExp(pattern) {
  const body = [...pattern].map((c) => {
    if (c === '*') return '.*';
    if (c === '?') return '.';
    return c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  }).join('');
  return new RegExp(`^${body}$`, 's');
}

function relativeTime(iso) {
  const seconds = Math.round((Date.now() - Date.parse(iso)) / 1000);
  if (!Number.isFinite(seconds)) return String(iso);
  if (seconds < 5) return 'just now';
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

/** A <time> showing relative time; `refreshRelativeTimes` keeps it current. */
function timeEl(iso) {
  const date = new Date(iso);
  const title = Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
  return el('time', { class: 'rel', datetime: iso, title }, relativeTime(iso));
}

function refreshRelativeTimes() {
  for (const node of document.querySelectorAll('time.rel')) {
    node.textContent = relativeTime(node.getAttribute('datetime'));
  }
}

/** "4:05" or "1:02:03" for a duration in seconds. */
function formatCountdown(totalSeconds) {
  const s = Math.max(0, Math.ceil(totalSeconds));
  const hours = Math.floor(s / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  const seconds = String(s % 60).padStart(2, '0');
  return hours > 0 ? `${hours}:${String(minutes).padStart(2, '0')}:${seconds}` : `${minutes}:${seconds}`;
}

const DURATION_UNITS = { s: 1, m: 60, h: 3600, d: 86400 };

/** "90" → 90, "30s", "5m", "2h", "1d", "1h30m" → seconds; throws an InputError. */
function parseDuration(text, label) {
  const trimmed = text.trim().toLowerCase();
  if (/^[0-9]+$/.test(trimmed)) return checkHold(Number(trimmed), label, text);
  if (!/^([0-9]+(\.[0-9]+)?\s*[smhd]\s*)+$/.test(trimmed)) {
    throw new InputError(`${label} "${text.trim()}" is not a duration: use seconds (90) or 30s, 5m, 2h, 1d.`);
  }
  let seconds = 0;
  for (const [, amount, , unit] of trimmed.matchAll(/([0-9]+(\.[0-9]+)?)\s*([smhd])/g)) {
    seconds += Number(amount) * DURATION_UNITS[unit];
  }
  return checkHold(seconds, label, text);
}

function checkHold(seconds, label, text) {
  if (!Number.isInteger(seconds) || seconds < 1) {
    throw new InputError(`${label} "${text.trim()}" must come to a whole number of seconds, at least 1.`);
  }
  return seconds;
}

/** 90 → "1m 30s", 3600 → "1h", 86400 → "1d". */
function formatDuration(totalSeconds) {
  let rest = Math.round(Number(totalSeconds));
  if (!Number.isFinite(rest) || rest <= 0) return '0s';
  const parts = [];
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]]) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  return parts.join(' ');
}

function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Calls `fn` at most once per `ms`, after the calls stop. */
function debounce(fn, ms) {
  let timer = null;
  const debounced = () => {
    clearTimeout(timer);
    timer = setTimeout(fn, ms);
  };
  debounced.cancel = () => clearTimeout(timer);
  return debounced;
}

/** Disables a button while `action` runs, so a double click sends one request. */
async function whileBusy(button, action) {
  button.disabled = true;
  try {
    return await action();
  } finally {
    button.disabled = false;
  }
}

/** Keeps a range slider (snapping to its step) and a number input showing the same value. */
function linkRange(range, number, onInput = () => {}) {
  range.addEventListener('input', () => {
    number.value = range.value;
    onInput();
  });
  number.addEventListener('input', () => {
    if (number.value !== '' && Number.isFinite(Number(number.value))) range.value = number.value;
    onInput();
  });
}

// A message for the person at the form: thrown by form readers, shown as is.
class InputError extends Error {}

/** A configuration value typed by a person; every digit is kept. */
function parseJsonField(text, label) {
  if (text.trim() === '') throw new InputError(`${label} is empty: type a JSON value (text needs quotes: "text").`);
  try {
    return parseJson(text, { exact: true });
  } catch (err) {
    if (!(err instanceof JsonSyntaxError)) throw err;
    throw new InputError(`${label}: invalid JSON: ${err.message}.`);
  }
}

function readNumber(text, label, { integer = false, min = -Infinity, max = Infinity } = {}) {
  const value = Number(text);
  if (String(text).trim() === '' || !Number.isFinite(value)) throw new InputError(`${label} must be a number.`);
  if (integer && !Number.isInteger(value)) throw new InputError(`${label} must be a whole number.`);
  if (value < min || value > max) throw new InputError(`${label} must be between ${min} and ${max}.`);
  return value;
}

/** A percent from 0 to 100 with at most two decimals. */
function readPercent(text, label) {
  const value = readNumber(text, label, { min: 0, max: 100 });
  if (!/^\s*[0-9]*(\.[0-9]{0,2})?\s*$/.test(String(text))) {
    throw new InputError(`${label} takes at most two decimals (such as 12.25).`);
  }
  return value;
}

/** Subjects or values separated by commas and/or new lines. */
function splitList(text) {
  return text.split(/[,\n]/).map((s) => s.trim()).filter((s) => s !== '');
}

/** An optional comment field's text, or undefined (then nothing is sent). */
function commentOf(input) {
  const text = input.value.trim();
  return text === '' ? undefined : text.slice(0, MAX_COMMENT_CHARS);
}

// ===========================================================================
// 4. REST

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * One REST call; resolves to the parsed JSON body, rejects with an ApiError.
 * `comment` goes in the body's `comment` (with a body) or as `?comment=` (without).
 */
async function api(method, path, { body, headers = {}, comment } = {}) {
  let url = path;
  let payload = body;
  if (comment !== undefined && comment !== '') {
    if (payload === undefined) url += `${path.includes('?') ? '&' : '?'}comment=${encodeURIComponent(comment)}`;
    else payload = { ...payload, comment };
  }
  const init = { method, headers: { Accept: 'application/json', ...headers } };
  if (state.token) init.headers.Authorization = `Bearer ${state.token}`;
  if (payload !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = stringifyJson(payload);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (err) {
    throw new ApiError(0, 'network', `the server cannot be reached (${err.message})`);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? parseJson(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const detail = data && data.error;
    throw new ApiError(
      response.status,
      detail?.code ?? `http_${response.status}`,
      detail?.message ?? (text || response.statusText),
    );
  }
  return data;
}

function keyPath(ns, key, suffix = '') {
  return `/v1/configs/${encodeURIComponent(ns)}/${encodeURIComponent(key)}${suffix}`;
}

/** One line for a failed request, with a hint where the fix is obvious. */
function describeError(err) {
  if (!(err instanceof ApiError)) return String(err.message || err);
  let hint = '';
  if (err.status === 401) hint = ' (the token is missing or was refused)';
  else if (err.status === 403) hint = ' (the token lacks this right)';
  return `${err.code}: ${err.message}${hint}`;
}

// ===========================================================================
// 5. Messages (toasts in a corner, at most MAX_MESSAGES)
//
// Kinds: `info` fades after INFO_MESSAGE_MS; `error`, `alert` (something happened that
// needs eyes, such as a guard abort) and `undo` (carries an Undo) stay until dismissed.
// `topic` groups messages that a later event makes stale (the connection's errors).

function notify(text, { kind = 'info', action = null, topic = null, detail = null } = {}) {
  const region = $('#messages');
  // A repeated message (say, the watch refused on every retry) replaces its twin.
  for (const old of region.querySelectorAll('.message')) {
    if (old.dataset.text === text) old.remove();
  }
  const sticky = kind !== 'info';
  const item = el('div', {
    class: `message ${kind}`,
    role: kind === 'error' || kind === 'alert' ? 'alert' : null,
    'data-testid': 'message',
    'data-kind': kind,
    'data-sticky': String(sticky),
    'data-topic': topic,
  },
  el('div', { class: 'message-body' },
    el('span', { class: 'message-text' }, text),
    detail && el('span', { class: 'message-detail' }, detail)));
  item.dataset.text = text;
  if (action) {
    item.append(el('button', {
      type: 'button',
      class: 'message-action',
      onclick: () => {
        item.remove();
        action.run();
      },
    }, action.label));
  }
  item.append(el('button', {
    type: 'button', class: 'dismiss', 'aria-label': 'Dismiss message', onclick: () => item.remove(),
  }, '×'));
  region.append(item);
  trimMessages(region);
  if (!sticky) setTimeout(() => item.remove(), INFO_MESSAGE_MS);
  return item;
}

/** Drops the oldest messages beyond the limit: infos first, then errors, undos last. */
function trimMessages(region) {
  for (const kinds of [['info'], ['error', 'alert'], ['undo']]) {
    for (const item of [...region.children]) {
      if (region.children.length <= MAX_MESSAGES) return;
      if (kinds.includes(item.dataset.kind)) item.remove();
    }
  }
}

function showError(text, options = {}) {
  return notify(text, { ...options, kind: 'error' });
}

/** Removes the messages `predicate` picks (stale errors after a token change...). */
function clearMessages(predicate) {
  for (const item of [...$('#messages').children]) {
    if (predicate(item.dataset)) item.remove();
  }
}

/** Keeps the end of the page scrollable above the toasts. */
function watchMessageHeight() {
  const region = $('#messages');
  const update = () => {
    const height = region.children.length ? region.getBoundingClientRect().height : 0;
    document.documentElement.style.setProperty('--messages-h', `${Math.ceil(height)}px`);
  };
  new ResizeObserver(update).observe(region);
  new MutationObserver(update).observe(region, { childList: true });
}

// ===========================================================================
// 6. Identity and rights (GET /v1/whoami)
//
// The console shows only what the token may do: read and report tokens see a
// read-only console, a write token writes the namespaces its patterns match. The
// server enforces all of it anyway; hiding a button only spares a refusal.

const identity = {
  known: false,
  name: '',
  role: '',
  patterns: [],
  regexps: [],
};

function setIdentity(who) {
  const before = `${identity.known}|${identity.name}|${identity.role}|${identity.patterns.join(',')}`;
  identity.known = true;
  identity.name = String(who.name ?? '');
  identity.role = String(who.role ?? '');
  identity.patterns = Array.isArray(who.namespaces) ? who.namespaces.map(String) : [];
  identity.regexps = identity.patterns.map(globRegExp);
  const after = `${identity.known}|${identity.name}|${identity.role}|${identity.patterns.join(',')}`;
  renderIdentity();
  if (before !== after) onRightsChanged();
}

function forgetIdentity() {
  identity.known = false;
  identity.name = '';
  identity.role = '';
  identity.patterns = [];
  identity.regexps = [];
  renderIdentity();
  onRightsChanged();
}

function isAdmin() {
  return identity.known && identity.role === 'admin';
}

function canWriteSomewhere() {
  return identity.known && (identity.role === 'admin' || identity.role === 'write');
}

function canWrite(ns) {
  if (!identity.known) return false;
  if (identity.role === 'admin') return true;
  return identity.role === 'write' && identity.regexps.some((re) => re.test(ns));
}

const ROLE_TEXT = {
  admin: 'admin',
  write: 'write',
  report: 'read-only (report)',
  read: 'read-only',
};

function renderIdentity() {
  const who = $('#whoami');
  who.hidden = !identity.known;
  if (identity.known) {
    const scope = identity.role === 'admin' ? 'every namespace' : identity.patterns.join(', ') || 'no namespace';
    who.replaceChildren(
      el('span', { class: 'who-name' }, identity.name),
      el('span', { class: `role role-${identity.role}` }, ROLE_TEXT[identity.role] ?? identity.role),
    );
    who.title = `Signed in as ${identity.name}, role ${identity.role}, namespaces: ${scope}`;
    who.setAttribute('aria-label', who.title);
  }
  $('#new-key').hidden = !canWriteSomewhere();
  $('#show-clients').hidden = !isAdmin();
  document.body.dataset.access = !identity.known ? 'unknown' : canWriteSomewhere() ? identity.role : 'read';
}

/** The token's rights changed: rebuild what depends on them. */
function onRightsChanged() {
  renderNamespaces();
  if (!$('#clients-panel').hidden && !isAdmin()) closePanel($('#clients-panel'));
  if (!$('#editor').hidden && !canWriteSomewhere()) closePanel($('#editor'));
  if (!$('#gray-panel').hidden) renderGray();
  if (!$('#history').hidden) loadHistory();
}

/** Asks the server who the token is: 'ok', 'missing', 'refused' or 'down'. */
async function loadIdentity() {
  try {
    setIdentity(await api('GET', '/v1/whoami'));
    return 'ok';
  } catch (err) {
    if (err.status === 401) return state.token ? 'refused' : 'missing';
    // A server older than /v1/whoami: assume full rights; it refuses what it must.
    if (err.status === 404) {
      setIdentity({ name: 'anonymous', role: 'admin', namespaces: ['*'] });
      return 'ok';
    }
    return 'down';
  }
}

// ===========================================================================
// 7. Live state

const state = {
  entries: new Map(), // "ns/key" -> entry, as last pushed (never graycast.meta)
  byNs: new Map(), // ns -> Map key -> entry
  descriptions: new Map(), // ns -> description text
  namespaces: new Set(),
  latest: new Map(), // ns -> highest revision seen for it (convergence target)
  revision: 0,
  synced: false, // a snapshot was applied, so a reconnect can resume with `since`
  token: sessionStorage.getItem(TOKEN_KEY) ?? '',
  selectedNs: '', // last namespace picked in the sidebar; the editor's default
};

// For tests and the curious: the live state, read-only by convention.
window.graycastConsole = {
  entries: state.entries,
  get revision() {
    return state.revision;
  },
  json: { parse: parseJson, stringify: stringifyJson, JsonNumber },
};

function setRevision(revision) {
  state.revision = Math.max(state.revision, revision);
  $('#revision').textContent = String(state.revision);
}

function noteLatest(ns, revision) {
  state.latest.set(ns, Math.max(state.latest.get(ns) ?? 0, revision));
}

function sortedNamespaces() {
  return [...state.namespaces].sort(naturalCompare);
}

function putEntry(entry) {
  state.entries.set(entryId(entry.namespace, entry.key), entry);
  let keys = state.byNs.get(entry.namespace);
  if (!keys) state.byNs.set(entry.namespace, (keys = new Map()));
  keys.set(entry.key, entry);
}

function dropEntry(ns, key) {
  state.entries.delete(entryId(ns, key));
  state.byNs.get(ns)?.delete(key);
}

/** A description entry of graycast.meta (key: the namespace described). */
function applyDescription(ns, entry) {
  const text = entry?.value?.description;
  if (typeof text === 'string' && text !== '') state.descriptions.set(ns, text);
  else state.descriptions.delete(ns);
  // A described namespace exists, keys or not.
  if (NAME_RE.test(ns)) state.namespaces.add(ns);
}

function clearState() {
  // Clear in place: window.graycastConsole.entries is this very Map.
  state.entries.clear();
  state.byNs.clear();
  state.descriptions.clear();
  state.namespaces.clear();
  state.latest.clear();
  state.synced = false;
}

function applySnapshot(message) {
  const previous = new Map(state.entries);
  const wasSynced = state.synced;
  clearState();
  for (const ns of message.namespaces ?? []) {
    // Drops the "*" of a subscribe-all.
    if (NAME_RE.test(ns) && ns !== META_NAMESPACE) state.namespaces.add(ns);
  }
  for (const entry of message.entries) {
    if (entry.namespace === META_NAMESPACE) {
      applyDescription(entry.key, entry);
      continue;
    }
    putEntry(entry);
    state.namespaces.add(entry.namespace);
    noteLatest(entry.namespace, entry.revision);
  }
  state.synced = true;
  // A snapshot can replace an older state (resync after lag): it sets the revision.
  state.revision = message.revision;
  $('#revision').textContent = String(state.revision);
  renderNamespaces();
  if (wasSynced) flashDifferences(previous);
  for (const id of new Set([...previous.keys(), ...state.entries.keys()])) onKeyChanged(id, null);
  changesSnapshotted();
}

/** After a resync, highlights the rows whose entry differs from before. */
function flashDifferences(previous) {
  for (const [id, entry] of state.entries) {
    if (previous.get(id)?.revision !== entry.revision) {
      const row = tables.rows.get(id);
      if (row) flash(row);
    }
  }
}

function applyChange(message) {
  // A change at or below the current revision was already applied (defensive: the
  // server promises none, but applying one twice would undo a newer value).
  if (message.revision <= state.revision) return;
  const { namespace: ns, key } = message;
  setRevision(message.revision);
  changeArrived(message);
  if (ns === META_NAMESPACE) {
    const isNew = !state.namespaces.has(key);
    applyDescription(key, message.entry);
    if (isNew) renderNamespaces();
    else renderSectionHead(key);
    renderSidebar();
    return;
  }
  const id = entryId(ns, key);
  const before = state.entries.get(id) ?? null;
  if (message.entry) putEntry(message.entry);
  else dropEntry(ns, key);
  const isNewNs = !state.namespaces.has(ns);
  state.namespaces.add(ns);
  noteLatest(ns, message.revision);
  if (isNewNs) renderNamespaces();
  else fillSection(ns);
  const row = tables.rows.get(id);
  if (row) flash(row);
  onKeyChanged(id, message, before);
  scheduleClientsRefresh();
}

/** Tells the open panels that an entry changed (or vanished). */
function onKeyChanged(id, message, before) {
  editorKeyChanged(id);
  historyKeyChanged(id);
  grayKeyChanged(id, message, before);
}

// ===========================================================================
// 8. WebSocket watch, and telling the user why it does not run

const CLIENT_ID = `web-console-${randomId()}`;

const watch = {
  socket: null,
  generation: 0, // handlers of superseded sockets compare and ignore themselves
  delay: BACKOFF_MIN_MS,
  timer: null,
  retrying: false,
  blocked: null, // 'missing' | 'refused' | 'forbidden' while the token keeps us out
};

const CONN_TEXT = {
  connecting: 'Connecting…',
  live: 'Live',
  reconnecting: 'Reconnecting…',
  missing: 'Token needed',
  refused: 'Token refused',
  forbidden: 'No access',
};

function setConnState(connState) {
  const status = $('#conn-status');
  const blocked = ['missing', 'refused', 'forbidden'].includes(connState);
  status.dataset.state = blocked ? 'auth' : connState;
  status.dataset.reason = blocked ? connState : '';
  status.textContent = CONN_TEXT[connState];
}

function closeSocket() {
  if (watch.socket) {
    watch.socket.close(1000, 'replaced');
    watch.socket = null;
  }
}

/** Learns who the token is, then opens the watch; retries while the server is away. */
async function connect() {
  clearTimeout(watch.timer);
  const generation = ++watch.generation;
  closeSocket();
  setConnState(watch.retrying ? 'reconnecting' : 'connecting');
  const access = await loadIdentity();
  if (generation !== watch.generation) return;
  if (access === 'missing' || access === 'refused') {
    blockAccess(access);
    return;
  }
  if (access === 'down') {
    scheduleReconnect();
    return;
  }
  openSocket(generation);
}

function openSocket(generation) {
  const url = new URL('/v1/watch', window.location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  if (state.token) url.searchParams.set('token', state.token);
  const socket = new WebSocket(url);
  watch.socket = socket;
  const current = () => generation === watch.generation && !watch.blocked;

  socket.addEventListener('open', () => {
    if (current()) socket.send(JSON.stringify(subscribeMessage()));
  });
  socket.addEventListener('message', (event) => {
    if (current()) onWatchMessage(event.data);
  });
  socket.addEventListener('close', () => {
    if (current()) scheduleReconnect();
  });
}

function subscribeMessage() {
  const message = {
    type: 'subscribe',
    // Every namespace this token may read, present and future.
    namespaces: ['*'],
    client: { id: CLIENT_ID, labels: { kind: 'console' } },
  };
  // Resume where we are; without a snapshot yet there is nothing to resume.
  if (state.synced) message.since = state.revision;
  return message;
}

function scheduleReconnect() {
  watch.retrying = true;
  setConnState('reconnecting');
  clearTimeout(watch.timer);
  watch.timer = setTimeout(connect, watch.delay);
  watch.delay = Math.min(watch.delay * 2, BACKOFF_MAX_MS);
}

function onWatchMessage(text) {
  let message;
  try {
    message = parseJson(text);
  } catch {
    showError('The server pushed a message that is not JSON; it was ignored.', { topic: 'connection' });
    return;
  }
  switch (message.type) {
    case 'snapshot':
      applySnapshot(message);
      break;
    case 'change':
      applyChange(message);
      break;
    case 'progress':
      setRevision(message.revision);
      break;
    case 'error':
      if (message.code === 'unauthorized') blockAccess(state.token ? 'refused' : 'missing', message.message);
      else if (message.code === 'forbidden') blockAccess('forbidden', message.message);
      // Anything else: the server closes after this and the close handler retries.
      else showError(`Live updates interrupted: ${message.code}: ${message.message}`, { topic: 'connection' });
      return;
    default:
      return;
  }
  if (watch.retrying || $('#conn-status').dataset.state !== 'live') {
    clearMessages((d) => d.topic === 'connection');
  }
  watch.retrying = false;
  watch.delay = BACKOFF_MIN_MS;
  setConnState('live');
}

const ACCESS_TEXT = {
  missing: 'This server needs an access token. Enter yours in the Token field at the top.',
  refused: 'The token was refused: the server does not know it. Check it and enter it again.',
  forbidden: 'The token lacks the rights to watch this server.',
};

/**
 * Stops retrying and says why: no token, a refused token, or one without rights.
 * What an earlier token showed is cleared; a new token (the Token field) starts over.
 */
function blockAccess(kind, detail = '') {
  watch.blocked = kind;
  clearTimeout(watch.timer);
  closeSocket();
  setConnState(kind);
  clearState();
  if (kind !== 'forbidden') forgetIdentity();
  else renderNamespaces();
  $('#revision').textContent = '–';
  $('#access-text').textContent = ACCESS_TEXT[kind];
  $('#access-detail').textContent = detail ? `The server said: ${detail}` : '';
  $('#access-banner').dataset.reason = kind;
  $('#access-banner').hidden = false;
  $('#empty-state').hidden = true;
  showError(ACCESS_TEXT[kind], { topic: 'access' });
}

function clearAccessProblem() {
  watch.blocked = null;
  $('#access-banner').hidden = true;
  clearMessages((d) => d.topic === 'access');
}

// ===========================================================================
// 9. Namespace tables: sections per namespace, natural order, pages of PAGE_SIZE,
//    search across namespaces, collapsing, descriptions; and the sidebar.

const tables = {
  rows: new Map(), // "ns/key" -> <tr> on screen
  sections: new Map(), // ns -> { section, tbody, pager, head parts }
  shown: new Map(), // ns -> how many keys its table shows (pages)
  collapsed: new Set(JSON.parse(sessionStorage.getItem(COLLAPSED_KEY) ?? '[]')),
  query: '',
  describing: null, // ns whose description form is open
};
const searchText = new WeakMap(); // entry -> lower-case text searched

function entryMatches(entry, query) {
  if (!query) return true;
  let text = searchText.get(entry);
  if (text === undefined) {
    text = `${entry.key}\n${entry.namespace}/${entry.key}\n${compactJson(entry.value)}`.toLowerCase();
    searchText.set(entry, text);
  }
  return text.includes(query);
}

/** A namespace's entries in natural key order. */
function entriesOf(ns) {
  return [...(state.byNs.get(ns)?.values() ?? [])].sort((a, b) => naturalCompare(a.key, b.key));
}

function nsVisibleByFilter(ns) {
  const filter = $('#ns-filter').value.trim().toLowerCase();
  return ns.toLowerCase().includes(filter);
}

/** Rebuilds every section and the sidebar from the state. */
function renderNamespaces() {
  tables.rows.clear();
  tables.sections.clear();
  const names = sortedNamespaces();
  $('#ns-sections').replaceChildren(...names.map((ns) => buildSection(ns)));
  for (const ns of names) fillSection(ns);
  renderSidebar();
  updateSearchSummary();
  $('#empty-state').hidden = names.length > 0 || Boolean(watch.blocked) || !state.synced;
  if (!$('#changes-panel').hidden) renderChangesScope();
}

function buildSection(ns) {
  const bodyId = `ns-body-${ns}`;
  const titleId = `ns-title-${ns}`;
  const collapsed = tables.collapsed.has(ns);
  const toggle = el('button', {
    type: 'button', class: 'ns-toggle', 'data-ns-action': 'toggle',
    'aria-expanded': String(!collapsed), 'aria-controls': bodyId,
  }, el('span', { class: 'chevron', 'aria-hidden': 'true' }), el('span', { class: 'ns-name' }, ns));
  const count = el('span', { class: 'ns-count' });
  const actions = el('div', { class: 'ns-actions' },
    el('button', { type: 'button', 'data-ns-action': 'changes', 'aria-label': `Recent changes in ${ns}` }, 'Changes'),
    canWrite(ns) && el('button', { type: 'button', 'data-ns-action': 'describe', 'aria-label': `Describe ${ns}` }, 'Describe'));
  const description = el('p', { class: 'ns-desc' });
  const describeSlot = el('div', { class: 'ns-describe-slot' });
  const tbody = el('tbody');
  const pager = el('div', { class: 'pager' });
  const body = el('div', { class: 'ns-body', id: bodyId, hidden: collapsed },
    el('div', { class: 'table-wrap' },
      el('table', { class: 'entries' },
        el('thead', {},
          el('tr', {},
            el('th', { scope: 'col', class: 'key' }, 'Key'),
            el('th', { scope: 'col', class: 'value' }, 'Value'),
            el('th', { scope: 'col', class: 'rev' }, 'Rev'),
            el('th', { scope: 'col', class: 'who' }, 'By'),
            el('th', { scope: 'col', class: 'when' }, 'Updated'))),
        tbody)),
    pager);
  const section = el('section', {
    class: 'ns-section', id: `ns-${ns}`, 'data-testid': 'ns-table', 'data-ns': ns, 'aria-labelledby': titleId,
  },
  el('header', { class: 'ns-head' },
    el('h2', { id: titleId, class: 'ns-title' }, toggle),
    count,
    actions),
  description,
  describeSlot,
  body);
  tables.sections.set(ns, { section, tbody, pager, count, description, describeSlot, body, toggle });
  renderSectionHead(ns);
  if (tables.describing === ns) openDescribe(ns, false);
  return section;
}

/** The description line and count of a section. */
function renderSectionHead(ns) {
  const parts = tables.sections.get(ns);
  if (!parts) return;
  const text = state.descriptions.get(ns) ?? '';
  parts.description.textContent = text;
  parts.description.hidden = text === '';
  const describe = parts.section.querySelector('[data-ns-action="describe"]');
  if (describe) describe.textContent = text ? 'Edit description' : 'Describe';
}

/**
 * Brings one section's rows up to date: the matching keys in natural order, the
 * first pages of them. Rows whose entry did not change are kept (and their focus
 * and open folds with them); changed ones are rebuilt.
 */
function fillSection(ns) {
  const parts = tables.sections.get(ns);
  if (!parts) return;
  const all = entriesOf(ns);
  const matching = tables.query ? all.filter((entry) => entryMatches(entry, tables.query)) : all;
  const limit = tables.shown.get(ns) ?? PAGE_SIZE;
  const shown = matching.slice(0, limit);
  const keep = new Set();
  const rows = shown.map((entry) => {
    const id = entryId(ns, entry.key);
    keep.add(id);
    const old = tables.rows.get(id);
    if (old && old.dataset.rev === String(entry.revision)) return old;
    const row = buildRow(entry);
    if (old) {
      // Keep keyboard focus on the same button when its row is rebuilt under it.
      const focused = old.contains(document.activeElement) ? document.activeElement.dataset.action : null;
      old.replaceWith(row);
      if (focused) row.querySelector(`[data-action="${focused}"]`)?.focus();
    }
    tables.rows.set(id, row);
    return row;
  });
  for (const [id, row] of tables.rows) {
    if (row.dataset.ns === ns && !keep.has(id)) {
      row.remove();
      tables.rows.delete(id);
    }
  }
  const { tbody } = parts;
  tbody.querySelector('tr.empty')?.remove();
  rows.forEach((row, i) => {
    if (tbody.children[i] !== row) tbody.insertBefore(row, tbody.children[i] ?? null);
  });
  while (tbody.children.length > rows.length) tbody.lastElementChild.remove();
  if (rows.length === 0) {
    const text = all.length === 0 ? 'No keys.' : 'No key matches the search.';
    tbody.append(el('tr', { class: 'empty' }, el('td', { colspan: 5 }, text)));
  }
  renderPager(ns, parts, all.length, matching.length, shown.length);
  parts.section.hidden = !nsVisibleByFilter(ns) || (tables.query !== '' && matching.length === 0);
  parts.count.textContent = tables.query
    ? `${matching.length} of ${plural(all.length, 'key')}`
    : plural(all.length, 'key');
  updateSidebarCount(ns, tables.query ? matching.length : all.length);
}

function renderPager(ns, parts, total, matching, shown) {
  const what = tables.query ? 'matching keys' : 'keys';
  const items = [];
  if (matching > PAGE_SIZE) items.push(el('span', { class: 'pager-text' }, `Showing ${shown} of ${matching} ${what}`));
  if (shown < matching) {
    const more = Math.min(PAGE_SIZE, matching - shown);
    items.push(el('button', { type: 'button', 'data-ns-action': 'more', 'aria-label': `Show ${more} more keys of ${ns}` }, `Show ${more} more`));
    items.push(el('button', { type: 'button', 'data-ns-action': 'all', 'aria-label': `Show all keys of ${ns}` }, 'Show all'));
  } else if (shown > PAGE_SIZE) {
    items.push(el('button', { type: 'button', 'data-ns-action': 'fewer', 'aria-label': `Show fewer keys of ${ns}` }, 'Show fewer'));
  }
  parts.pager.replaceChildren(...items);
  parts.pager.hidden = items.length === 0;
}

function buildRow(entry) {
  const { namespace: ns, key } = entry;
  const label = `${ns}/${key}`;
  const writable = canWrite(ns);
  const actions = el('div', { class: 'row-actions' },
    writable && el('button', { type: 'button', 'data-action': 'edit', 'aria-label': `Edit ${label}` }, 'Edit'),
    el('button', { type: 'button', 'data-action': 'history', 'aria-label': `History of ${label}` }, 'History'),
    (writable || entry.gray) && el('button', {
      type: 'button', 'data-action': 'gray', 'aria-label': `Gray release of ${label}`,
    }, 'Gray'),
    writable && el('button', { type: 'button', 'data-action': 'delete', class: 'danger', 'aria-label': `Delete ${label}` }, 'Delete'));
  return el('tr', { 'data-ns': ns, 'data-key': key, 'data-rev': entry.revision },
    el('th', { scope: 'row', class: 'key' },
      el('span', { class: 'key-line' },
        el('span', { class: 'key-name' }, key),
        entry.gray && grayBadge(entry.gray)),
      actions),
    el('td', { class: 'value', 'data-label': 'Value' }, renderValue(entry.value)),
    el('td', { class: 'rev', 'data-label': 'Revision' }, String(entry.revision)),
    el('td', { class: 'who', 'data-label': 'By' }, entry.updated_by),
    el('td', { class: 'when', 'data-label': 'Updated' }, timeEl(entry.updated_at)));
}

function grayBadge(gray) {
  const text = `gray ${formatPercent(gray.percent)}%${gray.paused ? ' paused' : ''}`;
  return el('span', { class: 'badge gray', title: `gray value ${truncate(compactJson(gray.value), 80)}` }, text);
}

/** Short values inline; longer ones pretty-printed, the longest folded. */
function renderValue(value) {
  const compact = compactJson(value);
  if (compact.length <= INLINE_VALUE_CHARS) return el('code', { class: 'json' }, compact);
  const pretty = prettyJson(value);
  if (pretty.split('\n').length <= UNFOLDED_VALUE_LINES) return el('pre', { class: 'json' }, pretty);
  return el('details', { class: 'fold' },
    el('summary', { title: 'Show the whole value' }, truncate(compact, 160)),
    el('pre', { class: 'json' }, pretty));
}

function flash(row) {
  row.classList.add('flash');
  setTimeout(() => row.classList.remove('flash'), FLASH_MS);
}

/** Rebuilds the namespace list. */
function renderSidebar() {
  const names = sortedNamespaces();
  $('#ns-list').replaceChildren(...names.map((ns) => el('li', { 'data-ns': ns },
    el('a', {
      href: `#ns-${ns}`,
      class: ns === state.selectedNs ? 'ns-link active' : 'ns-link',
      'data-testid': 'ns-link',
      'data-ns': ns,
      title: state.descriptions.get(ns) ?? null,
      'aria-current': ns === state.selectedNs ? 'location' : null,
    }, ns))));
  for (const ns of names) {
    const all = state.byNs.get(ns)?.size ?? 0;
    const matching = tables.query ? entriesOf(ns).filter((e) => entryMatches(e, tables.query)).length : all;
    updateSidebarCount(ns, matching);
  }
  const writable = names.filter((ns) => canWrite(ns));
  $('#ns-options').replaceChildren(...writable.map((ns) => el('option', { value: ns })));
}

/** Shows a namespace's key count (drawn from data-count by CSS, so the link's text stays the name). */
function updateSidebarCount(ns, count) {
  const item = $('#ns-list').querySelector(`li[data-ns="${CSS.escape(ns)}"]`);
  const link = item?.querySelector('.ns-link');
  if (!link) return;
  link.dataset.count = String(count);
  link.setAttribute('aria-label', `${ns}, ${plural(count, tables.query ? 'matching key' : 'key')}`);
  item.hidden = !nsVisibleByFilter(ns) || (tables.query !== '' && count === 0);
}

/** The sidebar filter narrows the namespace list and the tables. */
function applyNsFilter() {
  for (const ns of state.namespaces) fillSection(ns);
}

function onSearchInput() {
  tables.query = $('#key-search').value.trim().toLowerCase();
  for (const ns of sortedNamespaces()) fillSection(ns);
  updateSearchSummary();
}

function updateSearchSummary() {
  const summary = $('#search-summary');
  if (!tables.query) {
    summary.textContent = '';
    return;
  }
  let keys = 0;
  let namespaces = 0;
  for (const ns of state.namespaces) {
    const n = entriesOf(ns).filter((entry) => entryMatches(entry, tables.query)).length;
    keys += n;
    if (n) namespaces += 1;
  }
  summary.textContent = keys
    ? `${plural(keys, 'key')} in ${plural(namespaces, 'namespace')} match`
    : 'No key or value matches';
}

function setCollapsed(ns, collapsed) {
  const parts = tables.sections.get(ns);
  if (collapsed) tables.collapsed.add(ns);
  else tables.collapsed.delete(ns);
  sessionStorage.setItem(COLLAPSED_KEY, JSON.stringify([...tables.collapsed]));
  if (!parts) return;
  parts.body.hidden = collapsed;
  parts.toggle.setAttribute('aria-expanded', String(!collapsed));
}

function selectNamespace(ns) {
  state.selectedNs = ns;
  setCollapsed(ns, false);
  for (const link of document.querySelectorAll('#ns-list .ns-link')) {
    const active = link.dataset.ns === ns;
    link.classList.toggle('active', active);
    if (active) link.setAttribute('aria-current', 'location');
    else link.removeAttribute('aria-current');
  }
}

/** One listener for every row and section button (rows are rebuilt on each change). */
function onTableClick(event) {
  const nsButton = event.target.closest('button[data-ns-action]');
  if (nsButton) {
    onSectionAction(nsButton);
    return;
  }
  const button = event.target.closest('button[data-action]');
  const row = button?.closest('tr[data-key]');
  if (!row) return;
  const { ns, key } = row.dataset;
  const entry = state.entries.get(entryId(ns, key));
  if (!entry) return;
  switch (button.dataset.action) {
    case 'edit':
      openEditor(entry, button);
      break;
    case 'history':
      openHistory(ns, key, button);
      break;
    case 'gray':
      openGray(ns, key, button);
      break;
    case 'delete':
      confirmDelete(entry, button);
      break;
    default:
      break;
  }
}

function onSectionAction(button) {
  const ns = button.closest('.ns-section')?.dataset.ns;
  if (!ns) return;
  const shown = tables.shown.get(ns) ?? PAGE_SIZE;
  switch (button.dataset.nsAction) {
    case 'toggle':
      setCollapsed(ns, !tables.collapsed.has(ns));
      break;
    case 'more':
      tables.shown.set(ns, shown + PAGE_SIZE);
      fillSection(ns);
      break;
    case 'all':
      tables.shown.set(ns, Infinity);
      fillSection(ns);
      break;
    case 'fewer':
      tables.shown.delete(ns);
      fillSection(ns);
      tables.sections.get(ns)?.section.scrollIntoView({ block: 'nearest' });
      break;
    case 'changes':
      openChanges(ns, button);
      break;
    case 'describe':
      openDescribe(ns, true);
      break;
    default:
      break;
  }
}

/** The inline form that describes a namespace (PUT /v1/namespaces/{ns}). */
function openDescribe(ns, focus) {
  const parts = tables.sections.get(ns);
  if (!parts || !canWrite(ns)) return;
  tables.describing = ns;
  const text = el('textarea', {
    id: `describe-text-${ns}`, rows: 2, maxlength: MAX_DESCRIPTION_CHARS, class: 'describe-text',
    placeholder: 'e.g. Timeouts and limits of the payment service',
  });
  text.value = state.descriptions.get(ns) ?? '';
  const comment = el('input', { id: `describe-comment-${ns}`, type: 'text', maxlength: MAX_COMMENT_CHARS, autocomplete: 'off' });
  const error = el('p', { class: 'error', 'aria-live': 'assertive' });
  const save = el('button', { type: 'submit', class: 'primary' }, 'Save description');
  const close = () => {
    tables.describing = null;
    parts.describeSlot.replaceChildren();
  };
  const form = el('form', {
    class: 'describe-form stack',
    'data-testid': 'describe-form',
    novalidate: true,
    onsubmit: async (event) => {
      event.preventDefault();
      error.textContent = '';
      await whileBusy(save, async () => {
        try {
          const answer = await api('PUT', `/v1/namespaces/${encodeURIComponent(ns)}`, {
            body: { description: text.value.trim() }, comment: commentOf(comment),
          });
          close();
          notify(answer.description
            ? `Described ${ns} (revision ${answer.revision}).`
            : `Removed the description of ${ns}.`);
          parts.section.querySelector('[data-ns-action="describe"]')?.focus();
        } catch (err) {
          error.textContent = `Not saved: ${describeError(err)}`;
        }
      });
    },
  },
  el('div', { class: 'field' }, el('label', { for: text.id }, `Description of ${ns}`), text,
    el('p', { class: 'hint' }, 'What the namespace is for; empty removes the description.')),
  el('div', { class: 'field' }, el('label', { for: comment.id }, 'Comment (optional)'), comment),
  error,
  el('div', { class: 'buttons' },
    el('button', { type: 'button', onclick: () => { close(); parts.section.querySelector('[data-ns-action="describe"]')?.focus(); } }, 'Cancel'),
    save));
  parts.describeSlot.replaceChildren(form);
  if (focus) text.focus();
}

// ===========================================================================
// 10. Confirmation dialog
//
// Promote, abort and delete ask for the key's name; rollback shows the diff it will
// apply. The action runs while the dialog is open, so its failure is shown there;
// on success the dialog closes and a message says what happened.

const confirmView = { run: null, want: '', opener: null, okLabel: '' };

/**
 * Opens the dialog. `run(comment)` performs the action and resolves to the message
 * to show; it throws to keep the dialog open with the error.
 */
function confirmAction({ title, text, extra = null, typeName = '', okLabel, danger = false, run, opener }) {
  const dialog = $('#confirm');
  confirmView.run = run;
  confirmView.want = typeName;
  confirmView.opener = opener ?? document.activeElement;
  confirmView.okLabel = okLabel;
  $('#confirm-title').textContent = title;
  $('#confirm-text').textContent = text;
  $('#confirm-extra').replaceChildren(...(extra ? [extra] : []));
  $('#confirm-name-field').hidden = !typeName;
  $('#confirm-name-want').textContent = typeName;
  $('#confirm-name').value = '';
  $('#confirm-comment').value = '';
  $('#confirm-error').textContent = '';
  const ok = $('#confirm-ok');
  ok.textContent = okLabel;
  ok.className = danger ? 'danger-solid' : 'primary';
  ok.disabled = false;
  dialog.dataset.action = okLabel.toLowerCase();
  dialog.showModal();
  (typeName ? $('#confirm-name') : ok).focus();
}

async function submitConfirm(event) {
  event.preventDefault();
  const error = $('#confirm-error');
  error.textContent = '';
  if (confirmView.want && $('#confirm-name').value.trim() !== confirmView.want) {
    error.textContent = `The name does not match: type ${confirmView.want} exactly, or Cancel.`;
    $('#confirm-name').focus();
    return;
  }
  const run = confirmView.run;
  if (!run) return;
  await whileBusy($('#confirm-ok'), async () => {
    try {
      const message = await run(commentOf($('#confirm-comment')));
      closeConfirm();
      if (message) notify(message.text ?? message, message.options ?? {});
    } catch (err) {
      error.textContent = `${confirmView.okLabel} failed: ${describeError(err)}`;
    }
  });
}

function closeConfirm() {
  const dialog = $('#confirm');
  confirmView.run = null;
  if (dialog.open) dialog.close();
  const opener = confirmView.opener;
  if (opener?.isConnected) opener.focus();
}

/** Delete, guarded by If-Match; the message offers an Undo until dismissed. */
function confirmDelete(entry, opener) {
  const { namespace: ns, key, revision } = entry;
  const label = entryId(ns, key);
  confirmAction({
    title: `Delete ${label}?`,
    text: `The key and its value (revision ${revision}) go away for every client. Undo stays offered in the message until you dismiss it.`,
    extra: el('pre', { class: 'confirm-value' }, truncate(prettyJson(entry.value), 2000)),
    typeName: key,
    okLabel: 'Delete',
    danger: true,
    opener,
    run: async (comment) => {
      grayView.own.set(label, 'delete');
      try {
        const result = await api('DELETE', keyPath(ns, key), { headers: { 'If-Match': `"${revision}"` }, comment });
        noteOwnRevision(result.revision);
        return {
          text: `Deleted ${label} at revision ${result.revision}.`,
          options: { kind: 'undo', action: { label: 'Undo', run: () => undoDelete(ns, key, revision) } },
        };
      } catch (err) {
        if (err.status === 412) {
          const now = state.entries.get(label);
          const where = now ? ` It is now at revision ${now.revision} by ${now.updated_by}.` : '';
          throw new ApiError(412, 'revision_mismatch', `${label} changed after revision ${revision}; nothing was deleted.${where}`);
        }
        throw err;
      } finally {
        grayView.own.delete(label);
      }
    },
  });
}

async function undoDelete(ns, key, revision) {
  const label = entryId(ns, key);
  try {
    const entry = await api('POST', keyPath(ns, key, '/rollback'), {
      body: { to_revision: revision }, comment: `undo the delete of ${label}`,
    });
    notify(`Restored ${label} at revision ${entry.revision} (the value of revision ${revision}).`);
  } catch (err) {
    showError(`Undo of the delete of ${label} failed: ${describeError(err)}`);
  }
}

// ===========================================================================
// 11. Panels: beside the tables on wide screens, above them on narrow ones;
//     closed by × or Escape.

const openPanels = []; // open panels, most recently opened last
const panelOpeners = new WeakMap(); // panel -> the control that opened it
const panelCloseHooks = new Map(); // panel id -> cleanup when it closes

function openPanel(panel, opener, focusTarget) {
  const index = openPanels.indexOf(panel);
  if (index >= 0) openPanels.splice(index, 1);
  openPanels.push(panel);
  if (opener) panelOpeners.set(panel, opener);
  panel.hidden = false;
  syncPanelLayout();
  // On narrow screens the panel sits above the tables; bring it into view, from its title
  // when it is taller than the window.
  panel.scrollIntoView({ block: panel.offsetHeight > window.innerHeight ? 'start' : 'nearest' });
  (focusTarget ?? panel.querySelector('h2')).focus({ preventScroll: true });
}

function closePanel(panel) {
  if (panel.hidden) return;
  panel.hidden = true;
  openPanels.splice(openPanels.indexOf(panel), 1);
  panelCloseHooks.get(panel.id)?.();
  syncPanelLayout();
  restoreFocus(panelOpeners.get(panel));
}

/**
 * Returns focus to the control that opened a panel. Rows are rebuilt on every
 * change, so a row button may have been replaced by its twin in the new row.
 */
function restoreFocus(opener) {
  if (!opener) return;
  if (opener.isConnected) {
    opener.focus();
    return;
  }
  const oldRow = opener.closest('tr[data-key]');
  const row = oldRow && tables.rows.get(entryId(oldRow.dataset.ns, oldRow.dataset.key));
  row?.querySelector(`[data-action="${opener.dataset.action}"]`)?.focus();
}

function syncPanelLayout() {
  $('#layout').classList.toggle('with-panels', openPanels.length > 0);
  $('#show-clients').setAttribute('aria-expanded', String(!$('#clients-panel').hidden));
  $('#show-changes').setAttribute('aria-expanded', String(!$('#changes-panel').hidden));
}

/** Escape closes the panel holding the focus, else the one opened last. */
function onKeyDown(event) {
  if (event.key !== 'Escape' || event.defaultPrevented || $('#confirm').open) return;
  const panel = document.activeElement?.closest('.panel:not([hidden])') ?? openPanels.at(-1);
  if (!panel) return;
  event.preventDefault();
  closePanel(panel);
}

// ===========================================================================
// 12. Editor

const editor = {
  mode: 'create', // 'create' sends If-None-Match: *, 'edit' sends If-Match
  baseRevision: null, // the entry's revision when the editor opened
  conflict: null, // the server's entry after a 412, offered by "Reload current value"
};

function openEditor(entry, opener) {
  const panel = $('#editor');
  setEditorError('');
  $('#editor-notice').textContent = '';
  $('#editor-comment').value = '';
  if (entry) {
    loadIntoEditor(entry);
  } else {
    editor.mode = 'create';
    editor.baseRevision = null;
    $('#editor-ns').value = canWrite(state.selectedNs) ? state.selectedNs : '';
    $('#editor-key').value = '';
    $('#editor-value').value = '';
    setEditorNamesLocked(false);
    $('#editor-title').textContent = 'New key';
  }
  const focusTarget = entry ? $('#editor-value') : $('#editor-ns').value ? $('#editor-key') : $('#editor-ns');
  openPanel(panel, opener, focusTarget);
}

function loadIntoEditor(entry) {
  editor.mode = 'edit';
  editor.baseRevision = entry.revision;
  editor.conflict = null;
  $('#editor-ns').value = entry.namespace;
  $('#editor-key').value = entry.key;
  $('#editor-value').value = prettyJson(entry.value);
  setEditorNamesLocked(true);
  $('#editor-title').textContent = `Edit ${entryId(entry.namespace, entry.key)} (revision ${entry.revision})`;
}

function setEditorNamesLocked(locked) {
  $('#editor-ns').readOnly = locked;
  $('#editor-key').readOnly = locked;
}

function setEditorError(text) {
  $('#editor-error').textContent = text;
  if (!text) {
    editor.conflict = null;
    $('#editor-reload').hidden = true;
  }
}

/** Reads the form; throws an InputError naming what is wrong. */
function readEditor() {
  const ns = $('#editor-ns').value.trim();
  const key = $('#editor-key').value.trim();
  for (const [label, name] of [['Namespace', ns], ['Key', key]]) {
    if (!NAME_RE.test(name)) {
      throw new InputError(`${label} "${name}" is not a valid name: 1 to 128 letters, digits, ".", "_" or "-", starting with a letter or digit.`);
    }
  }
  if (ns === META_NAMESPACE) {
    throw new InputError(`Namespace "${META_NAMESPACE}" is reserved for namespace descriptions: use Describe on a namespace instead.`);
  }
  if (!canWrite(ns)) {
    throw new InputError(`Your token (${identity.name}, ${identity.role} on ${identity.patterns.join(', ') || 'nothing'}) may not write namespace "${ns}".`);
  }
  const value = parseJsonField($('#editor-value').value, 'Value');
  return { ns, key, value };
}

async function saveEditor(event) {
  event.preventDefault();
  setEditorError('');
  let input;
  try {
    input = readEditor();
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    setEditorError(err.message);
    return;
  }
  const { ns, key, value } = input;
  const headers = editor.mode === 'edit'
    ? { 'If-Match': `"${editor.baseRevision}"` }
    : { 'If-None-Match': '*' };
  await whileBusy($('#editor-save'), async () => {
    try {
      const entry = await api('PUT', keyPath(ns, key), { body: { value }, headers, comment: commentOf($('#editor-comment')) });
      state.selectedNs = ns;
      closePanel($('#editor'));
      notify(`Saved ${entryId(ns, key)} at revision ${entry.revision}.`);
    } catch (err) {
      if (err.status === 412) await showConflict(ns, key);
      else setEditorError(`Not saved: ${describeError(err)}`);
    }
  });
}

/** Explains a 412 with the server's current state; the text in the editor is kept. */
async function showConflict(ns, key) {
  const label = entryId(ns, key);
  let current;
  try {
    current = await api('GET', keyPath(ns, key));
  } catch (err) {
    current = err.status === 404 ? null : state.entries.get(label) ?? null;
  }
  if (!current) {
    // Edited key deleted meanwhile: saving again would create it anew, which is
    // what a second click on Save now does, knowingly.
    editor.mode = 'create';
    editor.baseRevision = null;
    $('#editor-title').textContent = `Re-create ${label}`;
    $('#editor-error').textContent = `Edit conflict: ${label} was deleted since you opened it; nothing was saved. Save again to create it anew.`;
    return;
  }
  const verb = editor.mode === 'edit' ? 'Edit conflict: someone changed' : 'Create conflict: someone already created';
  $('#editor-error').textContent = `${verb} ${label}; it is now at revision ${current.revision} by ${current.updated_by} (${relativeTime(current.updated_at)}). Nothing was saved; your text is kept.`;
  editor.conflict = current;
  $('#editor-reload').hidden = false;
}

function reloadEditorFromConflict() {
  const current = editor.conflict;
  if (!current) return;
  loadIntoEditor(current);
  setEditorError('');
  $('#editor-notice').textContent = '';
  $('#editor-value').focus();
}

/** Warns, before Save, that the key being edited changed underneath. */
function editorKeyChanged(id) {
  if ($('#editor').hidden || editor.mode !== 'edit') return;
  if (entryId($('#editor-ns').value, $('#editor-key').value) !== id) return;
  const entry = state.entries.get(id);
  const notice = $('#editor-notice');
  if (!entry) notice.textContent = 'This key was deleted since you opened it.';
  else if (entry.revision !== editor.baseRevision) {
    notice.textContent = `Changed since you opened it: now revision ${entry.revision} by ${entry.updated_by}. Saving will report a conflict.`;
  } else notice.textContent = '';
}

// ===========================================================================
// 13. History

const historyView = { ns: '', key: '', sequence: 0, items: [] };
const reloadHistorySoon = debounce(() => loadHistory(), HISTORY_DEBOUNCE_MS);

function openHistory(ns, key, opener) {
  historyView.ns = ns;
  historyView.key = key;
  $('#history-title').textContent = `History of ${entryId(ns, key)}`;
  $('#history-error').textContent = '';
  $('#history-list').replaceChildren(el('li', { class: 'muted' }, 'Loading…'));
  openPanel($('#history'), opener);
  loadHistory();
}

async function loadHistory() {
  const sequence = ++historyView.sequence; // a slower older answer must not win
  const { ns, key } = historyView;
  try {
    const data = await api('GET', keyPath(ns, key, `/history?limit=${HISTORY_LIMIT}`));
    if (sequence !== historyView.sequence) return;
    $('#history-error').textContent = '';
    historyView.items = data.items;
    renderHistory(data.items);
  } catch (err) {
    if (sequence !== historyView.sequence) return;
    $('#history-list').replaceChildren();
    $('#history-error').textContent = `History unavailable: ${describeError(err)}`;
  }
}

function renderHistory(items) {
  const current = state.entries.get(entryId(historyView.ns, historyView.key));
  const currentLines = current ? prettyJson(current.value).split('\n') : [];
  const list = $('#history-list');
  if (items.length === 0) {
    list.replaceChildren(el('li', { class: 'muted' }, 'No history.'));
    return;
  }
  list.replaceChildren(...items.map((item) => buildHistoryItem(item, current, currentLines)));
}

/**
 * What a rollback to `item` would do, or null when it would change nothing: a delete
 * left no value, and an item whose value is the current one is already there.
 */
function rollbackOffer(item, current) {
  if (item.op === 'delete') return null;
  if (current && sameJson(item.value, current.value)) return null;
  return {
    // Rolling back restores the value only: a release that ran then is not restarted.
    label: item.gray ? `Restore stable value of r${item.revision}` : `Roll back to r${item.revision}`,
    note: item.gray ? 'Restores the stable value of that revision only; its gray release is not restarted.' : null,
  };
}

function buildHistoryItem(item, current, currentLines) {
  const isDelete = item.op === 'delete';
  // A delete left no value: compare "nothing" with the current value.
  const itemLines = isDelete ? [] : prettyJson(item.value).split('\n');
  const offer = canWrite(historyView.ns) ? rollbackOffer(item, current) : null;
  return el('li', { 'data-rev': item.revision, class: `history-item op-${item.op}` },
    el('p', { class: 'history-head' },
      el('strong', {}, `r${item.revision}`), ' ',
      el('span', { class: `op-badge op-${item.op}` }, item.op), ' by ',
      el('span', { class: 'who' }, item.updated_by), ' ',
      timeEl(item.updated_at),
      current?.revision === item.revision && el('span', { class: 'badge' }, 'current')),
    item.comment && el('p', { class: 'comment' }, el('span', { class: 'comment-label' }, 'Comment: '), item.comment),
    item.note && el('p', { class: 'note' }, describeNote(item.note, item.updated_by)),
    item.gray && el('p', { class: 'gray-line' },
      `gray ${formatPercent(item.gray.percent)}%${item.gray.paused ? ' (paused)' : ''}: `,
      el('code', {}, truncate(compactJson(item.gray.value), 120))),
    renderDiff(currentLines, itemLines, Boolean(current), isDelete),
    offer && el('div', { class: 'rollback-line' },
      el('button', {
        type: 'button',
        'data-action': 'rollback',
        'data-rev': item.revision,
        'aria-label': offer.label.replace(/r(\d+)$/, 'revision $1'),
      }, `${offer.label}…`),
      offer.note && el('span', { class: 'hint' }, offer.note)));
}

function renderDiff(currentLines, itemLines, hasCurrent, isDelete) {
  const label = 'Diff against the current value';
  if (!hasCurrent && isDelete) {
    return el('pre', { class: 'diff', 'aria-label': label }, el('span', { class: 'line same' }, '  (deleted, and the key does not exist now)\n'));
  }
  const ops = diffLines(currentLines, itemLines);
  if (ops.every((op) => op.kind === 'same')) {
    return el('pre', { class: 'diff', 'aria-label': label }, el('span', { class: 'line same' }, '  (same as the current value)\n'));
  }
  const prefix = { same: '  ', add: '+ ', del: '- ' };
  const lines = foldUnchanged(ops).map((op) => (op.kind === 'fold'
    ? el('span', { class: 'line fold' }, `  … ${op.count} unchanged lines\n`)
    : el('span', { class: `line ${op.kind}` }, `${prefix[op.kind]}${op.text}\n`)));
  return el('pre', { class: 'diff', 'aria-label': label }, lines);
}

/**
 * A line diff from `before` to `after`: [{kind: 'same'|'del'|'add', text}].
 * Common head and tail are matched first (cheap, and usually all there is);
 * the changed middle gets a longest-common-subsequence diff.
 */
function diffLines(before, after) {
  let start = 0;
  while (start < before.length && start < after.length && before[start] === after[start]) start += 1;
  let endBefore = before.length;
  let endAfter = after.length;
  while (endBefore > start && endAfter > start && before[endBefore - 1] === after[endAfter - 1]) {
    endBefore -= 1;
    endAfter -= 1;
  }
  const same = (text) => ({ kind: 'same', text });
  const a = before.slice(start, endBefore);
  const b = after.slice(start, endAfter);
  const middle = a.length * b.length <= LCS_MAX_CELLS
    ? lcsDiff(a, b)
    : [...a.map((text) => ({ kind: 'del', text })), ...b.map((text) => ({ kind: 'add', text }))];
  return [...before.slice(0, start).map(same), ...middle, ...before.slice(endBefore).map(same)];
}

function lcsDiff(a, b) {
  const n = a.length;
  const m = b.length;
  // lengths[i][j]: length of the longest common subsequence of a[i..] and b[j..].
  const lengths = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i -= 1) {
    for (let j = m - 1; j >= 0; j -= 1) {
      lengths[i][j] = a[i] === b[j]
        ? lengths[i + 1][j + 1] + 1
        : Math.max(lengths[i + 1][j], lengths[i][j + 1]);
    }
  }
  const ops = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) {
      ops.push({ kind: 'same', text: a[i] });
      i += 1;
      j += 1;
    } else if (lengths[i + 1][j] >= lengths[i][j + 1]) {
      ops.push({ kind: 'del', text: a[i] });
      i += 1;
    } else {
      ops.push({ kind: 'add', text: b[j] });
      j += 1;
    }
  }
  for (; i < n; i += 1) ops.push({ kind: 'del', text: a[i] });
  for (; j < m; j += 1) ops.push({ kind: 'add', text: b[j] });
  return ops;
}

/** Keeps DIFF_CONTEXT unchanged lines around each change; longer runs become one fold. */
function foldUnchanged(ops) {
  const result = [];
  let index = 0;
  while (index < ops.length) {
    if (ops[index].kind !== 'same') {
      result.push(ops[index]);
      index += 1;
      continue;
    }
    let end = index;
    while (end < ops.length && ops[end].kind === 'same') end += 1;
    const keepHead = index === 0 ? 0 : DIFF_CONTEXT; // context after a change
    const keepTail = end === ops.length ? 0 : DIFF_CONTEXT; // context before a change
    const run = end - index;
    if (run > keepHead + keepTail + 1) {
      result.push(...ops.slice(index, index + keepHead));
      result.push({ kind: 'fold', count: run - keepHead - keepTail });
      result.push(...ops.slice(end - keepTail, end));
    } else {
      result.push(...ops.slice(index, end));
    }
    index = end;
  }
  return result;
}

function onHistoryClick(event) {
  const button = event.target.closest('button[data-action="rollback"]');
  if (!button) return;
  const toRevision = Number(button.dataset.rev);
  const item = historyView.items.find((i) => i.revision === toRevision);
  if (item) confirmRollback(historyView.ns, historyView.key, item, button);
}

/** Rollback, after showing the diff it applies (current value → the item's value). */
function confirmRollback(ns, key, item, opener) {
  const label = entryId(ns, key);
  const current = state.entries.get(label);
  const currentLines = current ? prettyJson(current.value).split('\n') : [];
  const diff = renderDiff(currentLines, prettyJson(item.value).split('\n'), Boolean(current), false);
  diff.setAttribute('aria-label', 'The change the rollback applies');
  const restoresStable = Boolean(item.gray);
  confirmAction({
    title: restoresStable ? `Restore the stable value of r${item.revision}?` : `Roll ${label} back to r${item.revision}?`,
    text: `${current ? 'The value changes as shown (− now, + after)' : 'The key is re-created with this value'}; every client gets it at once.${restoresStable ? ' Only the stable value is restored: the gray release of that revision is not restarted.' : ''}${current?.gray ? ' The running gray release is left as it is.' : ''}`,
    extra: diff,
    okLabel: 'Roll back',
    opener,
    run: async (comment) => {
      const entry = await api('POST', keyPath(ns, key, '/rollback'), { body: { to_revision: item.revision }, comment });
      return `Rolled ${label} back to the value of revision ${item.revision} (now revision ${entry.revision}).`;
    },
  });
}

/** A change of the shown key adds a revision and moves "current": reload. */
function historyKeyChanged(id) {
  if (!$('#history').hidden && id === entryId(historyView.ns, historyView.key)) reloadHistorySoon();
}

/**
 * A server note for people: the guard's "gray error rate 0.5000 over 20 outcomes
 * exceeds 0.1; ..." becomes "gray error rate 50% over 20 outcomes exceeds 10%".
 */
function describeNote(note, actor) {
  const text = String(note);
  const guard = /gray error rate ([0-9.eE+-]+) over ([0-9]+) outcomes exceeds ([0-9.eE+-]+)/.exec(text);
  if (guard) {
    const rate = `${formatPercent(Number(guard[1]) * 100)}%`;
    const limit = `${formatPercent(Number(guard[3]) * 100)}%`;
    return `The guard aborted the release: gray error rate ${rate} over ${guard[2]} outcomes exceeds ${limit}.`;
  }
  if (actor === GUARD_ACTOR) return `The guard: ${text}`;
  return text;
}

// ===========================================================================
// 14. Gray release panel

const grayView = {
  ns: '',
  key: '',
  running: false, // whether the shown key had a release at the last render
  countsSequence: 0,
  countsTimer: null,
  tickTimer: null,
  // Own actions in flight ("ns/key" -> op), so their pushed change is not announced
  // as someone else's (it may arrive before the REST answer, or after it).
  own: new Map(),
  ownRevisions: new Set(),
};

/** Remembers a revision this console wrote (its pushed change is no news to us). */
function noteOwnRevision(revision) {
  grayView.ownRevisions.add(revision);
  if (grayView.ownRevisions.size > 100) grayView.ownRevisions.delete(grayView.ownRevisions.values().next().value);
}

function grayEntry() {
  return state.entries.get(entryId(grayView.ns, grayView.key));
}

function openGray(ns, key, opener) {
  const switching = entryId(ns, key) !== entryId(grayView.ns, grayView.key) || $('#gray-panel').hidden;
  grayView.ns = ns;
  grayView.key = key;
  $('#gray-title').textContent = `Gray release of ${entryId(ns, key)}`;
  $('#gray-salt-default').textContent = entryId(ns, key);
  if (switching) {
    resetGrayForm();
    hideGrayEnded();
    $('#gray-action-error').textContent = '';
    $('#gray-action-comment').value = '';
    $('#gray-counts').replaceChildren();
  }
  renderGray();
  openPanel($('#gray-panel'), opener);
  clearInterval(grayView.countsTimer);
  clearInterval(grayView.tickTimer);
  grayView.countsTimer = setInterval(refreshCounts, COUNTS_POLL_MS);
  grayView.tickTimer = setInterval(updateCountdown, 1000);
  refreshCounts();
}

function closeGrayHook() {
  clearInterval(grayView.countsTimer);
  clearInterval(grayView.tickTimer);
  grayView.countsSequence += 1; // drop answers still in flight
}

/** Shows the start form or the running release, and recomputes the simulator. */
function renderGray() {
  const entry = grayEntry();
  const running = Boolean(entry?.gray);
  const writable = canWrite(grayView.ns);
  const focusWasIn = ['#gray-form', '#gray-running'].find((id) => $(id).contains(document.activeElement));
  $('#gray-missing').hidden = Boolean(entry);
  $('#gray-readonly').hidden = writable || !entry;
  $('#gray-none').hidden = writable || !entry || running;
  $('#gray-form').hidden = !entry || running || !writable;
  $('#gray-running').hidden = !running;
  $('#gray-controls').hidden = !writable;
  // Focus inside a part that just disappeared would fall to <body>: move it to the part shown now.
  if (focusWasIn && $(focusWasIn).hidden) {
    const target = running ? '#gray-running-title' : entry && writable ? '#gray-form-title' : '#gray-title';
    $(target).focus();
  }
  // A release just ended (promoted, aborted, guard): start the form afresh.
  if (grayView.running && !running) resetGrayForm();
  grayView.running = running;
  if (running) renderGrayStatus(entry.gray);
  simulate();
}

function resetGrayForm() {
  const entry = grayEntry();
  $('#gray-form').reset();
  // A copy of the current value to edit; submitting it unchanged is refused.
  $('#gray-value').value = entry ? prettyJson(entry.value) : '';
  $('#gray-percent').value = '0';
  $('#gray-percent-number').value = '0';
  $('#gray-rules').replaceChildren();
  $('#gray-steps').replaceChildren();
  $('#gray-ramp').value = '';
  $('#gray-ramp-error').textContent = '';
  $('#gray-error').textContent = '';
}

/** "Step 2 of 3 (25%)", the ramp's steps, and whether a person moved the percent off it. */
function rampFacts(gray) {
  const steps = gray.steps ?? [];
  if (steps.length === 0) return { text: 'no ramp (percent set by hand)', list: null };
  const current = steps[gray.step];
  const byHand = current && Number(current.percent) !== Number(gray.percent);
  const list = el('ol', { class: 'ramp-list' }, steps.map((s, i) => el('li', {
    class: i === gray.step ? 'current' : i < gray.step ? 'done' : null,
    'aria-current': i === gray.step ? 'step' : null,
  }, `Step ${i + 1}: ${formatPercent(s.percent)}%${s.hold_secs ? ` for ${formatDuration(s.hold_secs)}` : ''}`)));
  let text = `step ${gray.step + 1} of ${steps.length} (${formatPercent(current?.percent ?? 0)}%)`;
  if (byHand) text += `; percent set by hand to ${formatPercent(gray.percent)}%`;
  return { text, list, byHand };
}

function renderGrayStatus(gray) {
  const ramp = rampFacts(gray);
  const rules = (gray.rules ?? []).map((r) => `${r.attribute} ${r.op} ${r.values.join(', ')}`);
  const guard = gray.guard
    ? `abort above ${formatPercent(gray.guard.max_error_rate * 100)}% errors after ${gray.guard.min_samples} gray samples`
    : 'none';
  const row = (label, ...value) => [el('dt', {}, label), el('dd', {}, ...value)];
  $('#gray-status').replaceChildren(
    el('p', { class: 'gray-headline' },
      el('strong', {}, `${formatPercent(gray.percent)}%`), ' of subjects get the gray value · ',
      el('span', { class: gray.paused ? 'state paused' : 'state running' }, gray.paused ? 'paused' : 'running')),
    el('dl', { class: 'facts' },
      row('Gray value', el('code', {}, truncate(compactJson(gray.value), 200))),
      row('Ramp', el('span', { id: 'gray-ramp-state' }, ramp.text), ramp.list),
      row('Next step', el('span', { id: 'gray-next', 'data-at': gray.next_step_at ?? '' }, countdownText(gray))),
      row('Promote at end', gray.auto_promote ? 'yes' : 'no'),
      row('Allow', gray.allow?.length ? gray.allow.join(', ') : 'nobody'),
      row('Deny', gray.deny?.length ? gray.deny.join(', ') : 'nobody'),
      row('Rules', rules.length ? rules.join('; ') : 'none'),
      row('Guard', guard),
      row('Salt', el('code', {}, gray.salt)),
      row('Started', timeEl(gray.started_at))));
  $('#gray-pause').hidden = gray.paused;
  $('#gray-resume').hidden = !gray.paused;
  // Follow the live percent unless someone is typing a new one.
  const setter = $('#gray-set-percent');
  if (document.activeElement !== setter && document.activeElement !== $('#gray-set-range')) {
    setter.value = String(gray.percent);
    $('#gray-set-range').value = String(gray.percent);
  }
}

function countdownText(gray) {
  if (gray.paused) return 'paused';
  if (!gray.next_step_at) return 'none scheduled';
  const steps = gray.steps ?? [];
  const next = steps[gray.step + 1];
  const what = next ? `step ${gray.step + 2} (${formatPercent(Math.max(next.percent, gray.percent))}%)` : 'the end of the ramp';
  const seconds = (Date.parse(gray.next_step_at) - Date.now()) / 1000;
  return seconds > 0 ? `${what} in ${formatCountdown(seconds)}` : `${what}, due now`;
}

function updateCountdown() {
  const gray = grayEntry()?.gray;
  const node = document.getElementById('gray-next');
  if (gray && node) node.textContent = countdownText(gray);
}

async function refreshCounts() {
  const sequence = ++grayView.countsSequence;
  const target = $('#gray-counts');
  // Counts exist only while a release runs; asking otherwise is a sure 404.
  if (!grayEntry()?.gray) {
    target.replaceChildren();
    return;
  }
  try {
    const status = await api('GET', keyPath(grayView.ns, grayView.key, '/gray'));
    if (sequence !== grayView.countsSequence) return;
    target.replaceChildren(renderCounts(status.counts, status.gray?.guard));
  } catch (err) {
    if (sequence !== grayView.countsSequence) return;
    // A 404 means the release ended meanwhile; its change is on its way.
    if (err.status === 404) target.replaceChildren();
    else target.replaceChildren(el('p', { class: 'error' }, `Counts unavailable: ${describeError(err)}`));
  }
}

function renderCounts(counts, guard) {
  const line = (variant) => {
    const { ok = 0, errors = 0 } = counts?.[variant] ?? {};
    const total = Number(ok) + Number(errors);
    const rate = total === 0 ? '–' : `${formatPercent((errors / total) * 100)}%`;
    return el('tr', {},
      el('th', { scope: 'row' }, variant),
      el('td', {}, String(ok)), el('td', {}, String(errors)), el('td', {}, rate));
  };
  return el('table', { class: 'counts' },
    el('caption', {}, guard ? `Guard outcomes (min ${guard.min_samples} gray samples)` : 'Reported outcomes'),
    el('thead', {}, el('tr', {},
      el('th', { scope: 'col' }, 'Variant'), el('th', { scope: 'col' }, 'OK'),
      el('th', { scope: 'col' }, 'Errors'), el('th', { scope: 'col' }, 'Error rate'))),
    el('tbody', {}, line('stable'), line('gray')));
}

function readRules() {
  const rules = [];
  [...$('#gray-rules').children].forEach((row, index) => {
    const attribute = row.querySelector('.rule-attr').value.trim();
    const values = splitList(row.querySelector('.rule-values').value);
    if (attribute === '' && values.length === 0) return; // an untouched row
    if (attribute === '') throw new InputError(`Rule ${index + 1} needs an attribute.`);
    if (values.length === 0) throw new InputError(`Rule ${index + 1} needs at least one value.`);
    rules.push({ attribute, op: row.querySelector('.rule-op').value, values });
  });
  return rules;
}

/** Steps from the rows; numbered from 1, as the server's messages number them. */
function readSteps() {
  const steps = [];
  [...$('#gray-steps').children].forEach((row, index) => {
    const percentText = row.querySelector('.step-percent').value;
    const holdText = row.querySelector('.step-hold').value;
    if (percentText.trim() === '' && holdText.trim() === '') return; // an untouched row
    const step = { percent: readPercent(percentText, `Step ${index + 1} percent`) };
    if (holdText.trim() !== '') step.hold_secs = parseDuration(holdText, `Step ${index + 1} hold`);
    steps.push(step);
  });
  return steps;
}

/** "5:10m, 25:1h, 100" → [{percent, hold}] texts, without judging them. */
function splitRamp(text) {
  return text.split(/[,;\n]|→/).map((s) => s.trim()).filter((s) => s !== '').map((part, index) => {
    const m = /^([0-9.]+)\s*%?\s*(?::\s*(.+))?$/.exec(part);
    if (!m) throw new InputError(`Step ${index + 1} "${part}" is not percent:hold (such as 25:1h).`);
    readPercent(m[1], `Step ${index + 1} percent`);
    if (m[2] !== undefined) parseDuration(m[2], `Step ${index + 1} hold`);
    return { percent: m[1], hold: m[2]?.trim() ?? '' };
  });
}

/** The ramp text was edited: rebuild the step rows from it (rows then write it back). */
function onRampTextInput() {
  const error = $('#gray-ramp-error');
  let steps;
  try {
    steps = splitRamp($('#gray-ramp').value);
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    error.textContent = err.message;
    return;
  }
  error.textContent = '';
  $('#gray-steps').replaceChildren();
  for (const step of steps) addStepRow({ focus: false, percent: step.percent, hold: step.hold });
  simulate();
}

/** The rows were edited: write them as ramp text (unless it is being typed in). */
function syncRampText() {
  if (document.activeElement === $('#gray-ramp')) return;
  const parts = [...$('#gray-steps').children].map((row) => {
    const percent = row.querySelector('.step-percent').value.trim();
    const hold = row.querySelector('.step-hold').value.trim();
    if (percent === '' && hold === '') return null;
    return hold ? `${percent}:${hold}` : percent;
  }).filter(Boolean);
  $('#gray-ramp').value = parts.join(', ');
  $('#gray-ramp-error').textContent = '';
}

function renumberSteps() {
  [...$('#gray-steps').children].forEach((row, index) => {
    row.querySelector('.step-number').textContent = `Step ${index + 1}`;
    row.querySelector('.step-percent').setAttribute('aria-label', `Step ${index + 1} percent`);
    row.querySelector('.step-hold').setAttribute('aria-label', `Step ${index + 1} hold`);
    row.querySelector('.remove').setAttribute('aria-label', `Remove step ${index + 1}`);
  });
}

function readGuard() {
  const rate = $('#gray-guard-rate').value;
  const min = $('#gray-guard-min').value;
  if (rate.trim() === '' && min.trim() === '') return null;
  return {
    max_error_rate: readNumber(rate, 'Guard max error rate', { min: 0, max: 1 }),
    min_samples: readNumber(min, 'Guard min samples', { integer: true, min: 1 }),
  };
}

/** The percent the form would start at: the typed one, or with ramp steps and 0 typed, step 1's. */
function formPercent(steps) {
  const typed = readPercent($('#gray-percent-number').value, 'Percent');
  return steps.length > 0 && typed === 0 ? steps[0].percent : typed;
}

/**
 * Builds the PUT .../gray body. The form refuses what is surely a mistake (an
 * unchanged value, a release nobody gets); the server judges the rest and its
 * message is shown as is.
 */
function readGrayForm() {
  const entry = grayEntry();
  const value = parseJsonField($('#gray-value').value, 'Gray value');
  if (entry && sameJson(value, entry.value)) {
    throw new InputError('The gray value is the current value: change it to the value you want to release.');
  }
  const steps = readSteps();
  const body = {
    value,
    allow: splitList($('#gray-allow').value),
    deny: splitList($('#gray-deny').value),
    rules: readRules(),
    steps,
    auto_promote: $('#gray-auto-promote').checked,
    paused: $('#gray-start-paused').checked,
  };
  const percent = formPercent(steps);
  // With ramp steps and no percent typed, the release starts at step 1 (the server's default).
  if (steps.length === 0 || Number($('#gray-percent-number').value) !== 0) body.percent = percent;
  if (percent === 0 && body.allow.length === 0 && steps.length === 0) {
    throw new InputError('Nobody would get the gray value: set a percent above 0, allow some subjects, or add ramp steps.');
  }
  const salt = $('#gray-salt').value.trim();
  if (salt) body.salt = salt;
  const guard = readGuard();
  if (guard) body.guard = guard;
  return body;
}

async function startGray(event) {
  event.preventDefault();
  const error = $('#gray-error');
  error.textContent = '';
  let body;
  try {
    body = readGrayForm();
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    error.textContent = err.message;
    return;
  }
  const { ns, key } = grayView;
  hideGrayEnded();
  await whileBusy($('#gray-start'), async () => {
    try {
      const entry = await api('PUT', keyPath(ns, key, '/gray'), { body, comment: commentOf($('#gray-comment')) });
      notify(`Started the gray release of ${entryId(ns, key)} at ${formatPercent(entry.gray.percent)}% (revision ${entry.revision}).`);
    } catch (err) {
      error.textContent = `Not started: ${describeError(err)}`;
    }
  });
}

/**
 * Runs one action on the running release; `done(entry)` words the message. The
 * changed entry arrives over the watch.
 */
async function grayAction(button, what, method, suffix, { body, comment, op, done } = {}) {
  const { ns, key } = grayView;
  const id = entryId(ns, key);
  const error = $('#gray-action-error');
  error.textContent = '';
  await whileBusy(button, async () => {
    if (op) grayView.own.set(id, op);
    try {
      const entry = await api(method, keyPath(ns, key, suffix), { body, comment });
      $('#gray-action-comment').value = '';
      notify(done(entry));
    } catch (err) {
      error.textContent = `${what} failed: ${describeError(err)}`;
    } finally {
      if (op) grayView.own.delete(id);
    }
  });
}

function setGrayPercent() {
  const error = $('#gray-action-error');
  let percent;
  try {
    percent = readPercent($('#gray-set-percent').value, 'Percent');
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    error.textContent = err.message;
    return;
  }
  const label = entryId(grayView.ns, grayView.key);
  grayAction($('#gray-set'), `Setting the percent to ${formatPercent(percent)}%`, 'PATCH', '/gray', {
    body: { percent },
    comment: commentOf($('#gray-action-comment')),
    done: (entry) => `Set the gray percent of ${label} to ${formatPercent(percent)}% at revision ${entry.revision}.`,
  });
}

function pauseGray(paused, button) {
  const label = entryId(grayView.ns, grayView.key);
  grayAction(button, paused ? 'Pause' : 'Resume', 'PATCH', '/gray', {
    body: { paused },
    comment: commentOf($('#gray-action-comment')),
    done: (entry) => `${paused ? 'Paused' : 'Resumed'} the gray release of ${label} at revision ${entry.revision}.`,
  });
}

/** Promote or abort, confirmed by typing the key's name. */
function confirmGrayEnd(kind, opener) {
  const { ns, key } = grayView;
  const id = entryId(ns, key);
  const entry = grayEntry();
  if (!entry?.gray) return;
  const promote = kind === 'promote';
  const gray = compactJson(entry.gray.value);
  const stable = compactJson(entry.value);
  confirmAction({
    title: promote ? `Promote the gray value of ${id}?` : `Abort the gray release of ${id}?`,
    text: promote
      ? `Every subject gets the gray value ${truncate(gray, 120)} (now at ${formatPercent(entry.gray.percent)}%); the stable value ${truncate(stable, 80)} is replaced and the release ends.`
      : `Every subject goes back to the stable value ${truncate(stable, 120)}; the gray value ${truncate(gray, 80)} (now at ${formatPercent(entry.gray.percent)}%) is dropped and the release ends.`,
    typeName: key,
    okLabel: promote ? 'Promote' : 'Abort',
    danger: !promote,
    opener,
    run: async (comment) => {
      grayView.own.set(id, kind);
      try {
        const answer = promote
          ? await api('POST', keyPath(ns, key, '/gray/promote'), { comment })
          : await api('DELETE', keyPath(ns, key, '/gray'), { comment });
        noteOwnRevision(answer.revision);
        hideGrayEnded();
        return promote
          ? `Promoted ${id} at revision ${answer.revision}.`
          : `Aborted the gray release of ${id} at revision ${answer.revision}; the stable value stays.`;
      } finally {
        grayView.own.delete(id);
      }
    },
  });
}

/**
 * A pushed change ended a release: unless this console did it, say who and why (the
 * guard's note in people's words). In the panel when it shows the key, else as a message.
 */
function announceReleaseEnd(message, before) {
  const id = entryId(message.namespace, message.key);
  const ended = before?.gray && (message.op === 'abort' || message.op === 'promote' || !message.entry);
  if (!ended || grayView.own.get(id) === message.op || grayView.ownRevisions.has(message.revision)) return;
  const by = message.entry?.updated_by ?? 'someone';
  const guard = by === GUARD_ACTOR || /^guard:/.test(message.note ?? '');
  let text;
  if (!message.entry) text = `${id} was deleted (revision ${message.revision}), and its gray release with it.`;
  else if (guard) text = message.note ? describeNote(message.note, GUARD_ACTOR) : 'The guard aborted the release.';
  else if (message.op === 'abort') text = `${by} aborted the release at revision ${message.revision}.`;
  else if (message.note) text = `The release was promoted at revision ${message.revision}: ${message.note}.`;
  else text = `${by} promoted the release at revision ${message.revision}.`;
  const detail = [
    message.comment ? `Comment: ${message.comment}` : '',
    guard && message.note ? `Server note: ${message.note}` : '',
    message.op === 'abort' ? 'The stable value stays; the start form below can begin a new release.' : '',
  ].filter(Boolean);
  const panelShows = !$('#gray-panel').hidden && id === entryId(grayView.ns, grayView.key);
  if (panelShows) {
    $('#gray-ended-text').textContent = text;
    $('#gray-ended-detail').replaceChildren(...detail.map((line) => el('span', {}, line)));
    $('#gray-ended').dataset.kind = guard ? 'guard' : message.op;
    $('#gray-ended').hidden = false;
  } else if (guard) {
    notify(`${id}: ${text}`, { kind: 'alert', detail: detail[0]?.startsWith('Comment') ? detail[0] : null });
  }
}

function hideGrayEnded() {
  $('#gray-ended').hidden = true;
}

function addRuleRow() {
  const attr = el('input', { class: 'rule-attr', type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'e.g. region' });
  const op = el('select', { class: 'rule-op' }, RULE_OPS.map((name) => el('option', { value: name }, name)));
  const values = el('input', { class: 'rule-values', type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'e.g. eu-west, eu-north' });
  const row = el('div', { class: 'row rule-row' },
    el('label', {}, el('span', {}, 'Attribute'), attr),
    el('label', {}, el('span', {}, 'Op'), op),
    el('label', { class: 'grow' }, el('span', {}, 'Values'), values));
  row.append(removeRowButton(row, 'Remove rule', $('#gray-add-rule')));
  $('#gray-rules').append(row);
  attr.focus();
}

function addStepRow({ focus = true, percent = '', hold = '' } = {}) {
  const percentInput = el('input', {
    class: 'step-percent', type: 'number', min: 0, max: 100, step: 0.01, inputmode: 'decimal',
  });
  const holdInput = el('input', {
    class: 'step-hold', type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'e.g. 10m',
  });
  percentInput.value = percent;
  holdInput.value = hold;
  const row = el('div', { class: 'row step-row' },
    el('span', { class: 'step-number' }),
    el('label', {}, el('span', {}, 'Percent'), percentInput),
    el('label', {}, el('span', {}, 'Hold (30s, 5m, 2h, 1d)'), holdInput));
  row.append(removeRowButton(row, 'Remove step', $('#gray-add-step'), () => {
    renumberSteps();
    syncRampText();
  }));
  $('#gray-steps').append(row);
  renumberSteps();
  if (focus) {
    syncRampText();
    percentInput.focus();
  }
}

function removeRowButton(row, label, focusAfter, after = () => {}) {
  return el('button', {
    type: 'button',
    class: 'remove',
    'aria-label': label,
    onclick: () => {
      row.remove();
      after();
      simulate();
      focusAfter.focus();
    },
  }, '×');
}

function grayKeyChanged(id, message, before) {
  if (message) announceReleaseEnd(message, before);
  if ($('#gray-panel').hidden || id !== entryId(grayView.ns, grayView.key)) return;
  // A new release replaces the news of the last one's end.
  if (message?.entry?.gray && !before?.gray) hideGrayEnded();
  renderGray();
  refreshCounts();
}

// ===========================================================================
// 15. Subject simulator (local evaluation with rollout.js, as clients do it)
//
// It evaluates the running release, or, before one starts, the draft in the form
// (its percent, allow, deny, rules and salt, unsaved). With a release running and a
// new percent typed but not set, it also shows what that percent would decide.

/** `name=value` lines into an object; returns the line numbers it could not read. */
function parseAttrs(text) {
  const attrs = {};
  const bad = [];
  text.split('\n').forEach((line, index) => {
    if (line.trim() === '') return;
    const eq = line.indexOf('=');
    const name = eq > 0 ? line.slice(0, eq).trim() : '';
    if (name === '') {
      bad.push(index + 1);
      return;
    }
    attrs[name] = line.slice(eq + 1).trim();
  });
  return { attrs, bad };
}

/** The release the start form describes, or {error} when the form cannot be read yet. */
function draftGray() {
  try {
    const steps = readSteps();
    let value;
    let valueError = null;
    try {
      value = parseJsonField($('#gray-value').value, 'Gray value');
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      valueError = 'the gray value is not valid JSON yet';
    }
    return {
      gray: {
        value,
        percent: formPercent(steps),
        salt: $('#gray-salt').value.trim() || entryId(grayView.ns, grayView.key),
        allow: splitList($('#gray-allow').value),
        deny: splitList($('#gray-deny').value),
        rules: readRules(),
      },
      valueError,
    };
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    return { error: err.message };
  }
}

function showDecision(prefix, decision) {
  $(`#${prefix}-variant`).textContent = decision.variant;
  $(`#${prefix}-reason`).textContent = decision.reason;
}

function simulate() {
  const entry = grayEntry();
  const subjectText = $('#sim-subject').value;
  const subject = subjectText === '' ? null : subjectText;
  const { attrs, bad } = parseAttrs($('#sim-attrs').value);
  const notes = [];
  let gray = entry?.gray ?? null;
  let source = 'Evaluates the running release, as clients do.';
  let grayValueText = gray ? compactJson(gray.value) : '-';
  const formShown = !$('#gray-form').hidden;
  if (!gray && formShown) {
    const draft = draftGray();
    if (draft.error) {
      source = 'Evaluates the draft in the form above once it can be read.';
      notes.push(`Draft: ${draft.error}`);
    } else {
      gray = draft.gray;
      source = `Evaluates the draft above (not started): ${formatPercent(gray.percent)}%, salt ${gray.salt}.`;
      grayValueText = draft.valueError ? `(${draft.valueError})` : compactJson(draft.gray.value);
    }
  } else if (!gray) {
    source = 'No release runs: everyone gets the stable value.';
  }
  $('#sim-source').textContent = source;
  const decision = evaluate(gray, subject, attrs);
  showDecision('sim', decision);
  $('#sim-bucket').textContent = decision.bucket === null || decision.bucket === undefined ? '-' : String(decision.bucket);
  let value = '-';
  if (entry) value = decision.variant === 'gray' ? grayValueText : compactJson(entry.value);
  $('#sim-value').textContent = value;

  // A running release and a new percent typed but not set yet: preview it too.
  const draftBox = $('#sim-draft');
  draftBox.hidden = true;
  if (entry?.gray && !$('#gray-controls').hidden) {
    const typed = $('#gray-set-percent').value;
    const percent = Number(typed);
    if (typed !== '' && Number.isFinite(percent) && percent >= 0 && percent <= 100 && percent !== Number(entry.gray.percent)) {
      const preview = evaluate({ ...entry.gray, percent }, subject, attrs);
      $('#sim-draft-title').textContent = `At ${formatPercent(percent)}% (typed, not set yet):`;
      showDecision('sim-draft', preview);
      draftBox.hidden = false;
    }
  }
  if (!entry) notes.push('The key does not exist.');
  if (decision.reason === 'random') notes.push('Without a subject the variant is drawn at random on each evaluation.');
  if (bad.length) notes.push(`Ignored line ${bad.join(', ')}: expected name=value.`);
  $('#sim-note').textContent = notes.join(' ');
}

// ===========================================================================
// 16. Recent changes (GET /v1/changes, newest first, kept live by pushed changes)

const changesView = { ns: '', sequence: 0, items: [] };

function openChanges(ns, opener) {
  changesView.ns = ns ?? '';
  renderChangesScope();
  openPanel($('#changes-panel'), opener);
  loadChanges();
}

function renderChangesScope() {
  const select = $('#changes-ns');
  const names = sortedNamespaces();
  if (changesView.ns && !names.includes(changesView.ns)) names.push(changesView.ns);
  select.replaceChildren(el('option', { value: '' }, 'All namespaces'),
    ...names.map((ns) => el('option', { value: ns }, ns)));
  select.value = changesView.ns;
  $('#changes-title').textContent = changesView.ns ? `Recent changes in ${changesView.ns}` : 'Recent changes';
}

async function loadChanges() {
  const sequence = ++changesView.sequence;
  const query = new URLSearchParams({ limit: String(CHANGES_LIMIT) });
  if (changesView.ns) query.set('namespace', changesView.ns);
  $('#changes-list').replaceChildren(el('li', { class: 'muted' }, 'Loading…'));
  try {
    const data = await api('GET', `/v1/changes?${query}`);
    if (sequence !== changesView.sequence) return;
    $('#changes-error').textContent = '';
    // The feed is in revision order; people read the newest first.
    changesView.items = [...data.items].reverse();
    renderChanges();
  } catch (err) {
    if (sequence !== changesView.sequence) return;
    $('#changes-list').replaceChildren();
    $('#changes-error').textContent = `Changes unavailable: ${describeError(err)}`;
  }
}

function renderChanges() {
  const list = $('#changes-list');
  if (changesView.items.length === 0) {
    list.replaceChildren(el('li', { class: 'muted' }, 'No changes yet.'));
    return;
  }
  list.replaceChildren(...changesView.items.map(buildChangeItem));
}

function buildChangeItem(item) {
  const meta = item.namespace === META_NAMESPACE;
  const what = meta
    ? el('span', { class: 'change-what' }, item.op === 'delete' ? `description of ${item.key} removed` : `description of ${item.key} set`)
    : el('button', {
      type: 'button', class: 'link change-key', 'data-ns': item.namespace, 'data-key': item.key,
      'aria-label': `History of ${entryId(item.namespace, item.key)}`,
    }, entryId(item.namespace, item.key));
  return el('li', { class: `change-item op-${item.op}`, 'data-rev': item.revision, 'data-testid': 'change-item' },
    el('p', { class: 'history-head' },
      el('strong', {}, `r${item.revision}`), ' ',
      el('span', { class: `op-badge op-${meta ? 'describe' : item.op}` }, meta ? 'describe' : item.op), ' ',
      what, ' by ',
      el('span', { class: 'who' }, item.updated_by ?? 'someone'), ' ',
      item.updated_at ? timeEl(item.updated_at) : null),
    item.comment && el('p', { class: 'comment' }, el('span', { class: 'comment-label' }, 'Comment: '), item.comment),
    item.note && el('p', { class: 'note' }, describeNote(item.note, item.updated_by)));
}

/** A pushed change joins the open feed at the top. */
function changeArrived(message) {
  if ($('#changes-panel').hidden) return;
  if (changesView.ns && message.namespace !== changesView.ns) return;
  if (changesView.items.some((item) => item.revision === message.revision)) return;
  const item = {
    revision: message.revision,
    op: message.op,
    namespace: message.namespace,
    key: message.key,
    updated_by: message.entry?.updated_by ?? null,
    updated_at: message.entry?.updated_at ?? null,
    comment: message.comment ?? null,
    note: message.note ?? null,
  };
  changesView.items.unshift(item);
  changesView.items.length = Math.min(changesView.items.length, CHANGES_LIMIT);
  renderChanges();
  // A delete's message carries no entry, so neither who nor when: ask the feed.
  if (!item.updated_by) fillChange(item);
}

async function fillChange(item) {
  try {
    const data = await api('GET', `/v1/changes?since=${item.revision - 1}&limit=1`);
    const found = data.items.find((i) => i.revision === item.revision);
    if (!found) return;
    Object.assign(item, found);
    if (!$('#changes-panel').hidden) renderChanges();
  } catch {
    // The item stays as pushed, without its author.
  }
}

/** After a snapshot (reconnect, resync) the feed may have missed changes: reload it. */
function changesSnapshotted() {
  if (!$('#changes-panel').hidden) loadChanges();
}

function onChangesClick(event) {
  const button = event.target.closest('button.change-key');
  if (!button) return;
  const { ns, key } = button.dataset;
  openHistory(ns, key, button);
}

// ===========================================================================
// 17. Clients panel (admin tokens only: the list is server-wide)

const clientsView = { sequence: 0, timer: null };
const refreshClientsSoon = debounce(() => refreshClients(), CLIENTS_DEBOUNCE_MS);

/** Opens the panel (or, when open, refreshes it); × and Escape close it. */
function openClients() {
  const panel = $('#clients-panel');
  const wasOpen = !panel.hidden;
  openPanel(panel, $('#show-clients'));
  refreshClients();
  if (!wasOpen) clientsView.timer = setInterval(refreshClients, CLIENTS_POLL_MS);
}

function closeClientsHook() {
  clearInterval(clientsView.timer);
  refreshClientsSoon.cancel();
  clientsView.sequence += 1;
}

function scheduleClientsRefresh() {
  if (!$('#clients-panel').hidden) refreshClientsSoon();
}

async function refreshClients() {
  const sequence = ++clientsView.sequence;
  try {
    const data = await api('GET', '/v1/clients');
    if (sequence !== clientsView.sequence) return;
    $('#clients-error').textContent = '';
    renderClients(data.clients);
  } catch (err) {
    if (sequence !== clientsView.sequence) return;
    $('#clients-error').textContent = `Clients unavailable: ${describeError(err)}`;
  }
}

function isConsole(client) {
  return client.labels?.kind === 'console';
}

/** A long id shortened in the table; the whole id on hover and by the Copy button. */
function clientIdCell(id) {
  const copy = el('button', {
    type: 'button', class: 'copy', 'aria-label': `Copy id ${id}`,
    onclick: async () => {
      try {
        await navigator.clipboard.writeText(id);
        copy.textContent = 'Copied';
      } catch {
        copy.textContent = 'Select it';
        window.getSelection()?.selectAllChildren(code);
      }
      setTimeout(() => { copy.textContent = 'Copy'; }, FLASH_MS);
    },
  }, 'Copy');
  const code = el('code', { class: 'client-id', title: id }, id);
  return [code, copy];
}

function renderClients(clients) {
  const sorted = [...clients].sort((a, b) => naturalCompare(a.id, b.id));
  const rows = sorted.map((client) => el('tr', { 'data-client-id': client.id },
    el('th', { scope: 'row' },
      el('span', { class: 'id-cell' }, clientIdCell(client.id)),
      client.id === CLIENT_ID && el('span', { class: 'badge' }, 'this console')),
    el('td', { class: 'labels' }, Object.entries(client.labels ?? {}).map(([k, v]) => el('span', { class: 'label' }, `${k}=${v}`))),
    el('td', {}, client.namespaces.join(', ')),
    el('td', {}, String(client.applied_revision)),
    el('td', {}, client.remote),
    el('td', {}, timeEl(client.connected_at))));
  $('#clients-body').replaceChildren(...(rows.length
    ? rows
    : [el('tr', {}, el('td', { colspan: 6, class: 'muted' }, 'No subscribers connected.'))]));
  renderConvergence(clients.filter((client) => !isConsole(client)));
}

/**
 * Per namespace: how many of its subscribers (by name or a matching pattern)
 * acknowledged the latest revision seen for it. Consoles are left out: they watch,
 * they do not apply.
 */
function renderConvergence(subscribers) {
  const items = sortedNamespaces().map((ns) => {
    const latest = state.latest.get(ns) ?? 0;
    const ofNs = subscribers.filter((c) => c.namespaces.some((pattern) => pattern === ns || globRegExp(pattern).test(ns)));
    const done = ofNs.filter((c) => c.applied_revision >= latest).length;
    const fill = el('span', { class: 'bar-fill' });
    fill.style.width = ofNs.length ? `${(done / ofNs.length) * 100}%` : '0%';
    return el('div', {
      class: `convergence${ofNs.length && done === ofNs.length ? ' complete' : ''}`,
      'data-testid': 'convergence',
      'data-ns': ns,
    },
    el('span', { class: 'conv-ns' }, ns),
    el('span', { class: 'bar', 'aria-hidden': 'true' }, fill),
    el('span', { class: 'conv-count' }, `${done}/${ofNs.length}`),
    el('span', { class: 'muted' }, ` at r${latest}`));
  });
  $('#convergence').replaceChildren(...(items.length ? items : [el('p', { class: 'muted' }, 'No namespaces yet.')]));
}

// ===========================================================================
// 18. Token and start-up

function onTokenChange() {
  const token = $('#token').value.trim();
  if (token === state.token && !watch.blocked) return;
  state.token = token;
  if (state.token) sessionStorage.setItem(TOKEN_KEY, state.token);
  else sessionStorage.removeItem(TOKEN_KEY);
  // What the old token ran into is stale now.
  clearMessages((d) => d.kind === 'error');
  clearAccessProblem();
  // Another token may see other namespaces: start over with a fresh snapshot.
  clearState();
  renderNamespaces();
  watch.retrying = false;
  watch.delay = BACKOFF_MIN_MS;
  connect();
  if (!$('#changes-panel').hidden) loadChanges();
}

function wireEvents() {
  document.addEventListener('keydown', onKeyDown);
  for (const button of document.querySelectorAll('.panel-close')) {
    button.addEventListener('click', () => closePanel(button.closest('.panel')));
  }
  panelCloseHooks.set('gray-panel', closeGrayHook);
  panelCloseHooks.set('clients-panel', closeClientsHook);
  panelCloseHooks.set('history', () => {
    reloadHistorySoon.cancel();
    historyView.sequence += 1;
  });
  panelCloseHooks.set('changes-panel', () => {
    changesView.sequence += 1;
  });

  $('#token').value = state.token;
  $('#token').addEventListener('change', onTokenChange);
  $('#access-focus-token').addEventListener('click', () => $('#token').focus());
  $('#new-key').addEventListener('click', (event) => openEditor(null, event.currentTarget));
  $('#show-clients').addEventListener('click', openClients);
  $('#show-changes').addEventListener('click', (event) => openChanges('', event.currentTarget));
  $('#changes-ns').addEventListener('change', () => {
    changesView.ns = $('#changes-ns').value;
    renderChangesScope();
    loadChanges();
  });
  $('#changes-list').addEventListener('click', onChangesClick);

  $('#ns-filter').addEventListener('input', applyNsFilter);
  $('#key-search').addEventListener('input', onSearchInput);
  $('#collapse-all').addEventListener('click', () => {
    for (const ns of state.namespaces) setCollapsed(ns, true);
  });
  $('#expand-all').addEventListener('click', () => {
    for (const ns of state.namespaces) setCollapsed(ns, false);
  });
  $('#ns-list').addEventListener('click', (event) => {
    const link = event.target.closest('.ns-link');
    if (link) selectNamespace(link.dataset.ns);
  });
  $('#namespaces').addEventListener('click', onTableClick);

  $('#editor-form').addEventListener('submit', saveEditor);
  $('#editor-cancel').addEventListener('click', () => closePanel($('#editor')));
  $('#editor-reload').addEventListener('click', reloadEditorFromConflict);

  $('#history-list').addEventListener('click', onHistoryClick);

  $('#confirm-form').addEventListener('submit', submitConfirm);
  $('#confirm-cancel').addEventListener('click', closeConfirm);
  $('#confirm').addEventListener('close', () => {
    confirmView.run = null;
  });

  $('#gray-form').addEventListener('submit', startGray);
  $('#gray-form').addEventListener('input', (event) => {
    if (event.target.closest('#gray-steps')) syncRampText();
    simulate();
  });
  $('#gray-form').addEventListener('change', simulate);
  $('#gray-ramp').addEventListener('input', onRampTextInput);
  linkRange($('#gray-percent'), $('#gray-percent-number'));
  linkRange($('#gray-set-range'), $('#gray-set-percent'), simulate);
  $('#gray-add-rule').addEventListener('click', addRuleRow);
  $('#gray-add-step').addEventListener('click', () => addStepRow());
  $('#gray-set').addEventListener('click', setGrayPercent);
  $('#gray-promote').addEventListener('click', (event) => confirmGrayEnd('promote', event.currentTarget));
  $('#gray-abort').addEventListener('click', (event) => confirmGrayEnd('abort', event.currentTarget));
  $('#gray-pause').addEventListener('click', (event) => pauseGray(true, event.currentTarget));
  $('#gray-resume').addEventListener('click', (event) => pauseGray(false, event.currentTarget));
  $('#gray-ended-dismiss').addEventListener('click', () => {
    hideGrayEnded();
    $('#gray-title').focus();
  });
  $('#sim-subject').addEventListener('input', simulate);
  $('#sim-attrs').addEventListener('input', simulate);
}

wireEvents();
watchMessageHeight();
renderIdentity();
setInterval(refreshRelativeTimes, 15000);
connect();
