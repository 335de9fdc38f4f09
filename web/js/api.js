// REST calls to the server, with the console's token. Bodies are read and written
// losslessly (json.js); a failure is an ApiError with the server's error code.

import { parseJson, stringifyJson } from './json.js';

const TOKEN_KEY = 'graycast.token';

// The token lives for the tab's session: a reload keeps it, closing the tab forgets it.
let token = sessionStorage.getItem(TOKEN_KEY) ?? '';

export function currentToken() {
  return token;
}

export function setToken(next) {
  token = next;
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  /** `details`: what the error's `details` listed (a schema_violation's violations, say). */
  constructor(status, code, message, details = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

/**
 * One REST call; resolves to the parsed JSON body, rejects with an ApiError.
 * `comment` goes in the body's `comment` (with a body) or as `?comment=` (without).
 */
export async function api(method, path, { body, headers = {}, comment } = {}) {
  let url = path;
  let payload = body;
  if (comment !== undefined && comment !== '') {
    if (payload === undefined) url += `${path.includes('?') ? '&' : '?'}comment=${encodeURIComponent(comment)}`;
    else payload = { ...payload, comment };
  }
  const init = { method, headers: { Accept: 'application/json', ...headers } };
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (payload !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = stringifyJson(payload);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (err) {
    throw new ApiError(0, 'network', `the server cannot be reached (${err.message})`);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? parseJson(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const detail = data && data.error;
    throw new ApiError(
      response.status,
      detail?.code ?? `http_${response.status}`,
      detail?.message ?? (text || response.statusText),
      detail?.details ?? null,
    );
  }
  return data;
}

export function keyPath(ns, key, suffix = '') {
  return `/v1/configs/${encodeURIComponent(ns)}/${encodeURIComponent(key)}${suffix}`;
}

/** One line for a failed request, with a hint where the fix is obvious. */
export function describeError(err) {
  if (!(err instanceof ApiError)) return String(err.message || err);
  let hint = '';
  if (err.status === 401) hint = ' (the token is missing or was refused)';
  else if (err.status === 403) hint = ' (the token lacks this right)';
  return `${err.code}: ${err.message}${hint}`;
}
