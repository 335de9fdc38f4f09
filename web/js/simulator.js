// The subject simulator: what a subject with attributes gets, evaluated locally with the
// SDK's evaluation, exactly as clients do it.
//
// It evaluates the running release, or, before one starts, the draft in the form
// (its percent, allow, deny, rules and salt, unsaved). With a release running and a
// new percent typed but not set, it also shows what that percent would decide.

import { evaluateGray } from '/sdk/graycast.js';
import { $ } from './dom.js';
import { formatPercent } from './format.js';
import { draftGray } from './gray-form.js';
import { compactJson } from './json.js';

/** `name=value` lines into an object; returns the line numbers it could not read. */
function parseAttrs(text) {
  const attrs = {};
  const bad = [];
  text.split('\n').forEach((line, index) => {
    if (line.trim() === '') return;
    const eq = line.indexOf('=');
    const name = eq > 0 ? line.slice(0, eq).trim() : '';
    if (name === '') {
      bad.push(index + 1);
      return;
    }
    attrs[name] = line.slice(eq + 1).trim();
  });
  return { attrs, bad };
}

function showDecision(prefix, decision) {
  $(`#${prefix}-variant`).textContent = decision.variant;
  $(`#${prefix}-reason`).textContent = decision.reason;
}

/** Simulates for `entry` (undefined: the key does not exist); a draft is salted `defaultSalt`. */
export function simulate(entry, defaultSalt) {
  const subjectText = $('#sim-subject').value;
  const subject = subjectText === '' ? null : subjectText;
  const { attrs, bad } = parseAttrs($('#sim-attrs').value);
  const notes = [];
  let gray = entry?.gray ?? null;
  let source = 'Evaluates the running release, as clients do.';
  let grayValueText = gray ? compactJson(gray.value) : '-';
  const formShown = !$('#gray-form').hidden;
  if (!gray && formShown) {
    const draft = draftGray(defaultSalt);
    if (draft.error) {
      source = 'Evaluates the draft in the form above once it can be read.';
      notes.push(`Draft: ${draft.error}`);
    } else {
      gray = draft.gray;
      source = `Evaluates the draft above (not started): ${formatPercent(gray.percent)}%, salt ${gray.salt}.`;
      grayValueText = draft.valueError ? `(${draft.valueError})` : compactJson(draft.gray.value);
    }
  } else if (!gray) {
    source = 'No release runs: everyone gets the stable value.';
  }
  $('#sim-source').textContent = source;
  const decision = evaluateGray(gray, subject, attrs);
  showDecision('sim', decision);
  $('#sim-bucket').textContent = decision.bucket === null || decision.bucket === undefined ? '-' : String(decision.bucket);
  let value = '-';
  if (entry) value = decision.variant === 'gray' ? grayValueText : compactJson(entry.value);
  $('#sim-value').textContent = value;

  // A running release and a new percent typed but not set yet: preview it too.
  const draftBox = $('#sim-draft');
  draftBox.hidden = true;
  if (entry?.gray && !$('#gray-controls').hidden) {
    const typed = $('#gray-set-percent').value;
    const percent = Number(typed);
    if (typed !== '' && Number.isFinite(percent) && percent >= 0 && percent <= 100 && percent !== Number(entry.gray.percent)) {
      const preview = evaluateGray({ ...entry.gray, percent }, subject, attrs);
      $('#sim-draft-title').textContent = `At ${formatPercent(percent)}% (typed, not set yet):`;
      showDecision('sim-draft', preview);
      draftBox.hidden = false;
    }
  }
  if (!entry) notes.push('The key does not exist.');
  if (decision.reason === 'random') notes.push('Without a subject the variant is drawn at random on each evaluation.');
  if (bad.length) notes.push(`Ignored line ${bad.join(', ')}: expected name=value.`);
  $('#sim-note').textContent = notes.join(' ');
}
