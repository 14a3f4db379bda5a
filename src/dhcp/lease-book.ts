/**
 * Leases in the store, with a local view fed by a watch so that the packet path reads memory
 * and only writes go to the store. Every write is a compare-and-set on the key's modRevision:
 * whoever commits first wins, so two writers (two requests on this node, or two nodes) can
 * never both commit an address, however they race. The local view only makes the first
 * candidate almost always free; it never decides correctness.
 */
import type { Store, Watcher } from '../store/store.js';
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

export class LeaseBook {
  private readonly byKey = new Map<string, LeaseEntry>();
  /** subnet → clientKey → ips the client holds records for. */
  private readonly byClient = new Map<string, Map<string, Set<string>>>();
  private watcher: Watcher | undefined;

  private constructor(private readonly store: Store) {}

  /** Loads every lease and follows changes from the same revision on. */
  static async open(store: Store, onWatchError: (err: Error) => void): Promise<LeaseBook> {
    const book = new LeaseBook(store);
    const snapshot = await store.range(LEASE_PREFIX, { prefix: true });
    for (const kv of snapshot.kvs) book.apply(kv.key, kv.value, kv.modRevision);
    book.watcher = await store.watch(LEASE_PREFIX, { prefix: true, startRevision: snapshot.revision + 1 });
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
   */
  async write(record: LeaseRecord, expectedModRevision: number): Promise<WriteResult> {
    const key = leaseKey(record.subnet, record.ip);
    const result = await this.store.txn({
      compare: [{ key, target: 'modRevision', op: '==', value: expectedModRevision }],
      success: [{ type: 'put', key, value: JSON.stringify(record) }],
      failure: [{ type: 'range', key }],
    });
    if (result.succeeded) {
      this.apply(key, undefined, result.revision, record);
      return { ok: true, entry: { record, modRevision: result.revision } };
    }
    const r = result.responses[0];
    const kv = r?.type === 'range' ? r.result.kvs[0] : undefined;
    if (kv) this.apply(kv.key, kv.value, kv.modRevision);
    else this.remove(key, Number.MAX_SAFE_INTEGER);
    return { ok: false, current: kv ? this.byKey.get(key) : undefined };
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
