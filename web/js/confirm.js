// The confirmation dialog.
//
// Promote, abort and delete ask for the key's name; rollback shows the diff it will
// apply. The action runs while the dialog is open, so its failure is shown there;
// on success the dialog closes and a message says what happened.

import { describeError } from './api.js';
import { $, whileBusy } from './dom.js';
import { commentOf } from './forms.js';
import { notify } from './messages.js';

const confirmView = { run: null, want: '', opener: null, okLabel: '', offer: null };

/**
 * Opens the dialog. `run(comment)` performs the action and resolves to the message
 * to show; it throws to keep the dialog open with the error, under which `offer(err,
 * comment)` may put what to do instead (an element, or null).
 */
export function confirmAction({ title, text, extra = null, typeName = '', okLabel, danger = false, run, opener, offer = () => null }) {
  const dialog = $('#confirm');
  confirmView.run = run;
  confirmView.want = typeName;
  confirmView.opener = opener ?? document.activeElement;
  confirmView.okLabel = okLabel;
  confirmView.offer = offer;
  $('#confirm-offer').replaceChildren();
  $('#confirm-title').textContent = title;
  $('#confirm-text').textContent = text;
  $('#confirm-extra').replaceChildren(...(extra ? [extra] : []));
  $('#confirm-name-field').hidden = !typeName;
  $('#confirm-name-want').textContent = typeName;
  $('#confirm-name').value = '';
  $('#confirm-comment').value = '';
  $('#confirm-error').textContent = '';
  const ok = $('#confirm-ok');
  ok.textContent = okLabel;
  ok.className = danger ? 'danger-solid' : 'primary';
  ok.disabled = false;
  dialog.dataset.action = okLabel.toLowerCase();
  dialog.showModal();
  (typeName ? $('#confirm-name') : ok).focus();
}

async function submitConfirm(event) {
  event.preventDefault();
  const error = $('#confirm-error');
  error.textContent = '';
  if (confirmView.want && $('#confirm-name').value.trim() !== confirmView.want) {
    error.textContent = `The name does not match: type ${confirmView.want} exactly, or Cancel.`;
    $('#confirm-name').focus();
    return;
  }
  const run = confirmView.run;
  if (!run) return;
  const comment = commentOf($('#confirm-comment'));
  $('#confirm-offer').replaceChildren();
  await whileBusy($('#confirm-ok'), async () => {
    try {
      const message = await run(comment);
      closeConfirm();
      if (message) notify(message.text ?? message, message.options ?? {});
    } catch (err) {
      error.textContent = `${confirmView.okLabel} failed: ${describeError(err)}`;
      const offer = confirmView.offer(err, comment);
      if (offer) $('#confirm-offer').append(offer);
    }
  });
}

export function closeConfirm() {
  const dialog = $('#confirm');
  confirmView.run = null;
  if (dialog.open) dialog.close();
  const opener = confirmView.opener;
  if (opener?.isConnected) opener.focus();
}

export function initConfirm() {
  $('#confirm-form').addEventListener('submit', submitConfirm);
  $('#confirm-cancel').addEventListener('click', closeConfirm);
  $('#confirm').addEventListener('close', () => {
    confirmView.run = null;
  });
}
