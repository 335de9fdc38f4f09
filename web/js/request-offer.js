// "Open a change request with this change": when a policy refuses a write (403
// approval_required), the form that made it offers to propose the same op instead
// (POST /v1/change-requests), optionally applied at a time, and opens the new request.

import { api, describeError } from './api.js';
import { $, el, whileBusy } from './dom.js';
import { plural, shortId } from './format.js';
import { notify } from './messages.js';
import { openRequests, remember } from './requests.js';
import { entryOf } from './state.js';

let offers = 0; // numbers the offers' fields, so that their labels name them

/**
 * When `err` is a policy's refusal, an element offering to open a change request with
 * `ops` (and `comment`); null otherwise. `base`, the revision the form was editing,
 * guards against proposing a change over a newer one unseen. `opened(request)` runs
 * once the request exists (to close the form, say).
 */
export function requestOffer(err, { ops, comment, base = null, opened = () => {} }) {
  if (err?.code !== 'approval_required') return null;
  const fieldId = `request-offer-at-${++offers}`;
  const at = el('input', { id: fieldId, type: 'datetime-local' });
  const error = el('p', { class: 'error', 'aria-live': 'assertive' });
  const button = el('button', { type: 'button', class: 'primary', 'data-testid': 'open-request' }, 'Open a change request with this change');
  const offer = el('div', { class: 'request-offer stack', 'data-testid': 'request-offer' },
    el('p', {}, 'A policy governs this namespace: the change needs approval by someone else. Propose it as a change request instead; it applies once approved.'),
    el('div', { class: 'field' },
      el('label', { for: fieldId }, 'Apply at (optional: once approved, the server applies it then)'),
      at),
    error,
    el('div', { class: 'buttons' }, button));
  button.addEventListener('click', () => whileBusy(button, async () => {
    error.textContent = '';
    const now = base && (entryOf(base.namespace, base.key)?.revision ?? 0);
    if (base && now !== base.revision) {
      error.textContent = `The key changed since you opened it (now revision ${now}): reload it, and propose the change against what it holds now.`;
      return;
    }
    const body = { ops };
    if (comment) body.comment = comment;
    if (at.value) body.apply_at = new Date(at.value).toISOString();
    try {
      const request = await api('POST', '/v1/change-requests', { body });
      remember(request);
      offer.replaceChildren(el('p', { class: 'hint' }, `Opened change request ${shortId(request.id)}.`));
      notify(`Opened change request ${shortId(request.id)}: it needs ${plural(request.required, 'approval')} by someone else.`);
      opened(request);
      openRequests($('#show-requests'), request.id);
    } catch (failure) {
      error.textContent = `Not opened: ${describeError(failure)}`;
    }
  }));
  return offer;
}
