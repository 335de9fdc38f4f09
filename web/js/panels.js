// Panels: beside the tables on wide screens, above them on narrow ones; closed by × or
// Escape, which gives the focus back to the control that opened them.

import { $ } from './dom.js';

const openPanels = []; // open panels, most recently opened last
const panelOpeners = new WeakMap(); // panel -> the control that opened it
const panelCloseHooks = new Map(); // panel id -> cleanup when it closes

/** Registers what to stop (timers, requests in flight) when the panel `id` closes. */
export function onPanelClose(id, hook) {
  panelCloseHooks.set(id, hook);
}

export function openPanel(panel, opener, focusTarget) {
  const index = openPanels.indexOf(panel);
  if (index >= 0) openPanels.splice(index, 1);
  openPanels.push(panel);
  if (opener) panelOpeners.set(panel, opener);
  panel.hidden = false;
  syncPanelLayout();
  // On narrow screens the panel sits above the tables; bring it into view, from its title
  // when it is taller than the window.
  panel.scrollIntoView({ block: panel.offsetHeight > window.innerHeight ? 'start' : 'nearest' });
  (focusTarget ?? panel.querySelector('h2')).focus({ preventScroll: true });
}

export function closePanel(panel) {
  if (panel.hidden) return;
  panel.hidden = true;
  openPanels.splice(openPanels.indexOf(panel), 1);
  panelCloseHooks.get(panel.id)?.();
  syncPanelLayout();
  restoreFocus(panelOpeners.get(panel));
}

/**
 * Returns focus to the control that opened a panel. Rows are rebuilt on every
 * change, so a row button may have been replaced by its twin in the new row.
 */
function restoreFocus(opener) {
  if (!opener) return;
  if (opener.isConnected) {
    opener.focus();
    return;
  }
  const oldRow = opener.closest('tr[data-key]');
  const row = oldRow && document.querySelector(
    `#namespaces tr[data-ns="${CSS.escape(oldRow.dataset.ns)}"][data-key="${CSS.escape(oldRow.dataset.key)}"]`,
  );
  row?.querySelector(`[data-action="${opener.dataset.action}"]`)?.focus();
}

function syncPanelLayout() {
  $('#layout').classList.toggle('with-panels', openPanels.length > 0);
  $('#show-clients').setAttribute('aria-expanded', String(!$('#clients-panel').hidden));
  $('#show-changes').setAttribute('aria-expanded', String(!$('#changes-panel').hidden));
  $('#show-requests').setAttribute('aria-expanded', String(!$('#requests-panel').hidden));
}

/** Escape closes the panel holding the focus, else the one opened last. */
function onKeyDown(event) {
  if (event.key !== 'Escape' || event.defaultPrevented || $('#confirm').open) return;
  const panel = document.activeElement?.closest('.panel:not([hidden])') ?? openPanels.at(-1);
  if (!panel) return;
  event.preventDefault();
  closePanel(panel);
}

export function initPanels() {
  document.addEventListener('keydown', onKeyDown);
  for (const button of document.querySelectorAll('.panel-close')) {
    button.addEventListener('click', () => closePanel(button.closest('.panel')));
  }
}
