/**
 * Renewals a node ACKed while it could not reach the store, written when the store returns.
 * Each entry keeps the modRevision of the record the node knew when it answered; the write is
 * a compare-and-set on it, so a record someone else changed meanwhile (another node rebound,
 * released or re-leased the address) is never overwritten: the queued entry is dropped and
 * logged instead. The client was only told the time its known binding had left, so dropping
 * an entry never leaves a client with a lease the store does not hold.
 */
import type { LeaseBook } from './lease-book.js';
import { leaseKey, type LeaseRecord } from './lease-record.js';

export interface QueuedRenewal {
  record: LeaseRecord;
  /** modRevision of the record the node knew when it ACKed. */
  expectedModRevision: number;
}

export interface FlushResult {
  written: number;
  /** Keys whose record changed in the store meanwhile; their entries were dropped. */
  conflicts: string[];
  /** Entries still queued because the store failed again. */
  pending: number;
}

export class DegradedRenewals {
  readonly #queue = new Map<string, QueuedRenewal>();
  #flushing: Promise<FlushResult> | undefined;

  get size(): number {
    return this.#queue.size;
  }

  /** Queues a renewal; a later one for the same address keeps the first one's expected revision. */
  add(entry: QueuedRenewal): void {
    const key = leaseKey(entry.record.subnet, entry.record.ip);
    const earlier = this.#queue.get(key);
    this.#queue.set(key, earlier ? { record: entry.record, expectedModRevision: earlier.expectedModRevision } : entry);
  }

  /** Writes every queued renewal with a compare-and-set. Overlapping calls share one pass. */
  flush(leases: LeaseBook, onConflict?: (key: string) => void): Promise<FlushResult> {
    this.#flushing ??= this.#flush(leases, onConflict).finally(() => (this.#flushing = undefined));
    return this.#flushing;
  }

  async #flush(leases: LeaseBook, onConflict?: (key: string) => void): Promise<FlushResult> {
    const result: FlushResult = { written: 0, conflicts: [], pending: 0 };
    for (const [key, entry] of [...this.#queue]) {
      try {
        const w = await leases.write(entry.record, entry.expectedModRevision);
        this.#queue.delete(key);
        // A write of an earlier pass whose reply was lost (the store failing again as it came
        // back) may have been applied: finding our own record there is success, not a conflict.
        if (w.ok || (w.current && JSON.stringify(w.current.record) === JSON.stringify(entry.record))) result.written++;
        else {
          result.conflicts.push(key);
          onConflict?.(key);
        }
      } catch {
        break; // the store failed again; keep the rest for the next flush
      }
    }
    result.pending = this.#queue.size;
    return result;
  }
}
