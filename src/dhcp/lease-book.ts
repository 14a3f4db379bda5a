/**
 * Leases in the store, with a local view fed by a watch so that the packet path reads memory
 * and only writes go to the store. Every write is a compare-and-set on the key's modRevision:
 * whoever commits first wins, so two writers (two requests on this node, or two nodes) can
 * never both commit an address, however they race. The local view only makes the first
 * candidate almost always free; it never decides correctness.
 */
import { PxehaError } from '../errors.js';
import { readPaged } from '../store/paged-range.js';
import type { Compare, Store, Watcher } from '../store/store.js';
import { LEASE_PREFIX, leaseKey, parseLeaseRecord, type LeaseRecord } from './lease-record.js';

export interface LeaseEntry {
  record: LeaseRecord;
  /** Store modRevision of this version of the record (the CAS token). */
  modRevision: number;
}

export type WriteResult =
  | { ok: true; entry: LeaseEntry }
  /** Someone else changed the key first; `current` is what is there now. */
  | { ok: false; current: LeaseEntry | undefined };

interface PendingWrite {
  key: string;
  record: LeaseRecord;
  value: string;
  expectedModRevision: number;
  resolve: (result: WriteResult) => void;
  reject: (err: unknown) => void;
}

/**
 * Most compare-and-set writes one store transaction may carry: etcd refuses a transaction with
 * more than --max-txn-ops (default 128) operations in a branch.
 */
const MAX_BATCH = 64;
/** Transactions in flight at once; writes arriving meanwhile wait and go together. */
const MAX_IN_FLIGHT = 2;

export class LeaseBook {
  private readonly byKey = new Map<string, LeaseEntry>();
  private pending: PendingWrite[] = [];
  private inFlight = 0;
  private flushScheduled = false;
  /** subnet → clientKey → ips the client holds records for. */
  private readonly byClient = new Map<string, Map<string, Set<string>>>();
  private watcher: Watcher | undefined;

  /**
   * A compare every lease transaction also carries (node.ts: this node's membership key is still
   * on its current session lease), or undefined when the node holds no current session. A
   * transaction sent before a partition and delivered after it (stuck in a TCP buffer; etcd
   * times a request from its arrival) then fails instead of binding an address to a client that
   * has meanwhile got another one elsewhere. Absent on a single node.
   */
  private fence: (() => Compare | undefined) | undefined;

  private constructor(private readonly store: Store) {}

  /** Fences every later lease write (see `fence`). */
  setFence(fence: () => Compare | undefined): void {
    this.fence = fence;
  }

  /** Loads every lease and follows changes from the same revision on. */
  static async open(store: Store, onWatchError: (err: Error) => void, options: { pageSize?: number } = {}): Promise<LeaseBook> {
    const book = new LeaseBook(store);
    // Paged (see paged-range.ts): apply() keeps the newest value of a key, and the watch from the
    // first page's revision redelivers whatever changed while later pages were read.
    const firstRevision = await readPaged(store, LEASE_PREFIX, (kv) => book.apply(kv.key, kv.value, kv.modRevision), options.pageSize);
    book.watcher = await store.watch(LEASE_PREFIX, { prefix: true, startRevision: firstRevision + 1 });
    book.watcher.on('events', (events) => {
      for (const e of events) {
        if (e.type === 'put') book.apply(e.kv.key, e.kv.value, e.kv.modRevision);
        else book.remove(e.kv.key, e.kv.modRevision);
      }
    });
    book.watcher.on('error', onWatchError);
    return book;
  }

  get size(): number {
    return this.byKey.size;
  }

  get(subnet: string, ip: string): LeaseEntry | undefined {
    return this.byKey.get(leaseKey(subnet, ip));
  }

  /**
   * Reads one lease from the store (a linearizable read) into the view and returns it: the
   * watch can trail the store by a delivery, and a NAK must not rest on a record that is gone.
   */
  async reread(subnet: string, ip: string): Promise<LeaseEntry | undefined> {
    const key = leaseKey(subnet, ip);
    const kv = await this.store.get(key);
    if (kv) this.apply(kv.key, kv.value, kv.modRevision);
    else this.remove(key, Number.MAX_SAFE_INTEGER);
    return this.byKey.get(key);
  }

  /** Records (any state) that name this client in this subnet. */
  forClient(subnet: string, clientKey: string): LeaseEntry[] {
    const ips = this.byClient.get(subnet)?.get(clientKey);
    if (!ips) return [];
    const out: LeaseEntry[] = [];
    for (const ip of ips) {
      const e = this.get(subnet, ip);
      if (e) out.push(e);
    }
    return out;
  }

  all(): IterableIterator<LeaseEntry> {
    return this.byKey.values();
  }

  /**
   * Writes `record` if the key is still at `expectedModRevision` (0: absent). The local view
   * is updated from the result at once, before the watch event arrives.
   *
   * Group commit: writes that arrive while MAX_IN_FLIGHT transactions are out (or in the same
   * event-loop turn) go to the store together, as one transaction holding each write's own
   * compare (modRevision == expected) and put, so every write is still a compare-and-set on
   * its own key. A transaction is all or nothing: when any compare fails, the failure branch
   * reads every key, the writes whose key moved get `ok: false` and the others are sent again
   * (at least one key moved, so that ends). One transaction costs the store one Raft entry and
   * the client one RPC however many writes it carries (bench/dhcp-ha/RESULTS.md).
   */
  write(record: LeaseRecord, expectedModRevision: number): Promise<WriteResult> {
    return new Promise((resolve, reject) => {
      const key = leaseKey(record.subnet, record.ip);
      this.pending.push({ key, record, value: JSON.stringify(record), expectedModRevision, resolve, reject });
      this.scheduleFlush();
    });
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.inFlight >= MAX_IN_FLIGHT || this.pending.length === 0) return;
    this.flushScheduled = true;
    // After the current turn's I/O callbacks: the writes of one burst of packets go together.
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    while (this.inFlight < MAX_IN_FLIGHT && this.pending.length > 0) {
      // One write per key and transaction (etcd refuses a key put twice in one transaction).
      const batch: PendingWrite[] = [];
      const keys = new Set<string>();
      const rest: PendingWrite[] = [];
      for (const w of this.pending) {
        if (batch.length < MAX_BATCH && !keys.has(w.key)) {
          batch.push(w);
          keys.add(w.key);
        } else {
          rest.push(w);
        }
      }
      this.pending = rest;
      this.inFlight++;
      void this.commitBatch(batch).finally(() => {
        this.inFlight--;
        this.scheduleFlush();
      });
    }
  }

  private async commitBatch(batch: PendingWrite[]): Promise<void> {
    let result;
    const fence = this.fence ? this.fence() : undefined;
    if (this.fence && !fence) {
      const err = new PxehaError('PXE_ERR_STORE_UNAVAILABLE', 'this node holds no current membership session; lease write refused');
      for (const w of batch) w.reject(err);
      return;
    }
    try {
      result = await this.store.txn({
        compare: [
          ...batch.map((w) => ({ key: w.key, target: 'modRevision' as const, op: '==' as const, value: w.expectedModRevision })),
          ...(fence ? [fence] : []),
        ],
        success: batch.map((w) => ({ type: 'put' as const, key: w.key, value: w.value })),
        failure: batch.map((w) => ({ type: 'range' as const, key: w.key })),
      });
    } catch (err) {
      for (const w of batch) w.reject(err);
      return;
    }
    if (result.succeeded) {
      for (const w of batch) {
        this.apply(w.key, undefined, result.revision, w.record);
        w.resolve({ ok: true, entry: { record: w.record, modRevision: result.revision } });
      }
      return;
    }
    const retry: PendingWrite[] = [];
    batch.forEach((w, i) => {
      const r = result.responses[i];
      const kv = r?.type === 'range' ? r.result.kvs[0] : undefined;
      if ((kv?.modRevision ?? 0) === w.expectedModRevision) {
        retry.push(w); // its own compare held: another write of the batch failed it
        return;
      }
      if (kv) this.apply(kv.key, kv.value, kv.modRevision);
      else this.remove(w.key, Number.MAX_SAFE_INTEGER);
      w.resolve({ ok: false, current: kv ? this.byKey.get(w.key) : undefined });
    });
    if (fence && retry.length === batch.length) {
      // Every write's own compare held: the fence failed (the session this node wrote under is over).
      const err = new PxehaError('PXE_ERR_STORE_UNAVAILABLE', 'this node\'s membership session changed while the write was in flight; lease write refused');
      for (const w of retry) w.reject(err);
      return;
    }
    // Ahead of newer writes; the caller's finally schedules the next flush.
    this.pending = [...retry, ...this.pending];
  }

  async close(): Promise<void> {
    await this.watcher?.cancel();
  }

  private apply(key: string, value: string | undefined, modRevision: number, parsed?: LeaseRecord): void {
    const existing = this.byKey.get(key);
    if (existing && existing.modRevision >= modRevision) return; // an older event than we know
    const record = parsed ?? (value !== undefined ? parseLeaseRecord(value) : undefined);
    if (!record) return;
    if (existing) this.unindex(existing.record);
    this.byKey.set(key, { record, modRevision });
    let clients = this.byClient.get(record.subnet);
    if (!clients) this.byClient.set(record.subnet, (clients = new Map()));
    let ips = clients.get(record.clientKey);
    if (!ips) clients.set(record.clientKey, (ips = new Set()));
    ips.add(record.ip);
  }

  private remove(key: string, modRevision: number): void {
    const existing = this.byKey.get(key);
    if (!existing || existing.modRevision > modRevision) return;
    this.unindex(existing.record);
    this.byKey.delete(key);
  }

  private unindex(record: LeaseRecord): void {
    const clients = this.byClient.get(record.subnet);
    const ips = clients?.get(record.clientKey);
    ips?.delete(record.ip);
    if (ips && ips.size === 0) clients!.delete(record.clientKey);
  }
}
