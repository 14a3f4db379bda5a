/**
 * Leader job: removes DHCP lease records that no longer hold an address, so the store and
 * every node's lease view do not grow with every client ever seen.
 *
 * Only `offered` records whose hold has ended and `released` records are removed, after a
 * grace period. Removing them changes no decision: the allocator already treats them as free
 * (lease-record.ts isAvailableTo). Bound records are kept after expiry, because a client's own
 * earlier address is what it gets back (design.md, "Candidate choice"); declined ones stay
 * until their quarantine ends and are then free the same way.
 *
 * Each removal is a fenced transaction that also compares the record's modRevision with the
 * one the leader read, so a record a node rewrote meanwhile (a new offer, a renewal) is never
 * removed, and a deposed leader removes nothing.
 */
import { LEASE_PREFIX, parseLeaseRecord, type LeaseRecord } from '../dhcp/lease-record.js';
import { rangePages } from '../store/paged-range.js';
import type { Clock } from '../util/clock.js';
import { fencedTxn, periodicJob, type LeaderJob } from './leader-jobs.js';

export interface LeaseExpiryOptions {
  clock: Clock;
  /** How often the leader looks; default 10000. */
  intervalMs?: number;
  /** How long past its end a record is kept; default 60000. */
  graceMs?: number;
  /** At most this many removals per pass; default 1000. */
  batch?: number;
  /** Called with the number of records removed in each pass that removed some. */
  onRemoved?: (count: number) => void;
}

/** Is this record garbage at `nowMs`? Pure. */
export function isExpiredRecord(record: LeaseRecord, nowMs: number, graceMs: number): boolean {
  if (record.state !== 'offered' && record.state !== 'released') return false;
  return record.expiresAtMs + graceMs <= nowMs;
}

export function leaseExpiryJob(options: LeaseExpiryOptions): LeaderJob {
  const graceMs = options.graceMs ?? 60_000;
  const batch = options.batch ?? 1000;
  return periodicJob('lease-expiry', options.intervalMs ?? 10_000, async ({ store, fence, signal, log }) => {
    const now = options.clock.now();
    let removed = 0;
    // Page by page: a pass over 100 000 leases never holds them all, and stops at `batch`.
    pages: for await (const page of rangePages(store, LEASE_PREFIX)) {
      for (const kv of page.kvs) {
        if (signal.aborted || removed >= batch) break pages;
        const record = parseLeaseRecord(kv.value);
        if (!record || !isExpiredRecord(record, now, graceMs)) continue;
        const result = await fencedTxn(store, fence, {
          compare: [{ key: kv.key, target: 'modRevision', op: '==', value: kv.modRevision }],
          success: [{ type: 'delete', key: kv.key }],
        });
        if (result.succeeded) removed++;
      }
    }
    if (removed > 0) {
      log.info({ removed }, 'expired lease records removed');
      options.onRemoved?.(removed);
    }
  });
}
