// The inline form that describes a namespace (PUT /v1/namespaces/{ns}); descriptions are
// entries of graycast.meta and come back, like every change, from the live data.

import { api, describeError } from './api.js';
import { el, whileBusy } from './dom.js';
import { commentOf, MAX_COMMENT_CHARS } from './forms.js';
import { canWrite } from './identity.js';
import { notify } from './messages.js';
import { state } from './state.js';

const MAX_DESCRIPTION_CHARS = 1024;

let describing = null; // ns whose description form is open (kept when its section is rebuilt)

export function isDescribing(ns) {
  return describing === ns;
}

/** The inline form that describes a namespace (PUT /v1/namespaces/{ns}). */
export function openDescribe(ns, parts, focus) {
  if (!canWrite(ns)) return;
  describing = ns;
  const text = el('textarea', {
    id: `describe-text-${ns}`, rows: 2, maxlength: MAX_DESCRIPTION_CHARS, class: 'describe-text',
    placeholder: 'e.g. Timeouts and limits of the payment service',
  });
  text.value = state.descriptions.get(ns) ?? '';
  const comment = el('input', { id: `describe-comment-${ns}`, type: 'text', maxlength: MAX_COMMENT_CHARS, autocomplete: 'off' });
  const error = el('p', { class: 'error', 'aria-live': 'assertive' });
  const save = el('button', { type: 'submit', class: 'primary' }, 'Save description');
  const close = () => {
    describing = null;
    parts.describeSlot.replaceChildren();
  };
  const form = el('form', {
    class: 'describe-form stack',
    'data-testid': 'describe-form',
    novalidate: true,
    onsubmit: async (event) => {
      event.preventDefault();
      error.textContent = '';
      await whileBusy(save, async () => {
        try {
          const answer = await api('PUT', `/v1/namespaces/${encodeURIComponent(ns)}`, {
            body: { description: text.value.trim() }, comment: commentOf(comment),
          });
          close();
          notify(answer.description
            ? `Described ${ns} (revision ${answer.revision}).`
            : `Removed the description of ${ns}.`);
          parts.section.querySelector('[data-ns-action="describe"]')?.focus();
        } catch (err) {
          error.textContent = `Not saved: ${describeError(err)}`;
        }
      });
    },
  },
  el('div', { class: 'field' }, el('label', { for: text.id }, `Description of ${ns}`), text,
    el('p', { class: 'hint' }, 'What the namespace is for; empty removes the description.')),
  el('div', { class: 'field' }, el('label', { for: comment.id }, 'Comment (optional)'), comment),
  error,
  el('div', { class: 'buttons' },
    el('button', { type: 'button', onclick: () => { close(); parts.section.querySelector('[data-ns-action="describe"]')?.focus(); } }, 'Cancel'),
    save));
  parts.describeSlot.replaceChildren(form);
  if (focus) text.focus();
}
