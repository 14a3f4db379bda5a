/**
 * The one store interface pxeha stands on, modeled on etcd v3's data model so the etcd
 * implementation drops in beside the embedded one and both pass one contract suite
 * (src/store/contract.ts).
 *
 * - Keys and values are strings; keys are ordered bytewise by their UTF-8 encoding, as etcd
 *   orders its byte keys.
 * - Every change bumps one global `revision`. Each key carries createRevision, modRevision and
 *   version (number of puts since creation), as in etcd's mvccpb.KeyValue.
 * - `txn` is etcd's If/Then/Else: all compares are evaluated against one revision, and either
 *   `success` or `failure` ops are applied atomically as one new revision (none when read-only).
 * - Watches deliver every change under a prefix from a start revision, in revision order,
 *   grouped by revision; a start revision older than the store keeps fails with
 *   PXE_ERR_STORE_COMPACTED.
 * - Leases expire after their TTL unless kept alive and delete their keys when they do.
 * A write is committed (durable on disk, or on a quorum for etcd) once its promise resolves.
 */

export type LeaseId = string;

export interface KeyValue {
  key: string;
  value: string;
  createRevision: number;
  modRevision: number;
  /** Number of puts to this key since it was (re)created; 0 means absent. */
  version: number;
  /** Lease the key is attached to, or '0' for none (etcd's convention). */
  lease: LeaseId;
}

export interface RangeOptions {
  /** Treat `key` as a prefix and return every key that starts with it. */
  prefix?: boolean;
  /** Exclusive end of a key range [key, end). Ignored when `prefix` is set. */
  end?: string;
  /** At most this many keys; `more` says whether some were left out. 0 = no limit. */
  limit?: number;
  /** Return only the count, no kvs. */
  countOnly?: boolean;
}

export interface RangeResult {
  kvs: KeyValue[];
  /** Number of keys in the range (before limit). */
  count: number;
  more: boolean;
  /** Store revision the read was served at. */
  revision: number;
}

export type CompareTarget = 'value' | 'version' | 'createRevision' | 'modRevision' | 'lease';
export type CompareOp = '==' | '!=' | '<' | '>';

/**
 * One condition of a transaction. On an absent key version, createRevision and modRevision
 * are 0 and lease is '0'; a `value` compare on an absent key is false, as in etcd.
 */
export interface Compare {
  key: string;
  target: CompareTarget;
  op: CompareOp;
  value: string | number;
}

export type TxnOp =
  | { type: 'put'; key: string; value: string; lease?: LeaseId; prevKv?: boolean }
  | { type: 'delete'; key: string; prefix?: boolean; end?: string; prevKv?: boolean }
  | ({ type: 'range'; key: string } & RangeOptions);

export type TxnOpResult =
  | { type: 'put'; prevKv?: KeyValue }
  | { type: 'delete'; deleted: number; prevKvs?: KeyValue[] }
  | { type: 'range'; result: RangeResult };

export interface TxnRequest {
  compare?: Compare[];
  success?: TxnOp[];
  failure?: TxnOp[];
}

export interface TxnResult {
  succeeded: boolean;
  /** Revision after the transaction (unchanged if it wrote nothing). */
  revision: number;
  responses: TxnOpResult[];
}

export interface WatchEvent {
  type: 'put' | 'delete';
  /** For a delete, `kv.value` is '' and `kv.modRevision` is the revision of the delete. */
  kv: KeyValue;
  prevKv?: KeyValue;
}

export interface WatchOptions {
  prefix?: boolean;
  /** Deliver events with revision >= startRevision. Default: only changes after now. */
  startRevision?: number;
  prevKv?: boolean;
}

export interface Watcher {
  /** Events of one revision at a time, in revision order. */
  on(event: 'events', listener: (events: WatchEvent[], revision: number) => void): this;
  /** The watch ended for a reason other than cancel(), e.g. compaction or store closed. */
  on(event: 'error', listener: (err: Error) => void): this;
  cancel(): Promise<void>;
}

export interface LeaseGrant {
  id: LeaseId;
  ttlSeconds: number;
}

export interface Store {
  /** Short name of the implementation, for logs and metrics ('embedded', 'etcd'). */
  readonly kind: string;

  get(key: string): Promise<KeyValue | undefined>;
  range(key: string, options?: RangeOptions): Promise<RangeResult>;
  put(key: string, value: string, options?: { lease?: LeaseId }): Promise<{ revision: number; prevKv?: KeyValue }>;
  delete(key: string, options?: { prefix?: boolean; end?: string }): Promise<{ revision: number; deleted: number }>;
  txn(request: TxnRequest): Promise<TxnResult>;
  /** Current revision of the store. */
  revision(): Promise<number>;

  watch(key: string, options?: WatchOptions): Promise<Watcher>;

  leaseGrant(ttlSeconds: number): Promise<LeaseGrant>;
  /** Renews the lease; PXE_ERR_LEASE_NOT_FOUND if it expired or never existed. */
  leaseKeepAlive(id: LeaseId): Promise<{ ttlSeconds: number }>;
  /** Revokes the lease and deletes its keys. Revoking an unknown lease is not an error. */
  leaseRevoke(id: LeaseId): Promise<void>;
  /** Remaining TTL in seconds, or -1 when the lease does not exist. */
  leaseTimeToLive(id: LeaseId): Promise<number>;

  /** Drops history older than `revision` (watches from before it fail with COMPACTED). */
  compact(revision: number): Promise<void>;

  close(): Promise<void>;
}
