// One table row per key: its name and actions, value, revision, author and time, and
// what typed configs know of it (out of schema, rejected by clients).

import { el, timeEl } from './dom.js';
import { formatPercent, plural, truncate } from './format.js';
import { canWrite } from './identity.js';
import { compactJson, prettyJson } from './json.js';
import { rejectionsOf, violationsOf } from './schemas.js';

const FLASH_MS = 1500;
const INLINE_VALUE_CHARS = 80;
const UNFOLDED_VALUE_LINES = 8;

export function buildRow(entry) {
  const { namespace: ns, key } = entry;
  const label = `${ns}/${key}`;
  const writable = canWrite(ns);
  const actions = el('div', { class: 'row-actions' },
    writable && el('button', { type: 'button', 'data-action': 'edit', 'aria-label': `Edit ${label}` }, 'Edit'),
    el('button', { type: 'button', 'data-action': 'history', 'aria-label': `History of ${label}` }, 'History'),
    (writable || entry.gray) && el('button', {
      type: 'button', 'data-action': 'gray', 'aria-label': `Gray release of ${label}`,
    }, 'Gray'),
    writable && el('button', { type: 'button', 'data-action': 'delete', class: 'danger', 'aria-label': `Delete ${label}` }, 'Delete'));
  return el('tr', { 'data-ns': ns, 'data-key': key, 'data-rev': entry.revision, 'data-sig': rowSignature(entry) },
    el('th', { scope: 'row', class: 'key' },
      el('span', { class: 'key-line' },
        el('span', { class: 'key-name' }, key),
        entry.gray && grayBadge(entry.gray),
        outOfSchemaBadge(violationsOf(ns, key)),
        rejectionBadge(rejectionsOf(ns, key)[0], entry)),
      actions),
    el('td', { class: 'value', 'data-label': 'Value' }, renderValue(entry.value)),
    el('td', { class: 'rev', 'data-label': 'Revision' }, String(entry.revision)),
    el('td', { class: 'who', 'data-label': 'By' }, entry.updated_by),
    el('td', { class: 'when', 'data-label': 'Updated' }, timeEl(entry.updated_at)));
}

function grayBadge(gray) {
  const text = `gray ${formatPercent(gray.percent)}%${gray.paused ? ' paused' : ''}`;
  return el('span', { class: 'badge gray', title: `gray value ${truncate(compactJson(gray.value), 80)}` }, text);
}

/**
 * What a row shows, as text: a row whose signature is unchanged is kept as it is (with
 * its focus and open folds); any other is rebuilt.
 */
export function rowSignature(entry) {
  const { namespace: ns, key } = entry;
  const violations = violationsOf(ns, key).map((v) => `${v.variant}${v.path} ${v.keyword}`);
  const rejected = rejectionsOf(ns, key)[0];
  return [entry.revision, ...violations, rejected ? `${rejected.revision}x${rejected.clients}` : ''].join('|');
}

/** "out of schema" on a key whose live value(s) break its schema, the reasons on hover. */
function outOfSchemaBadge(violations) {
  if (violations.length === 0) return null;
  const variants = new Set(violations.map((v) => v.variant));
  const title = violations.map((v) => `${v.variant} ${v.path || '(the value)'}: ${v.keyword}: ${v.message}`).join('\n');
  return el('span', { class: 'badge out-of-schema', title, 'data-testid': 'out-of-schema' },
    variants.has('stable') ? 'out of schema' : 'gray out of schema');
}

/** "N clients rejected revision R" for the newest revision clients rejected. */
function rejectionBadge(rejection, entry) {
  if (!rejection) return null;
  const text = `${plural(rejection.clients, 'client')} rejected revision ${rejection.revision}`;
  const now = rejection.revision < entry.revision ? ` The key is at revision ${entry.revision} now.` : '';
  return el('span', {
    class: `badge rejected${now ? ' older' : ''}`, 'data-testid': 'rejected',
    title: `The last client's error: ${rejection.error}${now}`,
  }, text);
}

/** Short values inline; longer ones pretty-printed, the longest folded. */
function renderValue(value) {
  const compact = compactJson(value);
  if (compact.length <= INLINE_VALUE_CHARS) return el('code', { class: 'json' }, compact);
  const pretty = prettyJson(value);
  if (pretty.split('\n').length <= UNFOLDED_VALUE_LINES) return el('pre', { class: 'json' }, pretty);
  return el('details', { class: 'fold' },
    el('summary', { title: 'Show the whole value' }, truncate(compact, 160)),
    el('pre', { class: 'json' }, pretty));
}

export function flash(row) {
  row.classList.add('flash');
  setTimeout(() => row.classList.remove('flash'), FLASH_MS);
}
