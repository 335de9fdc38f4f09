// The sidebar: the namespace list with key counts, its filter, and the selected namespace.

import { $, el } from './dom.js';
import { plural } from './format.js';
import { canWrite } from './identity.js';
import { matchingCount, search } from './search.js';
import { sortedNamespaces, state } from './state.js';

export function nsVisibleByFilter(ns) {
  const filter = $('#ns-filter').value.trim().toLowerCase();
  return ns.toLowerCase().includes(filter);
}

/** Rebuilds the namespace list. */
export function renderSidebar() {
  const names = sortedNamespaces();
  $('#ns-list').replaceChildren(...names.map((ns) => el('li', { 'data-ns': ns },
    el('a', {
      href: `#ns-${ns}`,
      class: ns === state.selectedNs ? 'ns-link active' : 'ns-link',
      'data-testid': 'ns-link',
      'data-ns': ns,
      title: state.descriptions.get(ns) ?? null,
      'aria-current': ns === state.selectedNs ? 'location' : null,
    }, ns))));
  for (const ns of names) {
    const all = state.byNs.get(ns)?.size ?? 0;
    const matching = search.query ? matchingCount(ns) : all;
    updateSidebarCount(ns, matching);
  }
  const writable = names.filter((ns) => canWrite(ns));
  $('#ns-options').replaceChildren(...writable.map((ns) => el('option', { value: ns })));
}

/** Shows a namespace's key count (drawn from data-count by CSS, so the link's text stays the name). */
export function updateSidebarCount(ns, count) {
  const item = $('#ns-list').querySelector(`li[data-ns="${CSS.escape(ns)}"]`);
  const link = item?.querySelector('.ns-link');
  if (!link) return;
  link.dataset.count = String(count);
  link.setAttribute('aria-label', `${ns}, ${plural(count, search.query ? 'matching key' : 'key')}`);
  item.hidden = !nsVisibleByFilter(ns) || (search.query !== '' && count === 0);
}

/** Marks the namespace picked in the sidebar; the editor offers it first. */
export function markSelected(ns) {
  state.selectedNs = ns;
  for (const link of document.querySelectorAll('#ns-list .ns-link')) {
    const active = link.dataset.ns === ns;
    link.classList.toggle('active', active);
    if (active) link.setAttribute('aria-current', 'location');
    else link.removeAttribute('aria-current');
  }
}
