// graycast console: a live view of every namespace and an admin UI for keys,
// history and gray releases.
//
// The module reads top to bottom: helpers, REST, live state and the WebSocket
// watch, the namespace tables, the side panels (editor, history, gray release
// with its simulator, clients), then start-up.
//
// The watch is the single source of truth for entries: a REST write only reports
// success or failure, and the change it causes arrives over the WebSocket like
// anyone else's. That keeps the revision order of the table exactly the server's.

import { evaluate } from './rollout.js';

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const TOKEN_KEY = 'graycast.token';
const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 5000;
const FLASH_MS = 1500;
const CLIENTS_POLL_MS = 5000;
const CLIENTS_DEBOUNCE_MS = 500;
const COUNTS_POLL_MS = 5000;
const HISTORY_DEBOUNCE_MS = 250;
const HISTORY_LIMIT = 50;
const INFO_MESSAGE_MS = 6000;
const MAX_MESSAGES = 5;
// Largest LCS table the diff builds (cells); beyond it the changed middle is shown
// as removed-then-added, which stays correct, just less precise.
const LCS_MAX_CELLS = 1_000_000;
// Unchanged runs longer than this in a diff are folded to their edges.
const DIFF_CONTEXT = 2;
const INLINE_VALUE_CHARS = 80;
const UNFOLDED_VALUE_LINES = 8;
const RULE_OPS = ['in', 'not_in', 'eq', 'prefix', 'semver_gte', 'semver_lt'];

// ---------------------------------------------------------------------------
// Helpers

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

function compactJson(value) {
  return JSON.stringify(value);
}

function prettyJson(value) {
  return JSON.stringify(value, null, 2);
}

function truncate(text, max) {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** A percent as people write it: 12.5, 5, 0.25 (never 12.500000001). */
function formatPercent(percent) {
  return String(Number(Number(percent).toFixed(2)));
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

/** Keeps a range slider and a number input showing the same value. */
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

function parseJsonField(text, label) {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new InputError(`${label}: invalid JSON: ${err.message}`);
  }
}

function readNumber(text, label, { integer = false, min = -Infinity, max = Infinity } = {}) {
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value)) throw new InputError(`${label} must be a number.`);
  if (integer && !Number.isInteger(value)) throw new InputError(`${label} must be a whole number.`);
  if (value < min || value > max) throw new InputError(`${label} must be between ${min} and ${max}.`);
  return value;
}

/** Subjects or values separated by commas and/or new lines. */
function splitList(text) {
  return text.split(/[,\n]/).map((s) => s.trim()).filter((s) => s !== '');
}

// ---------------------------------------------------------------------------
// REST

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** One REST call; resolves to the parsed JSON body, rejects with an ApiError. */
async function api(method, path, { body, headers = {} } = {}) {
  const init = { method, headers: { Accept: 'application/json', ...headers } };
  if (state.token) init.headers.Authorization = `Bearer ${state.token}`;
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, 'network', `the server cannot be reached (${err.message})`);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
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
  const hint = err.status === 401 || err.status === 403 ? ' (check the access token)' : '';
  return `${err.code}: ${err.message}${hint}`;
}

// ---------------------------------------------------------------------------
// Messages (the aria-live region under the header)

function notify(text, { kind = 'info', action = null } = {}) {
  const region = $('#messages');
  // A repeated message (say, the watch refused on every retry) replaces its twin.
  for (const old of region.querySelectorAll('.message-text')) {
    if (old.textContent === text) old.parentElement.remove();
  }
  const item = el('div', { class: `message ${kind}`, role: kind === 'error' ? 'alert' : null },
    el('span', { class: 'message-text' }, text));
  if (action) {
    item.append(el('button', {
      type: 'button',
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
  while (region.children.length > MAX_MESSAGES) region.firstElementChild.remove();
  // Errors stay until dismissed; confirmations fade on their own.
  if (kind !== 'error') setTimeout(() => item.remove(), INFO_MESSAGE_MS);
}

function showError(text) {
  notify(text, { kind: 'error' });
}

// ---------------------------------------------------------------------------
// Live state

const state = {
  entries: new Map(), // "ns/key" -> entry, as last pushed
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
};

function setRevision(revision) {
  state.revision = Math.max(state.revision, revision);
  $('#revision').textContent = String(state.revision);
}

function noteLatest(ns, revision) {
  state.latest.set(ns, Math.max(state.latest.get(ns) ?? 0, revision));
}

function sortedNamespaces() {
  return [...state.namespaces].sort();
}

/** ns -> its entries sorted by key, in one pass over all entries. */
function entriesByNamespace() {
  const groups = new Map(sortedNamespaces().map((ns) => [ns, []]));
  for (const entry of state.entries.values()) groups.get(entry.namespace)?.push(entry);
  for (const list of groups.values()) list.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return groups;
}

function applySnapshot(message) {
  const previous = new Map(state.entries);
  const wasSynced = state.synced;
  // Clear in place: window.graycastConsole.entries is this very Map.
  state.entries.clear();
  state.namespaces.clear();
  for (const ns of message.namespaces ?? []) {
    if (NAME_RE.test(ns)) state.namespaces.add(ns); // drops the "*" of a subscribe-all
  }
  for (const entry of message.entries) {
    state.entries.set(entryId(entry.namespace, entry.key), entry);
    state.namespaces.add(entry.namespace);
    noteLatest(entry.namespace, entry.revision);
  }
  state.synced = true;
  // A snapshot can replace an older state (resync after lag): it sets the revision.
  state.revision = message.revision;
  $('#revision').textContent = String(state.revision);
  renderNamespaces();
  if (wasSynced) flashDifferences(previous);
  for (const id of new Set([...previous.keys(), ...state.entries.keys()])) onKeyChanged(id);
}

/** After a resync, highlights the rows whose entry differs from before. */
function flashDifferences(previous) {
  for (const [id, entry] of state.entries) {
    if (previous.get(id)?.revision !== entry.revision) {
      const row = rowElements.get(id);
      if (row) flash(row);
    }
  }
}

function applyChange(message) {
  // A change at or below the current revision was already applied (defensive: the
  // server promises none, but applying one twice would undo a newer value).
  if (message.revision <= state.revision) return;
  const { namespace: ns, key } = message;
  const id = entryId(ns, key);
  if (message.entry) state.entries.set(id, message.entry);
  else state.entries.delete(id);
  state.namespaces.add(ns);
  noteLatest(ns, message.revision);
  setRevision(message.revision);
  renderChangedRow(ns, key);
  onKeyChanged(id);
  scheduleClientsRefresh();
}

/** Tells the open panels that an entry changed (or vanished). */
function onKeyChanged(id) {
  editorKeyChanged(id);
  historyKeyChanged(id);
  grayKeyChanged(id);
}

// ---------------------------------------------------------------------------
// WebSocket watch

const CLIENT_ID = `web-console-${randomId()}`;

const watch = {
  socket: null,
  generation: 0, // handlers of superseded sockets compare and ignore themselves
  delay: BACKOFF_MIN_MS,
  timer: null,
  retrying: false,
};

function setConnState(connState) {
  const status = $('#conn-status');
  status.dataset.state = connState;
  status.textContent = { connecting: 'Connecting…', live: 'Live', reconnecting: 'Reconnecting…' }[connState];
}

function connectWatch() {
  clearTimeout(watch.timer);
  const generation = ++watch.generation;
  if (watch.socket) watch.socket.close(1000, 'replaced');
  setConnState(watch.retrying ? 'reconnecting' : 'connecting');

  const url = new URL('/v1/watch', window.location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  if (state.token) url.searchParams.set('token', state.token);
  const socket = new WebSocket(url);
  watch.socket = socket;
  const current = () => generation === watch.generation;

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
  watch.timer = setTimeout(connectWatch, watch.delay);
  watch.delay = Math.min(watch.delay * 2, BACKOFF_MAX_MS);
}

function onWatchMessage(text) {
  let message;
  try {
    message = JSON.parse(text);
  } catch {
    showError('The server pushed a message that is not JSON; it was ignored.');
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
      // The server closes after this; the close handler retries.
      showError(`Live updates refused: ${message.code}: ${message.message}`);
      return;
    default:
      return;
  }
  watch.retrying = false;
  watch.delay = BACKOFF_MIN_MS;
  setConnState('live');
}

// ---------------------------------------------------------------------------
// Namespace tables and sidebar

const rowElements = new Map(); // "ns/key" -> <tr>
const sectionElements = new Map(); // ns -> <section>

/** Rebuilds every table and the sidebar from the state (after a snapshot). */
function renderNamespaces() {
  rowElements.clear();
  sectionElements.clear();
  const groups = entriesByNamespace();
  const sections = [...groups].map(([ns, entries]) => buildSection(ns, entries));
  $('#namespaces').replaceChildren($('#empty-state'), ...sections);
  renderSidebar();
}

function buildSection(ns, entries) {
  const tbody = el('tbody');
  for (const entry of entries) tbody.append(buildRow(entry));
  const titleId = `ns-title-${ns}`;
  const section = el('section', {
    class: 'ns-section', id: `ns-${ns}`, 'data-testid': 'ns-table', 'data-ns': ns, 'aria-labelledby': titleId,
  },
  el('h2', { id: titleId, class: 'ns-title' }, ns),
  el('div', { class: 'table-wrap' },
    el('table', { class: 'entries' },
      el('thead', {},
        el('tr', {},
          el('th', { scope: 'col' }, 'Key'),
          el('th', { scope: 'col' }, 'Value'),
          el('th', { scope: 'col' }, 'Rev'),
          el('th', { scope: 'col' }, 'By'),
          el('th', { scope: 'col' }, 'Updated'),
          el('th', { scope: 'col' }, el('span', { class: 'visually-hidden' }, 'Actions')))),
      tbody)));
  sectionElements.set(ns, section);
  updateEmptyRow(tbody);
  return section;
}

function buildRow(entry) {
  const { namespace: ns, key } = entry;
  const label = `${ns}/${key}`;
  const row = el('tr', { 'data-ns': ns, 'data-key': key },
    el('th', { scope: 'row', class: 'key' },
      el('span', { class: 'key-name' }, key),
      entry.gray && grayBadge(entry.gray)),
    el('td', { class: 'value', 'data-label': 'Value' }, renderValue(entry.value)),
    el('td', { class: 'rev', 'data-label': 'Revision' }, String(entry.revision)),
    el('td', { class: 'who', 'data-label': 'By' }, entry.updated_by),
    el('td', { class: 'when', 'data-label': 'Updated' }, timeEl(entry.updated_at)),
    el('td', { class: 'actions' },
      el('button', { type: 'button', 'data-action': 'edit', 'aria-label': `Edit ${label}` }, 'Edit'),
      el('button', { type: 'button', 'data-action': 'history', 'aria-label': `History of ${label}` }, 'History'),
      el('button', { type: 'button', 'data-action': 'gray', 'aria-label': `Gray release of ${label}` }, 'Gray'),
      el('button', { type: 'button', 'data-action': 'delete', class: 'danger', 'aria-label': `Delete ${label}` }, 'Delete')));
  rowElements.set(entryId(ns, key), row);
  return row;
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
    el('summary', {}, truncate(compact, 60)),
    el('pre', { class: 'json' }, pretty));
}

/** Updates one row after a pushed change: insert, replace or remove, then highlight. */
function renderChangedRow(ns, key) {
  const id = entryId(ns, key);
  const entry = state.entries.get(id);
  if (!sectionElements.has(ns)) {
    const entries = entry ? [entry] : [];
    insertSorted($('#namespaces'), buildSection(ns, entries), ns, (node) => node.dataset.ns, 'section');
    renderSidebar();
    const row = rowElements.get(id);
    if (row) flash(row);
    return;
  }
  const old = rowElements.get(id);
  // Keep keyboard focus on the same button when its row is rebuilt under it.
  const focusedAction = old?.contains(document.activeElement) ? document.activeElement.dataset.action : null;
  const tbody = sectionElements.get(ns).querySelector('tbody');
  if (!entry) {
    old?.remove();
    rowElements.delete(id);
  } else {
    const row = buildRow(entry);
    if (old) old.replaceWith(row);
    else insertSorted(tbody, row, key, (node) => node.dataset.key, 'tr[data-key]');
    flash(row);
    if (focusedAction) row.querySelector(`[data-action="${focusedAction}"]`)?.focus();
  }
  updateEmptyRow(tbody);
  updateSidebarCount(ns);
}

/** Inserts `node` among the `selector` children of `parent`, ordered by name. */
function insertSorted(parent, node, name, nameOf, selector) {
  const next = [...parent.querySelectorAll(`:scope > ${selector}`)].find((child) => nameOf(child) > name);
  if (next) next.before(node);
  else parent.append(node);
}

/** A namespace whose keys were all deleted says so instead of showing an empty table. */
function updateEmptyRow(tbody) {
  const hasRows = tbody.querySelector('tr[data-key]') !== null;
  const placeholder = tbody.querySelector('tr.empty');
  if (hasRows) placeholder?.remove();
  else if (!placeholder) tbody.append(el('tr', { class: 'empty' }, el('td', { colspan: 6 }, 'No keys.')));
}

function flash(row) {
  row.classList.add('flash');
  setTimeout(() => row.classList.remove('flash'), FLASH_MS);
}

/** Rebuilds the namespace list; only needed when the set of namespaces changes. */
function renderSidebar() {
  const names = sortedNamespaces();
  $('#ns-list').replaceChildren(...names.map((ns) => el('li', { 'data-ns': ns },
    el('a', {
      href: `#ns-${ns}`,
      class: ns === state.selectedNs ? 'ns-link active' : 'ns-link',
      'data-testid': 'ns-link',
      'data-ns': ns,
      'aria-current': ns === state.selectedNs ? 'location' : null,
    }, ns))));
  for (const ns of names) updateSidebarCount(ns);
  $('#ns-options').replaceChildren(...names.map((ns) => el('option', { value: ns })));
  $('#empty-state').hidden = names.length > 0;
  applyFilter();
}

/** Shows a namespace's key count (drawn from data-count by CSS, so the link's text stays the name). */
function updateSidebarCount(ns) {
  const link = [...$('#ns-list').querySelectorAll('.ns-link')].find((a) => a.dataset.ns === ns);
  if (!link) return;
  const count = sectionElements.get(ns)?.querySelectorAll('tr[data-key]').length ?? 0;
  link.dataset.count = String(count);
  link.setAttribute('aria-label', `${ns}, ${count} ${count === 1 ? 'key' : 'keys'}`);
}

/** The sidebar filter narrows both the namespace list and the tables. */
function applyFilter() {
  const query = $('#ns-filter').value.trim().toLowerCase();
  const matches = (ns) => ns.toLowerCase().includes(query);
  for (const item of $('#ns-list').children) item.hidden = !matches(item.dataset.ns);
  for (const [ns, section] of sectionElements) section.hidden = !matches(ns);
}

function selectNamespace(ns) {
  state.selectedNs = ns;
  for (const link of document.querySelectorAll('#ns-list .ns-link')) {
    const active = link.dataset.ns === ns;
    link.classList.toggle('active', active);
    if (active) link.setAttribute('aria-current', 'location');
    else link.removeAttribute('aria-current');
  }
}

/** One listener for every row button (rows are rebuilt on each change). */
function onTableClick(event) {
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
      whileBusy(button, () => deleteEntry(entry));
      break;
    default:
      break;
  }
}

/**
 * Deletes at once (no confirmation dialog) but guarded by If-Match, and offers
 * an undo: a rollback to the deleted revision recreates the key.
 */
async function deleteEntry(entry) {
  const { namespace: ns, key, revision } = entry;
  const label = entryId(ns, key);
  try {
    const result = await api('DELETE', keyPath(ns, key), { headers: { 'If-Match': `"${revision}"` } });
    notify(`Deleted ${label} (revision ${result.revision}).`, {
      action: { label: 'Undo', run: () => rollback(ns, key, revision) },
    });
  } catch (err) {
    if (err.status === 412) {
      const now = state.entries.get(label);
      const where = now ? ` It is now at revision ${now.revision} by ${now.updated_by}.` : '';
      showError(`Delete conflict: ${label} changed after revision ${revision}; nothing was deleted.${where}`);
    } else {
      showError(`Delete of ${label} failed: ${describeError(err)}`);
    }
  }
}

async function rollback(ns, key, toRevision) {
  const label = entryId(ns, key);
  try {
    const entry = await api('POST', keyPath(ns, key, '/rollback'), { body: { to_revision: toRevision } });
    notify(`Rolled ${label} back to the value of revision ${toRevision} (now revision ${entry.revision}).`);
    return true;
  } catch (err) {
    showError(`Rollback of ${label} failed: ${describeError(err)}`);
    return false;
  }
}

// ---------------------------------------------------------------------------
// Panels: shown beside the tables (never over them), closed by × or Escape.

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
  // On narrow screens the panel sits above the tables; bring it into view.
  panel.scrollIntoView({ block: 'nearest' });
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
  const row = oldRow && rowElements.get(entryId(oldRow.dataset.ns, oldRow.dataset.key));
  row?.querySelector(`[data-action="${opener.dataset.action}"]`)?.focus();
}

function syncPanelLayout() {
  $('#layout').classList.toggle('with-panels', openPanels.length > 0);
  $('#show-clients').setAttribute('aria-expanded', String(!$('#clients-panel').hidden));
}

/** Escape closes the panel holding the focus, else the one opened last. */
function onKeyDown(event) {
  if (event.key !== 'Escape' || event.defaultPrevented) return;
  const panel = document.activeElement?.closest('.panel:not([hidden])') ?? openPanels.at(-1);
  if (!panel) return;
  event.preventDefault();
  closePanel(panel);
}

// ---------------------------------------------------------------------------
// Editor

const editor = {
  mode: 'create', // 'create' sends If-None-Match: *, 'edit' sends If-Match
  baseRevision: null, // the entry's revision when the editor opened
  conflict: null, // the server's entry after a 412, offered by "Reload current value"
};

function openEditor(entry, opener) {
  const panel = $('#editor');
  setEditorError('');
  $('#editor-notice').textContent = '';
  if (entry) {
    loadIntoEditor(entry);
  } else {
    editor.mode = 'create';
    editor.baseRevision = null;
    $('#editor-ns').value = state.selectedNs;
    $('#editor-key').value = '';
    $('#editor-value').value = '';
    setEditorNamesLocked(false);
    $('#editor-title').textContent = 'New key';
  }
  const focusTarget = entry ? $('#editor-value') : state.selectedNs ? $('#editor-key') : $('#editor-ns');
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
      const entry = await api('PUT', keyPath(ns, key), { body: { value }, headers });
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

// ---------------------------------------------------------------------------
// History

const historyView = { ns: '', key: '', sequence: 0 };
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

function buildHistoryItem(item, current, currentLines) {
  const isDelete = item.op === 'delete';
  // A delete left no value: compare "nothing" with the current value.
  const itemLines = isDelete ? [] : prettyJson(item.value).split('\n');
  return el('li', { 'data-rev': item.revision, class: `history-item op-${item.op}` },
    el('p', { class: 'history-head' },
      el('strong', {}, `r${item.revision}`), ' ',
      el('span', { class: `op-badge op-${item.op}` }, item.op), ' by ',
      el('span', { class: 'who' }, item.updated_by), ' ',
      timeEl(item.updated_at),
      current?.revision === item.revision && el('span', { class: 'badge' }, 'current')),
    item.note && el('p', { class: 'note' }, item.note),
    item.gray && el('p', { class: 'gray-line' },
      `gray ${formatPercent(item.gray.percent)}%${item.gray.paused ? ' (paused)' : ''}: `,
      el('code', {}, truncate(compactJson(item.gray.value), 120))),
    renderDiff(currentLines, itemLines, Boolean(current), isDelete),
    !isDelete && el('button', {
      type: 'button',
      'data-action': 'rollback',
      'data-rev': item.revision,
      'aria-label': `Roll back to revision ${item.revision}`,
    }, `Roll back to r${item.revision}`));
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
  whileBusy(button, async () => {
    $('#history-error').textContent = '';
    if (!(await rollback(historyView.ns, historyView.key, toRevision))) {
      $('#history-error').textContent = `Rollback to revision ${toRevision} failed; see the message above.`;
    }
  });
}

/** A change of the shown key adds a revision and moves "current": reload. */
function historyKeyChanged(id) {
  if (!$('#history').hidden && id === entryId(historyView.ns, historyView.key)) reloadHistorySoon();
}

// ---------------------------------------------------------------------------
// Gray release panel

const grayView = {
  ns: '',
  key: '',
  running: false, // whether the shown key had a release at the last render
  percentTouched: false, // the start form's percent was set by hand
  countsSequence: 0,
  countsTimer: null,
  tickTimer: null,
};

function grayEntry() {
  return state.entries.get(entryId(grayView.ns, grayView.key));
}

function openGray(ns, key, opener) {
  const switching = entryId(ns, key) !== entryId(grayView.ns, grayView.key) || $('#gray-panel').hidden;
  grayView.ns = ns;
  grayView.key = key;
  $('#gray-title').textContent = `Gray release of ${entryId(ns, key)}`;
  if (switching) {
    resetGrayForm();
    $('#gray-action-error').textContent = '';
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
  const focusWasIn = ['#gray-form', '#gray-running'].find((id) => $(id).contains(document.activeElement));
  $('#gray-missing').hidden = Boolean(entry);
  $('#gray-form').hidden = !entry || running;
  $('#gray-running').hidden = !running;
  // Focus inside a part that just disappeared would fall to <body>: move it to the part shown now.
  if (focusWasIn && $(focusWasIn).hidden) {
    const target = running ? '#gray-running-title' : entry ? '#gray-form-title' : '#gray-title';
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
  $('#gray-value').value = entry ? prettyJson(entry.value) : '';
  $('#gray-percent').value = '0';
  $('#gray-percent-number').value = '0';
  $('#gray-rules').replaceChildren();
  $('#gray-steps').replaceChildren();
  $('#gray-error').textContent = '';
  grayView.percentTouched = false;
}

function renderGrayStatus(gray) {
  const steps = gray.steps ?? [];
  const stepText = steps.length === 0
    ? 'no ramp (manual percent)'
    : `step ${gray.step + 1} of ${steps.length}: ${steps.map((s, i) => {
      const text = `${formatPercent(s.percent)}%${s.hold_secs ? ` for ${s.hold_secs} s` : ''}`;
      return i === gray.step ? `[${text}]` : text;
    }).join(' → ')}`;
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
      row('Ramp', stepText),
      row('Next step', el('span', { id: 'gray-next', 'data-at': gray.next_step_at ?? '' }, countdownText(gray))),
      row('Promote at end', gray.auto_promote ? 'yes' : 'no'),
      row('Allow', gray.allow?.length ? gray.allow.join(', ') : 'nobody'),
      row('Deny', gray.deny?.length ? gray.deny.join(', ') : 'nobody'),
      row('Rules', rules.length ? rules.join('; ') : 'none'),
      row('Guard', guard),
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
  const seconds = (Date.parse(gray.next_step_at) - Date.now()) / 1000;
  return seconds > 0 ? `in ${formatCountdown(seconds)}` : 'due now';
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
    const total = ok + errors;
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

function readSteps() {
  const steps = [];
  [...$('#gray-steps').children].forEach((row, index) => {
    const percentText = row.querySelector('.step-percent').value;
    const holdText = row.querySelector('.step-hold').value;
    if (percentText.trim() === '' && holdText.trim() === '') return; // an untouched row
    const step = { percent: readNumber(percentText, `Step ${index + 1} percent`, { min: 0, max: 100 }) };
    if (holdText.trim() !== '') {
      step.hold_secs = readNumber(holdText, `Step ${index + 1} hold`, { integer: true, min: 1 });
    }
    steps.push(step);
  });
  return steps;
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

/**
 * Builds the PUT .../gray body. The form only parses; the server judges the
 * release (ramp order, limits, semver values) and its message is shown as is.
 */
function readGrayForm() {
  const steps = readSteps();
  const body = {
    value: parseJsonField($('#gray-value').value, 'Gray value'),
    allow: splitList($('#gray-allow').value),
    deny: splitList($('#gray-deny').value),
    rules: readRules(),
    steps,
    auto_promote: $('#gray-auto-promote').checked,
    paused: $('#gray-start-paused').checked,
  };
  // Without a hand-set percent a ramp starts at its first step (the server's default).
  if (steps.length === 0 || grayView.percentTouched) {
    body.percent = readNumber($('#gray-percent-number').value, 'Percent', { min: 0, max: 100 });
  }
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
  await whileBusy($('#gray-start'), async () => {
    try {
      const entry = await api('PUT', keyPath(ns, key, '/gray'), { body });
      notify(`Gray release of ${entryId(ns, key)} started at ${formatPercent(entry.gray.percent)}% (revision ${entry.revision}).`);
    } catch (err) {
      error.textContent = `Not started: ${describeError(err)}`;
    }
  });
}

/**
 * Runs one action on the running release (`what` names it in messages); the
 * changed entry arrives over the watch.
 */
async function grayAction(button, what, method, suffix, body) {
  const { ns, key } = grayView;
  const error = $('#gray-action-error');
  error.textContent = '';
  await whileBusy(button, async () => {
    try {
      await api(method, keyPath(ns, key, suffix), body === undefined ? {} : { body });
      notify(`${what}: done for ${entryId(ns, key)}.`);
    } catch (err) {
      error.textContent = `${what} failed: ${describeError(err)}`;
    }
  });
}

function setGrayPercent() {
  const error = $('#gray-action-error');
  let percent;
  try {
    percent = readNumber($('#gray-set-percent').value, 'Percent', { min: 0, max: 100 });
  } catch (err) {
    error.textContent = err.message;
    return;
  }
  grayAction($('#gray-set'), `Set percent to ${formatPercent(percent)}%`, 'PATCH', '/gray', { percent });
}

function addRuleRow() {
  const attr = el('input', { class: 'rule-attr', type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'region' });
  const op = el('select', { class: 'rule-op' }, RULE_OPS.map((name) => el('option', { value: name }, name)));
  const values = el('input', { class: 'rule-values', type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'eu-west, eu-north' });
  const row = el('div', { class: 'row rule-row' },
    el('label', {}, el('span', {}, 'Attribute'), attr),
    el('label', {}, el('span', {}, 'Op'), op),
    el('label', { class: 'grow' }, el('span', {}, 'Values'), values));
  row.append(removeRowButton(row, 'Remove rule', $('#gray-add-rule')));
  $('#gray-rules').append(row);
  attr.focus();
}

function addStepRow() {
  const percent = el('input', { class: 'step-percent', type: 'number', min: 0, max: 100, step: 0.01, placeholder: '25' });
  const hold = el('input', { class: 'step-hold', type: 'number', min: 1, step: 1, placeholder: 'none on the last' });
  const row = el('div', { class: 'row step-row' },
    el('label', {}, el('span', {}, 'Percent'), percent),
    el('label', {}, el('span', {}, 'Hold (s)'), hold));
  row.append(removeRowButton(row, 'Remove step', $('#gray-add-step')));
  $('#gray-steps').append(row);
  percent.focus();
}

function removeRowButton(row, label, focusAfter) {
  return el('button', {
    type: 'button',
    class: 'remove',
    'aria-label': label,
    onclick: () => {
      row.remove();
      focusAfter.focus();
    },
  }, '×');
}

function grayKeyChanged(id) {
  if ($('#gray-panel').hidden || id !== entryId(grayView.ns, grayView.key)) return;
  renderGray();
  refreshCounts();
}

// ---------------------------------------------------------------------------
// Subject simulator (local evaluation with rollout.js, as clients do it)

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

function simulate() {
  const entry = grayEntry();
  const subject = $('#sim-subject').value;
  const { attrs, bad } = parseAttrs($('#sim-attrs').value);
  const decision = evaluate(entry?.gray ?? null, subject === '' ? null : subject, attrs);
  $('#sim-variant').textContent = decision.variant;
  $('#sim-reason').textContent = decision.reason;
  $('#sim-bucket').textContent = decision.bucket === null || decision.bucket === undefined ? '-' : String(decision.bucket);
  let value = '-';
  if (entry) value = compactJson(decision.variant === 'gray' ? entry.gray.value : entry.value);
  $('#sim-value').textContent = value;
  const notes = [];
  if (!entry) notes.push('The key does not exist.');
  if (decision.reason === 'random') notes.push('Without a subject the variant is drawn at random on each evaluation.');
  if (bad.length) notes.push(`Ignored line ${bad.join(', ')}: expected name=value.`);
  $('#sim-note').textContent = notes.join(' ');
}

// ---------------------------------------------------------------------------
// Clients panel

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

function renderClients(clients) {
  const sorted = [...clients].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const rows = sorted.map((client) => el('tr', { 'data-client-id': client.id },
    el('th', { scope: 'row' }, client.id, client.id === CLIENT_ID && el('span', { class: 'badge' }, 'this console')),
    el('td', {}, Object.entries(client.labels ?? {}).map(([k, v]) => el('span', { class: 'label' }, `${k}=${v}`))),
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
 * Per namespace: how many of its subscribers (by name or "*") acknowledged the
 * latest revision seen for it. Consoles are left out: they watch, they do not apply.
 */
function renderConvergence(subscribers) {
  const items = sortedNamespaces().map((ns) => {
    const latest = state.latest.get(ns) ?? 0;
    const ofNs = subscribers.filter((c) => c.namespaces.includes(ns) || c.namespaces.includes('*'));
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

// ---------------------------------------------------------------------------
// Token

function onTokenChange() {
  state.token = $('#token').value.trim();
  if (state.token) sessionStorage.setItem(TOKEN_KEY, state.token);
  else sessionStorage.removeItem(TOKEN_KEY);
  // Another token may see other namespaces: start over with a fresh snapshot.
  state.synced = false;
  watch.retrying = false;
  watch.delay = BACKOFF_MIN_MS;
  connectWatch();
  if (!$('#clients-panel').hidden) refreshClients();
}

// ---------------------------------------------------------------------------
// Start-up

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

  $('#token').value = state.token;
  $('#token').addEventListener('change', onTokenChange);
  $('#new-key').addEventListener('click', (event) => openEditor(null, event.currentTarget));
  $('#show-clients').addEventListener('click', openClients);

  $('#ns-filter').addEventListener('input', applyFilter);
  $('#ns-list').addEventListener('click', (event) => {
    const link = event.target.closest('.ns-link');
    if (link) selectNamespace(link.dataset.ns);
  });
  $('#namespaces').addEventListener('click', onTableClick);

  $('#editor-form').addEventListener('submit', saveEditor);
  $('#editor-cancel').addEventListener('click', () => closePanel($('#editor')));
  $('#editor-reload').addEventListener('click', reloadEditorFromConflict);

  $('#history-list').addEventListener('click', onHistoryClick);

  $('#gray-form').addEventListener('submit', startGray);
  linkRange($('#gray-percent'), $('#gray-percent-number'), () => {
    grayView.percentTouched = true;
  });
  linkRange($('#gray-set-range'), $('#gray-set-percent'));
  $('#gray-add-rule').addEventListener('click', addRuleRow);
  $('#gray-add-step').addEventListener('click', addStepRow);
  $('#gray-set').addEventListener('click', setGrayPercent);
  $('#gray-promote').addEventListener('click', (event) => grayAction(event.currentTarget, 'Promote', 'POST', '/gray/promote'));
  $('#gray-abort').addEventListener('click', (event) => grayAction(event.currentTarget, 'Abort', 'DELETE', '/gray'));
  $('#gray-pause').addEventListener('click', (event) => grayAction(event.currentTarget, 'Pause', 'PATCH', '/gray', { paused: true }));
  $('#gray-resume').addEventListener('click', (event) => grayAction(event.currentTarget, 'Resume', 'PATCH', '/gray', { paused: false }));
  $('#sim-subject').addEventListener('input', simulate);
  $('#sim-attrs').addEventListener('input', simulate);
}

wireEvents();
setInterval(refreshRelativeTimes, 15000);
connectWatch();
