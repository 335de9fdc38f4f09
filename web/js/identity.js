// Identity and rights (GET /v1/whoami).
//
// The console shows only what the token may do: read and report tokens see a
// read-only console, a write token writes the namespaces its patterns match. The
// server enforces all of it anyway; hiding a button only spares a refusal.

import { api, currentToken } from './api.js';
import { $, el } from './dom.js';
import { globRegExp } from './format.js';
import { emit } from './state.js';

export const identity = {
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
  if (before !== after) emit('rights');
}

export function forgetIdentity() {
  identity.known = false;
  identity.name = '';
  identity.role = '';
  identity.patterns = [];
  identity.regexps = [];
  renderIdentity();
  emit('rights');
}

export function isAdmin() {
  return identity.known && identity.role === 'admin';
}

export function canWriteSomewhere() {
  return identity.known && (identity.role === 'admin' || identity.role === 'write');
}

export function canRead(ns) {
  if (!identity.known) return false;
  return identity.role === 'admin' || identity.regexps.some((re) => re.test(ns));
}

export function canWrite(ns) {
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

export function renderIdentity() {
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
  // Anyone may list the requests of the namespaces they read.
  $('#show-requests').hidden = !identity.known;
  document.body.dataset.access = !identity.known ? 'unknown' : canWriteSomewhere() ? identity.role : 'read';
}

/** Asks the server who the token is: 'ok', 'missing', 'refused' or 'down'. */
export async function loadIdentity() {
  try {
    setIdentity(await api('GET', '/v1/whoami'));
    return 'ok';
  } catch (err) {
    if (err.status === 401) return currentToken() ? 'refused' : 'missing';
    // A server older than /v1/whoami: assume full rights; it refuses what it must.
    if (err.status === 404) {
      setIdentity({ name: 'anonymous', role: 'admin', namespaces: ['*'] });
      return 'ok';
    }
    return 'down';
  }
}
