// The form that starts a gray release: value, percent, allow and deny lists, rules, a
// ramp of steps (as rows, or as "5:10m, 25:1h" text kept in step with them), salt,
// guard. Its readers serve the start and the simulator's preview of the draft.

import { $, el, linkRange } from './dom.js';
import { InputError, parseDuration, parseJsonField, readNumber, readPercent, splitList } from './forms.js';
import { prettyJson, sameJson } from './json.js';
import { showViolations } from './schema-form.js';

const RULE_OPS = ['in', 'not_in', 'eq', 'prefix', 'semver_gte', 'semver_lt'];

// Told of every edit of the form, programmatic ones included (the simulator follows it).
let formChanged = () => {};

/** Empties the form for a new release of `entry` (undefined: the key does not exist). */
export function resetGrayForm(entry) {
  $('#gray-form').reset();
  // A copy of the current value to edit; submitting it unchanged is refused.
  $('#gray-value').value = entry ? prettyJson(entry.value) : '';
  $('#gray-percent').value = '0';
  $('#gray-percent-number').value = '0';
  $('#gray-rules').replaceChildren();
  $('#gray-steps').replaceChildren();
  $('#gray-ramp').value = '';
  $('#gray-ramp-error').textContent = '';
  $('#gray-error').textContent = '';
  showViolations($('#gray-violations'), []);
}

function readRules() {
  const rules = [];
  [...$('#gray-rules').children].forEach((row, index) => {
    const attribute = row.querySelector('.rule-attr').value.trim();
    const values = splitList(row.querySelector('.rule-values').value);
    if (attribute === '' && values.length === 0) return; // an untouched row
    if (attribute === '') throw new InputError(`Rule ${index + 1} needs an attribute.`);
    if (values.length === 0) throw new InputError(`Rule ${index + 1} needs at least one value.`);
    rules.push({ attribute, op: row.querySelector('.rule-op').value, values });
  });
  return rules;
}

/** Steps from the rows; numbered from 1, as the server's messages number them. */
function readSteps() {
  const steps = [];
  [...$('#gray-steps').children].forEach((row, index) => {
    const percentText = row.querySelector('.step-percent').value;
    const holdText = row.querySelector('.step-hold').value;
    if (percentText.trim() === '' && holdText.trim() === '') return; // an untouched row
    const step = { percent: readPercent(percentText, `Step ${index + 1} percent`) };
    if (holdText.trim() !== '') step.hold_secs = parseDuration(holdText, `Step ${index + 1} hold`);
    steps.push(step);
  });
  return steps;
}

/** "5:10m, 25:1h, 100" → [{percent, hold}] texts, without judging them. */
function splitRamp(text) {
  return text.split(/[,;\n]|→/).map((s) => s.trim()).filter((s) => s !== '').map((part, index) => {
    const m = /^([0-9.]+)\s*%?\s*(?::\s*(.+))?$/.exec(part);
    if (!m) throw new InputError(`Step ${index + 1} "${part}" is not percent:hold (such as 25:1h).`);
    readPercent(m[1], `Step ${index + 1} percent`);
    if (m[2] !== undefined) parseDuration(m[2], `Step ${index + 1} hold`);
    return { percent: m[1], hold: m[2]?.trim() ?? '' };
  });
}

/** The ramp text was edited: rebuild the step rows from it (rows then write it back). */
function onRampTextInput() {
  const error = $('#gray-ramp-error');
  let steps;
  try {
    steps = splitRamp($('#gray-ramp').value);
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    error.textContent = err.message;
    return;
  }
  error.textContent = '';
  $('#gray-steps').replaceChildren();
  for (const step of steps) addStepRow({ focus: false, percent: step.percent, hold: step.hold });
  formChanged();
}

/** The rows were edited: write them as ramp text (unless it is being typed in). */
function syncRampText() {
  if (document.activeElement === $('#gray-ramp')) return;
  const parts = [...$('#gray-steps').children].map((row) => {
    const percent = row.querySelector('.step-percent').value.trim();
    const hold = row.querySelector('.step-hold').value.trim();
    if (percent === '' && hold === '') return null;
    return hold ? `${percent}:${hold}` : percent;
  }).filter(Boolean);
  $('#gray-ramp').value = parts.join(', ');
  $('#gray-ramp-error').textContent = '';
}

function renumberSteps() {
  [...$('#gray-steps').children].forEach((row, index) => {
    row.querySelector('.step-number').textContent = `Step ${index + 1}`;
    row.querySelector('.step-percent').setAttribute('aria-label', `Step ${index + 1} percent`);
    row.querySelector('.step-hold').setAttribute('aria-label', `Step ${index + 1} hold`);
    row.querySelector('.remove').setAttribute('aria-label', `Remove step ${index + 1}`);
  });
}

function readGuard() {
  const rate = $('#gray-guard-rate').value;
  const min = $('#gray-guard-min').value;
  if (rate.trim() === '' && min.trim() === '') return null;
  return {
    max_error_rate: readNumber(rate, 'Guard max error rate', { min: 0, max: 1 }),
    min_samples: readNumber(min, 'Guard min samples', { integer: true, min: 1 }),
  };
}

/** The percent the form would start at: the typed one, or with ramp steps and 0 typed, step 1's. */
function formPercent(steps) {
  const typed = readPercent($('#gray-percent-number').value, 'Percent');
  return steps.length > 0 && typed === 0 ? steps[0].percent : typed;
}

/**
 * Builds the PUT .../gray body. The form refuses what is surely a mistake (an
 * unchanged value, a release nobody gets); the server judges the rest and its
 * message is shown as is.
 */
export function readGrayForm(entry) {
  const value = parseJsonField($('#gray-value').value, 'Gray value');
  if (entry && sameJson(value, entry.value)) {
    throw new InputError('The gray value is the current value: change it to the value you want to release.');
  }
  const steps = readSteps();
  const body = {
    value,
    allow: splitList($('#gray-allow').value),
    deny: splitList($('#gray-deny').value),
    rules: readRules(),
    steps,
    auto_promote: $('#gray-auto-promote').checked,
    paused: $('#gray-start-paused').checked,
  };
  const percent = formPercent(steps);
  // With ramp steps and no percent typed, the release starts at step 1 (the server's default).
  if (steps.length === 0 || Number($('#gray-percent-number').value) !== 0) body.percent = percent;
  if (percent === 0 && body.allow.length === 0 && steps.length === 0) {
    throw new InputError('Nobody would get the gray value: set a percent above 0, allow some subjects, or add ramp steps.');
  }
  const salt = $('#gray-salt').value.trim();
  if (salt) body.salt = salt;
  const guard = readGuard();
  if (guard) body.guard = guard;
  return body;
}

/**
 * The release the start form describes (salted with `defaultSalt` unless the form names
 * one), or {error} when the form cannot be read yet.
 */
export function draftGray(defaultSalt) {
  try {
    const steps = readSteps();
    let value;
    let valueError = null;
    try {
      value = parseJsonField($('#gray-value').value, 'Gray value');
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      valueError = 'the gray value is not valid JSON yet';
    }
    return {
      gray: {
        value,
        percent: formPercent(steps),
        salt: $('#gray-salt').value.trim() || defaultSalt,
        allow: splitList($('#gray-allow').value),
        deny: splitList($('#gray-deny').value),
        rules: readRules(),
      },
      valueError,
    };
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    return { error: err.message };
  }
}

function addRuleRow() {
  const attr = el('input', { class: 'rule-attr', type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'e.g. region' });
  const op = el('select', { class: 'rule-op' }, RULE_OPS.map((name) => el('option', { value: name }, name)));
  const values = el('input', { class: 'rule-values', type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'e.g. eu-west, eu-north' });
  const row = el('div', { class: 'row rule-row' },
    el('label', {}, el('span', {}, 'Attribute'), attr),
    el('label', {}, el('span', {}, 'Op'), op),
    el('label', { class: 'grow' }, el('span', {}, 'Values'), values));
  row.append(removeRowButton(row, 'Remove rule', $('#gray-add-rule')));
  $('#gray-rules').append(row);
  attr.focus();
}

function addStepRow({ focus = true, percent = '', hold = '' } = {}) {
  const percentInput = el('input', {
    class: 'step-percent', type: 'number', min: 0, max: 100, step: 0.01, inputmode: 'decimal',
  });
  const holdInput = el('input', {
    class: 'step-hold', type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'e.g. 10m',
  });
  percentInput.value = percent;
  holdInput.value = hold;
  const row = el('div', { class: 'row step-row' },
    el('span', { class: 'step-number' }),
    el('label', {}, el('span', {}, 'Percent'), percentInput),
    el('label', {}, el('span', {}, 'Hold (30s, 5m, 2h, 1d)'), holdInput));
  row.append(removeRowButton(row, 'Remove step', $('#gray-add-step'), () => {
    renumberSteps();
    syncRampText();
  }));
  $('#gray-steps').append(row);
  renumberSteps();
  if (focus) {
    syncRampText();
    percentInput.focus();
  }
}

function removeRowButton(row, label, focusAfter, after = () => {}) {
  return el('button', {
    type: 'button',
    class: 'remove',
    'aria-label': label,
    onclick: () => {
      row.remove();
      after();
      formChanged();
      focusAfter.focus();
    },
  }, '×');
}

export function initGrayForm(onChange) {
  formChanged = onChange;
  $('#gray-form').addEventListener('input', (event) => {
    if (event.target.closest('#gray-steps')) syncRampText();
    formChanged();
  });
  $('#gray-form').addEventListener('change', () => formChanged());
  $('#gray-ramp').addEventListener('input', onRampTextInput);
  linkRange($('#gray-percent'), $('#gray-percent-number'));
  $('#gray-add-rule').addEventListener('click', addRuleRow);
  $('#gray-add-step').addEventListener('click', () => addStepRow());
}
