/**
 * The single-node Store: etcd's data model on one SQLite file (better-sqlite3).
 *
 * Durability: a write's promise resolves only after its commit is on stable storage, so
 * `kill -9` or power loss after that loses nothing (embedded.test.ts kills a writer mid-stream
 * to check it). SQLite itself never syncs (WAL, synchronous=OFF, no automatic checkpoints):
 * this class does, off the event loop, in this order:
 *
 * 1. Commit: a batch is committed in SQLite; its frames are in the -wal file in the OS page
 *    cache. Reads on this process see it at once (see "Reads" below).
 * 2. Sync: fdatasync of the -wal file runs on libuv's threadpool. A batch is settled (promises
 *    resolved, watch events published) only by an fdatasync that STARTED after its commit
 *    returned, so its frames were in the file when the sync began. While one sync is in
 *    flight the next batches commit; the next sync covers them all (pipelining). A WAL is
 *    recovered up to the last frame whose checksum chain is intact, so a commit covered by a
 *    completed sync survives power loss together with every commit before it.
 * 3. Checkpoint, when the -wal file has grown past `checkpointWalBytes` (rare): new batches
 *    are held; once every commit is synced (step 2), PRAGMA wal_checkpoint(PASSIVE) copies the
 *    WAL into the database file (page cache only), fdatasync(db) makes that durable, and only
 *    then PRAGMA wal_checkpoint(TRUNCATE) (nothing left to copy) resets and truncates the WAL,
 *    followed by fdatasync(wal) so the truncation is durable; then batches resume. The order
 *    matters: (a) the WAL is synced before any of its pages reach the database file, so the
 *    database never holds a page of a commit that recovery would not replay; (b) the WAL is
 *    emptied only after the database file is durable, so nothing exists only in an erased
 *    log; (c) the first write after a complete checkpoint restarts the log from offset 0, and
 *    with synchronous=OFF SQLite does not sync the new WAL header (wal.c, ticket ff5be73dee):
 *    if new frames reached the disk before the header, recovery could replay the OLD log's
 *    frames over the newer database. Truncating (durably) before any new frame is written
 *    leaves no old frame to replay, so a torn restart only loses unacknowledged commits.
 * 4. Close: settles what is synced, then sets synchronous=FULL so SQLite's own closing
 *    checkpoint syncs the database before it deletes the WAL.
 *
 * A failed sync (EIO) fails every write not yet settled with PXE_ERR_STORE_UNAVAILABLE and
 * closes the store: after a failed fsync the kernel may have dropped the dirty pages, so
 * retrying could report data durable that is not.
 *
 * Reads: range/get/revision read SQLite directly, so they can see a commit whose sync is still
 * in flight. That is linearizable within the process, and safe as long as nothing is
 * acknowledged outside it before its own write's promise resolves: a write derived from such
 * a read commits later in the same log, so it can never be durable without what it read. The
 * DHCP server sends an ACK only after its binding's promise resolves. Watch events, which
 * other components act on, are delivered only after the sync that covers them.
 *
 * Group commit: every write (txn, put, delete, lease grant and revoke, compaction) is queued,
 * and all writes queued in one event-loop turn are applied in order in ONE SQLite transaction,
 * covered by one fdatasync. Each write still gets its own revision and runs in its own
 * savepoint: a write that fails while applied (unknown lease, an SQLite error) is rolled back
 * alone and the rest of the batch commits; malformed requests are rejected before queueing.
 * The event loop never waits for the disk, so requests keep being read from the sockets while
 * a sync is in flight and form the next batches.
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
import { closeSync, fdatasync, fdatasyncSync, fstatSync, fsyncSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { performance } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import { PxehaError } from '../../errors.js';
import type {
  KeyValue, LeaseGrant, LeaseId, RangeOptions, RangeResult, Store, TxnRequest, TxnResult, WatchOptions, Watcher,
} from '../store.js';
import { keySpan } from './key-span.js';
import { KvTables, planTxn, type RevisionChanges, type TxnPlan, WriteBatch } from './kv-tables.js';
import { configureDatabase, migrate, prepareStatements, takeOverSyncing, type Statements } from './schema.js';
import { EmbeddedWatcher, type WatchSource } from './watcher.js';

export interface EmbeddedStoreOptions {
  /** SQLite database file; its directory is created if missing. */
  path: string;
  /** Revisions of watch history kept; older history is compacted automatically. Default 10 000. */
  historyRevisions?: number;
  /** Most writes applied in one SQLite transaction. Default 1024. */
  maxBatchWrites?: number;
  /** How long open waits for another process to release the file. Default 2000 ms. */
  lockTimeoutMs?: number;
  /** Size of the -wal file past which it is checkpointed into the database file. Default 32 MiB. */
  checkpointWalBytes?: number;
  /** For tests: replaces fs.fdatasync (e.g. to make a sync slow or fail). Must be asynchronous. */
  fdatasync?: FdatasyncFunction;
}

export type FdatasyncFunction = (fd: number, callback: (err: NodeJS.ErrnoException | null) => void) => void;

export interface GroupCommitStats {
  /** SQLite transactions committed. */
  batches: number;
  /** Write requests applied, successful or not. */
  writes: number;
  /** fdatasync calls on the -wal file that settle batches (one may cover several batches). */
  syncs: number;
  /** Checkpoints of the WAL into the database file. */
  checkpoints: number;
}

const DEFAULT_HISTORY_REVISIONS = 10_000;
const DEFAULT_MAX_BATCH_WRITES = 1024;
const DEFAULT_LOCK_TIMEOUT_MS = 2000;
const DEFAULT_CHECKPOINT_WAL_BYTES = 32 * 1024 * 1024;
/** setTimeout's largest delay; longer lease deadlines are reached in several steps. */
const MAX_TIMER_DELAY_MS = 2 ** 31 - 1;
/** Retry delay when deleting an expired lease fails (the disk is likely failing). */
const EXPIRY_RETRY_MS = 1000;

interface PendingWrite {
  /** Runs inside the batch transaction; returns how to settle the caller once the commit is durable. */
  apply(batch: WriteBatch): () => void;
  fail(error: Error): void;
}

/** A batch committed in SQLite whose sync has not completed yet. */
interface CommittedBatch {
  revision: number;
  changes: readonly RevisionChanges[];
  settlers: Array<() => void>;
  writes: PendingWrite[];
}

interface StoreFiles {
  /** Descriptors of the database and -wal files, kept open until the database is closed:
   * closing any descriptor of the database file would drop SQLite's POSIX lock on it. */
  dbFd: number;
  walFd: number;
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
  readonly #checkpointWalBytes: number;
  readonly #files: StoreFiles;
  readonly #fdatasync: FdatasyncFunction;

  /** Latest committed revision: what reads see. */
  #revision: number;
  /** Latest revision whose commit is on stable storage: what watchers see. */
  #durableRevision: number;
  #compactRevision: number;
  #closed = false;
  #closing: Promise<void> | undefined;
  /** Set when a sync or checkpoint failed; the store is closed with it. */
  #failure: PxehaError | undefined;
  /** Committed batches no started sync covers yet, oldest first. */
  #unsynced: CommittedBatch[] = [];
  #syncInFlight = false;
  /** No batch may commit: a checkpoint is waiting for the last sync or running. */
  #holdWrites = false;
  #checkpointRunning = false;
  #idleWaiters: Array<() => void> = [];
  readonly #leases = new Map<LeaseId, LiveLease>();
  readonly #watchers = new Set<EmbeddedWatcher>();
  readonly #watchSource: WatchSource;
  readonly #pending: PendingWrite[] = [];
  #flushImmediate: NodeJS.Immediate | undefined;
  readonly #stats: GroupCommitStats = { batches: 0, writes: 0, syncs: 0, checkpoints: 0 };

  /** Synchronous form of openEmbeddedStore(), which callers should prefer. */
  static open(options: EmbeddedStoreOptions): EmbeddedStore {
    const historyRevisions = options.historyRevisions ?? DEFAULT_HISTORY_REVISIONS;
    const maxBatchWrites = options.maxBatchWrites ?? DEFAULT_MAX_BATCH_WRITES;
    const checkpointWalBytes = options.checkpointWalBytes ?? DEFAULT_CHECKPOINT_WAL_BYTES;
    if (!Number.isSafeInteger(checkpointWalBytes) || checkpointWalBytes < 1) {
      throw new PxehaError('PXE_ERR_STORE_BAD_REQUEST', `checkpointWalBytes must be a positive integer, got ${checkpointWalBytes}`);
    }
    if (!Number.isInteger(historyRevisions) || historyRevisions < 1) {
      throw new PxehaError('PXE_ERR_STORE_BAD_REQUEST', `historyRevisions must be a positive integer, got ${historyRevisions}`);
    }
    if (!Number.isInteger(maxBatchWrites) || maxBatchWrites < 1) {
      throw new PxehaError('PXE_ERR_STORE_BAD_REQUEST', `maxBatchWrites must be a positive integer, got ${maxBatchWrites}`);
    }
    let db: Database.Database | undefined;
    const fds: number[] = [];
    try {
      mkdirSync(dirname(options.path), { recursive: true });
      db = new Database(options.path, { timeout: options.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS });
      configureDatabase(db);
      migrate(db);
      // The -wal file exists from the first read in WAL mode (migrate read user_version).
      const dbFd = openSync(options.path, 'r+');
      fds.push(dbFd);
      const walFd = openSync(`${options.path}-wal`, 'r+');
      fds.push(walFd);
      // Whatever the last process committed (it may have died before syncing) and this open
      // recovered is made durable before anyone reads it; SQLite syncs nothing from now on.
      fdatasyncSync(walFd);
      takeOverSyncing(db);
      // The directory entries of the database and of the -wal file (SQLite would sync the
      // directory on its first sync of a new -wal file, which it no longer does).
      syncDirectory(dirname(options.path));
      return new EmbeddedStore(db, historyRevisions, maxBatchWrites, checkpointWalBytes, { dbFd, walFd }, options.fdatasync ?? fdatasync);
    } catch (err) {
      db?.close();
      for (const fd of fds) closeSync(fd);
      if (err instanceof PxehaError) throw err;
      const why = (err as { code?: unknown }).code === 'SQLITE_BUSY' ? 'the file is in use by another process' : describe(err);
      throw new PxehaError('PXE_ERR_STORE_UNAVAILABLE', `cannot open embedded store ${options.path}: ${why}`, { cause: err });
    }
  }

  private constructor(
    db: Database.Database,
    historyRevisions: number,
    maxBatchWrites: number,
    checkpointWalBytes: number,
    files: StoreFiles,
    sync: FdatasyncFunction,
  ) {
    this.#db = db;
    this.#checkpointWalBytes = checkpointWalBytes;
    this.#files = files;
    this.#fdatasync = sync;
    this.#sql = prepareStatements(db);
    this.#tables = new KvTables(this.#sql);
    this.#historyRevisions = historyRevisions;
    this.#maxBatchWrites = maxBatchWrites;
    const revisions = this.#tables.loadRevisions();
    this.#revision = revisions.revision;
    this.#durableRevision = revisions.revision;
    this.#compactRevision = revisions.compactRevision;
    // Surviving leases restart with their full TTL (see the file comment).
    for (const lease of this.#tables.loadLeases()) this.#armLease(lease);
    this.#watchSource = {
      // Watchers replay history up to the durable revision and get later revisions from
      // #publish once their sync completes. The compact revision is the committed one: the
      // history rows below it are gone for every reader already.
      currentRevision: () => this.#durableRevision,
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

  /**
   * Fails queued writes and open watches with PXE_ERR_STORE_UNAVAILABLE, stops timers, and
   * closes the file once every committed batch is synced (their promises resolve).
   */
  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    this.#closed = true;
    if (this.#flushImmediate) clearImmediate(this.#flushImmediate);
    this.#flushImmediate = undefined;
    const closed = () => this.#failure ?? new PxehaError('PXE_ERR_STORE_UNAVAILABLE', 'embedded store is closed');
    for (const write of this.#pending.splice(0)) write.fail(closed());
    for (const lease of this.#leases.values()) clearTimeout(lease.timer);
    this.#leases.clear();
    for (const watcher of [...this.#watchers]) watcher.fail(closed());
    this.#watchers.clear();
    // Committed batches are synced and settled before the file closes.
    while (this.#syncInFlight || this.#checkpointRunning || (this.#unsynced.length > 0 && !this.#failure)) {
      this.#startSync();
      await new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
    }
    try {
      // SQLite checkpoints the WAL into the database file and deletes it on close; with
      // synchronous=FULL it syncs the database file before the delete.
      this.#db.pragma('synchronous = FULL');
      this.#db.close();
    } finally {
      closeSync(this.#files.walFd);
      closeSync(this.#files.dbFd);
    }
  }

  #closedError(): PxehaError {
    return this.#failure ?? new PxehaError('PXE_ERR_STORE_UNAVAILABLE', 'embedded store is closed');
  }

  #read<T>(read: () => T): Promise<T> {
    if (this.#closed) return Promise.reject(this.#closedError());
    try {
      return Promise.resolve(read());
    } catch (err) {
      return Promise.reject(toStoreError(err));
    }
  }

  #write<T>(apply: (batch: WriteBatch) => T): Promise<T> {
    if (this.#closed) return Promise.reject(this.#closedError());
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
    // A checkpoint holds new commits; it schedules a flush when it is done.
    if (this.#closed || this.#holdWrites) return;
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
    // Settled (promises, watch events) only once a sync started after this point completes.
    this.#unsynced.push({ revision: batch.revision, changes: batch.changes, settlers, writes });
    this.#startSync();
  }

  /** Starts an fdatasync of the -wal file covering every batch committed so far, unless one is in flight. */
  #startSync(): void {
    if (this.#syncInFlight || this.#checkpointRunning || this.#unsynced.length === 0 || this.#failure) return;
    const covered = this.#unsynced;
    this.#unsynced = [];
    this.#syncInFlight = true;
    this.#stats.syncs += 1;
    this.#fdatasync(this.#files.walFd, (err) => this.#onSynced(covered, err));
  }

  #onSynced(covered: CommittedBatch[], err: NodeJS.ErrnoException | null): void {
    this.#syncInFlight = false;
    if (err) {
      this.#breakDown(covered, err);
      return;
    }
    for (const batch of covered) {
      this.#durableRevision = batch.revision;
      this.#publish(batch.changes);
      for (const settle of batch.settlers) settle();
    }
    if (!this.#closed && !this.#holdWrites && this.#walBytes() >= this.#checkpointWalBytes) this.#holdWrites = true;
    if (this.#unsynced.length > 0) this.#startSync();
    else if (this.#holdWrites && !this.#closed) void this.#checkpoint();
    this.#notifyIdle();
  }

  #walBytes(): number {
    try {
      return fstatSync(this.#files.walFd).size;
    } catch {
      return 0;
    }
  }

  /**
   * Copies the WAL into the database file and empties it (see the file comment, step 3).
   * Runs with new commits held, no sync in flight and every committed batch synced.
   */
  async #checkpoint(): Promise<void> {
    this.#checkpointRunning = true;
    try {
      const [result] = this.#db.pragma('wal_checkpoint(PASSIVE)') as Array<{ busy: number; log: number; checkpointed: number }>;
      await this.#syncFile(this.#files.dbFd);
      if (result && result.busy === 0 && result.checkpointed === result.log) {
        // Everything is in the (synced) database file: empty the log before anything is written to it again.
        this.#db.pragma('wal_checkpoint(TRUNCATE)');
        await this.#syncFile(this.#files.walFd);
      }
      this.#stats.checkpoints += 1;
    } catch (err) {
      this.#checkpointRunning = false;
      this.#breakDown([], err);
      return;
    }
    this.#checkpointRunning = false;
    this.#holdWrites = false;
    if (this.#pending.length > 0 && !this.#closed) this.#flushImmediate ??= setImmediate(() => this.#flush());
    this.#notifyIdle();
  }

  #syncFile(fd: number): Promise<void> {
    return new Promise((resolve, reject) => this.#fdatasync(fd, (err) => (err ? reject(err) : resolve())));
  }

  /** A sync or checkpoint failed: nothing not yet settled can be promised durable. */
  #breakDown(covered: CommittedBatch[], err: unknown): void {
    const error = new PxehaError('PXE_ERR_STORE_UNAVAILABLE', `embedded store could not sync its file, so it closed: ${describe(err)}`, {
      cause: err,
    });
    this.#failure ??= error;
    for (const batch of [...covered, ...this.#unsynced.splice(0)]) {
      for (const write of batch.writes) write.fail(error);
    }
    void this.close().catch(() => {});
    this.#notifyIdle();
  }

  #notifyIdle(): void {
    if (this.#syncInFlight || this.#checkpointRunning) return;
    for (const resolve of this.#idleWaiters.splice(0)) resolve();
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
