// Line diffs of JSON values, for the history and the rollback dialog.

import { el } from './dom.js';

// Largest LCS table the diff builds (cells); beyond it the changed middle is shown
// as removed-then-added, which stays correct, just less precise.
const LCS_MAX_CELLS = 1_000_000;
// Unchanged runs longer than this in a diff are folded to their edges.
const DIFF_CONTEXT = 2;

export function renderDiff(currentLines, itemLines, hasCurrent, isDelete) {
  const label = 'Diff against the current value';
  if (!hasCurrent && isDelete) {
    return el('pre', { class: 'diff', 'aria-label': label }, el('span', { class: 'line same' }, '  (deleted, and the key does not exist now)\n'));
  }
  const ops = diffLines(currentLines, itemLines);
  if (ops.every((op) => op.kind === 'same')) {
    return el('pre', { class: 'diff', 'aria-label': label }, el('span', { class: 'line same' }, '  (same as the current value)\n'));
  }
  const prefix = { same: '  ', add: '+ ', del: '- ' };
  const lines = foldUnchanged(ops).map((op) => (op.kind === 'fold'
    ? el('span', { class: 'line fold' }, `  … ${op.count} unchanged lines\n`)
    : el('span', { class: `line ${op.kind}` }, `${prefix[op.kind]}${op.text}\n`)));
  return el('pre', { class: 'diff', 'aria-label': label }, lines);
}

/**
 * A line diff from `before` to `after`: [{kind: 'same'|'del'|'add', text}].
 * Common head and tail are matched first (cheap, and usually all there is);
 * the changed middle gets a longest-common-subsequence diff.
 */
function diffLines(before, after) {
  let start = 0;
  while (start < before.length && start < after.length && before[start] === after[start]) start += 1;
  let endBefore = before.length;
  let endAfter = after.length;
  while (endBefore > start && endAfter > start && before[endBefore - 1] === after[endAfter - 1]) {
    endBefore -= 1;
    endAfter -= 1;
  }
  const same = (text) => ({ kind: 'same', text });
  const a = before.slice(start, endBefore);
  const b = after.slice(start, endAfter);
  const middle = a.length * b.length <= LCS_MAX_CELLS
    ? lcsDiff(a, b)
    : [...a.map((text) => ({ kind: 'del', text })), ...b.map((text) => ({ kind: 'add', text }))];
  return [...before.slice(0, start).map(same), ...middle, ...before.slice(endBefore).map(same)];
}

function lcsDiff(a, b) {
  const n = a.length;
  const m = b.length;
  // lengths[i][j]: length of the longest common subsequence of a[i..] and b[j..].
  const lengths = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i -= 1) {
    for (let j = m - 1; j >= 0; j -= 1) {
      lengths[i][j] = a[i] === b[j]
        ? lengths[i + 1][j + 1] + 1
        : Math.max(lengths[i + 1][j], lengths[i][j + 1]);
    }
  }
  const ops = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) {
      ops.push({ kind: 'same', text: a[i] });
      i += 1;
      j += 1;
    } else if (lengths[i + 1][j] >= lengths[i][j + 1]) {
      ops.push({ kind: 'del', text: a[i] });
      i += 1;
    } else {
      ops.push({ kind: 'add', text: b[j] });
      j += 1;
    }
  }
  for (; i < n; i += 1) ops.push({ kind: 'del', text: a[i] });
  for (; j < m; j += 1) ops.push({ kind: 'add', text: b[j] });
  return ops;
}

/** Keeps DIFF_CONTEXT unchanged lines around each change; longer runs become one fold. */
function foldUnchanged(ops) {
  const result = [];
  let index = 0;
  while (index < ops.length) {
    if (ops[index].kind !== 'same') {
      result.push(ops[index]);
      index += 1;
      continue;
    }
    let end = index;
    while (end < ops.length && ops[end].kind === 'same') end += 1;
    const keepHead = index === 0 ? 0 : DIFF_CONTEXT; // context after a change
    const keepTail = end === ops.length ? 0 : DIFF_CONTEXT; // context before a change
    const run = end - index;
    if (run > keepHead + keepTail + 1) {
      result.push(...ops.slice(index, index + keepHead));
      result.push({ kind: 'fold', count: run - keepHead - keepTail });
      result.push(...ops.slice(end - keepTail, end));
    } else {
      result.push(...ops.slice(index, end));
    }
    index = end;
  }
  return result;
}
