/**
 * Did a write whose reply was lost take effect? When the member serving a write dies (or its
 * connection drops) after the request left, etcd may or may not have applied it, and simply
 * sending it again could apply it twice: a compare-and-set would then report `succeeded:
 * false` for a change it made itself. etcd's Go client gives up there and returns the error.
 * We look in etcd's own history instead, which keeps every revision until compaction:
 *
 * - The write, if applied, got a revision above `afterRevision` (a revision the client had
 *   already seen committed before sending it).
 * - For each branch of the transaction that writes, walk back through the versions of its
 *   first put's key (a range at `modRevision - 1` gives the version before) down to
 *   `afterRevision`. A version with exactly our value and lease, whose revision X also holds
 *   every other put of that branch with its value and lease, is our transaction, applied at X.
 *   Its responses are read back from history: prevKv and deleted counts at X - 1, ranges at
 *   X - 1 when they come before the branch's first write and at X otherwise.
 * - If no branch that writes is found, the write was not applied ('absent'); a branch that
 *   only reads is harmless to run again. A branch that only deletes leaves nothing to find,
 *   and a walk that meets compaction, a deleted key or too many versions cannot decide: both
 *   give 'unknown', and the caller reports the error as before.
 *
 * A false match needs another writer to have put the very same values, with the same leases,
 * on every key of the branch, in the same window; its effect is then ours.
 */
import type { KeyValue, RangeOptions, RangeResult, TxnOp, TxnOpResult, TxnRequest, TxnResult } from '../store.js';
import { NO_LEASE } from './codec.js';

/** Versions of one key examined before giving up. */
const MAX_VERSIONS_WALKED = 32;

/** Reads from etcd's history; `revision` 0 means the latest. */
export interface HistoryReader {
  range(key: string, options: RangeOptions, revision: number): Promise<RangeResult>;
}

export type WriteOutcome = { applied: TxnResult } | 'absent' | 'unknown';

type PutOp = Extract<TxnOp, { type: 'put' }>;

export async function findWriteOutcome(reader: HistoryReader, request: TxnRequest, afterRevision: number): Promise<WriteOutcome> {
  for (const [ops, succeeded] of [[request.success ?? [], true], [request.failure ?? [], false]] as const) {
    const writes = ops.filter((op) => op.type !== 'range');
    if (writes.length === 0) continue;
    const puts = writes.filter((op): op is PutOp => op.type === 'put');
    if (puts.length === 0) return 'unknown';
    const revision = await findPuts(reader, puts, afterRevision);
    if (revision === 'unknown') return 'unknown';
    if (revision !== undefined) {
      return { applied: { succeeded, revision, responses: await readResponses(reader, ops, revision) } };
    }
  }
  return 'absent';
}

/** The revision above `afterRevision` at which all `puts` were applied together, if any. */
async function findPuts(reader: HistoryReader, puts: PutOp[], afterRevision: number): Promise<number | undefined | 'unknown'> {
  const [first, ...others] = puts as [PutOp, ...PutOp[]];
  let kv = await get(reader, first.key, 0);
  for (let step = 0; step < MAX_VERSIONS_WALKED; step++) {
    // Absent now: a delete after our put would hide it, and a delete's revision is not in a range.
    if (!kv) return 'unknown';
    if (kv.modRevision <= afterRevision) return undefined;
    if (matches(kv, first)) {
      const revision = kv.modRevision;
      const together = await Promise.all(others.map(async (op) => {
        const other = await get(reader, op.key, revision);
        return other !== undefined && other.modRevision === revision && matches(other, op);
      }));
      if (together.every(Boolean)) return revision;
    }
    // The first version of this life: an earlier life ended with a delete at a revision no
    // range reveals. Our put could hide in it only if it fits, with that delete, between
    // afterRevision and this life's creation.
    if (kv.version === 1) return kv.createRevision - afterRevision > 2 ? 'unknown' : undefined;
    kv = await get(reader, first.key, kv.modRevision - 1);
  }
  return 'unknown';
}

function matches(kv: KeyValue, op: PutOp): boolean {
  return kv.value === op.value && kv.lease === (op.lease ?? NO_LEASE);
}

async function get(reader: HistoryReader, key: string, revision: number): Promise<KeyValue | undefined> {
  return (await reader.range(key, {}, revision)).kvs[0];
}

/** The responses the transaction's branch gave, read back from history around `revision`. */
async function readResponses(reader: HistoryReader, ops: readonly TxnOp[], revision: number): Promise<TxnOpResult[]> {
  const firstWrite = ops.findIndex((op) => op.type !== 'range');
  return Promise.all(ops.map(async (op, i): Promise<TxnOpResult> => {
    switch (op.type) {
      case 'put': {
        const prevKv = op.prevKv ? await get(reader, op.key, revision - 1) : undefined;
        return prevKv ? { type: 'put', prevKv } : { type: 'put' };
      }
      case 'delete': {
        const span = { prefix: op.prefix, end: op.end };
        const before = await reader.range(op.key, { ...span, countOnly: !op.prevKv }, revision - 1);
        return op.prevKv ? { type: 'delete', deleted: before.count, prevKvs: before.kvs } : { type: 'delete', deleted: before.count };
      }
      case 'range': {
        const result = await reader.range(op.key, op, i < firstWrite ? revision - 1 : revision);
        return { type: 'range', result: { ...result, revision } };
      }
    }
  }));
}
