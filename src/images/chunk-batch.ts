/**
 * Several chunks in one response (POST /api/v1/chunks/batch, src/http/routes/images.ts): at the
 * 256 KiB average chunk, one request per chunk cost a request, a response and their parsing per
 * 256 KiB on both sides (bench/replication/RESULTS.md, 2026-11-24). The body answers the asked
 * hashes in the asked order, back to back:
 *
 *    0                   1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |                  length (uint32, big-endian)                  |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |                 the chunk's bytes (length of them)          ...
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |                  next length ...
 *
 * A length of 0xffffffff (NOT_SENT) means the sender does not hold that chunk or it failed the
 * sender's verification (quarantined there): no bytes follow, the receiver asks another holder.
 * Same rules as one chunk per request: the sender verifies each chunk (ChunkStore.get) before its
 * first byte is sent; the receiver hashes each as it arrives (ChunkStore.receive) and counts it
 * only once it is verified and on stable storage.
 */
import type { Readable } from 'node:stream';
import { PxehaError } from '../errors.js';
import type { ChunkReceiver, ChunkStore } from './chunk-store.js';

/** Length word of a chunk the sender does not send. */
export const NOT_SENT = 0xffffffff;
/** Most hashes one batch may ask for (the route's schema). */
export const MAX_BATCH_CHUNKS = 64;

function lengthWord(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n, 0);
  return b;
}

/** Chunks a batch response reads (and verifies) ahead of the one being sent. */
export const READ_AHEAD_CHUNKS = 4;

/**
 * The body of a batch response: each chunk read (and verified) by `read`, framed as above, in
 * the asked order. Up to `readAhead` reads run ahead of the chunk being sent, so the socket is
 * not left idle while one file is opened, read and hashed after another (memory: that many
 * chunks). A chunk `read` refuses (missing, corrupt, unreadable) is NOT_SENT and reported to
 * `onSkip`; the others still follow. Reads left running when the body is abandoned (the peer
 * hung up) settle unobserved.
 */
export async function* encodeChunkBatch(
  hashes: readonly string[],
  read: (hash: string) => Promise<Uint8Array>,
  onSkip?: (hash: string, err: Error) => void,
  readAhead: number = READ_AHEAD_CHUNKS,
): AsyncGenerator<Uint8Array> {
  type Read = Promise<{ ok: true; data: Uint8Array } | { ok: false; err: Error }>;
  const start = (hash: string): Read =>
    read(hash).then(
      (data) => ({ ok: true as const, data }),
      (err: unknown) => ({ ok: false as const, err: err as Error }),
    );
  const reads: Read[] = [];
  let started = 0;
  for (let i = 0; i < hashes.length; i++) {
    while (started < hashes.length && started <= i + readAhead) reads.push(start(hashes[started++]!));
    const r = await reads[i]!;
    reads[i] = undefined as unknown as Read; // sent: let it go
    if (!r.ok) {
      onSkip?.(hashes[i]!, r.err);
      yield lengthWord(NOT_SENT);
      continue;
    }
    yield lengthWord(r.data.length);
    if (r.data.length > 0) yield r.data;
  }
}

export interface BatchWant {
  hash: string;
  size: number;
}

export interface BatchOutcome {
  /** The chunk is verified and on stable storage (its name too, unless the directory fsync was deferred). */
  stored: (want: BatchWant) => void;
  /** It is not: not sent, wrong bytes, the body ended or failed first, or the write failed. */
  failed: (want: BatchWant, err: Error) => void;
}

/**
 * Reads a batch response for `wants` (in the order asked), storing each chunk as it arrives:
 * its bytes are hashed piece by piece into a pooled buffer, and once it is whole its write
 * (temp file, fsync, rename, directory fsync) starts while the next chunk is received. Resolves
 * once every want was reported exactly once, as stored or failed.
 */
export async function receiveChunkBatch(body: Readable, wants: readonly BatchWant[], store: ChunkStore, outcome: BatchOutcome): Promise<void> {
  await (await readChunkBatch(body, wants, store, outcome)).settled;
}

/**
 * receiveChunkBatch in two steps: resolves once the body is read (or failed), with `settled`, a
 * promise that settles once every want was reported exactly once, as stored or failed (that one never
 * rejects). Lets a caller ask for its next batch while this one's chunks are made durable.
 * With `dirSync: 'deferred'` a chunk counts as stored once its bytes are durable and it is
 * renamed into place; its directory is fsynced by the caller's ChunkStore.syncDirs() (before it
 * counts anything as held).
 */
export async function readChunkBatch(
  body: Readable,
  wants: readonly BatchWant[],
  store: ChunkStore,
  outcome: BatchOutcome,
  options: { dirSync?: 'each' | 'deferred' } = {},
): Promise<{ settled: Promise<void> }> {
  const writes: Promise<void>[] = [];
  let index = 0;
  /** Bytes of the current length word (it may straddle two reads). */
  const word = Buffer.alloc(4);
  let wordBytes = 0;
  let current: ChunkReceiver | undefined;

  const failRest = (err: Error): void => {
    current?.abort();
    current = undefined;
    for (; index < wants.length; index++) outcome.failed(wants[index]!, err);
  };

  const startChunk = (length: number): void => {
    const want = wants[index]!;
    if (length === NOT_SENT) {
      outcome.failed(want, new PxehaError('PXE_ERR_NOT_FOUND', `chunk ${want.hash} not sent (the peer lacks it or it failed the peer's check)`));
      index++;
      return;
    }
    if (length !== want.size) {
      throw new PxehaError('PXE_ERR_CHUNK_CORRUPT', `chunk ${want.hash}: ${length} bytes announced, the manifest says ${want.size}`);
    }
    current = store.receive(want.hash, want.size, options);
    if (want.size === 0) finishChunk();
  };

  const finishChunk = (): void => {
    const want = wants[index]!;
    const receiver = current!;
    current = undefined;
    index++;
    writes.push(
      receiver.commit().then(
        () => outcome.stored(want),
        (err: Error) => outcome.failed(want, err),
      ),
    );
  };

  try {
    for await (const piece of body as AsyncIterable<Buffer>) {
      let at = 0;
      while (at < piece.length) {
        if (index >= wants.length) throw new PxehaError('PXE_ERR_CHUNK_CORRUPT', 'more bytes than the chunks asked for');
        if (!current) {
          const take = Math.min(4 - wordBytes, piece.length - at);
          piece.copy(word, wordBytes, at, at + take);
          wordBytes += take;
          at += take;
          if (wordBytes < 4) break;
          wordBytes = 0;
          startChunk(word.readUInt32BE(0));
          continue;
        }
        const take = Math.min(current.size - current.received, piece.length - at);
        current.write(piece.subarray(at, at + take));
        at += take;
        if (current.received === current.size) finishChunk();
      }
    }
    if (current || index < wants.length) throw new PxehaError('PXE_ERR_CHUNK_CORRUPT', `the batch ended after ${index} of ${wants.length} chunks`);
  } catch (err) {
    body.destroy();
    failRest(err as Error);
  }
  return { settled: Promise.all(writes).then(() => {}) };
}
