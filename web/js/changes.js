// Recent changes (GET /v1/changes, newest first), of every namespace or one, kept live
// by pushed changes.

import { api, describeError } from './api.js';
import { $, el, timeEl } from './dom.js';
import { describeNote, entryId, shortId } from './format.js';
import { openHistory } from './history.js';
import { onPanelClose, openPanel } from './panels.js';
import {
  META_NAMESPACE, on, POLICIES_NAMESPACE, REQUESTS_NAMESPACE, REVIEWS_NAMESPACE, SCHEMAS_NAMESPACE, sortedNamespaces, state,
} from './state.js';

const CHANGES_LIMIT = 100;

const changesView = { ns: '', sequence: 0, items: [] };

export function openChanges(ns, opener) {
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

/** What a change of a reserved namespace did, in words, and its badge; null for a key's. */
function reservedChange(item) {
  if (item.namespace === META_NAMESPACE) return [`description of ${item.key} ${item.op === 'delete' ? 'removed' : 'set'}`, 'describe'];
  // Setting, removing and rolling back schemas are all op `schema`.
  if (item.namespace === SCHEMAS_NAMESPACE) return [`schemas of ${item.key} changed`, 'schema'];
  // Its comment says how it moved ("change request approved").
  if (item.namespace === REQUESTS_NAMESPACE) return [`change request ${shortId(item.key)}`, 'request'];
  if (item.namespace === REVIEWS_NAMESPACE) return [`review ${item.key} of a break-glass change`, 'review'];
  if (item.namespace === POLICIES_NAMESPACE) return ['policies changed', 'policy'];
  return null;
}

function buildChangeItem(item) {
  const reserved = reservedChange(item);
  const what = reserved
    ? el('span', { class: 'change-what' }, reserved[0])
    : el('button', {
      type: 'button', class: 'link change-key', 'data-ns': item.namespace, 'data-key': item.key,
      'aria-label': `History of ${entryId(item.namespace, item.key)}`,
    }, entryId(item.namespace, item.key));
  return el('li', { class: `change-item op-${item.op}`, 'data-rev': item.revision, 'data-testid': 'change-item' },
    el('p', { class: 'history-head' },
      el('strong', {}, `r${item.revision}`), ' ',
      el('span', { class: `op-badge op-${reserved?.[1] ?? item.op}` }, reserved?.[1] ?? item.op), ' ',
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

function onChangesClick(event) {
  const button = event.target.closest('button.change-key');
  if (!button) return;
  const { ns, key } = button.dataset;
  openHistory(ns, key, button);
}

export function initChanges() {
  on('change', ({ change, newNamespace }) => {
    if (newNamespace && !$('#changes-panel').hidden) renderChangesScope();
    changeArrived(change);
  });
  // A snapshot (reconnect, resync) may have skipped changes, and a new token sees other
  // namespaces: reload the feed.
  on('replace', () => {
    if ($('#changes-panel').hidden) return;
    renderChangesScope();
    if (state.synced || state.blocked) loadChanges();
  });
  on('rights', () => {
    if (!$('#changes-panel').hidden) renderChangesScope();
  });
  onPanelClose('changes-panel', () => {
    changesView.sequence += 1;
  });
  $('#show-changes').addEventListener('click', (event) => openChanges('', event.currentTarget));
  $('#changes-ns').addEventListener('change', () => {
    changesView.ns = $('#changes-ns').value;
    renderChangesScope();
    loadChanges();
  });
  $('#changes-list').addEventListener('click', onChangesClick);
}
