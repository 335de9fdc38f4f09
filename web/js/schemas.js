// Typed configs as the console sees them: which schema a key takes, which live values
// break their namespace's schemas (GET /v1/schemas/{ns}), and which revisions the clients
// rejected (GET /v1/clients, admin tokens only). The schemas themselves arrive with the
// live data (state.js); the rest is asked for here and told as `typed` and `rejections`.

import { api } from './api.js';
import { entryId, globRegExp } from './format.js';
import { isAdmin } from './identity.js';
import { emit, on, SCHEMAS_NAMESPACE, state } from './state.js';

// A burst of changes to a typed namespace costs one request per namespace per window:
// the window opens at the first change and is not pushed back by the next ones, so a
// steady stream of writes still gets its markers refreshed.
const OUT_OF_SCHEMA_WINDOW_MS = 400;
// Rejections are not pushed: an admin console asks for them this often, and soon after a
// change (the moment clients get a value to reject).
const REJECTIONS_POLL_MS = 5000;
const REJECTIONS_AFTER_CHANGE_MS = 1000;

const pending = new Set(); // typed namespaces whose markers are to be asked for again
let pendingTimer = null;
const sequences = new Map(); // ns -> number of its latest request (older answers drop out)
let rejectionsTimer = null;
let rejectionsSoon = null;
let rejectionsSequence = 0;

/**
 * The schema `key` of `ns` takes: its exact name's, else the longest matching glob's
 * (`*` any run of characters; a tie goes to the glob first in name order), as the server
 * picks it. Null when the key is untyped.
 */
export function schemaOf(ns, key) {
  const schemas = state.schemas.get(ns)?.schemas;
  if (!schemas) return null;
  if (Object.hasOwn(schemas, key)) return schemas[key];
  const globs = Object.keys(schemas).filter((name) => name.includes('*'))
    .sort((a, b) => b.length - a.length || (a < b ? -1 : a > b ? 1 : 0));
  const glob = globs.find((name) => globRegExp(name).test(key));
  return glob === undefined ? null : schemas[glob];
}

/** How the live values of ns/key break its schema (empty when they do not). */
export function violationsOf(ns, key) {
  return state.outOfSchema.get(ns)?.byKey.get(key) ?? [];
}

/** What the clients rejected of ns/key, newest revision first. */
export function rejectionsOf(ns, key) {
  return state.rejections.get(entryId(ns, key)) ?? [];
}

function refreshSoon(ns) {
  pending.add(ns);
  pendingTimer ??= setTimeout(() => {
    pendingTimer = null;
    const namespaces = [...pending];
    pending.clear();
    for (const name of namespaces) refreshOutOfSchema(name);
  }, OUT_OF_SCHEMA_WINDOW_MS);
}

async function refreshOutOfSchema(ns) {
  const sequence = (sequences.get(ns) ?? 0) + 1;
  sequences.set(ns, sequence);
  let answer = null;
  try {
    answer = await api('GET', `/v1/schemas/${encodeURIComponent(ns)}`);
  } catch (err) {
    // 404: the schemas went meanwhile (their change is on its way). Anything else leaves
    // the markers as they were: they are a hint, and the next change asks again.
    if (err.status !== 404) return;
  }
  if (sequence !== sequences.get(ns) || !state.schemas.has(ns)) return;
  const byKey = new Map();
  for (const violation of answer?.violations ?? []) {
    if (!byKey.has(violation.key)) byKey.set(violation.key, []);
    byKey.get(violation.key).push(violation);
  }
  state.outOfSchema.set(ns, { count: answer?.out_of_schema ?? 0, byKey });
  emit('typed', ns);
}

/** A pushed change: schemas changed, or a value of a typed namespace did. */
function onChange({ change }) {
  if (change.namespace === SCHEMAS_NAMESPACE) {
    if (state.schemas.has(change.key)) refreshSoon(change.key);
    emit('typed', change.key);
  } else if (state.schemas.has(change.namespace)) {
    refreshSoon(change.namespace);
  }
  if (isAdmin()) {
    clearTimeout(rejectionsSoon);
    rejectionsSoon = setTimeout(refreshRejections, REJECTIONS_AFTER_CHANGE_MS);
  }
}

/** A new state (snapshot or reset): every typed namespace is asked for anew. */
function onReplace() {
  for (const ns of [...state.outOfSchema.keys()]) {
    if (!state.schemas.has(ns)) state.outOfSchema.delete(ns);
  }
  if (state.synced) for (const ns of state.schemas.keys()) refreshSoon(ns);
  followRejections();
}

/** Polls the rejections while the token is an admin's and the console is in. */
function followRejections() {
  clearInterval(rejectionsTimer);
  rejectionsTimer = null;
  if (!isAdmin() || state.blocked) {
    if (state.rejections.size) setRejections([]);
    return;
  }
  rejectionsTimer = setInterval(() => {
    if (!document.hidden) refreshRejections();
  }, REJECTIONS_POLL_MS);
  refreshRejections();
}

async function refreshRejections() {
  const sequence = ++rejectionsSequence;
  try {
    const data = await api('GET', '/v1/clients');
    if (sequence === rejectionsSequence) setRejections(data.rejections ?? []);
  } catch {
    // Kept as they were: the next poll asks again.
  }
}

/**
 * The server's rejections ({namespace, key, revision, clients, error}), from this
 * module's poll or the clients panel's. Told only when they changed.
 */
export function setRejections(rejections) {
  rejectionsSequence += 1; // an answer still in flight is older than these
  const next = new Map();
  for (const rejection of rejections) {
    const id = entryId(rejection.namespace, rejection.key);
    if (!next.has(id)) next.set(id, []);
    next.get(id).push(rejection);
  }
  for (const list of next.values()) list.sort((a, b) => b.revision - a.revision);
  if (JSON.stringify([...next]) === JSON.stringify([...state.rejections])) return;
  state.rejections.clear();
  for (const [id, list] of next) state.rejections.set(id, list);
  emit('rejections');
}

export function initSchemas() {
  on('change', onChange);
  on('replace', onReplace);
  on('rights', followRejections);
}
