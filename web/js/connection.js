// The connection's state in the top bar, the revision beside it, and the banner that
// says why the token keeps the console out.

import { $ } from './dom.js';
import { clearMessages, showError } from './messages.js';
import { on } from './state.js';

const CONN_TEXT = {
  connecting: 'Connecting…',
  live: 'Live',
  reconnecting: 'Reconnecting…',
  stopped: 'Stopped',
  missing: 'Token needed',
  refused: 'Token refused',
  forbidden: 'No access',
};

const ACCESS_TEXT = {
  missing: 'This server needs an access token. Enter yours in the Token field at the top.',
  refused: 'The token was refused: the server does not know it. Check it and enter it again.',
  forbidden: 'The token lacks the rights to watch this server.',
};

function setConnState(connState) {
  const status = $('#conn-status');
  const blocked = Object.hasOwn(ACCESS_TEXT, connState);
  status.dataset.state = blocked ? 'auth' : connState;
  status.dataset.reason = blocked ? connState : '';
  status.textContent = CONN_TEXT[connState];
}

function showBlocked({ kind, detail }) {
  setConnState(kind);
  $('#revision').textContent = '–';
  $('#access-text').textContent = ACCESS_TEXT[kind];
  $('#access-detail').textContent = detail ? `The server said: ${detail}` : '';
  $('#access-banner').dataset.reason = kind;
  $('#access-banner').hidden = false;
  $('#empty-state').hidden = true;
  showError(ACCESS_TEXT[kind], { topic: 'access' });
}

/** A new token is being tried: what the old one ran into is stale. */
export function clearAccessProblem() {
  $('#access-banner').hidden = true;
  clearMessages((d) => d.topic === 'access');
}

export function initConnection() {
  on('connection', setConnState);
  on('revision', (revision) => {
    $('#revision').textContent = String(revision);
  });
  on('blocked', showBlocked);
  $('#access-focus-token').addEventListener('click', () => $('#token').focus());
}
