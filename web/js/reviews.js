// Break-glass review items: an admin's write past a policy (X-Graycast-Break-Glass) opens
// one, and it stays on show above the tables until someone other than that admin
// acknowledges it (POST /v1/reviews/{id}/ack). They live in graycast.reviews, pushed to
// admin tokens, the only ones that may read or acknowledge them.

import { api, describeError } from './api.js';
import { $, el, timeEl, whileBusy } from './dom.js';
import { entryId } from './format.js';
import { identity, isAdmin } from './identity.js';
import { notify } from './messages.js';
import { on, REVIEWS_NAMESPACE, state } from './state.js';

function buildReview(review) {
  const own = review.by === identity.name;
  const why = own ? 'You broke glass here: someone else acknowledges it.' : null;
  return el('li', { class: 'review-item', 'data-testid': 'review', 'data-id': review.id },
    el('p', { class: 'review-what' },
      el('strong', {}, review.by), ` broke glass: ${review.op} `,
      el('code', {}, entryId(review.namespace, review.key)),
      ` at revision ${review.revision}, `, timeEl(review.at)),
    el('p', { class: 'review-reason' }, el('span', { class: 'comment-label' }, 'Reason: '), review.reason),
    el('div', { class: 'buttons' },
      own && el('span', { class: 'hint' }, why),
      el('button', {
        type: 'button', 'data-review-action': 'ack', disabled: own, title: why,
        'aria-label': `Acknowledge the break-glass ${review.op} of ${entryId(review.namespace, review.key)} by ${review.by}`,
        onclick: (event) => acknowledge(review, event.currentTarget),
      }, 'Acknowledge')));
}

async function acknowledge(review, button) {
  await whileBusy(button, async () => {
    try {
      await api('POST', `/v1/reviews/${encodeURIComponent(review.id)}/ack`);
      $('#reviews-error').textContent = '';
      // The acknowledged item's change takes it off the list.
      notify(`Acknowledged the break-glass ${review.op} of ${entryId(review.namespace, review.key)} by ${review.by}.`);
    } catch (err) {
      $('#reviews-error').textContent = `Not acknowledged: ${describeError(err)}`;
    }
  });
}

/** The unacknowledged items, newest first; the banner hides when there are none. */
function renderReviews() {
  const waiting = isAdmin()
    ? [...state.reviews.values()].filter((r) => !r.acknowledged).sort((a, b) => b.revision - a.revision)
    : [];
  $('#reviews-banner').hidden = waiting.length === 0;
  $('#reviews-list').replaceChildren(...waiting.map(buildReview));
}

export function initReviews() {
  on('change', ({ change }) => {
    if (change.namespace === REVIEWS_NAMESPACE) renderReviews();
  });
  on('replace', renderReviews);
  on('rights', renderReviews);
}
