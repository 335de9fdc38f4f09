// Reading forms: what a person typed becomes a value, or an InputError saying what to fix.

import { JsonSyntaxError, parseJson } from './json.js';

export const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
export const MAX_COMMENT_CHARS = 1024;

// A message for the person at the form: thrown by form readers, shown as is.
export class InputError extends Error {}

/** A configuration value typed by a person; every digit is kept. */
export function parseJsonField(text, label) {
  if (text.trim() === '') throw new InputError(`${label} is empty: type a JSON value (text needs quotes: "text").`);
  try {
    return parseJson(text, { exact: true });
  } catch (err) {
    if (!(err instanceof JsonSyntaxError)) throw err;
    throw new InputError(`${label}: invalid JSON: ${err.message}.`);
  }
}

export function readNumber(text, label, { integer = false, min = -Infinity, max = Infinity } = {}) {
  const value = Number(text);
  if (String(text).trim() === '' || !Number.isFinite(value)) throw new InputError(`${label} must be a number.`);
  if (integer && !Number.isInteger(value)) throw new InputError(`${label} must be a whole number.`);
  if (value < min || value > max) throw new InputError(`${label} must be between ${min} and ${max}.`);
  return value;
}

/** A percent from 0 to 100 with at most two decimals. */
export function readPercent(text, label) {
  const value = readNumber(text, label, { min: 0, max: 100 });
  if (!/^\s*[0-9]*(\.[0-9]{0,2})?\s*$/.test(String(text))) {
    throw new InputError(`${label} takes at most two decimals (such as 12.25).`);
  }
  return value;
}

/** Subjects or values separated by commas and/or new lines. */
export function splitList(text) {
  return text.split(/[,\n]/).map((s) => s.trim()).filter((s) => s !== '');
}

/** An optional comment field's text, or undefined (then nothing is sent). */
export function commentOf(input) {
  const text = input.value.trim();
  return text === '' ? undefined : text.slice(0, MAX_COMMENT_CHARS);
}

const DURATION_UNITS = { s: 1, m: 60, h: 3600, d: 86400 };

/** "90" → 90, "30s", "5m", "2h", "1d", "1h30m" → seconds; throws an InputError. */
export function parseDuration(text, label) {
  const trimmed = text.trim().toLowerCase();
  if (/^[0-9]+$/.test(trimmed)) return checkHold(Number(trimmed), label, text);
  if (!/^([0-9]+(\.[0-9]+)?\s*[smhd]\s*)+$/.test(trimmed)) {
    throw new InputError(`${label} "${text.trim()}" is not a duration: use seconds (90) or 30s, 5m, 2h, 1d.`);
  }
  let seconds = 0;
  for (const [, amount, , unit] of trimmed.matchAll(/([0-9]+(\.[0-9]+)?)\s*([smhd])/g)) {
    seconds += Number(amount) * DURATION_UNITS[unit];
  }
  return checkHold(seconds, label, text);
}

function checkHold(seconds, label, text) {
  if (!Number.isInteger(seconds) || seconds < 1) {
    throw new InputError(`${label} "${text.trim()}" must come to a whole number of seconds, at least 1.`);
  }
  return seconds;
}
