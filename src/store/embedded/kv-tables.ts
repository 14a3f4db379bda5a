/**
 * etcd's key-value semantics over the SQLite tables, synchronously: range reads, transactions,
 * leases, history and compaction. Nothing here knows about promises, timers or batching;
 * embedded-store.ts calls the write methods inside its group-commit transaction and passes a
 * WriteBatch that carries the revision and the changes made so far.
 *
 * Semantics follow etcd v3 (server/etcdserver/apply, server/storage/mvcc):
 * - a write transaction bumps the revision once, and only if it changed something;
 * - all compares are evaluated before any op; ops see the writes of earlier ops;
 * - a key may be put at most once per branch and not inside a range deleted by the same branch;
 * - a put with an unknown lease fails the whole transaction.
 */
import { randomBytes } from 'node:crypto';
import { PxehaError } from '../../errors.js';
import type {
  Compare, KeyValue, LeaseGrant, LeaseId, RangeResult, TxnOp, TxnOpResult, TxnRequest, TxnResult, WatchEvent,
} from '../store.js';
import { type KeySpan, keySpan, spanContains } from './key-span.js';
import type { HistoryRow, KvRow, SpanStatements, Statements } from './schema.js';

/** etcd's MaxLeaseTTL (server/lease/lessor.go). */
export const MAX_LEASE_TTL_SECONDS = 9_000_000_000;

const NO_LEASE: LeaseId = '0';
const LEASE_ID_PATTERN = /^(0|[1-9][0-9]{0,18})$/;

/** A change with its key bytes (for span matching); `event.prevKv` is set whenever the key existed. */
export interface StoredEvent {
  keyBytes: Buffer;
  event: WatchEvent;
}

export interface RevisionChanges {
  revision: number;
  events: StoredEvent[];
}

/**
 * What one group commit has done so far. Each write request runs inside a savepoint; if it
 * fails, the savepoint is rolled back and the batch is restored to its mark, so the requests
 * around it commit as if it had never run.
 */
export class WriteBatch {
  readonly changes: RevisionChanges[] = [];
  readonly grantedLeases: LeaseGrant[] = [];
  readonly revokedLeases: LeaseId[] = [];
  constructor(
    public revision: number,
    public compactRevision: number,
  ) {}

  mark(): () => void {
    const { revision, compactRevision } = this;
    const lengths = [this.changes.length, this.grantedLeases.length, this.revokedLeases.length] as const;
    return () => {
      this.revision = revision;
      this.compactRevision = compactRevision;
      this.changes.length = lengths[0];
      this.grantedLeases.length = lengths[1];
      this.revokedLeases.length = lengths[2];
    };
  }
}

type PlannedOp =
  | { type: 'put'; op: Extract<TxnOp, { type: 'put' }>; keyBytes: Buffer; lease: LeaseId }
  | { type: 'delete'; op: Extract<TxnOp, { type: 'delete' }>; span: KeySpan }
  | { type: 'range'; op: Extract<TxnOp, { type: 'range' }>; span: KeySpan };

interface PlannedCompare {
  keyBytes: Buffer;
  compare: Compare;
}

export class KvTables {
  readonly #sql: Statements;

  constructor(sql: Statements) {
    this.#sql = sql;
  }

  loadRevisions(): { revision: number; compactRevision: number } {
    return { revision: this.#meta('revision'), compactRevision: this.#meta('compact_revision') };
  }

  loadLeases(): LeaseGrant[] {
    return this.#sql.leaseAll.all().map((row) => ({ id: row.id, ttlSeconds: row.ttl_seconds }));
  }

  range(span: KeySpan, options: { limit?: number; countOnly?: boolean }, revision: number): RangeResult {
    const limit = checkLimit(options.limit);
    if (options.countOnly) return { kvs: [], count: this.#count(span), more: false, revision };
    const rows = limit > 0 ? querySpan(this.#sql.kvSelectLimited, span, [limit]) : querySpan(this.#sql.kvSelect, span, []);
    const kvs = rows.map(toKeyValue);
    // Only a full page can have been cut short by the limit.
    const count = limit > 0 && kvs.length === limit ? this.#count(span) : kvs.length;
    return { kvs, count, more: count > kvs.length, revision };
  }

  /** Changes to keys in `span` with revisions in [fromRevision, toRevision], grouped by revision. */
  readHistory(span: KeySpan, fromRevision: number, toRevision: number): RevisionChanges[] {
    const groups: RevisionChanges[] = [];
    for (const row of querySpan(this.#sql.historySelect, span, [fromRevision, toRevision])) {
      const last = groups[groups.length - 1];
      const stored = { keyBytes: row.key, event: toWatchEvent(row) };
      if (last?.revision === row.revision) last.events.push(stored);
      else groups.push({ revision: row.revision, events: [stored] });
    }
    return groups;
  }

  applyTxn({ compares, success, failure }: TxnPlan, batch: WriteBatch): TxnResult {
    const succeeded = compares.every((c) => this.#evaluate(c));
    const ops = succeeded ? success : failure;
    for (const op of ops) {
      if (op.type === 'put' && op.lease !== NO_LEASE && !this.#sql.leaseGet.get(op.lease)) {
        throw new PxehaError('PXE_ERR_LEASE_NOT_FOUND', `lease ${op.lease} not found`);
      }
    }

    const writeRevision = batch.revision + 1;
    const events: StoredEvent[] = [];
    const responses = ops.map((op) => this.#applyOp(op, writeRevision, events, batch.revision));
    if (events.length > 0) {
      batch.revision = writeRevision;
      batch.changes.push({ revision: writeRevision, events });
    }
    return { succeeded, revision: batch.revision, responses };
  }

  grantLease(ttlSeconds: number, batch: WriteBatch): LeaseGrant {
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > MAX_LEASE_TTL_SECONDS) {
      throw new PxehaError('PXE_ERR_STORE_BAD_REQUEST', `lease TTL must be an integer in [1, ${MAX_LEASE_TTL_SECONDS}] seconds, got ${ttlSeconds}`);
    }
    let id: LeaseId;
    do id = randomLeaseId();
    while (this.#sql.leaseGet.get(id));
    this.#sql.leaseInsert.run(id, ttlSeconds);
    const grant = { id, ttlSeconds };
    batch.grantedLeases.push(grant);
    return grant;
  }

  /** Deletes the lease and, in one revision, every key attached to it. Unknown ids are ignored. */
  revokeLease(id: LeaseId, batch: WriteBatch): void {
    batch.revokedLeases.push(id);
    if (!LEASE_ID_PATTERN.test(id) || !this.#sql.leaseGet.get(id)) return;
    this.#sql.leaseDelete.run(id);
    // kvByLease returns keys in key order, the order etcd's lessor deletes them in.
    const rows = this.#sql.kvByLease.all(id);
    if (rows.length === 0) return;
    const revision = batch.revision + 1;
    const events: StoredEvent[] = [];
    for (const row of rows) this.#deleteRow(row, revision, events);
    batch.revision = revision;
    batch.changes.push({ revision, events });
  }

  /** etcd's Compact: drops history before `revision`; a future or already compacted revision is an error. */
  compact(revision: number, batch: WriteBatch): void {
    if (!Number.isInteger(revision) || revision > batch.revision) {
      throw new PxehaError('PXE_ERR_STORE_BAD_REQUEST', `cannot compact at revision ${revision}: the store is at ${batch.revision}`);
    }
    if (revision <= batch.compactRevision) {
      throw new PxehaError('PXE_ERR_STORE_COMPACTED', `revision ${revision} is already compacted (compact revision ${batch.compactRevision})`);
    }
    this.#sql.historyCompact.run(revision);
    batch.compactRevision = revision;
  }

  /**
   * Keeps the history to about `keepRevisions`. Compacts in steps of a tenth of that, so a
   * busy store deletes history in a few large range deletes instead of one row per write.
   */
  compactHistory(keepRevisions: number, batch: WriteBatch): void {
    const floor = batch.revision - keepRevisions + 1;
    if (floor - batch.compactRevision < Math.max(1, Math.ceil(keepRevisions / 10))) return;
    this.#sql.historyCompact.run(floor);
    batch.compactRevision = floor;
  }

  saveRevisions(batch: WriteBatch): void {
    this.#sql.metaSet.run(batch.revision, 'revision');
    this.#sql.metaSet.run(batch.compactRevision, 'compact_revision');
  }

  #meta(name: string): number {
    const row = this.#sql.metaGet.get(name);
    if (!row) throw new Error(`store file lacks meta row ${name}`);
    return row.value;
  }

  #count(span: KeySpan): number {
    return querySpan(this.#sql.kvCount, span, [])[0]?.count ?? 0;
  }

  #evaluate({ keyBytes, compare }: PlannedCompare): boolean {
    const row = this.#sql.kvGet.get(keyBytes);
    let order: number;
    switch (compare.target) {
      case 'value':
        // etcd: a value compare on an absent key is false whatever the operator.
        if (!row) return false;
        order = Buffer.compare(Buffer.from(row.value, 'utf8'), Buffer.from(String(compare.value), 'utf8'));
        break;
      case 'version':
        order = Math.sign((row?.version ?? 0) - Number(compare.value));
        break;
      case 'createRevision':
        order = Math.sign((row?.create_revision ?? 0) - Number(compare.value));
        break;
      case 'modRevision':
        order = Math.sign((row?.mod_revision ?? 0) - Number(compare.value));
        break;
      case 'lease': {
        const actual = BigInt(row?.lease ?? NO_LEASE);
        const expected = BigInt(compare.value);
        order = actual === expected ? 0 : actual < expected ? -1 : 1;
        break;
      }
    }
    switch (compare.op) {
      case '==':
        return order === 0;
      case '!=':
        return order !== 0;
      case '<':
        return order < 0;
      case '>':
        return order > 0;
    }
  }

  #applyOp(planned: PlannedOp, writeRevision: number, events: StoredEvent[], readRevision: number): TxnOpResult {
    switch (planned.type) {
      case 'put':
        return this.#put(planned, writeRevision, events);
      case 'delete': {
        const rows = querySpan(this.#sql.kvSelect, planned.span, []);
        for (const row of rows) this.#deleteRow(row, writeRevision, events);
        return planned.op.prevKv
          ? { type: 'delete', deleted: rows.length, prevKvs: rows.map(toKeyValue) }
          : { type: 'delete', deleted: rows.length };
      }
      case 'range': {
        // Reads inside a transaction see its earlier writes, at the revision they will commit as.
        const revision = events.length > 0 ? writeRevision : readRevision;
        return { type: 'range', result: this.range(planned.span, planned.op, revision) };
      }
    }
  }

  #put({ op, keyBytes, lease }: Extract<PlannedOp, { type: 'put' }>, revision: number, events: StoredEvent[]): TxnOpResult {
    const prevRow = this.#sql.kvGet.get(keyBytes);
    const prevKv = prevRow ? toKeyValue(prevRow) : undefined;
    const kv: KeyValue = {
      key: op.key,
      value: op.value,
      createRevision: prevKv?.createRevision ?? revision,
      modRevision: revision,
      version: (prevKv?.version ?? 0) + 1,
      lease,
    };
    this.#sql.kvUpsert.run(keyBytes, kv.value, kv.createRevision, revision, kv.version, lease);
    this.#recordChange(revision, events, keyBytes, { type: 'put', kv, prevKv });
    return op.prevKv && prevKv ? { type: 'put', prevKv } : { type: 'put' };
  }

  #deleteRow(row: KvRow, revision: number, events: StoredEvent[]): void {
    this.#sql.kvDelete.run(row.key);
    // etcd's tombstone: only the key and the revision of the delete are set.
    const kv: KeyValue = { key: row.key.toString('utf8'), value: '', createRevision: 0, modRevision: revision, version: 0, lease: NO_LEASE };
    this.#recordChange(revision, events, row.key, { type: 'delete', kv, prevKv: toKeyValue(row) });
  }

  #recordChange(revision: number, events: StoredEvent[], keyBytes: Buffer, event: WatchEvent): void {
    const { kv, prevKv } = event;
    const isPut = event.type === 'put';
    this.#sql.historyInsert.run(
      revision, events.length, keyBytes, isPut ? 0 : 1,
      isPut ? kv.value : null, isPut ? kv.createRevision : null, isPut ? kv.version : null, isPut ? kv.lease : null,
      prevKv?.value ?? null, prevKv?.createRevision ?? null, prevKv?.modRevision ?? null, prevKv?.version ?? null, prevKv?.lease ?? null,
    );
    events.push({ keyBytes, event: prevKv ? event : { type: event.type, kv } });
  }
}

/** A transaction checked and with its keys encoded, ready to apply. */
export interface TxnPlan {
  compares: PlannedCompare[];
  success: PlannedOp[];
  failure: PlannedOp[];
}

/**
 * Validates a transaction before it is queued, so a malformed one is rejected at once. Both
 * branches are checked, as etcd does, so a bad request fails whichever branch would run.
 */
export function planTxn(request: TxnRequest): TxnPlan {
  return {
    compares: (request.compare ?? []).map(planCompare),
    success: planOps(request.success ?? []),
    failure: planOps(request.failure ?? []),
  };
}

function querySpan<Extra extends unknown[], Row>(statements: SpanStatements<Extra, Row>, span: KeySpan, extra: Extra): Row[] {
  if (span.kind === 'key') return statements.key.all(span.key, ...extra);
  if (span.end === undefined) return statements.from.all(span.start, ...extra);
  return statements.range.all(span.start, span.end, ...extra);
}

function planOps(ops: TxnOp[]): PlannedOp[] {
  const planned = ops.map((op): PlannedOp => {
    switch (op.type) {
      case 'put':
        return { type: 'put', op, keyBytes: keySpanKey(op.key), lease: checkLeaseId(op.lease ?? NO_LEASE) };
      case 'delete':
        return { type: 'delete', op, span: keySpan(op.key, op) };
      case 'range':
        checkLimit(op.limit);
        return { type: 'range', op, span: keySpan(op.key, op) };
      default:
        throw new PxehaError('PXE_ERR_STORE_BAD_REQUEST', `unknown txn op type ${String((op as { type: unknown }).type)}`);
    }
  });
  // etcd's checkIntervals: a key is put at most once and never inside a range the same branch deletes.
  const putKeys = new Set<string>();
  for (const op of planned) {
    if (op.type !== 'put') continue;
    const id = op.keyBytes.toString('latin1');
    if (putKeys.has(id)) throw new PxehaError('PXE_ERR_STORE_BAD_REQUEST', `key ${op.op.key} is put twice in one transaction`);
    putKeys.add(id);
    if (planned.some((other) => other.type === 'delete' && spanContains(other.span, op.keyBytes))) {
      throw new PxehaError('PXE_ERR_STORE_BAD_REQUEST', `key ${op.op.key} is both put and deleted in one transaction`);
    }
  }
  return planned;
}

function keySpanKey(key: string): Buffer {
  const span = keySpan(key);
  if (span.kind !== 'key') throw new Error('unreachable: a bare key is a single-key span');
  return span.key;
}

const COMPARE_TARGETS = new Set(['value', 'version', 'createRevision', 'modRevision', 'lease']);
const COMPARE_OPS = new Set(['==', '!=', '<', '>']);

function planCompare(compare: Compare): PlannedCompare {
  const bad = (why: string) => new PxehaError('PXE_ERR_STORE_BAD_REQUEST', `compare on ${compare.key}: ${why}`);
  if (!COMPARE_TARGETS.has(compare.target)) throw bad(`unknown target ${String(compare.target)}`);
  if (!COMPARE_OPS.has(compare.op)) throw bad(`unknown operator ${String(compare.op)}`);
  switch (compare.target) {
    case 'value':
      if (typeof compare.value !== 'string') throw bad('a value compare needs a string');
      break;
    case 'lease':
      checkLeaseId(String(compare.value));
      break;
    default:
      if (!Number.isSafeInteger(Number(compare.value)) || String(compare.value).trim() === '') {
        throw bad(`${compare.target} must be compared with an integer, got ${String(compare.value)}`);
      }
  }
  return { keyBytes: keySpanKey(compare.key), compare };
}

function checkLeaseId(id: string): LeaseId {
  if (!LEASE_ID_PATTERN.test(id)) throw new PxehaError('PXE_ERR_STORE_BAD_REQUEST', `lease id must be a decimal integer, got ${JSON.stringify(id)}`);
  return id;
}

function checkLimit(limit: number | undefined): number {
  if (limit === undefined) return 0;
  if (!Number.isSafeInteger(limit) || limit < 0) throw new PxehaError('PXE_ERR_STORE_BAD_REQUEST', `range limit must be a non-negative integer, got ${limit}`);
  return limit;
}

/** A random positive 63-bit id, as etcd's lessor picks them. */
function randomLeaseId(): LeaseId {
  const id = randomBytes(8).readBigUInt64BE() & 0x7fff_ffff_ffff_ffffn;
  return id === 0n ? randomLeaseId() : id.toString();
}

function toKeyValue(row: KvRow): KeyValue {
  return {
    key: row.key.toString('utf8'),
    value: row.value,
    createRevision: row.create_revision,
    modRevision: row.mod_revision,
    version: row.version,
    lease: row.lease,
  };
}

function toWatchEvent(row: HistoryRow): WatchEvent {
  const key = row.key.toString('utf8');
  const kv: KeyValue = row.deleted
    ? { key, value: '', createRevision: 0, modRevision: row.revision, version: 0, lease: NO_LEASE }
    : { key, value: row.value ?? '', createRevision: row.create_revision ?? 0, modRevision: row.revision, version: row.version ?? 0, lease: row.lease ?? NO_LEASE };
  const event: WatchEvent = { type: row.deleted ? 'delete' : 'put', kv };
  if (row.prev_mod_revision !== null) {
    event.prevKv = {
      key,
      value: row.prev_value ?? '',
      createRevision: row.prev_create_revision ?? 0,
      modRevision: row.prev_mod_revision,
      version: row.prev_version ?? 0,
      lease: row.prev_lease ?? NO_LEASE,
    };
  }
  return event;
}
