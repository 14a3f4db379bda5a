/**
 * The single-node Store: etcd's data model on one SQLite file (better-sqlite3).
 *
 * Durability: WAL with synchronous=FULL, so a write's promise resolves only after its commit
 * has been fsynced; `kill -9` or power loss after that loses nothing (embedded.test.ts kills a
 * writer mid-stream to check it).
 *
 * Group commit: every write (txn, put, delete, lease grant and revoke, compaction) is queued,
 * and all writes queued in one event-loop turn are applied in order in ONE SQLite transaction,
 * so one fsync serves them all. Each write still gets its own revision and runs in its own
 * savepoint: a write that fails while applied (unknown lease, an SQLite error) is rolled back
 * alone and the rest of the batch commits; malformed requests are rejected before queueing. Promises resolve only after the commit. better-sqlite3 is synchronous,
 * so a batch blocks the event loop for one fsync; requests that arrive meanwhile wait in the
 * socket buffers and form the next batch, which is what makes batching effective under load.
 *
 * Leases: deadlines live in memory only. When the store is reopened, every lease that
 * survived gets a fresh full TTL, the rule etcd applies when a new leader takes over
 * (server/lease/lessor.go Promote, without lease checkpointing). A restart can extend a lease
 * by at most the downtime plus one TTL and never cuts one short, so a holder that keeps
 * renewing never loses its keys to a restart; a holder that died while the store was down is
 * noticed one TTL after the store comes back.
 *
 * History: every change is kept in a history table for watches; it is compacted
 * automatically to the last `historyRevisions` revisions so a long-running node stays bounded.
 */
import { closeSync, fsyncSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { performance } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import { PxehaError } from '../../errors.js';
import type {
  KeyValue, LeaseGrant, LeaseId, RangeOptions, RangeResult, Store, TxnRequest, TxnResult, WatchOptions, Watcher,
} from '../store.js';
import { keySpan } from './key-span.js';
import { KvTables, planTxn, type RevisionChanges, type TxnPlan, WriteBatch } from './kv-tables.js';
import { configureDatabase, migrate, prepareStatements, type Statements } from './schema.js';
import { EmbeddedWatcher, type WatchSource } from './watcher.js';

export interface EmbeddedStoreOptions {
  /** SQLite database file; its directory is created if missing. */
  path: string;
  /** Revisions of watch history kept; older history is compacted automatically. Default 10 000. */
  historyRevisions?: number;
  /** Most writes applied in one SQLite transaction (one fsync). Default 1024. */
  maxBatchWrites?: number;
  /** How long open waits for another process to release the file. Default 2000 ms. */
  lockTimeoutMs?: number;
}

export interface GroupCommitStats {
  /** SQLite transactions committed (one fsync each). */
  batches: number;
  /** Write requests applied, successful or not. */
  writes: number;
}

const DEFAULT_HISTORY_REVISIONS = 10_000;
const DEFAULT_MAX_BATCH_WRITES = 1024;
const DEFAULT_LOCK_TIMEOUT_MS = 2000;
/** setTimeout's largest delay; longer lease deadlines are reached in several steps. */
const MAX_TIMER_DELAY_MS = 2 ** 31 - 1;
/** Retry delay when deleting an expired lease fails (the disk is likely failing). */
const EXPIRY_RETRY_MS = 1000;

interface PendingWrite {
  /** Runs inside the batch transaction; returns how to settle the caller after the commit. */
  apply(batch: WriteBatch): () => void;
  fail(error: Error): void;
}

interface LiveLease {
  ttlSeconds: number;
  /** On the monotonic clock (performance.now()), so wall-clock jumps do not expire leases. */
  deadlineMs: number;
  /** The timer fired and the revoke is queued: the lease is gone for every reader. */
  expired: boolean;
  timer: NodeJS.Timeout;
}

export async function openEmbeddedStore(options: EmbeddedStoreOptions): Promise<EmbeddedStore> {
  return EmbeddedStore.open(options);
}

export class EmbeddedStore implements Store {
  readonly kind = 'embedded';

  readonly #db: Database.Database;
  readonly #sql: Statements;
  readonly #tables: KvTables;
  readonly #historyRevisions: number;
  readonly #maxBatchWrites: number;

  #revision: number;
  #compactRevision: number;
  #closed = false;
  readonly #leases = new Map<LeaseId, LiveLease>();
  readonly #watchers = new Set<EmbeddedWatcher>();
  readonly #watchSource: WatchSource;
  readonly #pending: PendingWrite[] = [];
  #flushImmediate: NodeJS.Immediate | undefined;
  readonly #stats: GroupCommitStats = { batches: 0, writes: 0 };

  /** Synchronous form of openEmbeddedStore(), which callers should prefer. */
  static open(options: EmbeddedStoreOptions): EmbeddedStore {
    const historyRevisions = options.historyRevisions ?? DEFAULT_HISTORY_REVISIONS;
    const maxBatchWrites = options.maxBatchWrites ?? DEFAULT_MAX_BATCH_WRITES;
    if (!Number.isInteger(historyRevisions) || historyRevisions < 1) {
      throw new PxehaError('PXE_ERR_STORE_BAD_REQUEST', `historyRevisions must be a positive integer, got ${historyRevisions}`);
    }
    if (!Number.isInteger(maxBatchWrites) || maxBatchWrites < 1) {
      throw new PxehaError('PXE_ERR_STORE_BAD_REQUEST', `maxBatchWrites must be a positive integer, got ${maxBatchWrites}`);
    }
    let db: Database.Database | undefined;
    try {
      mkdirSync(dirname(options.path), { recursive: true });
      db = new Database(options.path, { timeout: options.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS });
      configureDatabase(db);
      migrate(db);
      syncDirectory(dirname(options.path));
      return new EmbeddedStore(db, historyRevisions, maxBatchWrites);
    } catch (err) {
      db?.close();
      if (err instanceof PxehaError) throw err;
      const why = (err as { code?: unknown }).code === 'SQLITE_BUSY' ? 'the file is in use by another process' : describe(err);
      throw new PxehaError('PXE_ERR_STORE_UNAVAILABLE', `cannot open embedded store ${options.path}: ${why}`, { cause: err });
    }
  }

  private constructor(db: Database.Database, historyRevisions: number, maxBatchWrites: number) {
    this.#db = db;
    this.#sql = prepareStatements(db);
    this.#tables = new KvTables(this.#sql);
    this.#historyRevisions = historyRevisions;
    this.#maxBatchWrites = maxBatchWrites;
    const revisions = this.#tables.loadRevisions();
    this.#revision = revisions.revision;
    this.#compactRevision = revisions.compactRevision;
    // Surviving leases restart with their full TTL (see the file comment).
    for (const lease of this.#tables.loadLeases()) this.#armLease(lease);
    this.#watchSource = {
      currentRevision: () => this.#revision,
      compactRevision: () => this.#compactRevision,
      readHistory: (span, fromRevision, toRevision) => this.#tables.readHistory(span, fromRevision, toRevision),
      detach: (watcher) => this.#watchers.delete(watcher),
    };
  }

  /** Group-commit counters, for metrics and tests. */
  get groupCommitStats(): Readonly<GroupCommitStats> {
    return { ...this.#stats };
  }

  async get(key: string): Promise<KeyValue | undefined> {
    return (await this.range(key)).kvs[0];
  }

  async range(key: string, options: RangeOptions = {}): Promise<RangeResult> {
    return this.#read(() => this.#tables.range(keySpan(key, options), options, this.#revision));
  }

  async put(key: string, value: string, options: { lease?: LeaseId } = {}): Promise<{ revision: number; prevKv?: KeyValue }> {
    const result = await this.txn({ success: [{ type: 'put', key, value, lease: options.lease, prevKv: true }] });
    const response = result.responses[0];
    return response?.type === 'put' && response.prevKv ? { revision: result.revision, prevKv: response.prevKv } : { revision: result.revision };
  }

  async delete(key: string, options: { prefix?: boolean; end?: string } = {}): Promise<{ revision: number; deleted: number }> {
    const result = await this.txn({ success: [{ type: 'delete', key, ...options }] });
    const response = result.responses[0];
    return { revision: result.revision, deleted: response?.type === 'delete' ? response.deleted : 0 };
  }

  txn(request: TxnRequest): Promise<TxnResult> {
    let plan: TxnPlan;
    try {
      plan = planTxn(request);
    } catch (err) {
      return Promise.reject(toStoreError(err));
    }
    return this.#write((batch) => this.#tables.applyTxn(plan, batch));
  }

  async revision(): Promise<number> {
    return this.#read(() => this.#revision);
  }

  async watch(key: string, options: WatchOptions = {}): Promise<Watcher> {
    return this.#read(() => {
      const span = keySpan(key, { prefix: options.prefix });
      const start = options.startRevision ?? 0;
      if (!Number.isSafeInteger(start) || start < 0) {
        throw new PxehaError('PXE_ERR_STORE_BAD_REQUEST', `watch start revision must be a non-negative integer, got ${start}`);
      }
      // etcd: a start revision of 0 means "changes after now".
      const watcher = new EmbeddedWatcher(this.#watchSource, span, start > 0 ? start : this.#revision + 1, options.prevKv ?? false);
      this.#watchers.add(watcher);
      watcher.start();
      return watcher;
    });
  }

  leaseGrant(ttlSeconds: number): Promise<LeaseGrant> {
    return this.#write((batch) => this.#tables.grantLease(ttlSeconds, batch));
  }

  /** Renewal touches memory only: deadlines are not persisted (see the file comment). */
  async leaseKeepAlive(id: LeaseId): Promise<{ ttlSeconds: number }> {
    return this.#read(() => {
      const lease = this.#leases.get(id);
      if (!lease || lease.expired) throw new PxehaError('PXE_ERR_LEASE_NOT_FOUND', `lease ${id} not found`);
      this.#armLease({ id, ttlSeconds: lease.ttlSeconds });
      return { ttlSeconds: lease.ttlSeconds };
    });
  }

  leaseRevoke(id: LeaseId): Promise<void> {
    return this.#write((batch) => this.#tables.revokeLease(id, batch));
  }

  async leaseTimeToLive(id: LeaseId): Promise<number> {
    return this.#read(() => {
      const lease = this.#leases.get(id);
      if (!lease || lease.expired) return -1;
      return Math.max(0, Math.ceil((lease.deadlineMs - performance.now()) / 1000));
    });
  }

  compact(revision: number): Promise<void> {
    return this.#write((batch) => this.#tables.compact(revision, batch));
  }

  /** Fails queued writes and open watches with PXE_ERR_STORE_UNAVAILABLE, stops timers, closes the file. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#flushImmediate) clearImmediate(this.#flushImmediate);
    const closed = () => new PxehaError('PXE_ERR_STORE_UNAVAILABLE', 'embedded store is closed');
    for (const write of this.#pending.splice(0)) write.fail(closed());
    for (const lease of this.#leases.values()) clearTimeout(lease.timer);
    this.#leases.clear();
    for (const watcher of [...this.#watchers]) watcher.fail(closed());
    this.#watchers.clear();
    this.#db.close();
  }

  #read<T>(read: () => T): Promise<T> {
    if (this.#closed) return Promise.reject(new PxehaError('PXE_ERR_STORE_UNAVAILABLE', 'embedded store is closed'));
    try {
      return Promise.resolve(read());
    } catch (err) {
      return Promise.reject(toStoreError(err));
    }
  }

  #write<T>(apply: (batch: WriteBatch) => T): Promise<T> {
    if (this.#closed) return Promise.reject(new PxehaError('PXE_ERR_STORE_UNAVAILABLE', 'embedded store is closed'));
    return new Promise<T>((resolve, reject) => {
      this.#pending.push({
        apply: (batch) => {
          const result = apply(batch);
          return () => resolve(result);
        },
        fail: reject,
      });
      // setImmediate, not a microtask: it runs after this turn's I/O callbacks, so every
      // request that arrived in this turn joins the batch.
      this.#flushImmediate ??= setImmediate(() => this.#flush());
    });
  }

  #flush(): void {
    this.#flushImmediate = undefined;
    const writes = this.#pending.splice(0, this.#maxBatchWrites);
    if (this.#pending.length > 0) this.#flushImmediate = setImmediate(() => this.#flush());
    if (writes.length === 0) return;

    const batch = new WriteBatch(this.#revision, this.#compactRevision);
    const settlers: Array<() => void> = [];
    const sql = this.#sql;
    try {
      sql.begin.run();
      for (const write of writes) {
        const restore = batch.mark();
        sql.savepoint.run();
        try {
          settlers.push(write.apply(batch));
          sql.release.run();
        } catch (err) {
          sql.rollbackToSavepoint.run();
          sql.release.run();
          restore();
          settlers.push(() => write.fail(toStoreError(err)));
        }
      }
      this.#tables.compactHistory(this.#historyRevisions, batch);
      this.#tables.saveRevisions(batch);
      sql.commit.run();
    } catch (err) {
      // The commit itself failed (I/O error, disk full): nothing of the batch is durable.
      if (this.#db.inTransaction) sql.rollback.run();
      const error = new PxehaError('PXE_ERR_STORE_UNAVAILABLE', `embedded store write failed: ${describe(err)}`, { cause: err });
      for (const write of writes) write.fail(error);
      return;
    }

    this.#stats.batches += 1;
    this.#stats.writes += writes.length;
    this.#revision = batch.revision;
    this.#compactRevision = batch.compactRevision;
    for (const grant of batch.grantedLeases) this.#armLease(grant);
    for (const id of batch.revokedLeases) this.#forgetLease(id);
    this.#publish(batch.changes);
    for (const settle of settlers) settle();
  }

  #publish(changes: readonly RevisionChanges[]): void {
    if (changes.length === 0) return;
    for (const watcher of this.#watchers) watcher.publish(changes);
  }

  /** (Re)starts a lease's full TTL. */
  #armLease({ id, ttlSeconds }: LeaseGrant): void {
    const previous = this.#leases.get(id);
    if (previous) clearTimeout(previous.timer);
    const ttlMs = ttlSeconds * 1000;
    this.#leases.set(id, {
      ttlSeconds,
      deadlineMs: performance.now() + ttlMs,
      expired: false,
      timer: setTimeout(() => this.#onLeaseTimer(id), Math.min(ttlMs, MAX_TIMER_DELAY_MS)).unref(),
    });
  }

  #forgetLease(id: LeaseId): void {
    const lease = this.#leases.get(id);
    if (!lease) return;
    clearTimeout(lease.timer);
    this.#leases.delete(id);
  }

  #onLeaseTimer(id: LeaseId): void {
    const lease = this.#leases.get(id);
    if (!lease || this.#closed) return;
    const remainingMs = lease.deadlineMs - performance.now();
    if (remainingMs > 0) {
      lease.timer = setTimeout(() => this.#onLeaseTimer(id), Math.min(remainingMs, MAX_TIMER_DELAY_MS)).unref();
      return;
    }
    // From now on the lease is gone for keepAlive and timeToLive; the revoke is queued behind
    // earlier writes, so a put that was queued first still attaches and is then deleted.
    lease.expired = true;
    this.#write((batch) => this.#tables.revokeLease(id, batch)).catch(() => {
      if (this.#closed || this.#leases.get(id) !== lease) return;
      lease.timer = setTimeout(() => this.#onLeaseTimer(id), EXPIRY_RETRY_MS).unref();
    });
  }
}

/**
 * Makes a newly created database file's directory entry durable (SQLite syncs the directory
 * for the WAL it creates, not for the main file). Best effort: some filesystems refuse to
 * fsync a directory.
 */
function syncDirectory(path: string): void {
  try {
    const fd = openSync(path, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // Nothing more can be done here; the file itself is synced on every commit.
  }
}

function toStoreError(err: unknown): PxehaError {
  if (err instanceof PxehaError) return err;
  return new PxehaError('PXE_ERR_STORE_UNAVAILABLE', `embedded store failed: ${describe(err)}`, { cause: err });
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
