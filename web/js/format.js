// Words and numbers for people: names, percents, counts, times and durations, and the
// server's notes. Pure functions, no DOM.

// `updated_by` of the aborts the server's guard makes (server/src/guard.rs GUARD_ACTOR).
export const GUARD_ACTOR = 'guard';

export function entryId(ns, key) {
  return `${ns}/${key}`;
}

/** The head of a long id (a change request's uuid, a digest): enough to tell them apart. */
export function shortId(id) {
  return String(id).slice(0, 8);
}

export function truncate(text, max) {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** A percent as people write it: 12.5, 5, 0.25 (never 12.500000001). */
export function formatPercent(percent) {
  return String(Number(Number(percent).toFixed(2)));
}

export function plural(count, one, many = `${one}s`) {
  return `${count} ${count === 1 ? one : many}`;
}

// Keys and namespaces sort as people count: key_2 before key_10.
const collator = new Intl.Collator('en', { numeric: true, sensitivity: 'variant' });

export function naturalCompare(a, b) {
  return collator.compare(a, b) || (a < b ? -1 : a > b ? 1 : 0);
}

/** A token's namespace pattern as a RegExp: `*` any run of characters, `?` one. */
export function globRegExp(pattern) {
  const body = [...pattern].map((c) => {
    if (c === '*') return '.*';
    if (c === '?') return '.';
    return c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  }).join('');
  return new RegExp(`^${body}$`, 's');
}

export function relativeTime(iso) {
  const seconds = Math.round((Date.now() - Date.parse(iso)) / 1000);
  if (!Number.isFinite(seconds)) return String(iso);
  if (seconds < 5) return 'just now';
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

/** "4:05" or "1:02:03" for a duration in seconds. */
export function formatCountdown(totalSeconds) {
  const s = Math.max(0, Math.ceil(totalSeconds));
  const hours = Math.floor(s / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  const seconds = String(s % 60).padStart(2, '0');
  return hours > 0 ? `${hours}:${String(minutes).padStart(2, '0')}:${seconds}` : `${minutes}:${seconds}`;
}

/** 90 → "1m 30s", 3600 → "1h", 86400 → "1d". */
export function formatDuration(totalSeconds) {
  let rest = Math.round(Number(totalSeconds));
  if (!Number.isFinite(rest) || rest <= 0) return '0s';
  const parts = [];
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]]) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  return parts.join(' ');
}

export function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * A server note for people: the guard's "gray error rate 0.5000 over 20 outcomes
 * exceeds 0.1; ..." becomes "gray error rate 50% over 20 outcomes exceeds 10%".
 */
export function describeNote(note, actor) {
  const text = String(note);
  const guard = /gray error rate ([0-9.eE+-]+) over ([0-9]+) outcomes exceeds ([0-9.eE+-]+)/.exec(text);
  if (guard) {
    const rate = `${formatPercent(Number(guard[1]) * 100)}%`;
    const limit = `${formatPercent(Number(guard[3]) * 100)}%`;
    return `The guard aborted the release: gray error rate ${rate} over ${guard[2]} outcomes exceeds ${limit}.`;
  }
  if (actor === GUARD_ACTOR) return `The guard: ${text}`;
  return text;
}
