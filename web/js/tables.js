// The namespace tables: a section per namespace in natural order, pages of PAGE_SIZE keys,
// search across namespaces, collapsing, descriptions; rows flash when their key changes.

import { $, el } from './dom.js';
import { openChanges } from './changes.js';
import { openDescribe, isDescribing } from './describe.js';
import { confirmDelete, openEditor } from './editor.js';
import { entryId, plural } from './format.js';
import { openGray } from './gray.js';
import { openHistory } from './history.js';
import { openSchemaEditor } from './schema-editor.js';
import { canWrite } from './identity.js';
import { buildRow, flash, rowSignature } from './rows.js';
import { readQuery, search, updateSearchSummary } from './search.js';
import { markSelected, nsVisibleByFilter, renderSidebar, updateSidebarCount } from './sidebar.js';
import { entriesOf, entryMatches, isReserved, META_NAMESPACE, on, SCHEMAS_NAMESPACE, sortedNamespaces, state } from './state.js';

const COLLAPSED_KEY = 'graycast.collapsed';
// Keys per page of a namespace table; "Show more" adds as many again.
const PAGE_SIZE = 25;

const tables = {
  rows: new Map(), // "ns/key" -> <tr> on screen
  sections: new Map(), // ns -> { section, tbody, pager, head parts }
  shown: new Map(), // ns -> how many keys its table shows (pages)
  collapsed: new Set(JSON.parse(sessionStorage.getItem(COLLAPSED_KEY) ?? '[]')),
};

/** Rebuilds every section and the sidebar from the state. */
function renderNamespaces() {
  tables.rows.clear();
  tables.sections.clear();
  const names = sortedNamespaces();
  $('#ns-sections').replaceChildren(...names.map((ns) => buildSection(ns)));
  for (const ns of names) fillSection(ns);
  renderSidebar();
  updateSearchSummary();
  $('#empty-state').hidden = names.length > 0 || Boolean(state.blocked) || !state.synced;
}

function buildSection(ns) {
  const bodyId = `ns-body-${ns}`;
  const titleId = `ns-title-${ns}`;
  const collapsed = tables.collapsed.has(ns);
  const toggle = el('button', {
    type: 'button', class: 'ns-toggle', 'data-ns-action': 'toggle',
    'aria-expanded': String(!collapsed), 'aria-controls': bodyId,
  }, el('span', { class: 'chevron', 'aria-hidden': 'true' }), el('span', { class: 'ns-name' }, ns));
  const count = el('span', { class: 'ns-count' });
  const typed = el('span', { class: 'ns-typed' });
  const actions = el('div', { class: 'ns-actions' },
    el('button', { type: 'button', 'data-ns-action': 'changes', 'aria-label': `Recent changes in ${ns}` }, 'Changes'),
    canWrite(ns) && el('button', { type: 'button', 'data-ns-action': 'describe', 'aria-label': `Describe ${ns}` }, 'Describe'),
    el('button', { type: 'button', 'data-ns-action': 'schemas', 'aria-label': `Schemas of ${ns}` }, 'Schemas'));
  const description = el('p', { class: 'ns-desc' });
  const describeSlot = el('div', { class: 'ns-describe-slot' });
  const tbody = el('tbody');
  const pager = el('div', { class: 'pager' });
  const body = el('div', { class: 'ns-body', id: bodyId, hidden: collapsed },
    el('div', { class: 'table-wrap' },
      el('table', { class: 'entries' },
        el('thead', {},
          el('tr', {},
            el('th', { scope: 'col', class: 'key' }, 'Key'),
            el('th', { scope: 'col', class: 'value' }, 'Value'),
            el('th', { scope: 'col', class: 'rev' }, 'Rev'),
            el('th', { scope: 'col', class: 'who' }, 'By'),
            el('th', { scope: 'col', class: 'when' }, 'Updated'))),
        tbody)),
    pager);
  const section = el('section', {
    class: 'ns-section', id: `ns-${ns}`, 'data-testid': 'ns-table', 'data-ns': ns, 'aria-labelledby': titleId,
  },
  el('header', { class: 'ns-head' },
    el('h2', { id: titleId, class: 'ns-title' }, toggle),
    count,
    typed,
    actions),
  description,
  describeSlot,
  body);
  tables.sections.set(ns, { section, tbody, pager, count, typed, description, describeSlot, body, toggle });
  renderSectionHead(ns);
  if (isDescribing(ns)) openDescribe(ns, tables.sections.get(ns), false);
  return section;
}

/** The description line and count of a section. */
function renderSectionHead(ns) {
  const parts = tables.sections.get(ns);
  if (!parts) return;
  const text = state.descriptions.get(ns) ?? '';
  parts.description.textContent = text;
  parts.description.hidden = text === '';
  const describe = parts.section.querySelector('[data-ns-action="describe"]');
  if (describe) describe.textContent = text ? 'Edit description' : 'Describe';
  renderTyped(ns, parts.typed);
}

/** "typed (strict)", and how many live values are out of schema. */
function renderTyped(ns, node) {
  const schemas = state.schemas.get(ns);
  const out = state.outOfSchema.get(ns)?.count ?? 0;
  const badges = [];
  if (schemas) {
    badges.push(el('span', { class: 'badge typed', title: `Values of ${ns} are checked against its JSON Schemas (${schemas.mode} mode)` },
      `typed (${schemas.mode})`));
  }
  if (schemas && out > 0) badges.push(el('span', { class: 'badge out-of-schema' }, `${plural(out, 'value')} out of schema`));
  node.replaceChildren(...badges);
}

/**
 * Brings one section's rows up to date: the matching keys in natural order, the
 * first pages of them. Rows whose entry did not change are kept (and their focus
 * and open folds with them); changed ones are rebuilt.
 */
function fillSection(ns) {
  const parts = tables.sections.get(ns);
  if (!parts) return;
  const all = entriesOf(ns);
  const matching = search.query ? all.filter((entry) => entryMatches(entry, search.query)) : all;
  const limit = tables.shown.get(ns) ?? PAGE_SIZE;
  const shown = matching.slice(0, limit);
  const keep = new Set();
  const rows = shown.map((entry) => {
    const id = entryId(ns, entry.key);
    keep.add(id);
    const old = tables.rows.get(id);
    if (old && old.dataset.sig === rowSignature(entry)) return old;
    const row = buildRow(entry);
    if (old) {
      // Keep keyboard focus on the same button when its row is rebuilt under it.
      const focused = old.contains(document.activeElement) ? document.activeElement.dataset.action : null;
      old.replaceWith(row);
      if (focused) row.querySelector(`[data-action="${focused}"]`)?.focus();
    }
    tables.rows.set(id, row);
    return row;
  });
  for (const [id, row] of tables.rows) {
    if (row.dataset.ns === ns && !keep.has(id)) {
      row.remove();
      tables.rows.delete(id);
    }
  }
  const { tbody } = parts;
  tbody.querySelector('tr.empty')?.remove();
  rows.forEach((row, i) => {
    if (tbody.children[i] !== row) tbody.insertBefore(row, tbody.children[i] ?? null);
  });
  while (tbody.children.length > rows.length) tbody.lastElementChild.remove();
  if (rows.length === 0) {
    const text = all.length === 0 ? 'No keys.' : 'No key matches the search.';
    tbody.append(el('tr', { class: 'empty' }, el('td', { colspan: 5 }, text)));
  }
  renderPager(ns, parts, all.length, matching.length, shown.length);
  parts.section.hidden = !nsVisibleByFilter(ns) || (search.query !== '' && matching.length === 0);
  parts.count.textContent = search.query
    ? `${matching.length} of ${plural(all.length, 'key')}`
    : plural(all.length, 'key');
  updateSidebarCount(ns, search.query ? matching.length : all.length);
}

function renderPager(ns, parts, total, matching, shown) {
  const what = search.query ? 'matching keys' : 'keys';
  const items = [];
  if (matching > PAGE_SIZE) items.push(el('span', { class: 'pager-text' }, `Showing ${shown} of ${matching} ${what}`));
  if (shown < matching) {
    const more = Math.min(PAGE_SIZE, matching - shown);
    items.push(el('button', { type: 'button', 'data-ns-action': 'more', 'aria-label': `Show ${more} more keys of ${ns}` }, `Show ${more} more`));
    items.push(el('button', { type: 'button', 'data-ns-action': 'all', 'aria-label': `Show all keys of ${ns}` }, 'Show all'));
  } else if (shown > PAGE_SIZE) {
    items.push(el('button', { type: 'button', 'data-ns-action': 'fewer', 'aria-label': `Show fewer keys of ${ns}` }, 'Show fewer'));
  }
  parts.pager.replaceChildren(...items);
  parts.pager.hidden = items.length === 0;
}

function setCollapsed(ns, collapsed) {
  const parts = tables.sections.get(ns);
  if (collapsed) tables.collapsed.add(ns);
  else tables.collapsed.delete(ns);
  sessionStorage.setItem(COLLAPSED_KEY, JSON.stringify([...tables.collapsed]));
  if (!parts) return;
  parts.body.hidden = collapsed;
  parts.toggle.setAttribute('aria-expanded', String(!collapsed));
}

/** One listener for every row and section button (rows are rebuilt on each change). */
function onTableClick(event) {
  const nsButton = event.target.closest('button[data-ns-action]');
  if (nsButton) {
    onSectionAction(nsButton);
    return;
  }
  const button = event.target.closest('button[data-action]');
  const row = button?.closest('tr[data-key]');
  if (!row) return;
  const { ns, key } = row.dataset;
  const entry = state.entries.get(entryId(ns, key));
  if (!entry) return;
  switch (button.dataset.action) {
    case 'edit':
      openEditor(entry, button);
      break;
    case 'history':
      openHistory(ns, key, button);
      break;
    case 'gray':
      openGray(ns, key, button);
      break;
    case 'delete':
      confirmDelete(entry, button);
      break;
    default:
      break;
  }
}

function onSectionAction(button) {
  const ns = button.closest('.ns-section')?.dataset.ns;
  if (!ns) return;
  const shown = tables.shown.get(ns) ?? PAGE_SIZE;
  switch (button.dataset.nsAction) {
    case 'toggle':
      setCollapsed(ns, !tables.collapsed.has(ns));
      break;
    case 'more':
      tables.shown.set(ns, shown + PAGE_SIZE);
      fillSection(ns);
      break;
    case 'all':
      tables.shown.set(ns, Infinity);
      fillSection(ns);
      break;
    case 'fewer':
      tables.shown.delete(ns);
      fillSection(ns);
      tables.sections.get(ns)?.section.scrollIntoView({ block: 'nearest' });
      break;
    case 'changes':
      openChanges(ns, button);
      break;
    case 'describe':
      openDescribe(ns, tables.sections.get(ns), true);
      break;
    case 'schemas':
      openSchemaEditor(ns, button);
      break;
    default:
      break;
  }
}

/** A pushed change: its section (or, for a new namespace, all of them) and its row. */
function onChange({ change, newNamespace }) {
  const { namespace: ns, key } = change;
  if (ns === META_NAMESPACE || ns === SCHEMAS_NAMESPACE) {
    if (newNamespace) renderNamespaces();
    else renderSectionHead(key);
    renderSidebar();
    return;
  }
  // Change requests, reviews and policies have views of their own.
  if (isReserved(ns)) return;
  if (newNamespace) renderNamespaces();
  else fillSection(ns);
  const row = tables.rows.get(entryId(ns, key));
  if (row) flash(row);
}

/** A new state: rebuilt; after a resync, the rows it changed flash. */
function onReplace({ resync, changed }) {
  renderNamespaces();
  if (!resync) return;
  for (const change of changed) {
    const row = tables.rows.get(entryId(change.namespace, change.key));
    if (row) flash(row);
  }
}

export function initTables() {
  on('change', onChange);
  on('replace', onReplace);
  on('rights', renderNamespaces);
  on('typed', (ns) => {
    renderSectionHead(ns);
    fillSection(ns);
  });
  on('rejections', () => {
    for (const ns of state.namespaces) fillSection(ns);
  });
  $('#namespaces').addEventListener('click', onTableClick);
  // The sidebar filter narrows the namespace list and the tables.
  $('#ns-filter').addEventListener('input', () => {
    for (const ns of state.namespaces) fillSection(ns);
  });
  $('#key-search').addEventListener('input', () => {
    readQuery();
    for (const ns of sortedNamespaces()) fillSection(ns);
    updateSearchSummary();
  });
  $('#collapse-all').addEventListener('click', () => {
    for (const ns of state.namespaces) setCollapsed(ns, true);
  });
  $('#expand-all').addEventListener('click', () => {
    for (const ns of state.namespaces) setCollapsed(ns, false);
  });
  $('#ns-list').addEventListener('click', (event) => {
    const link = event.target.closest('.ns-link');
    if (!link) return;
    markSelected(link.dataset.ns);
    setCollapsed(link.dataset.ns, false);
  });
}
