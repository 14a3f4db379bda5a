/**
 * On-disk layout of the embedded store, and the prepared statements that read and write it.
 *
 * - `kv`: the current value of every key (etcd's latest revision of each key).
 * - `history`: one row per change, kept for watches that start in the past; rows older than
 *   the compact revision are deleted.
 * - `leases`: granted leases and their TTL. Deadlines are not stored: a reopened store gives
 *   every surviving lease a fresh full TTL (see embedded-store.ts).
 * - `meta`: the store revision and compact revision.
 *
 * Keys are UTF-8 BLOBs (see key-span.ts); they must always be bound as Buffers, never as
 * strings, since SQLite orders every TEXT value before every BLOB.
 */
import type { Database, Statement } from 'better-sqlite3';
import { PxehaError } from '../../errors.js';

export const SCHEMA_VERSION = 1;

const SCHEMA_V1 = `
CREATE TABLE meta (
  name  TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
-- etcd starts an empty store at revision 1; the first write is revision 2.
INSERT INTO meta (name, value) VALUES ('revision', 1), ('compact_revision', 0);

CREATE TABLE kv (
  key             BLOB PRIMARY KEY,
  value           TEXT NOT NULL,
  create_revision INTEGER NOT NULL,
  mod_revision    INTEGER NOT NULL,
  version         INTEGER NOT NULL,
  lease           TEXT NOT NULL      -- '0' when the key has no lease
) WITHOUT ROWID;
CREATE INDEX kv_by_lease ON kv (lease) WHERE lease <> '0';

CREATE TABLE history (
  revision             INTEGER NOT NULL,
  seq                  INTEGER NOT NULL,  -- order of the change within its revision
  key                  BLOB NOT NULL,
  deleted              INTEGER NOT NULL,  -- 0 put, 1 delete
  value                TEXT,              -- the put's key-value; NULL for a delete
  create_revision      INTEGER,
  version              INTEGER,
  lease                TEXT,
  prev_value           TEXT,              -- the key before the change; NULL if it was absent
  prev_create_revision INTEGER,
  prev_mod_revision    INTEGER,
  prev_version         INTEGER,
  prev_lease           TEXT,
  PRIMARY KEY (revision, seq)
) WITHOUT ROWID;

CREATE TABLE leases (
  id          TEXT PRIMARY KEY,
  ttl_seconds INTEGER NOT NULL
) WITHOUT ROWID;
`;

/**
 * Opens the file in WAL mode and keeps other processes out. Exclusive locking keeps the WAL
 * index in process memory and makes a second pxeha on the same file fail at open instead of
 * interleaving with us (the kernel drops the lock when a process dies, even by kill -9).
 * synchronous=FULL covers opening and migrating; takeOverSyncing() then hands every sync and
 * checkpoint to the store (embedded-store.ts), which runs them off the event loop.
 */
export function configureDatabase(db: Database): void {
  db.pragma('locking_mode = EXCLUSIVE');
  const mode = db.pragma('journal_mode = WAL', { simple: true });
  if (mode !== 'wal') throw new Error(`SQLite refused WAL mode (journal_mode is ${String(mode)})`);
  db.pragma('synchronous = FULL');
  db.pragma('wal_autocheckpoint = 0');
  db.pragma('foreign_keys = OFF');
}

/**
 * From here on SQLite never syncs and never checkpoints by itself: the store fdatasyncs the
 * -wal file after each commit and checkpoints in its own, durable order (embedded-store.ts).
 */
export function takeOverSyncing(db: Database): void {
  db.pragma('wal_autocheckpoint = 0');
  db.pragma('synchronous = OFF');
}

export function migrate(db: Database): void {
  const version = db.pragma('user_version', { simple: true });
  if (version === SCHEMA_VERSION) return;
  if (version !== 0) {
    throw new PxehaError(
      'PXE_ERR_STORE_UNAVAILABLE',
      `store file has schema version ${String(version)}; this pxeha understands ${SCHEMA_VERSION}`,
    );
  }
  db.transaction(() => {
    db.exec(SCHEMA_V1);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  })();
}

export interface KvRow {
  key: Buffer;
  value: string;
  create_revision: number;
  mod_revision: number;
  version: number;
  lease: string;
}

export interface HistoryRow {
  revision: number;
  seq: number;
  key: Buffer;
  deleted: 0 | 1;
  value: string | null;
  create_revision: number | null;
  version: number | null;
  lease: string | null;
  prev_value: string | null;
  prev_create_revision: number | null;
  prev_mod_revision: number | null;
  prev_version: number | null;
  prev_lease: string | null;
}

/** The same query over the three span shapes: one key, [start, end), and [start, ∞). */
export interface SpanStatements<Extra extends unknown[], Row> {
  key: Statement<[Buffer, ...Extra], Row>;
  range: Statement<[Buffer, Buffer, ...Extra], Row>;
  from: Statement<[Buffer, ...Extra], Row>;
}

export interface Statements {
  begin: Statement<[]>;
  commit: Statement<[]>;
  rollback: Statement<[]>;
  savepoint: Statement<[]>;
  release: Statement<[]>;
  rollbackToSavepoint: Statement<[]>;

  metaGet: Statement<[string], { value: number }>;
  metaSet: Statement<[number, string]>;

  kvGet: Statement<[Buffer], KvRow>;
  kvSelect: SpanStatements<[], KvRow>;
  /** Extra parameter: LIMIT. A bound LIMIT costs SQLite several microseconds per query, hence two sets. */
  kvSelectLimited: SpanStatements<[number], KvRow>;
  kvCount: SpanStatements<[], { count: number }>;
  kvUpsert: Statement<[Buffer, string, number, number, number, string]>;
  kvDelete: Statement<[Buffer]>;
  kvByLease: Statement<[string], KvRow>;

  historyInsert: Statement<
    [
      number, number, Buffer, number,
      string | null, number | null, number | null, string | null,
      string | null, number | null, number | null, number | null, string | null,
    ]
  >;
  /** Extra parameters: first and last revision, inclusive. */
  historySelect: SpanStatements<[number, number], HistoryRow>;
  historyCompact: Statement<[number]>;

  leaseGet: Statement<[string], { ttl_seconds: number }>;
  leaseAll: Statement<[], { id: string; ttl_seconds: number }>;
  leaseInsert: Statement<[string, number]>;
  leaseDelete: Statement<[string]>;
}

const KV_COLUMNS = 'key, value, create_revision, mod_revision, version, lease';

export function prepareStatements(db: Database): Statements {
  const spanned = <Extra extends unknown[], Row>(
    build: (where: string) => string,
  ): SpanStatements<Extra, Row> => ({
    key: db.prepare<[Buffer, ...Extra], Row>(build('key = ?')),
    range: db.prepare<[Buffer, Buffer, ...Extra], Row>(build('key >= ? AND key < ?')),
    from: db.prepare<[Buffer, ...Extra], Row>(build('key >= ?')),
  });
  return {
    begin: db.prepare('BEGIN IMMEDIATE'),
    commit: db.prepare('COMMIT'),
    rollback: db.prepare('ROLLBACK'),
    savepoint: db.prepare('SAVEPOINT write_request'),
    release: db.prepare('RELEASE write_request'),
    rollbackToSavepoint: db.prepare('ROLLBACK TO write_request'),

    metaGet: db.prepare('SELECT value FROM meta WHERE name = ?'),
    metaSet: db.prepare('UPDATE meta SET value = ? WHERE name = ?'),

    kvGet: db.prepare(`SELECT ${KV_COLUMNS} FROM kv WHERE key = ?`),
    kvSelect: spanned((where) => `SELECT ${KV_COLUMNS} FROM kv WHERE ${where} ORDER BY key`),
    kvSelectLimited: spanned((where) => `SELECT ${KV_COLUMNS} FROM kv WHERE ${where} ORDER BY key LIMIT ?`),
    kvCount: spanned((where) => `SELECT count(*) AS count FROM kv WHERE ${where}`),
    kvUpsert: db.prepare(`INSERT OR REPLACE INTO kv (${KV_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)`),
    kvDelete: db.prepare('DELETE FROM kv WHERE key = ?'),
    kvByLease: db.prepare(`SELECT ${KV_COLUMNS} FROM kv WHERE lease = ? ORDER BY key`),

    historyInsert: db.prepare(
      `INSERT INTO history (revision, seq, key, deleted, value, create_revision, version, lease,
         prev_value, prev_create_revision, prev_mod_revision, prev_version, prev_lease)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    historySelect: spanned(
      (where) => `SELECT * FROM history WHERE ${where} AND revision BETWEEN ? AND ? ORDER BY revision, seq`,
    ),
    historyCompact: db.prepare('DELETE FROM history WHERE revision < ?'),

    leaseGet: db.prepare('SELECT ttl_seconds FROM leases WHERE id = ?'),
    leaseAll: db.prepare('SELECT id, ttl_seconds FROM leases'),
    leaseInsert: db.prepare('INSERT INTO leases (id, ttl_seconds) VALUES (?, ?)'),
    leaseDelete: db.prepare('DELETE FROM leases WHERE id = ?'),
  };
}
