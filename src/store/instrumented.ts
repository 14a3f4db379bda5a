/**
 * Wraps a Store so every operation's latency lands in a histogram by operation name, without
 * any caller knowing. Watches are long-lived and not timed.
 */
import type { Histogram } from 'prom-client';
import type { Store } from './store.js';

const TIMED = new Set(['get', 'range', 'put', 'delete', 'txn', 'revision', 'leaseGrant', 'leaseKeepAlive', 'leaseRevoke', 'leaseTimeToLive', 'compact']);

export function instrumentStore(store: Store, latency: Histogram<'op'>): Store {
  return new Proxy(store, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof prop !== 'string' || !TIMED.has(prop) || typeof value !== 'function') {
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      }
      return async (...args: unknown[]) => {
        const end = latency.startTimer({ op: prop });
        try {
          return await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        } finally {
          end();
        }
      };
    },
  });
}
