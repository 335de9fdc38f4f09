// Types of the public API of @graycast/client (src/graycast.js).

/** Any JSON value, as stored by graycast. */
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

/** An attribute rule of a gray release. */
export interface Rule {
  attribute: string;
  op: 'in' | 'not_in' | 'eq' | 'prefix' | 'semver_gte' | 'semver_lt';
  values: string[];
}

/** The gray section of an entry, while a release runs (the fields evaluation reads). */
export interface Gray {
  value: Json;
  percent: number;
  salt: string;
  allow?: string[];
  deny?: string[];
  rules?: Rule[];
  started_at?: string;
  [field: string]: unknown;
}

/** One configuration entry, as the server pushes it. */
export interface Entry {
  namespace: string;
  key: string;
  value: Json;
  revision: number;
  created_revision: number;
  version: number;
  updated_at: string;
  updated_by: string;
  gray: Gray | null;
}

/** A whole state: a snapshot rendered by a server (`GET /v1/configs/{ns}`), or a stored cache. */
export interface State {
  revision: number;
  entries: Entry[];
}

/** The part of the Web Storage API the client uses (`localStorage` fits). */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

/** What the client uses of a WebSocket (the browser's, or the `ws` package's). */
export interface WebSocketLike {
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string): void;
  close(): void;
}

export interface ClientOptions {
  /** The server's base URL, `http(s)://host:port`. */
  url: string;
  /** An access token (role `read`; `report` or more for `report()`). */
  token?: string;
  /** The namespaces to follow. */
  namespaces: string[];
  /** A state to serve at once, before the server answers; subscribing resumes from its revision. */
  bootstrap?: State;
  /** Where to keep the cache between runs; the next start reads it at once and resumes from it. */
  storage?: StorageLike;
  /** Who this client is in `/v1/clients`; `id` (a fresh UUID by default) is also the default subject. */
  client?: { id?: string; labels?: Record<string, string> };
  /**
   * A WebSocket constructor (such as the `ws` package's); the global one by default, else SSE
   * over fetch. `null` means no WebSocket: SSE over fetch even where a global one exists.
   */
  WebSocket?: (new (url: string) => WebSocketLike) | null;
  /** The server's `--heartbeat-ms` (15000 by default): `stale` comes after two of silence. */
  heartbeatMs?: number;
  /**
   * How to read the server's JSON (`JSON.parse` by default). A lossless parser keeps numbers
   * a double cannot hold (12345678901234567890) as they were written; the cache in `storage`
   * is still written with `JSON.stringify`.
   */
  parse?: (text: string) => unknown;
  /**
   * The application's check of every pushed value (stable and gray): when it throws, the
   * client tells the server once per value (`POST /v1/nacks`). `GET /v1/clients` shows how
   * many clients rejected each key's revision, and a gray release's guard counts the
   * rejection as an error of its variant (with a token that may report), so a gray value
   * clients cannot use aborts itself. The value is still held and served.
   */
  validate?: (value: Json, where: { namespace: string; key: string; variant: Variant }) => void;
}

/** Who asks: the subject and the attributes rules look at. */
export interface Context {
  /** Omitted: the client's id (each instance in or out as a whole). `null`: none (a random draw). */
  subject?: string | null;
  attrs?: Record<string, string | number | boolean>;
}

export type Variant = 'stable' | 'gray';
export type Reason = 'no_gray' | 'deny' | 'allow' | 'rule_mismatch' | 'random' | 'percent';

export interface Decision {
  variant: Variant;
  reason: Reason;
  /** The subject's sticky bucket in 0..9999, when the percent decided; else null. */
  bucket: number | null;
}

export interface Evaluation extends Decision {
  value: Json;
  /** The revision of the entry evaluated. */
  revision: number;
}

/** A change the client applied (or, after a snapshot, a difference it found). */
export interface ChangeEvent {
  op: 'put' | 'delete' | 'gray' | 'promote' | 'abort' | 'rollback' | string;
  namespace: string;
  key: string;
  revision: number;
  /** The entry after the change; null after a delete. */
  entry: Entry | null;
  /** The entry before the change, as the client had it. */
  previous: Entry | undefined;
  comment?: string;
  note?: string;
}

export interface Events {
  /** The first time the client is in sync with the server. */
  ready: undefined;
  change: ChangeEvent;
  /** Nothing arrived for two heartbeats: values may be out of date (they are still served). */
  stale: { silentMs: number };
  /** A connection that resumed with `since` is in sync again: how many changes the replay brought. */
  recovered: { replayed: number; snapshot: boolean };
  /** A refusal retrying cannot change (a wrong token): the client has stopped. */
  error: GraycastError;
  /** The connection's state changed. */
  status: Status;
  /** The revision the client is at moved (by a change, a snapshot or a progress frame). */
  revision: number;
  /** A snapshot replaced the whole state (its differences came as `change` events first). */
  snapshot: { revision: number };
}

/** `connecting` (the first time), `live` (in sync), `reconnecting` (after a break), `stopped`. */
export type Status = 'connecting' | 'live' | 'reconnecting' | 'stopped';

export interface Client {
  /** Resolves when the client is first in sync with the server; rejects on a refusal. */
  ready(): Promise<void>;
  /** The value `context` gets (gray-evaluated), from memory; `fallback` when the key is absent. */
  get<T = Json>(namespace: string, key: string, context?: Context, fallback?: T): Json | T;
  /** The value with the decision behind it; undefined when the key is absent. */
  evaluate(namespace: string, key: string, context?: Context): Evaluation | undefined;
  /** The entries of a followed namespace. */
  entries(namespace: string): Entry[];
  /** The last revision applied (0: nothing yet). */
  readonly revision: number;
  /** The client's id. */
  readonly id: string;
  /** How the connection is. */
  readonly status: Status;
  /** Reports outcomes seen with a variant to the release's guard; resolves to the counts. */
  report(namespace: string, key: string, variant: Variant, ok?: number, errors?: number): Promise<unknown>;
  /** Listens to an event; returns the function that stops listening. */
  on<E extends keyof Events>(event: E, listener: (detail: Events[E]) => void): () => void;
  /** Stops: no connection, timer or listener is left. */
  close(): void;
}

export function createClient(options: ClientOptions): Client;

/** An error with the code of graycast's error table, or `network`. */
export class GraycastError extends Error {
  constructor(code: string | undefined, message: string, status?: number);
  readonly code: string | undefined;
  readonly status: number | undefined;
  /** False for refusals that retrying cannot change. */
  readonly retryable: boolean;
}

/** The rollout evaluation of a gray section (null: no release). */
export function evaluateGray(gray: Gray | null, subject: string | null | undefined, attrs?: Record<string, unknown>, roll?: () => number): Decision;
/** The sticky bucket of a subject: murmur3(utf8(salt + ":" + subject)) mod 10000. */
export function bucket(salt: string, subject: string): number;
/** MurmurHash3 x86 32-bit. */
export function murmur3(bytes: Uint8Array, seed?: number): number;
export const BUCKETS: 10000;
