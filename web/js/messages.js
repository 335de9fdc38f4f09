// Messages: toasts in a corner, at most MAX_MESSAGES.
//
// Kinds: `info` fades after INFO_MESSAGE_MS; `error`, `alert` (something happened that
// needs eyes, such as a guard abort) and `undo` (carries an Undo) stay until dismissed.
// `topic` groups messages that a later event makes stale (the connection's errors).

import { $, el } from './dom.js';

const INFO_MESSAGE_MS = 6000;
// At most this many toasts at once; the narrow layout shows the newest two of them.
const MAX_MESSAGES = 3;

export function notify(text, { kind = 'info', action = null, topic = null, detail = null } = {}) {
  const region = $('#messages');
  // A repeated message (the same failure twice) replaces its twin.
  for (const old of region.querySelectorAll('.message')) {
    if (old.dataset.text === text) old.remove();
  }
  const sticky = kind !== 'info';
  const item = el('div', {
    class: `message ${kind}`,
    role: kind === 'error' || kind === 'alert' ? 'alert' : null,
    'data-testid': 'message',
    'data-kind': kind,
    'data-sticky': String(sticky),
    'data-topic': topic,
  },
  el('div', { class: 'message-body' },
    el('span', { class: 'message-text' }, text),
    detail && el('span', { class: 'message-detail' }, detail)));
  item.dataset.text = text;
  if (action) {
    item.append(el('button', {
      type: 'button',
      class: 'message-action',
      onclick: () => {
        item.remove();
        action.run();
      },
    }, action.label));
  }
  item.append(el('button', {
    type: 'button', class: 'dismiss', 'aria-label': 'Dismiss message', onclick: () => item.remove(),
  }, '×'));
  region.append(item);
  trimMessages(region);
  if (!sticky) setTimeout(() => item.remove(), INFO_MESSAGE_MS);
  return item;
}

/** Drops the oldest messages beyond the limit: infos first, then errors, undos last. */
function trimMessages(region) {
  for (const kinds of [['info'], ['error', 'alert'], ['undo']]) {
    for (const item of [...region.children]) {
      if (region.children.length <= MAX_MESSAGES) return;
      if (kinds.includes(item.dataset.kind)) item.remove();
    }
  }
}

export function showError(text, options = {}) {
  return notify(text, { ...options, kind: 'error' });
}

/** Removes the messages `predicate` picks (stale errors after a token change...). */
export function clearMessages(predicate) {
  for (const item of [...$('#messages').children]) {
    if (predicate(item.dataset)) item.remove();
  }
}

/** Keeps the end of the page scrollable above the toasts. */
export function watchMessageHeight() {
  const region = $('#messages');
  const update = () => {
    const height = region.children.length ? region.getBoundingClientRect().height : 0;
    document.documentElement.style.setProperty('--messages-h', `${Math.ceil(height)}px`);
  };
  new ResizeObserver(update).observe(region);
  new MutationObserver(update).observe(region, { childList: true });
}
