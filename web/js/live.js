// Live data: the console's one @graycast/client, following every namespace the token may
// read. The SDK keeps the connection (reconnects, resumes from the revision it is at);
// this module turns its events into the console's state (state.js) and tells the views.
//
// The SDK is the single source of truth for entries: a REST write only reports success
// or failure, and the change it causes arrives from the SDK like anyone else's. That
// keeps the revision order of the tables exactly the server's.

import { createClient } from '/sdk/graycast.js';
import { currentToken } from './api.js';
import { randomId } from './format.js';
import { forgetIdentity, identity, loadIdentity } from './identity.js';
import { parseJson } from './json.js';
import { clearMessages, showError } from './messages.js';
import { applyChange, clearState, dropEmptyNamespaces, emit, state } from './state.js';

const CLIENT_ID = `web-console-${randomId()}`;

let client = null;
let generation = 0; // a start superseded by a newer one (a new token) drops out
let turn = null; // the change events of this turn, and whether a snapshot brought them

/** The console's id among the server's clients. */
export function consoleId() {
  return CLIENT_ID;
}

/**
 * (Re)starts the live data for the current token: learns who the token is, then follows
 * every namespace. What an earlier token showed is cleared first.
 */
export async function connect() {
  const current = ++generation;
  client?.close();
  client = null;
  state.blocked = null;
  state.connection = null;
  clearState();
  emit('replace', { resync: false, changed: [] });
  emit('connection', 'connecting');
  const access = await loadIdentity();
  if (current !== generation) return;
  if (access === 'missing' || access === 'refused') {
    block(access);
    return;
  }
  // Also when the server is down ('down'): the client retries until it is back.
  client = createClient({
    url: window.location.origin,
    token: currentToken() || undefined,
    namespaces: ['*'],
    // Numbers a double cannot hold survive the push as they were written.
    parse: parseJson,
    client: { id: CLIENT_ID, labels: { kind: 'console' } },
  });
  client.on('status', onStatus);
  client.on('change', onChange);
  client.on('snapshot', onSnapshot);
  client.on('revision', (revision) => {
    state.revision = revision;
    emit('revision', revision);
  });
  client.on('error', onError);
}

function onStatus(status) {
  // `stopped` is this module closing the client, or a refusal that `error` explains.
  if (status === 'stopped') return;
  const wasLive = state.connection === 'live';
  state.connection = status;
  emit('connection', status);
  if (status !== 'live') return;
  clearMessages((d) => d.topic === 'connection');
  // Back after a break (or the first answer after a failed one): the token's rights
  // may have changed meanwhile.
  if (!wasLive && (state.synced || !identity.known)) recheckIdentity();
}

async function recheckIdentity() {
  const current = generation;
  const access = await loadIdentity();
  if (current === generation && (access === 'missing' || access === 'refused')) block(access);
}

/**
 * A change applies to the state at once, but the views hear of it at the end of the turn:
 * a snapshot's differences come as change events just before its `snapshot` event, in the
 * same turn, and are a resync to render once, not news to announce one by one. (A browser
 * hands over each WebSocket message in a task of its own, so a turn is one message.)
 */
function onChange(change) {
  currentTurn().changes.push({ change, ...applyChange(change) });
}

function onSnapshot() {
  currentTurn().snapshot = true;
}

function currentTurn() {
  if (!turn) {
    turn = { changes: [], snapshot: false };
    queueMicrotask(endTurn);
  }
  return turn;
}

function endTurn() {
  const { changes, snapshot } = turn;
  turn = null;
  if (!snapshot) {
    for (const detail of changes) emit('change', detail);
    return;
  }
  const resync = state.synced;
  state.synced = true;
  dropEmptyNamespaces();
  emit('replace', { resync, changed: changes.map(({ change }) => change) });
}

/** A refusal the SDK will not retry. */
function onError(error) {
  if (error.code === 'unauthorized') block(currentToken() ? 'refused' : 'missing', error.message);
  else if (error.code === 'forbidden') block('forbidden', error.message);
  else {
    emit('connection', 'stopped');
    showError(`Live updates stopped: ${error.code}: ${error.message}`, { topic: 'connection' });
  }
}

/**
 * Stops and says why: no token, a refused token, or one without rights. What the token
 * showed is cleared; a new token (the Token field) starts over.
 */
function block(kind, detail = '') {
  client?.close();
  client = null;
  state.blocked = kind;
  state.connection = null;
  clearState();
  if (kind !== 'forbidden') forgetIdentity();
  emit('replace', { resync: false, changed: [] });
  emit('blocked', { kind, detail });
}
