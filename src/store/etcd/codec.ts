/**
 * Store requests ⇄ etcd v3 protobuf messages (etcdserverpb, as etcd3 loads them: keepCase,
 * int64 as decimal strings, enums as names, bytes as Buffers). Pure functions: no client, no I/O.
 *
 * Keys and values are UTF-8 bytes on the wire, so etcd's bytewise key order is the order the
 * Store interface promises. Requests are checked here before they are sent, so a malformed one
 * fails with PXE_ERR_STORE_BAD_REQUEST instead of whatever protobufjs makes of it.
 */
import type {
  ICompare, IDeleteRangeRequest, IEvent, IKeyValue, IPutRequest, IRangeRequest, IRangeResponse, IRequestOp, IResponseOp, ITxnRequest,
} from 'etcd3';
import { PxehaError } from '../../errors.js';
import { assertKeyGiven, encodeKey, prefixEnd } from '../keys.js';
import type {
  Compare, CompareOp, CompareTarget, KeyValue, LeaseId, RangeOptions, RangeResult, TxnOp, TxnOpResult, TxnRequest, WatchEvent,
} from '../store.js';

/** etcd's "no lease". */
export const NO_LEASE: LeaseId = '0';
/** etcd's MaxLeaseTTL (server/lease/lessor.go). */
export const MAX_LEASE_TTL_SECONDS = 9_000_000_000;
/** A range end of one NUL byte means "every key from `key` on" (etcd's convention). */
const ALL_FROM = Buffer.from([0]);
const LEASE_ID = /^(0|[1-9][0-9]{0,18})$/;

const COMPARE_RESULT: Record<CompareOp, NonNullable<ICompare['result']>> = {
  '==': 'Equal',
  '!=': 'NotEqual',
  '<': 'Less',
  '>': 'Greater',
};

const COMPARE_TARGET: Record<CompareTarget, NonNullable<ICompare['target']>> = {
  value: 'Value',
  version: 'Version',
  createRevision: 'Create',
  modRevision: 'Mod',
  lease: 'Lease',
};

/**
 * [key, range_end) for a request: with `prefix`, every key that starts with `key` (an empty
 * prefix is every key); with `end`, up to `end` ('\0' meaning unbounded); else the key alone.
 */
export function keyRange(key: string, options: { prefix?: boolean; end?: string } = {}): { key: Buffer; range_end?: Buffer } {
  const start = encodeKey(key);
  if (options.prefix) return { key: start.length === 0 ? ALL_FROM : start, range_end: prefixEnd(start) ?? ALL_FROM };
  if (options.end !== undefined) return { key: start, range_end: encodeKey(options.end) };
  assertKeyGiven(start);
  return { key: start };
}

export function leaseNumber(id: LeaseId | undefined): string {
  if (id === undefined) return NO_LEASE;
  if (typeof id !== 'string' || !LEASE_ID.test(id) || BigInt(id) > 2n ** 63n - 1n) {
    throw new PxehaError('PXE_ERR_STORE_BAD_REQUEST', `lease id must be a decimal int64, got ${JSON.stringify(id)}`);
  }
  return id;
}

export function checkTtl(ttlSeconds: number): void {
  if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > MAX_LEASE_TTL_SECONDS) {
    throw new PxehaError('PXE_ERR_STORE_BAD_REQUEST', `lease TTL must be an integer from 1 to ${MAX_LEASE_TTL_SECONDS} seconds, got ${ttlSeconds}`);
  }
}

export function rangeRequest(key: string, options: RangeOptions = {}): IRangeRequest {
  const limit = options.limit ?? 0;
  if (!Number.isSafeInteger(limit) || limit < 0) {
    throw new PxehaError('PXE_ERR_STORE_BAD_REQUEST', `range limit must be a non-negative integer, got ${limit}`);
  }
  return { ...keyRange(key, options), limit, count_only: options.countOnly ?? false };
}

export function putRequest(op: { key: string; value: string; lease?: LeaseId; prevKv?: boolean }): IPutRequest {
  if (typeof op.value !== 'string') throw new PxehaError('PXE_ERR_STORE_BAD_REQUEST', `value of ${op.key} must be a string`);
  return { ...keyRange(op.key), value: Buffer.from(op.value, 'utf8'), lease: leaseNumber(op.lease), prev_kv: op.prevKv ?? false };
}

export function deleteRequest(key: string, options: { prefix?: boolean; end?: string; prevKv?: boolean } = {}): IDeleteRangeRequest {
  return { ...keyRange(key, options), prev_kv: options.prevKv ?? false };
}

export function txnRequest(request: TxnRequest): ITxnRequest {
  return {
    compare: (request.compare ?? []).map(compareMessage),
    success: (request.success ?? []).map(requestOp),
    failure: (request.failure ?? []).map(requestOp),
  };
}

function compareMessage(compare: Compare): ICompare {
  const result = COMPARE_RESULT[compare.op];
  const target = COMPARE_TARGET[compare.target];
  if (!result || !target) {
    throw new PxehaError('PXE_ERR_STORE_BAD_REQUEST', `unknown compare ${String(compare.target)} ${String(compare.op)}`);
  }
  const message: ICompare = { ...keyRange(compare.key), result, target };
  const { value } = compare;
  switch (compare.target) {
    case 'value':
      if (typeof value !== 'string') throw new PxehaError('PXE_ERR_STORE_BAD_REQUEST', `a value compare needs a string, got ${String(value)}`);
      message.value = Buffer.from(value, 'utf8');
      break;
    case 'lease':
      message.lease = leaseNumber(String(value));
      break;
    default: {
      const n = typeof value === 'number' ? value : Number.NaN;
      if (!Number.isSafeInteger(n)) throw new PxehaError('PXE_ERR_STORE_BAD_REQUEST', `a ${compare.target} compare needs an integer, got ${String(value)}`);
      if (compare.target === 'version') message.version = n;
      else if (compare.target === 'createRevision') message.create_revision = n;
      else message.mod_revision = n;
    }
  }
  return message;
}

function requestOp(op: TxnOp): IRequestOp {
  switch (op.type) {
    case 'put':
      return { request_put: putRequest(op) };
    case 'delete':
      return { request_delete_range: deleteRequest(op.key, op) };
    case 'range':
      return { request_range: rangeRequest(op.key, op) };
    default:
      throw new PxehaError('PXE_ERR_STORE_BAD_REQUEST', `unknown transaction op ${JSON.stringify((op as { type?: unknown }).type)}`);
  }
}

/**
 * One op's response. Ranges inside a transaction report the transaction's revision, which is
 * what the Store interface promises ("revision the read was served at").
 */
export function opResult(op: TxnOp, response: IResponseOp | undefined, revision: number): TxnOpResult {
  switch (op.type) {
    case 'put': {
      const prev = response?.response_put?.prev_kv;
      return prev ? { type: 'put', prevKv: keyValue(prev) } : { type: 'put' };
    }
    case 'delete': {
      const del = response?.response_delete_range;
      const result: TxnOpResult = { type: 'delete', deleted: Number(del?.deleted ?? 0) };
      return op.prevKv ? { ...result, prevKvs: (del?.prev_kvs ?? []).map(keyValue) } : result;
    }
    case 'range':
      return { type: 'range', result: rangeResult(response?.response_range, revision) };
  }
}

export function rangeResult(response: IRangeResponse | undefined, revision: number): RangeResult {
  return {
    kvs: (response?.kvs ?? []).map(keyValue),
    count: Number(response?.count ?? 0),
    more: response?.more ?? false,
    revision,
  };
}

export function keyValue(kv: IKeyValue): KeyValue {
  return {
    key: kv.key.toString('utf8'),
    value: (kv.value ?? Buffer.alloc(0)).toString('utf8'),
    createRevision: Number(kv.create_revision),
    modRevision: Number(kv.mod_revision),
    version: Number(kv.version),
    lease: String(kv.lease ?? NO_LEASE),
  };
}

/** A watch event; a delete's kv carries the key, an empty value and the delete's revision. */
export function watchEvent(event: IEvent, withPrevKv: boolean): WatchEvent {
  // The wire enum is mvccpb's PUT/DELETE; etcd3's typings say Put/Delete.
  const type = String(event.type).toUpperCase() === 'DELETE' ? 'delete' : 'put';
  const result: WatchEvent = { type, kv: keyValue(event.kv) };
  if (withPrevKv && event.prev_kv) result.prevKv = keyValue(event.prev_kv);
  return result;
}

export function revisionOf(header: { revision: string } | null | undefined): number {
  const revision = Number(header?.revision);
  if (!Number.isSafeInteger(revision) || revision < 0) throw new Error(`etcd response without a usable header revision: ${String(header?.revision)}`);
  return revision;
}
