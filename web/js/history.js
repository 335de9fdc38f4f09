// The history of a key: its revisions, newest first, each diffed against the current
// value, and rollback to one of them.

import { api, describeError, keyPath } from './api.js';
import { closeConfirm, confirmAction } from './confirm.js';
import { renderDiff } from './diff.js';
import { $, debounce, el, timeEl } from './dom.js';
import { describeNote, entryId, formatPercent, truncate } from './format.js';
import { canWrite } from './identity.js';
import { compactJson, prettyJson, sameJson } from './json.js';
import { onPanelClose, openPanel } from './panels.js';
import { requestOffer } from './request-offer.js';
import { entryOf, on, state } from './state.js';

const HISTORY_DEBOUNCE_MS = 250;
const HISTORY_LIMIT = 50;

const historyView = { ns: '', key: '', sequence: 0, items: [] };
const reloadHistorySoon = debounce(() => loadHistory(), HISTORY_DEBOUNCE_MS);

export function openHistory(ns, key, opener) {
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
  const current = entryOf(historyView.ns, historyView.key);
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
  const current = entryOf(ns, key);
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
    offer: (err, comment) => requestOffer(err, {
      ops: [{ op: 'rollback', namespace: ns, key, body: { to_revision: item.revision } }],
      comment,
      base: { namespace: ns, key, revision: current?.revision ?? 0 },
      opened: closeConfirm,
    }),
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

export function initHistory() {
  on('change', ({ change }) => historyKeyChanged(entryId(change.namespace, change.key)));
  on('replace', () => {
    if (state.synced) historyKeyChanged(entryId(historyView.ns, historyView.key));
  });
  on('rights', () => {
    if (!$('#history').hidden) loadHistory();
  });
  onPanelClose('history', () => {
    reloadHistorySoon.cancel();
    historyView.sequence += 1;
  });
  $('#history-list').addEventListener('click', onHistoryClick);
}
