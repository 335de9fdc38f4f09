// The Requests view: change requests listed by state, and one of them opened
// (request-view.js) with its diff, approvals and the actions its state allows.
//
// Tokens that may read graycast.requests (an admin's, or patterns matching it) get every
// move of every request pushed, so state.js keeps the list live. Other tokens are not sent
// those pushes: for them the server's list is asked for at connect, while the panel is
// open, and after each of their own actions.

import { api, describeError } from './api.js';
import { $, el } from './dom.js';
import { entryId, plural, shortId } from './format.js';
import { canRead, identity } from './identity.js';
import { onPanelClose, openPanel } from './panels.js';
import { buildRequest, countedApprovals, touches } from './request-view.js';
import { on, REQUESTS_NAMESPACE, state } from './state.js';

// Without pushes, how often the open panel asks for the list.
const REQUESTS_POLL_MS = 3000;
// States in which a request still waits for someone (the default filter).
const ACTIVE_STATES = ['open', 'approved', 'stale'];

const requestsView = {
  openId: null, // the request shown in detail
  digest: null, // the digest of the content shown, to tell an edit made while reading
  notice: '', // why the shown request is worth reading again
  sequence: 0, // answers of the list older than the newest request drop out
  timer: null,
};

/** Whether the server pushes the requests to this token (server/src/push/selection.rs). */
function requestsPushed() {
  return canRead(REQUESTS_NAMESPACE);
}

/** Opens the panel, showing request `id` when given. */
export function openRequests(opener, id = null) {
  const panel = $('#requests-panel');
  const wasOpen = !panel.hidden;
  if (id) showRequest(id);
  openPanel(panel, opener);
  render();
  if (id) $('#request-detail h3')?.focus();
  if (!requestsPushed()) {
    loadRequests();
    if (!wasOpen) requestsView.timer = setInterval(loadRequests, REQUESTS_POLL_MS);
  }
}

function showRequest(id) {
  requestsView.openId = id;
  requestsView.digest = state.requests.get(id)?.digest ?? null;
  requestsView.notice = '';
}

/**
 * A request as this console's own call answered it (create, approve, apply...). With
 * pushes, the pushed change is the truth and an answer only fills the gap until it comes
 * (a new request); without them, the answer is the newest state known.
 */
export function remember(request) {
  if (requestsPushed() && state.requests.has(request.id)) return;
  requestsView.sequence += 1;
  state.requests.set(request.id, request);
  if (request.id === requestsView.openId) requestsView.digest = request.digest;
  render();
}

/** After a refused action: without pushes, ask how the request stands now. */
function reloadUnlessPushed() {
  if (!requestsPushed()) loadRequests();
}

async function loadRequests() {
  const sequence = ++requestsView.sequence;
  try {
    const data = await api('GET', '/v1/change-requests');
    if (sequence !== requestsView.sequence || requestsPushed()) return;
    $('#requests-error').textContent = '';
    state.requests.clear();
    for (const request of data.requests) state.requests.set(request.id, request);
    render();
  } catch (err) {
    if (sequence !== requestsView.sequence) return;
    $('#requests-error').textContent = `Change requests unavailable: ${describeError(err)}`;
  }
}

/** What a request does, in a few words: its first op, and how many more. */
function summary(request) {
  const [first, ...rest] = request.ops;
  const target = first.op === 'schema.put' ? first.namespace : entryId(first.namespace, first.key);
  return `${first.op} ${target}${rest.length ? ` and ${plural(rest.length, 'more op')}` : ''}`;
}

function stateBadge(request) {
  return el('span', { class: `state-badge state-${request.state}`, 'data-testid': 'request-state' }, request.state);
}

function buildItem(request) {
  const current = request.id === requestsView.openId;
  return el('li', {
    class: `request-item${current ? ' current' : ''}`, 'data-testid': 'request', 'data-id': request.id, 'data-state': request.state,
  },
  el('p', { class: 'request-head' },
    stateBadge(request), ' ',
    el('button', {
      type: 'button', class: 'link request-open', 'data-id': request.id, 'aria-current': current ? 'true' : null,
      'aria-label': `Open change request ${shortId(request.id)}: ${summary(request)}`,
    }, summary(request))),
  el('p', { class: 'request-meta' },
    `by ${request.author} · ${countedApprovals(request)}/${request.required} approvals`,
    request.apply_at && ` · applies at ${new Date(request.apply_at).toLocaleString()}`),
  request.comment && el('p', { class: 'comment' }, request.comment));
}

function matchesFilter(request) {
  const filter = $('#requests-state').value;
  if (filter === 'all') return true;
  if (filter === 'active') return ACTIVE_STATES.includes(request.state);
  return request.state === filter;
}

/** The count on the Requests button, the list, and the request opened. */
function render() {
  const all = [...state.requests.values()].sort((a, b) => Date.parse(b.created_at) - Date.parse(a.created_at));
  const waiting = all.filter((r) => ACTIVE_STATES.includes(r.state)).length;
  $('#requests-count').textContent = waiting ? String(waiting) : '';
  $('#show-requests').setAttribute('aria-label', `Change requests, ${plural(waiting, 'waiting')}`);
  if ($('#requests-panel').hidden) return;
  const shown = all.filter(matchesFilter);
  $('#requests-list').replaceChildren(...(shown.length
    ? shown.map(buildItem)
    : [el('li', { class: 'muted' }, all.length ? 'No request in this state.' : 'No change request yet.')]));
  renderDetail();
}

function renderDetail() {
  const detail = $('#request-detail');
  const request = state.requests.get(requestsView.openId);
  detail.hidden = !request;
  if (!request) return;
  if (requestsView.digest !== null && request.digest !== requestsView.digest) {
    // An approval names the digest read: say so, rather than let new content pass unread.
    const last = request.transitions.at(-1);
    requestsView.notice = `Its content changed while you were reading it (${last?.action} by ${last?.by}): read it again before approving.`;
  }
  requestsView.digest = request.digest;
  // Keep the focus on the same action when the detail is rebuilt under it.
  const focused = detail.contains(document.activeElement) ? document.activeElement.dataset.requestAction : null;
  detail.replaceChildren(buildRequest(request, { notice: requestsView.notice, moved: remember, refused: reloadUnlessPushed }));
  if (focused) detail.querySelector(`[data-request-action="${focused}"]`)?.focus();
}

/** A pushed move of a request, or a change of a key an opened request writes. */
function onChange({ change }) {
  if (change.namespace === REQUESTS_NAMESPACE) {
    render();
    return;
  }
  const open = state.requests.get(requestsView.openId);
  if (!open || !touches(open, change.namespace, change.key)) return;
  renderDetail();
  // Without pushes, a request applied or gone stale is only seen in the list.
  if (!requestsPushed() && !$('#requests-panel').hidden) loadRequests();
}

function onListClick(event) {
  const button = event.target.closest('button.request-open');
  if (!button) return;
  showRequest(button.dataset.id);
  render();
  $('#request-detail h3')?.focus();
}

function closeRequestsHook() {
  clearInterval(requestsView.timer);
  requestsView.timer = null;
  requestsView.sequence += 1;
}

export function initRequests() {
  on('change', onChange);
  on('replace', () => {
    // Without pushes the count on the button comes from one listing a connect.
    if (state.synced && identity.known && !requestsPushed()) loadRequests();
    render();
  });
  on('rights', render);
  onPanelClose('requests-panel', closeRequestsHook);
  $('#show-requests').addEventListener('click', (event) => openRequests(event.currentTarget));
  $('#requests-state').addEventListener('change', render);
  $('#requests-list').addEventListener('click', onListClick);
}
