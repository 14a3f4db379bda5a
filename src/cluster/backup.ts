/**
 * Backup and restore of all cluster state: every key under `/pxeha/` as JSON lines.
 *
 *   {"format":"pxeha-backup","version":1,"revision":42,"createdAt":"…","store":"etcd","keys":3}
 *   {"key":"/pxeha/config/cluster","value":"{…}"}
 *   …
 *
 * - Consistent: the keys are read by one range request, which etcd and the embedded store
 *   both serve at a single revision (the header's). Paging would need reads pinned to a past
 *   revision, which the Store interface does not offer.
 * - Ephemeral keys are left out: anything attached to a store lease (membership records,
 *   election candidates) belongs to a live process and would be meaningless, or harmful, in
 *   another cluster. Restored nodes register themselves again.
 * - Restore writes into an empty store (no `/pxeha/` key that is not ephemeral), in
 *   transactions of at most RESTORE_BATCH puts (etcd's default --max-txn-ops is 128), each of
 *   which also checks that none of its keys exists, so a restore never silently overwrites
 *   state. Keys get new revisions: revisions are the store's own, never part of the state.
 * - The header's key count lets restore refuse a truncated file.
 */
import { PxehaError } from '../errors.js';
import type { Store, TxnOp } from '../store/store.js';

export const BACKUP_PREFIX = '/pxeha/';
export const BACKUP_FORMAT = 'pxeha-backup';
export const BACKUP_VERSION = 1;
const RESTORE_BATCH = 100;

export interface BackupHeader {
  format: typeof BACKUP_FORMAT;
  version: number;
  /** Store revision the snapshot was read at. */
  revision: number;
  createdAt: string;
  /** Kind of store it was read from. */
  store: string;
  /** Number of key lines that follow. */
  keys: number;
}

export interface BackupEntry {
  key: string;
  value: string;
}

export interface Backup {
  header: BackupHeader;
  entries: BackupEntry[];
}

/** Reads every durable pxeha key at one revision. */
export async function takeBackup(store: Store, nowMs: number = Date.now()): Promise<Backup> {
  const { kvs, revision, more } = await store.range(BACKUP_PREFIX, { prefix: true });
  if (more) throw new PxehaError('PXE_ERR_INTERNAL', 'the store returned a partial range for the backup');
  const entries = kvs.filter((kv) => kv.lease === '0').map((kv) => ({ key: kv.key, value: kv.value }));
  return {
    header: {
      format: BACKUP_FORMAT,
      version: BACKUP_VERSION,
      revision,
      createdAt: new Date(nowMs).toISOString(),
      store: store.kind,
      keys: entries.length,
    },
    entries,
  };
}

export function formatBackup(backup: Backup): string {
  return [JSON.stringify(backup.header), ...backup.entries.map((e) => JSON.stringify({ key: e.key, value: e.value }))].join('\n') + '\n';
}

/** Parses and checks a backup file: header, every line, key count. */
export function parseBackup(text: string, source = 'backup'): Backup {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  const bad = (message: string): PxehaError => new PxehaError('PXE_ERR_BAD_REQUEST', `${source}: ${message}`);
  const first = lines[0];
  if (first === undefined) throw bad('is empty');
  let header: BackupHeader;
  try {
    header = JSON.parse(first) as BackupHeader;
  } catch {
    throw bad('line 1 is not JSON; not a pxeha backup');
  }
  if (header.format !== BACKUP_FORMAT) throw bad(`line 1 is not a ${BACKUP_FORMAT} header`);
  if (header.version !== BACKUP_VERSION)
    throw bad(`format version ${String(header.version)} is not supported (this pxeha reads ${BACKUP_VERSION})`);
  const entries = lines.slice(1).map((line, i): BackupEntry => {
    let e: Partial<BackupEntry>;
    try {
      e = JSON.parse(line) as Partial<BackupEntry>;
    } catch {
      throw bad(`line ${i + 2} is not JSON`);
    }
    if (typeof e.key !== 'string' || typeof e.value !== 'string' || !e.key.startsWith(BACKUP_PREFIX)) {
      throw bad(`line ${i + 2} is not a {key, value} entry under ${BACKUP_PREFIX}`);
    }
    return { key: e.key, value: e.value };
  });
  if (entries.length !== header.keys)
    throw bad(`has ${entries.length} keys, its header says ${header.keys}: the file is truncated or edited`);
  const seen = new Set<string>();
  for (const e of entries) {
    if (seen.has(e.key)) throw bad(`key ${e.key} appears twice`);
    seen.add(e.key);
  }
  return { header, entries };
}

/** Durable pxeha keys in the store (those a restore would collide with). */
export async function durableKeys(store: Store): Promise<string[]> {
  const { kvs } = await store.range(BACKUP_PREFIX, { prefix: true });
  return kvs.filter((kv) => kv.lease === '0').map((kv) => kv.key);
}

export interface RestoreOptions {
  /** Delete the durable pxeha keys the store holds first, instead of refusing. */
  force?: boolean;
}

/** Writes a backup into an empty store; returns the revision after the last write. */
export async function restoreBackup(
  store: Store,
  backup: Backup,
  options: RestoreOptions = {},
): Promise<{ keys: number; revision: number }> {
  const existing = await durableKeys(store);
  if (existing.length > 0) {
    if (!options.force) {
      throw new PxehaError(
        'PXE_ERR_CONFLICT',
        `the store is not empty (${existing.length} pxeha keys, e.g. ${existing[0]}); restore into an empty store, or pass --force to replace them`,
      );
    }
    for (let i = 0; i < existing.length; i += RESTORE_BATCH) {
      await store.txn({ success: existing.slice(i, i + RESTORE_BATCH).map((key): TxnOp => ({ type: 'delete', key })) });
    }
  }
  let revision = await store.revision();
  for (let i = 0; i < backup.entries.length; i += RESTORE_BATCH) {
    const batch = backup.entries.slice(i, i + RESTORE_BATCH);
    const result = await store.txn({
      compare: batch.map((e) => ({ key: e.key, target: 'version' as const, op: '==' as const, value: 0 })),
      success: batch.map((e): TxnOp => ({ type: 'put', key: e.key, value: e.value })),
    });
    if (!result.succeeded) {
      throw new PxehaError('PXE_ERR_CONFLICT', `restore stopped after ${i} keys: someone wrote pxeha keys into the store meanwhile`);
    }
    revision = result.revision;
  }
  return { keys: backup.entries.length, revision };
}
