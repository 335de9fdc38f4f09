// The console's state and its one event source. live.js fills the state from the SDK's
// events; views read it and listen here, never to the SDK or to each other.
//
// Events (`on(type, fn)`, fn gets the detail):
//   change      {change, before, newNamespace}  one pushed change, applied
//   replace     {resync, changed}  the whole state was replaced: a snapshot (`changed`: the
//               SDK change events of its differences; `resync` when it replaced an earlier
//               one) or a reset (a new token, a refusal)
//   revision    the revision the console is at
//   connection  'connecting' | 'live' | 'reconnecting' | 'stopped'
//   blocked     {kind, detail}  the token keeps the console out ('missing', 'refused', 'forbidden')
//   rights      the token's rights changed (identity.js)
//   typed       ns  the namespace's schemas or its keys out of schema changed (schemas.js)
//   rejections  the clients' rejections changed (schemas.js)

import { entryId, naturalCompare } from './format.js';
import { NAME_RE } from './forms.js';
import { compactJson, parseJson, stringifyJson, JsonNumber } from './json.js';

// The reserved namespace holding namespace descriptions: data, never shown as a namespace.
export const META_NAMESPACE = 'graycast.meta';
// The reserved namespace holding each namespace's JSON Schemas (key: the namespace typed):
// data too, never shown as a namespace.
export const SCHEMAS_NAMESPACE = 'graycast.schemas';
// The reserved namespaces of change requests (key: the request's id), of the review items
// break-glass writes open (key: their id) and of the policies: data the Requests view and
// the review banner show, never namespaces. The server pushes them only to tokens that may
// read them (an admin's; requests also to a token whose patterns match their namespace).
export const REQUESTS_NAMESPACE = 'graycast.requests';
export const REVIEWS_NAMESPACE = 'graycast.reviews';
export const POLICIES_NAMESPACE = 'graycast.policies';

/** Whether `ns` holds the console's data rather than configuration (never shown as a namespace). */
export function isReserved(ns) {
  return [META_NAMESPACE, SCHEMAS_NAMESPACE, REQUESTS_NAMESPACE, REVIEWS_NAMESPACE, POLICIES_NAMESPACE].includes(ns);
}

export const state = {
  entries: new Map(), // "ns/key" -> entry, as last pushed (never graycast.meta)
  byNs: new Map(), // ns -> Map key -> entry
  descriptions: new Map(), // ns -> description text
  schemas: new Map(), // ns -> its schema document {schemas, mode, resources?}
  outOfSchema: new Map(), // ns -> {count, byKey: Map key -> violations} (GET /v1/schemas/{ns})
  rejections: new Map(), // "ns/key" -> [{revision, clients, error}] newest first (GET /v1/clients)
  requests: new Map(), // id -> change request, as pushed (or listed, requests.js)
  reviews: new Map(), // id -> review item of a break-glass write, as pushed
  namespaces: new Set(),
  latest: new Map(), // ns -> highest revision seen for it (convergence target)
  revision: 0,
  synced: false, // a snapshot was applied: an empty state means no namespace, not "not yet"
  connection: null, // the SDK's status while it runs
  blocked: null, // 'missing' | 'refused' | 'forbidden' while the token keeps us out
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

const events = new EventTarget();

export function emit(type, detail) {
  events.dispatchEvent(new CustomEvent(type, { detail }));
}

export function on(type, fn) {
  events.addEventListener(type, (event) => fn(event.detail));
}

export function entryOf(ns, key) {
  return state.entries.get(entryId(ns, key));
}

export function sortedNamespaces() {
  return [...state.namespaces].sort(naturalCompare);
}

/**
 * Applies a change event of the SDK (pushed, or a difference a snapshot brought);
 * returns the entry it replaced and whether the namespace is new to the console.
 */
export function applyChange({ namespace: ns, key, entry, revision }) {
  if (ns === META_NAMESPACE) {
    const newNamespace = NAME_RE.test(key) && !state.namespaces.has(key);
    applyDescription(key, entry);
    return { before: null, newNamespace };
  }
  if (ns === SCHEMAS_NAMESPACE) {
    const newNamespace = NAME_RE.test(key) && !state.namespaces.has(key);
    applySchemas(key, entry);
    return { before: null, newNamespace };
  }
  if (ns === REQUESTS_NAMESPACE || ns === REVIEWS_NAMESPACE) {
    const map = ns === REQUESTS_NAMESPACE ? state.requests : state.reviews;
    if (entry?.value) map.set(key, entry.value);
    else map.delete(key);
    return { before: null, newNamespace: false };
  }
  // The policies are the server's to enforce: its refusal says what a write needs.
  if (ns === POLICIES_NAMESPACE) return { before: null, newNamespace: false };
  const id = entryId(ns, key);
  const before = state.entries.get(id) ?? null;
  if (entry) {
    state.entries.set(id, entry);
    if (!state.byNs.has(ns)) state.byNs.set(ns, new Map());
    state.byNs.get(ns).set(key, entry);
  } else {
    state.entries.delete(id);
    state.byNs.get(ns)?.delete(key);
  }
  const newNamespace = !state.namespaces.has(ns);
  state.namespaces.add(ns);
  state.latest.set(ns, Math.max(state.latest.get(ns) ?? 0, revision));
  return { before, newNamespace };
}

/** A description entry of graycast.meta (key: the namespace described). */
function applyDescription(ns, entry) {
  const text = entry?.value?.description;
  if (typeof text === 'string' && text !== '') state.descriptions.set(ns, text);
  else state.descriptions.delete(ns);
  // A described namespace exists, keys or not.
  if (NAME_RE.test(ns)) state.namespaces.add(ns);
}

/** A schema entry of graycast.schemas (key: the namespace typed; no entry: untyped again). */
function applySchemas(ns, entry) {
  if (entry?.value?.schemas) state.schemas.set(ns, entry.value);
  else {
    state.schemas.delete(ns);
    state.outOfSchema.delete(ns);
  }
  // A typed namespace exists, keys or not: its first key is written against the schema.
  if (NAME_RE.test(ns) && entry) state.namespaces.add(ns);
}

/**
 * After a snapshot: a namespace left without keys, description and schemas is gone
 * (between snapshots an emptied one stays, showing "No keys.").
 */
export function dropEmptyNamespaces() {
  for (const ns of state.namespaces) {
    if (!state.byNs.get(ns)?.size && !state.descriptions.has(ns) && !state.schemas.has(ns)) {
      state.namespaces.delete(ns);
      state.latest.delete(ns);
    }
  }
}

export function clearState() {
  // Clear in place: window.graycastConsole.entries is this very Map.
  state.entries.clear();
  state.byNs.clear();
  state.descriptions.clear();
  state.schemas.clear();
  state.outOfSchema.clear();
  state.rejections.clear();
  state.requests.clear();
  state.reviews.clear();
  state.namespaces.clear();
  state.latest.clear();
  state.synced = false;
}

// Own actions in flight ("ns/key" -> op) and revisions this console wrote, so that their
// pushed change is not announced as someone else's (it may arrive before the REST answer,
// or after it).
const ownActions = new Map();
const ownRevisions = new Set();
const MAX_OWN_REVISIONS = 100;

/** Runs `action` (a REST write of `op` on ns/key) as this console's own. */
export async function asOwn(ns, key, op, action) {
  const id = entryId(ns, key);
  ownActions.set(id, op);
  try {
    const answer = await action();
    if (answer?.revision !== undefined) {
      ownRevisions.add(answer.revision);
      if (ownRevisions.size > MAX_OWN_REVISIONS) ownRevisions.delete(ownRevisions.values().next().value);
    }
    return answer;
  } finally {
    ownActions.delete(id);
  }
}

/** Whether a pushed change is one this console made. */
export function isOwn(change) {
  return ownActions.get(entryId(change.namespace, change.key)) === change.op || ownRevisions.has(change.revision);
}

/** Text searched for an entry, cached per entry object (entries are replaced, never mutated). */
const searchText = new WeakMap();

export function entryMatches(entry, query) {
  if (!query) return true;
  let text = searchText.get(entry);
  if (text === undefined) {
    text = `${entry.key}\n${entry.namespace}/${entry.key}\n${compactJson(entry.value)}`.toLowerCase();
    searchText.set(entry, text);
  }
  return text.includes(query);
}

/** A namespace's entries in natural key order. */
export function entriesOf(ns) {
  return [...(state.byNs.get(ns)?.values() ?? [])].sort((a, b) => naturalCompare(a.key, b.key));
}
