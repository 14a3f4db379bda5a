/**
 * Content-addressed chunks on a node's local disk: `<dataDir>/chunks/ab/abcdef…` (the first two
 * hex digits fan the files out over 256 directories, as git does with its objects).
 *
 * Writes are atomic: a temp file in `chunks/tmp/`, fsync, rename into place, fsync of the
 * directory. A chunk is either wholly present under its name or absent, whatever the crash.
 * Batches may defer the directory fsync to one per directory per replication pass (syncDirs),
 * which the replicator runs before it counts anything held.
 *
 * Hash policy: a chunk is verified when written and every time it is read, before any of its
 * bytes leave the process. We chose this over "verify once and record it" because the failure
 * the check exists for (a bit flipped on disk, a file truncated by a crash of the file system, a
 * hand edit) happens after the write, so a record of an old check proves nothing about the bytes
 * read now, and the record itself would be one more thing to keep consistent. The cost is one
 * SHA-256 per chunk read: ~1.3 ms per 1 MiB chunk at the ~800 MB/s measured on this machine's
 * SHA-NI, several times the speed a 1–10 GbE link drains the same bytes. A chunk that fails is
 * moved to `chunks/corrupt/` (kept for inspection, no longer counted as held, so replication
 * fetches it again), reported through `onCorrupt`, and the read fails with
 * PXE_ERR_CHUNK_CORRUPT: its bytes are never returned.
 */
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, fsync, futimesSync, open, openSync, renameSync, rmSync, statSync, utimesSync, write } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { PxehaError } from '../errors.js';
import { sha256Hex } from './chunker.js';

const HASH_RE = /^[0-9a-f]{64}$/;
const FANOUT_RE = /^[0-9a-f]{2}$/;
/** Temp files older than this at open are left over from a crash. */
const STALE_TEMP_MS = 60 * 60 * 1000;
/** putStream's smallest receive buffer; larger ones double (a 1.1 MiB chunk uses 2 MiB). */
const MIN_STAGE_BYTES = 256 * 1024;
/**
 * Receive buffers kept per size class: one per chunk received and not yet on disk (a batch
 * fetch keeps up to its batch size writing while the next chunks arrive).
 */
const MAX_FREE_STAGES = 32;
/** Chunks newer than this are spared by garbage collection (see gc()). */
export const DEFAULT_GC_GRACE_MS = 60 * 60 * 1000;

export function isChunkHash(hash: string): boolean {
  return HASH_RE.test(hash);
}

function assertHash(hash: string): void {
  // Hashes come from manifests in the store: never build a path from one unchecked.
  if (!HASH_RE.test(hash)) throw new PxehaError('PXE_ERR_BAD_REQUEST', `not a chunk hash: ${JSON.stringify(hash)}`);
}

export interface CorruptChunkReport {
  hash: string;
  /** SHA-256 of the bytes found, or why they could not be checked. */
  found: string;
  /** Where the bad file was moved. */
  quarantinedAs?: string;
}

export interface ChunkStoreOptions {
  /** Called once for each corrupt chunk found (log it, count it). */
  onCorrupt?: (report: CorruptChunkReport) => void;
  /** Clock for gc's grace period (tests). */
  nowMs?: () => number;
}

export interface HeldChunk {
  hash: string;
  size: number;
  mtimeMs: number;
}

export interface GcResult {
  deleted: string[];
  deletedBytes: number;
  /** Unreferenced but younger than the grace period. */
  spared: number;
}

export class ChunkStore {
  readonly root: string;
  readonly #tmp: string;
  readonly #corrupt: string;
  readonly #onCorrupt: (report: CorruptChunkReport) => void;
  readonly #nowMs: () => number;
  /** putStream's receive buffers by capacity (powers of two), reused: no 1 MiB garbage per chunk. */
  readonly #stages = new Map<number, Buffer[]>();
  /** Whether nowMs was given (tests): new chunks then get its time as their mtime. */
  readonly #clocked: boolean;
  /** Fan-out directories known to exist (never removed while the store is open). */
  readonly #dirs = new Set<string>();
  /** The last touch-or-write of each chunk in progress (see #touchOrWrite). */
  readonly #writing = new Map<string, Promise<boolean>>();
  /** Chunks this store has deleted or quarantined so far (see `removals`). */
  #removals = 0;
  /** Directory fsyncs running, and the one queued after each (see #syncDir). */
  readonly #dirSyncs = new Map<string, { running: Promise<void>; next?: Promise<void> }>();
  /** Directories renamed into by writes with a deferred directory fsync, not fsynced since (see syncDirs). */
  readonly #unsyncedDirs = new Set<string>();
  /** Temp file names: `<hash>.<sequence><tag>`, the tag random per store (two stores, one directory). */
  #tempSeq = 0;
  readonly #tempTag = `.${randomBytes(4).toString('hex')}`;

  private constructor(root: string, options: ChunkStoreOptions) {
    this.root = root;
    this.#tmp = join(root, 'tmp');
    this.#corrupt = join(root, 'corrupt');
    this.#onCorrupt = options.onCorrupt ?? (() => {});
    this.#nowMs = options.nowMs ?? Date.now;
    this.#clocked = options.nowMs !== undefined;
  }

  /** Opens (creating) the chunk store of a node's data directory: `<dataDir>/chunks`. */
  static async open(dataDir: string, options: ChunkStoreOptions = {}): Promise<ChunkStore> {
    const store = new ChunkStore(join(dataDir, 'chunks'), options);
    await mkdir(store.#tmp, { recursive: true });
    await mkdir(store.#corrupt, { recursive: true });
    await store.#removeStaleTemps();
    return store;
  }

  pathOf(hash: string): string {
    assertHash(hash);
    return join(this.root, hash.slice(0, 2), hash);
  }

  /**
   * Grows whenever this store deletes or quarantines a chunk: a caller that remembers which
   * chunks are present (the replicator, so that a pass does not stat every chunk again) forgets
   * when it changes.
   */
  get removals(): number {
    return this.#removals;
  }

  async has(hash: string): Promise<boolean> {
    // A synchronous stat (a directory lookup, microseconds; no error object when absent): a
    // replication pass asks this of every chunk it has not seen yet, 4 096 per GiB one after
    // another, which through the thread pool took a hand-off each way per chunk.
    return statSync(this.pathOf(hash), { throwIfNoEntry: false })?.isFile() ?? false;
  }

  /**
   * Stores `data` under `hash` after checking that it is its SHA-256; returns whether it wrote
   * (false: already held). A chunk already held is not rewritten, only touched, so that gc's
   * grace period covers a publish that reuses it before its manifest is recorded.
   */
  async put(hash: string, data: Uint8Array): Promise<boolean> {
    const path = this.pathOf(hash);
    const actual = sha256Hex(data);
    if (actual !== hash) {
      throw new PxehaError('PXE_ERR_CHUNK_CORRUPT', `chunk ${hash} refused: its ${data.length} bytes hash to ${actual}`);
    }
    return this.#touchOrWrite(hash, path, data);
  }

  /**
   * Stores `data` under its own SHA-256, computed here from the very bytes written (so there is
   * no name to check them against): the hash at once, and a promise of whether it wrote, settled
   * once the chunk is on stable storage. For a publish, whose chunker would otherwise hash each
   * chunk and put() hash it again. `data` must not change until the promise settles.
   */
  putContent(data: Uint8Array): { hash: string; stored: Promise<boolean> } {
    const hash = sha256Hex(data);
    const path = this.pathOf(hash);
    return { hash, stored: this.#touchOrWrite(hash, path, data) };
  }

  /**
   * A verified chunk: touched if already held (not rewritten: the touch is what gc's grace period
   * sees), else written atomically (#stage, then #durable). Returns whether it wrote. `copied` is
   * called once `data` is no longer needed (in the file's page cache, or not to be written).
   */
  #touchOrWrite(hash: string, path: string, data: Uint8Array, copied?: () => void, deferDirSync = false): Promise<boolean> {
    // Operations on one chunk run one after another (a run of identical chunks published with
    // several writes in flight, or a chunk fetched twice at once): the first writes it, the
    // others wait for it and then only touch it.
    const pending = this.#writing.get(hash);
    const run = (async (): Promise<boolean> => {
      let staged: Staged;
      try {
        if (pending) await pending.catch(() => {});
        const now = new Date(this.#nowMs());
        // No error object for the usual answer (absent): an ENOENT per chunk costs a stack trace.
        if (statSync(path, { throwIfNoEntry: false })?.isFile()) {
          utimesSync(path, now, now);
          return false;
        }
        staged = await this.#stage(hash, path, data, now);
      } finally {
        copied?.();
      }
      await this.#durable(staged, deferDirSync);
      return true;
    })();
    this.#writing.set(hash, run);
    const settled = (): void => {
      if (this.#writing.get(hash) === run) this.#writing.delete(hash);
    };
    run.then(settled, settled);
    return run;
  }

  /**
   * Stores a chunk arriving as a byte stream (a peer's HTTP response) with no buffer allocated
   * per chunk and no second pass over its bytes: each piece is hashed as it arrives and copied
   * into a pooled receive buffer. At the end the digest and the byte count must be `hash` and
   * `size`, else PXE_ERR_CHUNK_CORRUPT is thrown and nothing touches the disk; only then is it
   * written to a temp file (one call), fsynced, renamed and the directory fsynced, as for put().
   * So nothing unverified is ever under a chunk's name. A source that errors or ends early fails the same
   * way (its error, or a short count). Returns whether it wrote (false: already held, only
   * touched).
   */
  async putStream(hash: string, size: number, source: Readable): Promise<boolean> {
    // An error before pipeInto listens must not go unhandled; pipeInto finds it in `errored`.
    source.on('error', () => {});
    let receiver: ChunkReceiver | undefined;
    try {
      receiver = this.receive(hash, size);
      // Received and verified before any file-system call: reception never waits on the libuv
      // pool, which the fsyncs of other chunks occupy (the socket would stall meanwhile).
      await pipeInto(receiver, source);
    } catch (err) {
      receiver?.abort();
      source.destroy();
      throw err;
    }
    return receiver.commit();
  }

  /**
   * A chunk received piece by piece from a source the caller parses (several chunks back to back
   * in one response: src/images/chunk-batch.ts): `write` hashes and copies each piece into a
   * pooled buffer, `commit` checks the digest and the byte count and only then writes the chunk
   * as put() does (atomic, fsynced, directory fsynced), resolving once it is on stable storage.
   * Exactly one of `commit` and `abort` must be called (they return the buffer to the pool).
   */
  receive(hash: string, size: number, options: { dirSync?: 'each' | 'deferred' } = {}): ChunkReceiver {
    const deferDirSync = options.dirSync === 'deferred';
    const path = this.pathOf(hash);
    let capacity = MIN_STAGE_BYTES;
    while (capacity < size) capacity *= 2;
    let free = this.#stages.get(capacity);
    if (!free) this.#stages.set(capacity, (free = []));
    const pool = free;
    const stage = pool.pop() ?? Buffer.allocUnsafeSlow(capacity);
    const digest = createHash('sha256');
    let received = 0;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      // After the write (or before any): nothing reads the stage any more.
      if (pool.length < MAX_FREE_STAGES) pool.push(stage);
    };
    return {
      hash,
      size,
      get received() {
        return received;
      },
      write: (piece: Uint8Array): void => {
        if (released) throw new Error(`chunk ${hash}: written after commit or abort`);
        if (received + piece.length > size) {
          throw new PxehaError('PXE_ERR_CHUNK_CORRUPT', `chunk ${hash} refused: more than its ${size} bytes arrived`);
        }
        digest.update(piece);
        stage.set(piece, received);
        received += piece.length;
      },
      commit: async (): Promise<boolean> => {
        if (released) throw new Error(`chunk ${hash}: committed after commit or abort`);
        const actual = digest.digest('hex');
        if (received !== size || actual !== hash) {
          release();
          throw new PxehaError('PXE_ERR_CHUNK_CORRUPT', `chunk ${hash} refused: its ${received} bytes (${size} expected) hash to ${actual}`);
        }
        // The stage goes back to the pool as soon as its bytes are in the file, not once durable.
        return this.#touchOrWrite(hash, path, stage.subarray(0, size), release, deferDirSync);
      },
      abort: release,
    };
  }

  /**
   * First half of an atomic write: `data` into a new temp file (its mtime set to `now` for a test
   * clock), left open for #durable. The open (an inode to allocate) and the write (which the
   * kernel may hold back while too much of the disk's cache is dirty) go through libuv's thread
   * pool, so the event loop never waits on them; the fsync follows in #durable, and the steps
   * that only touch memory (close, rename) are synchronous there: each hand-off to the pool costs
   * a thread wake-up each way, which on this 2-vCPU VM measured ~4x the system CPU of the calls
   * themselves (1 800 files of 300 KiB: open, write, close and rename 0.3 s synchronous, 1.4 s
   * through the pool).
   */
  async #stage(hash: string, path: string, data: Uint8Array, now: Date): Promise<Staged> {
    const dir = join(this.root, hash.slice(0, 2));
    if (!this.#dirs.has(dir)) {
      await mkdir(dir, { recursive: true });
      this.#dirs.add(dir);
    }
    const temp = join(this.#tmp, `${hash}.${(this.#tempSeq++).toString(36)}${this.#tempTag}`);
    const fd = await openFd(temp, 'wx', 0o644);
    try {
      for (let off = 0; off < data.length; ) off += await writeFd(fd, data, off, data.length - off, off);
      // A new file's mtime is already the real clock's now; only a test clock needs it set.
      if (this.#clocked) futimesSync(fd, now, now);
    } catch (err) {
      closeSync(fd);
      rmSync(temp, { force: true });
      throw err;
    }
    return { temp, path, dir, fd };
  }

  /**
   * Second half: fsync of the temp file, close and rename into place (synchronous: they only
   * touch memory), then an fsync of its directory, shared with the writes that land in the same
   * directory meanwhile (#syncDir); resolves once all are done. So a chunk's name only ever
   * points at bytes already on stable storage (a crash leaves at most a temp file, removed by a
   * later open once stale). Each write goes through these on its own: groups that waited for
   * their slowest fsync were no faster in the lab bench (bench/replication/RESULTS.md). With
   * `deferDirSync` the write resolves after its rename and the directory is left to syncDirs():
   * a gigabyte of chunks then costs at most 256 directory fsyncs, not 4 096.
   */
  async #durable(staged: Staged, deferDirSync: boolean): Promise<void> {
    const { temp, path, dir, fd } = staged;
    try {
      try {
        await fsyncFd(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(temp, path);
    } catch (err) {
      rmSync(temp, { force: true });
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') this.#dirs.delete(dir); // removed behind our back
      throw err;
    }
    if (deferDirSync) this.#unsyncedDirs.add(dir);
    else await this.#syncDir(dir);
  }

  /**
   * Makes the renames into `dir` done so far durable, sharing fsyncs between concurrent writes
   * (group commit): a caller joins the fsync queued to start after the running one, never the
   * running one itself, which may have started before its rename. So every write still waits
   * for an fsync of its directory that began after its rename; writes landing in one directory
   * while its fsync runs share the next one.
   */
  #syncDir(dir: string): Promise<void> {
    const state = this.#dirSyncs.get(dir);
    if (state) return (state.next ??= state.running.catch(() => {}).then(() => this.#startDirSync(dir)));
    return this.#startDirSync(dir);
  }

  #startDirSync(dir: string): Promise<void> {
    const running = syncDir(dir);
    const state: { running: Promise<void>; next?: Promise<void> } = { running };
    this.#dirSyncs.set(dir, state);
    const done = (): void => {
      if (this.#dirSyncs.get(dir) === state) this.#dirSyncs.delete(dir);
    };
    running.then(done, done);
    return running;
  }

  /**
   * Makes durable the names of the chunks received with `dirSync: 'deferred'` so far: one fsync
   * of each directory they were renamed into, in parallel. Their bytes were on stable storage
   * before their names existed, so until then a crash can lose such a name (the chunk is fetched
   * again) but never leave one naming torn bytes; what must not happen is counting them held,
   * so a caller calls this before it does (the replicator, before every report of held versions).
   */
  async syncDirs(): Promise<void> {
    if (this.#unsyncedDirs.size === 0) return;
    const dirs = [...this.#unsyncedDirs];
    this.#unsyncedDirs.clear();
    const results = await Promise.allSettled(dirs.map((dir) => syncDir(dir)));
    const failed = dirs.filter((_, i) => results[i]!.status === 'rejected');
    if (failed.length > 0) {
      for (const dir of failed) this.#unsyncedDirs.add(dir);
      throw (results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason;
    }
  }

  /**
   * The chunk's bytes, verified against its hash (and `expectedSize` when given, e.g. from a
   * manifest). Missing: PXE_ERR_NOT_FOUND. Corrupt: quarantined, reported, PXE_ERR_CHUNK_CORRUPT.
   */
  async get(hash: string, expectedSize?: number): Promise<Buffer> {
    const path = this.pathOf(hash);
    let data: Buffer;
    try {
      // Through the thread pool although that is four hand-offs per chunk (open, fstat, read,
      // close): a read that misses the page cache must not stop the event loop, which also
      // answers DHCP, TFTP and HTTP. (readFileSync was tried: no visible gain in the lab bench.)
      data = await readFile(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new PxehaError('PXE_ERR_NOT_FOUND', `chunk ${hash} is not held on this node`);
      }
      throw err;
    }
    await this.#verify(hash, path, data, expectedSize);
    return data;
  }

  /** Throws (quarantining, reporting) unless `data` read from `path` is the chunk `hash`. */
  async #verify(hash: string, path: string, data: Buffer, expectedSize: number | undefined): Promise<void> {
    const actual = sha256Hex(data);
    if (actual === hash && (expectedSize === undefined || data.length === expectedSize)) return;
    const found = actual === hash ? `right hash but ${data.length} bytes, the manifest says ${expectedSize}` : `bytes hashing to ${actual}`;
    if (actual !== hash) {
      const quarantinedAs = await this.#quarantine(hash, path);
      this.#onCorrupt({ hash, found, ...(quarantinedAs ? { quarantinedAs } : {}) });
    } else {
      // The chunk is sound; the manifest that sized it is not. Keep the chunk, fail the read.
      this.#onCorrupt({ hash, found });
    }
    throw new PxehaError('PXE_ERR_CHUNK_CORRUPT', `chunk ${hash} failed verification (${found}); none of its bytes were served`);
  }

  /** Every chunk held (a directory walk; no index to drift from the disk). */
  async *list(): AsyncGenerator<HeldChunk> {
    for (const fan of (await readdir(this.root)).filter((d) => FANOUT_RE.test(d)).sort()) {
      const dir = join(this.root, fan);
      for (const name of (await readdir(dir).catch(() => [] as string[])).sort()) {
        if (!HASH_RE.test(name) || !name.startsWith(fan)) continue;
        const st = await stat(join(dir, name)).catch(() => undefined);
        if (st?.isFile()) yield { hash: name, size: st.size, mtimeMs: st.mtimeMs };
      }
    }
  }

  /**
   * Deletes every chunk not in `referenced` (the chunks of every version recorded in the store:
   * Catalog.referencedChunks()). Chunks written or touched within `graceMs` are spared: a
   * publish stores its chunks before it records its manifest, so between the two they are
   * unreferenced, and a collection in that window must not take them.
   */
  async gc(referenced: ReadonlySet<string>, options: { graceMs?: number } = {}): Promise<GcResult> {
    const graceMs = options.graceMs ?? DEFAULT_GC_GRACE_MS;
    const cutoffMs = this.#nowMs() - graceMs;
    const result: GcResult = { deleted: [], deletedBytes: 0, spared: 0 };
    for await (const chunk of this.list()) {
      if (referenced.has(chunk.hash)) continue;
      // Looked at again just before the unlink, to narrow the window in which a publish could
      // touch it meanwhile; closing it fully is the caller's job (run gc and publishes of one
      // node under one lock).
      const mtimeMs = chunk.mtimeMs > cutoffMs ? chunk.mtimeMs : (await stat(this.pathOf(chunk.hash)).catch(() => undefined))?.mtimeMs;
      if (mtimeMs === undefined) continue;
      if (mtimeMs > cutoffMs) {
        result.spared++;
        continue;
      }
      this.#removals++;
      await unlink(this.pathOf(chunk.hash)).catch(() => {});
      result.deleted.push(chunk.hash);
      result.deletedBytes += chunk.size;
    }
    return result;
  }

  async #quarantine(hash: string, path: string): Promise<string | undefined> {
    const dest = join(this.#corrupt, `${hash}.${this.#nowMs()}.${randomBytes(3).toString('hex')}`);
    this.#removals++;
    try {
      await rename(path, dest);
      return dest;
    } catch {
      return undefined; // already moved by a concurrent read, or gone
    }
  }

  async #removeStaleTemps(): Promise<void> {
    const cutoffMs = this.#nowMs() - STALE_TEMP_MS;
    for (const name of await readdir(this.#tmp)) {
      const path = join(this.#tmp, name);
      const st = await stat(path).catch(() => undefined);
      if (st && st.mtimeMs < cutoffMs) await rm(path, { force: true });
    }
  }
}

/** A chunk being received: see ChunkStore.receive. */
export interface ChunkReceiver {
  readonly hash: string;
  readonly size: number;
  /** Bytes written so far. */
  readonly received: number;
  /** Hashes and keeps `piece`; throws PXE_ERR_CHUNK_CORRUPT past `size` bytes. */
  write(piece: Uint8Array): void;
  /** Verifies, then stores durably; whether it wrote (false: already held, only touched). */
  commit(): Promise<boolean>;
  abort(): void;
}

/**
 * Feeds `source` into `receiver` until it ends; throws if it errors, closes before its end or
 * sends more than the chunk's size (the count and the digest are checked by commit()).
 */
function pipeInto(receiver: ChunkReceiver, source: Readable): Promise<void> {
  const { hash, size } = receiver;
  return new Promise<void>((resolve, reject) => {
    let done = false;
    const fail = (err: Error): void => {
      if (done) return;
      done = true;
      source.off('data', onData);
      reject(err);
    };
    const onData = (piece: Buffer): void => {
      if (done) return;
      try {
        receiver.write(piece);
      } catch (err) {
        fail(err as Error);
      }
    };
    if (source.destroyed) {
      fail(source.errored ?? new PxehaError('PXE_ERR_CHUNK_CORRUPT', `chunk ${hash} refused: its source closed before any byte arrived`));
      return;
    }
    source.on('data', onData);
    source.once('error', fail);
    source.once('end', () => {
      if (done) return;
      done = true;
      resolve();
    });
    source.once('close', () => {
      // 'close' without 'end': the body stopped short (a dropped connection).
      if (!source.readableEnded) fail(new PxehaError('PXE_ERR_CHUNK_CORRUPT', `chunk ${hash} refused: ${receiver.received} of ${size} bytes arrived`));
    });
    source.resume();
  });
}

/** A chunk written to a temp file, not yet durable (ChunkStore #stage). */
interface Staged {
  temp: string;
  path: string;
  dir: string;
  fd: number;
}


function openFd(path: string, flags: string, mode: number): Promise<number> {
  return new Promise((resolve, reject) => open(path, flags, mode, (err, fd) => (err ? reject(err) : resolve(fd))));
}

function writeFd(fd: number, data: Uint8Array, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => write(fd, data, offset, length, position, (err, n) => (err ? reject(err) : resolve(n))));
}

function fsyncFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fsync(fd, (err) => (err ? reject(err) : resolve())));
}

/** Makes a rename in `dir` durable (POSIX leaves it in the page cache otherwise). */
async function syncDir(dir: string): Promise<void> {
  const fd = openSync(dir, 'r');
  try {
    await fsyncFd(fd);
  } finally {
    closeSync(fd);
  }
}
