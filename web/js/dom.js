// DOM helpers: building elements, relative times, and buttons and inputs that behave.

import { relativeTime } from './format.js';

export const $ = (selector) => document.querySelector(selector);

/**
 * Creates an element. Children are nodes or strings (strings become text
 * nodes, so server text is never parsed as HTML); null/false children are skipped.
 * Props: `class`, `on<event>` listeners, anything else as an attribute
 * (`true` for a boolean attribute, null/false/undefined to leave it out).
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') node.className = value;
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

/** A <time> showing relative time; `refreshRelativeTimes` keeps it current. */
export function timeEl(iso) {
  const date = new Date(iso);
  const title = Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
  return el('time', { class: 'rel', datetime: iso, title }, relativeTime(iso));
}

export function refreshRelativeTimes() {
  for (const node of document.querySelectorAll('time.rel')) {
    node.textContent = relativeTime(node.getAttribute('datetime'));
  }
}


/** Calls `fn` at most once per `ms`, after the calls stop. */
export function debounce(fn, ms) {
  let timer = null;
  const debounced = () => {
    clearTimeout(timer);
    timer = setTimeout(fn, ms);
  };
  debounced.cancel = () => clearTimeout(timer);
  return debounced;
}

/** Disables a button while `action` runs, so a double click sends one request. */
export async function whileBusy(button, action) {
  button.disabled = true;
  try {
    return await action();
  } finally {
    button.disabled = false;
  }
}

/** Keeps a range slider (snapping to its step) and a number input showing the same value. */
export function linkRange(range, number, onInput = () => {}) {
  range.addEventListener('input', () => {
    number.value = range.value;
    onInput();
  });
  number.addEventListener('input', () => {
    if (number.value !== '' && Number.isFinite(Number(number.value))) range.value = number.value;
    onInput();
  });
}

