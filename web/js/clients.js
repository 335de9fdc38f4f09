// The clients panel (admin tokens only: the list is server-wide): who is subscribed, per
// namespace how many subscribers applied its latest revision, and which revisions clients
// rejected.

import { api, describeError } from './api.js';
import { $, debounce, el, timeEl } from './dom.js';
import { entryId, globRegExp, naturalCompare, plural } from './format.js';
import { isAdmin } from './identity.js';
import { consoleId } from './live.js';
import { closePanel, onPanelClose, openPanel } from './panels.js';
import { setRejections } from './schemas.js';
import { on, sortedNamespaces, state } from './state.js';

const CLIENTS_POLL_MS = 5000;
const CLIENTS_DEBOUNCE_MS = 500;
// How long a Copy button says what it did.
const COPIED_MS = 1500;

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

async function refreshClients() {
  const sequence = ++clientsView.sequence;
  try {
    const data = await api('GET', '/v1/clients');
    if (sequence !== clientsView.sequence) return;
    $('#clients-error').textContent = '';
    renderClients(data.clients);
    setRejections(data.rejections ?? []);
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
      setTimeout(() => { copy.textContent = 'Copy'; }, COPIED_MS);
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
      client.id === consoleId() && el('span', { class: 'badge' }, 'this console')),
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

/** "N clients rejected revision R" per key and revision, with the last client's error. */
function renderRejections() {
  const items = [...state.rejections.values()].flat().map((r) => el('li', { 'data-testid': 'rejection' },
    el('code', {}, entryId(r.namespace, r.key)), ' ',
    el('strong', {}, `${plural(r.clients, 'client')} rejected revision ${r.revision}`),
    el('span', { class: 'muted' }, `: ${r.error}`)));
  $('#rejections').replaceChildren(...(items.length ? items : [el('li', { class: 'muted' }, 'No client rejected a value.')]));
}

export function initClients() {
  on('rejections', renderRejections);
  // A change moves the convergence target: ask again once the burst is over.
  on('change', () => {
    if (!$('#clients-panel').hidden) refreshClientsSoon();
  });
  on('rights', () => {
    if (!isAdmin()) closePanel($('#clients-panel'));
  });
  onPanelClose('clients-panel', closeClientsHook);
  $('#show-clients').addEventListener('click', openClients);
}
