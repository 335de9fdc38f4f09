// How a running release stands: percent, ramp, countdown to the next step, rules, guard,
// and the outcomes reported for each variant.

import { $, el, timeEl } from './dom.js';
import { formatCountdown, formatDuration, formatPercent, truncate } from './format.js';
import { compactJson } from './json.js';

/** "Step 2 of 3 (25%)", the ramp's steps, and whether a person moved the percent off it. */
function rampFacts(gray) {
  const steps = gray.steps ?? [];
  if (steps.length === 0) return { text: 'no ramp (percent set by hand)', list: null };
  const current = steps[gray.step];
  const byHand = current && Number(current.percent) !== Number(gray.percent);
  const list = el('ol', { class: 'ramp-list' }, steps.map((s, i) => el('li', {
    class: i === gray.step ? 'current' : i < gray.step ? 'done' : null,
    'aria-current': i === gray.step ? 'step' : null,
  }, `Step ${i + 1}: ${formatPercent(s.percent)}%${s.hold_secs ? ` for ${formatDuration(s.hold_secs)}` : ''}`)));
  let text = `step ${gray.step + 1} of ${steps.length} (${formatPercent(current?.percent ?? 0)}%)`;
  if (byHand) text += `; percent set by hand to ${formatPercent(gray.percent)}%`;
  return { text, list, byHand };
}

export function renderGrayStatus(gray) {
  const ramp = rampFacts(gray);
  const rules = (gray.rules ?? []).map((r) => `${r.attribute} ${r.op} ${r.values.join(', ')}`);
  const guard = gray.guard
    ? `abort above ${formatPercent(gray.guard.max_error_rate * 100)}% errors after ${gray.guard.min_samples} gray samples`
    : 'none';
  const row = (label, ...value) => [el('dt', {}, label), el('dd', {}, ...value)];
  $('#gray-status').replaceChildren(
    el('p', { class: 'gray-headline' },
      el('strong', {}, `${formatPercent(gray.percent)}%`), ' of subjects get the gray value · ',
      el('span', { class: gray.paused ? 'state paused' : 'state running' }, gray.paused ? 'paused' : 'running')),
    el('dl', { class: 'facts' },
      row('Gray value', el('code', {}, truncate(compactJson(gray.value), 200))),
      row('Ramp', el('span', { id: 'gray-ramp-state' }, ramp.text), ramp.list),
      row('Next step', el('span', { id: 'gray-next', 'data-at': gray.next_step_at ?? '' }, countdownText(gray))),
      row('Promote at end', gray.auto_promote ? 'yes' : 'no'),
      row('Allow', gray.allow?.length ? gray.allow.join(', ') : 'nobody'),
      row('Deny', gray.deny?.length ? gray.deny.join(', ') : 'nobody'),
      row('Rules', rules.length ? rules.join('; ') : 'none'),
      row('Guard', guard),
      row('Salt', el('code', {}, gray.salt)),
      row('Started', timeEl(gray.started_at))));
  $('#gray-pause').hidden = gray.paused;
  $('#gray-resume').hidden = !gray.paused;
  // Follow the live percent unless someone is typing a new one.
  const setter = $('#gray-set-percent');
  if (document.activeElement !== setter && document.activeElement !== $('#gray-set-range')) {
    setter.value = String(gray.percent);
    $('#gray-set-range').value = String(gray.percent);
  }
}

export function countdownText(gray) {
  if (gray.paused) return 'paused';
  if (!gray.next_step_at) return 'none scheduled';
  const steps = gray.steps ?? [];
  const next = steps[gray.step + 1];
  const what = next ? `step ${gray.step + 2} (${formatPercent(Math.max(next.percent, gray.percent))}%)` : 'the end of the ramp';
  const seconds = (Date.parse(gray.next_step_at) - Date.now()) / 1000;
  return seconds > 0 ? `${what} in ${formatCountdown(seconds)}` : `${what}, due now`;
}

export function renderCounts(counts, guard) {
  const line = (variant) => {
    const { ok = 0, errors = 0 } = counts?.[variant] ?? {};
    const total = Number(ok) + Number(errors);
    const rate = total === 0 ? '–' : `${formatPercent((errors / total) * 100)}%`;
    return el('tr', {},
      el('th', { scope: 'row' }, variant),
      el('td', {}, String(ok)), el('td', {}, String(errors)), el('td', {}, rate));
  };
  return el('table', { class: 'counts' },
    el('caption', {}, guard ? `Guard outcomes (min ${guard.min_samples} gray samples)` : 'Reported outcomes'),
    el('thead', {}, el('tr', {},
      el('th', { scope: 'col' }, 'Variant'), el('th', { scope: 'col' }, 'OK'),
      el('th', { scope: 'col' }, 'Errors'), el('th', { scope: 'col' }, 'Error rate'))),
    el('tbody', {}, line('stable'), line('gray')));
}
