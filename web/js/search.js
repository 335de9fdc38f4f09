// The key search: one query across every namespace, matching key names and values.

import { $ } from './dom.js';
import { plural } from './format.js';
import { entriesOf, entryMatches, state } from './state.js';

export const search = { query: '' };

export function readQuery() {
  search.query = $('#key-search').value.trim().toLowerCase();
}

export function matchingCount(ns) {
  return entriesOf(ns).filter((entry) => entryMatches(entry, search.query)).length;
}

export function updateSearchSummary() {
  const summary = $('#search-summary');
  if (!search.query) {
    summary.textContent = '';
    return;
  }
  let keys = 0;
  let namespaces = 0;
  for (const ns of state.namespaces) {
    const n = matchingCount(ns);
    keys += n;
    if (n) namespaces += 1;
  }
  summary.textContent = keys
    ? `${plural(keys, 'key')} in ${plural(namespaces, 'namespace')} match`
    : 'No key or value matches';
}
