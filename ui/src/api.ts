/**
 * The node's REST API and its event stream. A bearer token, pasted once, is kept in
 * sessionStorage and sent with every request; without one, requests go without it (a node
 * without access control answers them).
 */

const TOKEN_KEY = 'pxeha.token';

export function token(): string | undefined {
  return sessionStorage.getItem(TOKEN_KEY) || undefined;
}

export function setToken(value: string | undefined): void {
  if (value) sessionStorage.setItem(TOKEN_KEY, value.trim());
  else sessionStorage.removeItem(TOKEN_KEY);
}

function headers(extra: Record<string, string> = {}): Record<string, string> {
  const t = token();
  return { ...extra, ...(t ? { authorization: `Bearer ${t}` } : {}) };
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Listeners told when the API refuses the token (401/403). */
export const authListeners = new Set<(status: number) => void>();

/**
 * `prompt: false`: a refusal (401/403) is the caller's to show, the token dialog is not opened
 * (an action a viewer token may not take, say).
 */
export async function api<T>(path: string, init: { method?: string; body?: unknown; prompt?: boolean } = {}): Promise<T> {
  const res = await fetch(path, {
    method: init.method ?? 'GET',
    headers: headers(init.body !== undefined ? { 'content-type': 'application/json' } : {}),
    ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
  });
  const text = await res.text();
  let data: unknown = text;
  try {
    data = JSON.parse(text);
  } catch {
    // not JSON
  }
  if (!res.ok) {
    if ((res.status === 401 || res.status === 403) && init.prompt !== false) for (const l of authListeners) l(res.status);
    const message = (data as { message?: string })?.message ?? `${res.status} ${res.statusText}`;
    throw new ApiError(res.status, message);
  }
  return data as T;
}

// ---- live events ---------------------------------------------------------------------------------

export interface ClusterEvent {
  id: number;
  atMs: number;
  kind: string;
  severity: 'info' | 'warn' | 'error';
  message: string;
  data?: Record<string, unknown>;
}

/** Events received since the page loaded, newest last; at most MAX_EVENTS. */
export const events: ClusterEvent[] = [];
const MAX_EVENTS = 1000;
const eventListeners = new Set<(e: ClusterEvent) => void>();
const stateListeners = new Set<(connected: boolean) => void>();
let lastId = 0;
let epoch: string | undefined;
let connected = false;

export function onEvent(fn: (e: ClusterEvent) => void): () => void {
  eventListeners.add(fn);
  return () => eventListeners.delete(fn);
}

export function onStreamState(fn: (connected: boolean) => void): () => void {
  stateListeners.add(fn);
  fn(connected);
  return () => stateListeners.delete(fn);
}

function setConnected(value: boolean): void {
  if (value === connected) return;
  connected = value;
  for (const l of stateListeners) l(value);
}

let controller: AbortController | undefined;

/**
 * Follows GET /api/v1/events (server-sent events read through fetch, so the Authorization
 * header can be sent, which EventSource cannot); reconnects after a drop and resumes after the
 * last event seen (Last-Event-ID).
 */
export function startEventStream(): void {
  controller?.abort();
  const mine = new AbortController();
  controller = mine;
  void (async () => {
    while (!mine.signal.aborted) {
      try {
        const res = await fetch('/api/v1/events', {
          headers: headers({ accept: 'text/event-stream', ...(lastId ? { 'last-event-id': String(lastId) } : {}) }),
          signal: mine.signal,
        });
        if (!res.ok || !res.body) {
          if (res.status === 401 || res.status === 403) for (const l of authListeners) l(res.status);
          throw new Error(`events: ${res.status}`);
        }
        setConnected(true);
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end: number;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            dispatch(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
          }
        }
      } catch {
        // dropped, refused or aborted: try again below
      }
      setConnected(false);
      if (!mine.signal.aborted) await new Promise((r) => setTimeout(r, 2000));
    }
  })();
}

function dispatch(block: string): void {
  let data = '';
  for (const line of block.split('\n')) if (line.startsWith('data: ')) data += line.slice(6);
  if (!data) return;
  let e: ClusterEvent;
  try {
    e = JSON.parse(data) as ClusterEvent;
  } catch {
    return;
  }
  const hello = e as unknown as { epoch?: string };
  if (typeof hello.epoch === 'string') {
    // Another run of the node: its event ids start again from 1.
    if (epoch !== undefined && hello.epoch !== epoch) lastId = 0;
    epoch = hello.epoch;
    return;
  }
  if (typeof e.id !== 'number' || e.id <= lastId) return;
  lastId = e.id;
  events.push(e);
  if (events.length > MAX_EVENTS) events.splice(0, events.length - MAX_EVENTS);
  for (const l of eventListeners) l(e);
}
