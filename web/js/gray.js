// The gray release panel of a key: start a release (gray-form.js), follow a running one
// (gray-status.js), set its percent, pause, promote or abort it, and hear when someone
// else (or the guard) ended it. The simulator below the form follows all of it.

import { api, describeError, keyPath } from './api.js';
import { closeConfirm, confirmAction } from './confirm.js';
import { $, el, linkRange, whileBusy } from './dom.js';
import { describeNote, entryId, formatPercent, GUARD_ACTOR, plural, truncate } from './format.js';
import { commentOf, InputError, readPercent } from './forms.js';
import { initGrayForm, readGrayForm, resetGrayForm } from './gray-form.js';
import { countdownText, renderCounts, renderGrayStatus } from './gray-status.js';
import { canWrite } from './identity.js';
import { compactJson } from './json.js';
import { notify } from './messages.js';
import { onPanelClose, openPanel } from './panels.js';
import { requestOffer } from './request-offer.js';
import { showViolations, violationsOfError } from './schema-form.js';
import { asOwn, entryOf, isOwn, on, state } from './state.js';
import { simulate } from './simulator.js';

const COUNTS_POLL_MS = 5000;

const grayView = {
  ns: '',
  key: '',
  running: false, // whether the shown key had a release at the last render
  countsSequence: 0,
  countsTimer: null,
  tickTimer: null,
};

function grayEntry() {
  return entryOf(grayView.ns, grayView.key);
}

/** Recomputes the simulator for the shown key. */
function resimulate() {
  simulate(grayEntry(), entryId(grayView.ns, grayView.key));
}

export function openGray(ns, key, opener) {
  const switching = entryId(ns, key) !== entryId(grayView.ns, grayView.key) || $('#gray-panel').hidden;
  grayView.ns = ns;
  grayView.key = key;
  $('#gray-title').textContent = `Gray release of ${entryId(ns, key)}`;
  $('#gray-salt-default').textContent = entryId(ns, key);
  if (switching) {
    resetGrayForm(grayEntry());
    hideGrayEnded();
    $('#gray-action-error').textContent = '';
    $('#gray-action-comment').value = '';
    $('#gray-counts').replaceChildren();
  }
  renderGray();
  openPanel($('#gray-panel'), opener);
  clearInterval(grayView.countsTimer);
  clearInterval(grayView.tickTimer);
  grayView.countsTimer = setInterval(refreshCounts, COUNTS_POLL_MS);
  grayView.tickTimer = setInterval(updateCountdown, 1000);
  refreshCounts();
}

function closeGrayHook() {
  clearInterval(grayView.countsTimer);
  clearInterval(grayView.tickTimer);
  grayView.countsSequence += 1; // drop answers still in flight
}

/** Shows the start form or the running release, and recomputes the simulator. */
function renderGray() {
  const entry = grayEntry();
  const running = Boolean(entry?.gray);
  const writable = canWrite(grayView.ns);
  const focusWasIn = ['#gray-form', '#gray-running'].find((id) => $(id).contains(document.activeElement));
  $('#gray-missing').hidden = Boolean(entry);
  $('#gray-readonly').hidden = writable || !entry;
  $('#gray-none').hidden = writable || !entry || running;
  $('#gray-form').hidden = !entry || running || !writable;
  $('#gray-running').hidden = !running;
  $('#gray-controls').hidden = !writable;
  // Focus inside a part that just disappeared would fall to <body>: move it to the part shown now.
  if (focusWasIn && $(focusWasIn).hidden) {
    const target = running ? '#gray-running-title' : entry && writable ? '#gray-form-title' : '#gray-title';
    $(target).focus();
  }
  // A release just ended (promoted, aborted, guard): start the form afresh.
  if (grayView.running && !running) resetGrayForm(entry);
  grayView.running = running;
  if (running) renderGrayStatus(entry.gray);
  resimulate();
}

function updateCountdown() {
  const gray = grayEntry()?.gray;
  const node = document.getElementById('gray-next');
  if (gray && node) node.textContent = countdownText(gray);
}

async function refreshCounts() {
  const sequence = ++grayView.countsSequence;
  const target = $('#gray-counts');
  // Counts exist only while a release runs; asking otherwise is a sure 404.
  if (!grayEntry()?.gray) {
    target.replaceChildren();
    return;
  }
  try {
    const status = await api('GET', keyPath(grayView.ns, grayView.key, '/gray'));
    if (sequence !== grayView.countsSequence) return;
    target.replaceChildren(renderCounts(status.counts, status.gray?.guard));
  } catch (err) {
    if (sequence !== grayView.countsSequence) return;
    // A 404 means the release ended meanwhile; its change is on its way.
    if (err.status === 404) target.replaceChildren();
    else target.replaceChildren(el('p', { class: 'error' }, `Counts unavailable: ${describeError(err)}`));
  }
}

async function startGray(event) {
  event.preventDefault();
  const error = $('#gray-error');
  error.textContent = '';
  showViolations($('#gray-violations'), []);
  let body;
  try {
    body = readGrayForm(grayEntry());
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    error.textContent = err.message;
    return;
  }
  const { ns, key } = grayView;
  const comment = commentOf($('#gray-comment'));
  hideGrayEnded();
  $('#gray-offer').replaceChildren();
  await whileBusy($('#gray-start'), async () => {
    try {
      const entry = await api('PUT', keyPath(ns, key, '/gray'), { body, comment });
      notify(`Started the gray release of ${entryId(ns, key)} at ${formatPercent(entry.gray.percent)}% (revision ${entry.revision}).`);
    } catch (err) {
      const violations = violationsOfError(err);
      // Listed beside the gray value they are about, not repeated here.
      error.textContent = violations.length
        ? `Not started: the gray value breaks this key's JSON Schema (${plural(violations.length, 'violation')}, listed under the gray value).`
        : `Not started: ${describeError(err)}`;
      showViolations($('#gray-violations'), violations);
      const offer = requestOffer(err, {
        ops: [{ op: 'gray.start', namespace: ns, key, body }],
        comment,
        base: { namespace: ns, key, revision: grayEntry()?.revision ?? 0 },
      });
      if (offer) $('#gray-offer').append(offer);
    }
  });
}

/**
 * Runs one action on the running release; `done(entry)` words the message. The
 * changed entry arrives with the live data.
 */
async function grayAction(button, what, method, suffix, { body, comment, done } = {}) {
  const { ns, key } = grayView;
  const error = $('#gray-action-error');
  error.textContent = '';
  $('#gray-action-offer').replaceChildren();
  await whileBusy(button, async () => {
    try {
      const entry = await api(method, keyPath(ns, key, suffix), { body, comment });
      $('#gray-action-comment').value = '';
      notify(done(entry));
    } catch (err) {
      error.textContent = `${what} failed: ${describeError(err)}`;
      // Every action here is a PATCH of the release. Raising the percent or resuming may
      // need approval; lowering and pausing never do.
      const offer = requestOffer(err, {
        ops: [{ op: 'gray.patch', namespace: ns, key, body }],
        comment,
        base: { namespace: ns, key, revision: grayEntry()?.revision ?? 0 },
      });
      if (offer) $('#gray-action-offer').append(offer);
    }
  });
}

function setGrayPercent() {
  const error = $('#gray-action-error');
  let percent;
  try {
    percent = readPercent($('#gray-set-percent').value, 'Percent');
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    error.textContent = err.message;
    return;
  }
  const label = entryId(grayView.ns, grayView.key);
  grayAction($('#gray-set'), `Setting the percent to ${formatPercent(percent)}%`, 'PATCH', '/gray', {
    body: { percent },
    comment: commentOf($('#gray-action-comment')),
    done: (entry) => `Set the gray percent of ${label} to ${formatPercent(percent)}% at revision ${entry.revision}.`,
  });
}

function pauseGray(paused, button) {
  const label = entryId(grayView.ns, grayView.key);
  grayAction(button, paused ? 'Pause' : 'Resume', 'PATCH', '/gray', {
    body: { paused },
    comment: commentOf($('#gray-action-comment')),
    done: (entry) => `${paused ? 'Paused' : 'Resumed'} the gray release of ${label} at revision ${entry.revision}.`,
  });
}

/** Promote or abort, confirmed by typing the key's name. */
function confirmGrayEnd(kind, opener) {
  const { ns, key } = grayView;
  const id = entryId(ns, key);
  const entry = grayEntry();
  if (!entry?.gray) return;
  const promote = kind === 'promote';
  const gray = compactJson(entry.gray.value);
  const stable = compactJson(entry.value);
  confirmAction({
    title: promote ? `Promote the gray value of ${id}?` : `Abort the gray release of ${id}?`,
    text: promote
      ? `Every subject gets the gray value ${truncate(gray, 120)} (now at ${formatPercent(entry.gray.percent)}%); the stable value ${truncate(stable, 80)} is replaced and the release ends.`
      : `Every subject goes back to the stable value ${truncate(stable, 120)}; the gray value ${truncate(gray, 80)} (now at ${formatPercent(entry.gray.percent)}%) is dropped and the release ends.`,
    typeName: key,
    okLabel: promote ? 'Promote' : 'Abort',
    danger: !promote,
    opener,
    // An abort lowers exposure and is never refused; a promote may need approval.
    offer: (err, comment) => requestOffer(err, {
      ops: [{ op: 'gray.promote', namespace: ns, key }],
      comment,
      base: { namespace: ns, key, revision: entry.revision },
      opened: closeConfirm,
    }),
    run: async (comment) => {
      const answer = await asOwn(ns, key, kind, () => (promote
        ? api('POST', keyPath(ns, key, '/gray/promote'), { comment })
        : api('DELETE', keyPath(ns, key, '/gray'), { comment })));
      hideGrayEnded();
      return promote
        ? `Promoted ${id} at revision ${answer.revision}.`
        : `Aborted the gray release of ${id} at revision ${answer.revision}; the stable value stays.`;
    },
  });
}

/**
 * A pushed change ended a release: unless this console did it, say who and why (the
 * guard's note in people's words). In the panel when it shows the key, else as a message.
 */
function announceReleaseEnd(message, before) {
  const id = entryId(message.namespace, message.key);
  const ended = before?.gray && (message.op === 'abort' || message.op === 'promote' || !message.entry);
  if (!ended || isOwn(message)) return;
  const by = message.entry?.updated_by ?? 'someone';
  const guard = by === GUARD_ACTOR || /^guard:/.test(message.note ?? '');
  let text;
  if (!message.entry) text = `${id} was deleted (revision ${message.revision}), and its gray release with it.`;
  else if (guard) text = message.note ? describeNote(message.note, GUARD_ACTOR) : 'The guard aborted the release.';
  else if (message.op === 'abort') text = `${by} aborted the release at revision ${message.revision}.`;
  else if (message.note) text = `The release was promoted at revision ${message.revision}: ${message.note}.`;
  else text = `${by} promoted the release at revision ${message.revision}.`;
  const detail = [
    message.comment ? `Comment: ${message.comment}` : '',
    guard && message.note ? `Server note: ${message.note}` : '',
    message.op === 'abort' ? 'The stable value stays; the start form below can begin a new release.' : '',
  ].filter(Boolean);
  const panelShows = !$('#gray-panel').hidden && id === entryId(grayView.ns, grayView.key);
  if (panelShows) {
    $('#gray-ended-text').textContent = text;
    $('#gray-ended-detail').replaceChildren(...detail.map((line) => el('span', {}, line)));
    $('#gray-ended').dataset.kind = guard ? 'guard' : message.op;
    $('#gray-ended').hidden = false;
  } else if (guard) {
    notify(`${id}: ${text}`, { kind: 'alert', detail: detail[0]?.startsWith('Comment') ? detail[0] : null });
  }
}

function hideGrayEnded() {
  $('#gray-ended').hidden = true;
}

function grayKeyChanged(id, message, before) {
  if (message) announceReleaseEnd(message, before);
  if ($('#gray-panel').hidden || id !== entryId(grayView.ns, grayView.key)) return;
  // A new release replaces the news of the last one's end.
  if (message?.entry?.gray && !before?.gray) hideGrayEnded();
  renderGray();
  refreshCounts();
}

export function initGray() {
  initGrayForm(resimulate);
  on('change', ({ change, before }) => grayKeyChanged(entryId(change.namespace, change.key), change, before));
  on('replace', () => {
    if (state.synced) grayKeyChanged(entryId(grayView.ns, grayView.key), null, null);
  });
  on('rights', () => {
    if (!$('#gray-panel').hidden) renderGray();
  });
  onPanelClose('gray-panel', closeGrayHook);
  $('#gray-form').addEventListener('submit', startGray);
  linkRange($('#gray-set-range'), $('#gray-set-percent'), resimulate);
  $('#gray-set').addEventListener('click', setGrayPercent);
  $('#gray-promote').addEventListener('click', (event) => confirmGrayEnd('promote', event.currentTarget));
  $('#gray-abort').addEventListener('click', (event) => confirmGrayEnd('abort', event.currentTarget));
  $('#gray-pause').addEventListener('click', (event) => pauseGray(true, event.currentTarget));
  $('#gray-resume').addEventListener('click', (event) => pauseGray(false, event.currentTarget));
  $('#gray-ended-dismiss').addEventListener('click', () => {
    hideGrayEnded();
    $('#gray-title').focus();
  });
  $('#sim-subject').addEventListener('input', resimulate);
  $('#sim-attrs').addEventListener('input', resimulate);
}
