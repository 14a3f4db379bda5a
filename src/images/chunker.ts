/**
 * Content-defined chunking (FastCDC: Xia et al., "FastCDC: a Fast and Efficient Content-Defined
 * Chunking Approach for Data Deduplication", USENIX ATC 2016), so that two versions of an image
 * share every chunk the edit did not touch: boundaries follow the content, not offsets, and an
 * insertion shifts no boundary beyond the next one or two.
 *
 * From the paper we take:
 * - the Gear rolling hash `fp = (fp << 1) + Gear[byte]` (§3.1): one shift, one add and one table
 *   look-up per byte;
 * - cut-point skipping (§3.3): no boundary is looked for in a chunk's first `minBytes`;
 * - normalized chunking, level 2 (§3.4, Algorithm 2): before `avgBytes` a boundary needs
 *   log2(avg)+2 zero bits of the hash (MaskS), after it log2(avg)-2 (MaskL), which pulls chunk
 *   sizes towards the average and keeps dedup close to plain CDC's;
 * - masks whose one-bits are spread out with zero padding (§3.2, "enlarge the sliding window"),
 *   so the condition covers the whole window of bytes the hash depends on.
 *
 * Our one departure: the fingerprint is 32 bits, not 64, so it stays in V8's int32 arithmetic
 * (a 64-bit Gear hash in JavaScript needs BigInt or two words and runs several times slower).
 * Bit k of a Gear hash depends on the last k+1 bytes, so the window is 32 bytes; masks of at
 * most 24 bits (average up to 4 MiB with level 2) still fit with padding.
 *
 * The Gear table and the masks decide every boundary: changing them changes every chunk of every
 * image (correctness survives, sharing with older versions does not). The golden test pins them.
 */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { ConfigError, type ValidationIssue } from '../errors.js';

export interface ChunkingParams {
  /** No boundary before this many bytes (except at the end of the input). */
  minBytes: number;
  /** The size chunks are normalized towards; a power of two. */
  avgBytes: number;
  /** A boundary is forced here. */
  maxBytes: number;
}

/**
 * 64 KiB / 256 KiB / 1 MiB: boot images are kernels (10–15 MiB), initrds (50–500 MiB) and root
 * file systems and disks (0.5 GiB to many GiB). What an edit costs is whole chunks: each edited
 * place costs the chunk(s) it falls in and the neighbours whose boundary moved, so a 1% edit in 3
 * places of a 256 MiB file moves 5.2 MiB at this average against 8.9 MiB at 1 MiB (rsync:
 * 2.8 MiB; bench/replication/RESULTS.md, 2026-11-24 "256 KiB chunks"). Chunk lists do not live in the cluster store (a
 * version record names its manifest's pages in the chunk store: manifest-store.ts), so 4× the
 * chunks is ~4× the manifest bytes, ~0.04% of the image, not a limit on its size. The per-chunk
 * costs (a file, two fsyncs, a hash check before serving) are paid once per 256 KiB, 4× as
 * often as before; publishing keeps several chunk writes in flight and replication fetches
 * ~16 chunks per request (chunk-batch.ts), which brought the push and the full copy back to
 * about their 1 MiB times (RESULTS.md, 2026-11-24 "Batches"). 512 KiB measured a worse delta.
 */
export const DEFAULT_CHUNKING: Readonly<ChunkingParams> = Object.freeze({
  minBytes: 64 * 1024,
  avgBytes: 256 * 1024,
  maxBytes: 1024 * 1024,
});

/** Level of normalized chunking (paper §3.4): MaskS has +2 bits, MaskL -2. */
const NORMALIZATION_LEVEL = 2;
const MAX_MASK_BITS = 24;
/** Bounds memory: the streaming chunker holds twice this. */
const MAX_MAX_BYTES = 64 * 1024 * 1024;

/**
 * Gear table: 256 pseudo-random 32-bit words, derived from SHA-256 so anyone can regenerate
 * them (the paper's table is random too). Never change: see the header.
 */
export const GEAR: Int32Array = (() => {
  const table = new Int32Array(256);
  for (let i = 0; i < 256; i++) {
    table[i] = createHash('sha256').update(`pxeha-fastcdc-gear-${i}`).digest().readInt32LE(0);
  }
  return table;
})();

/**
 * A mask of `bits` one-bits spread evenly over the 32 bits, the highest always set (it sees the
 * widest window, 32 bytes): bit positions floor((k+1)*32/bits)-1.
 */
export function spreadMask(bits: number): number {
  let mask = 0;
  for (let k = 0; k < bits; k++) mask |= 1 << (Math.floor(((k + 1) * 32) / bits) - 1);
  return mask | 0;
}

export interface Cutter {
  readonly params: Readonly<ChunkingParams>;
  readonly maskS: number;
  readonly maskL: number;
}

/** Problems with chunking parameters, each with its JSON pointer (empty when valid). */
export function checkChunkingParams(p: ChunkingParams): ValidationIssue[] {
  const issues: ValidationIssue[] = [];
  const isInt = (n: number) => Number.isSafeInteger(n) && n > 0;
  if (!isInt(p.minBytes) || p.minBytes < 64) issues.push({ path: '/minBytes', message: 'must be an integer of at least 64' });
  if (!isInt(p.avgBytes) || (p.avgBytes & (p.avgBytes - 1)) !== 0) issues.push({ path: '/avgBytes', message: 'must be a power of two' });
  else if (Math.log2(p.avgBytes) + NORMALIZATION_LEVEL > MAX_MASK_BITS) issues.push({ path: '/avgBytes', message: `must be at most ${2 ** (MAX_MASK_BITS - NORMALIZATION_LEVEL)}` });
  else if (Math.log2(p.avgBytes) - NORMALIZATION_LEVEL < 1) issues.push({ path: '/avgBytes', message: 'must be at least 8' });
  if (!isInt(p.maxBytes) || p.maxBytes > MAX_MAX_BYTES) issues.push({ path: '/maxBytes', message: `must be an integer of at most ${MAX_MAX_BYTES}` });
  if (issues.length === 0 && !(p.minBytes < p.avgBytes && p.avgBytes < p.maxBytes)) {
    issues.push({ path: '', message: 'needs minBytes < avgBytes < maxBytes' });
  }
  return issues;
}

export function makeCutter(params: ChunkingParams = DEFAULT_CHUNKING): Cutter {
  const issues = checkChunkingParams(params);
  if (issues.length > 0) throw new ConfigError('chunking parameters', issues);
  const bits = Math.log2(params.avgBytes);
  return {
    params: Object.freeze({ minBytes: params.minBytes, avgBytes: params.avgBytes, maxBytes: params.maxBytes }),
    maskS: spreadMask(bits + NORMALIZATION_LEVEL),
    maskL: spreadMask(bits - NORMALIZATION_LEVEL),
  };
}

/**
 * Length of the chunk that starts at `start`, given the bytes up to `end` (paper's Algorithm 2).
 * The caller passes at least `maxBytes` bytes unless the input ends at `end`: a cut depends only
 * on the bytes before it, so the answer is final either way.
 */
export function cutPoint(data: Uint8Array, start: number, end: number, cutter: Cutter): number {
  const { minBytes, avgBytes, maxBytes } = cutter.params;
  let n = end - start;
  if (n <= minBytes) return n;
  if (n > maxBytes) n = maxBytes;
  const normal = Math.min(n, avgBytes);
  const { maskS, maskL } = cutter;
  const gear = GEAR;
  let fp = 0;
  let i = start + minBytes;
  // Two loops rather than one with a mask variable: the hot loops stay minimal.
  for (const stop = start + normal; i < stop; i++) {
    fp = ((fp << 1) + gear[data[i]!]!) | 0;
    if ((fp & maskS) === 0) return i - start + 1;
  }
  for (const stop = start + n; i < stop; i++) {
    fp = ((fp << 1) + gear[data[i]!]!) | 0;
    if ((fp & maskL) === 0) return i - start + 1;
  }
  return n;
}

export interface ChunkBoundary {
  offset: number;
  size: number;
}

export interface Chunk extends ChunkBoundary {
  /** SHA-256 of the chunk's bytes, lower-case hex. */
  hash: string;
  /**
   * The chunk's bytes: a view into the chunker's buffer, valid only until the next chunk is
   * asked for (copy it to keep it). This is what keeps memory bounded without a copy per chunk.
   */
  data: Buffer;
}

export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Boundaries of a buffer held whole in memory (tests, small inputs). */
export function* chunkBuffer(data: Uint8Array, cutter: Cutter = makeCutter()): Generator<ChunkBoundary> {
  for (let offset = 0; offset < data.length; ) {
    const size = cutPoint(data, offset, Math.min(data.length, offset + cutter.params.maxBytes), cutter);
    yield { offset, size };
    offset += size;
  }
}

/** Reads up to `length` bytes into `buf` at `offset`; 0 means the input has ended. */
type Fill = (buf: Buffer, offset: number, length: number) => Promise<number>;

/**
 * The streaming chunker: one buffer of 2 × maxBytes, refilled until it holds a full chunk's
 * worth (or the input ends), so memory is bounded whatever the input's size.
 */
async function* chunkWith(fill: Fill, cutter: Cutter): AsyncGenerator<Chunk> {
  for await (const cut of cutWith(fill, cutter)) yield { ...cut, hash: sha256Hex(cut.data) };
}

/** A chunk's place and bytes, not hashed (the chunk store hashes what it writes: cutFile). */
export interface Cut extends ChunkBoundary {
  /** A view into the chunker's buffer, valid only until the next cut is asked for. */
  data: Buffer;
}

async function* cutWith(fill: Fill, cutter: Cutter): AsyncGenerator<Cut> {
  const { maxBytes } = cutter.params;
  const buf = Buffer.allocUnsafe(2 * maxBytes);
  let start = 0;
  let end = 0;
  let eof = false;
  let offset = 0;
  for (;;) {
    while (!eof && end - start < maxBytes) {
      if (end === buf.length) {
        buf.copyWithin(0, start, end);
        end -= start;
        start = 0;
      }
      const n = await fill(buf, end, buf.length - end);
      if (n === 0) eof = true;
      else end += n;
    }
    if (start === end) return;
    const size = cutPoint(buf, start, Math.min(end, start + maxBytes), cutter);
    const data = buf.subarray(start, start + size);
    yield { offset, size, data };
    offset += size;
    start += size;
  }
}

/** Chunks a file, streaming: it is never read whole into memory. */
export async function* chunkFile(path: string, cutter: Cutter = makeCutter()): AsyncGenerator<Chunk> {
  const handle = await open(path, 'r');
  try {
    yield* chunkWith(async (buf, offset, length) => (await handle.read(buf, offset, length, null)).bytesRead, cutter);
  } finally {
    await handle.close();
  }
}

/**
 * Cuts a file as chunkFile does, without hashing: for a caller that hands each chunk to
 * ChunkStore.putContent, which names it by the hash of the bytes it writes (one SHA-256 pass,
 * not one here and a check there).
 */
export async function* cutFile(path: string, cutter: Cutter = makeCutter()): AsyncGenerator<Cut> {
  const handle = await open(path, 'r');
  try {
    yield* cutWith(async (buf, offset, length) => (await handle.read(buf, offset, length, null)).bytesRead, cutter);
  } finally {
    await handle.close();
  }
}

/** Chunks any byte stream (a Readable, an HTTP body, a generator). */
export async function* chunkStream(source: AsyncIterable<Uint8Array>, cutter: Cutter = makeCutter()): AsyncGenerator<Chunk> {
  const it = source[Symbol.asyncIterator]();
  let pending: Uint8Array | undefined;
  const fill: Fill = async (buf, offset, length) => {
    while (!pending || pending.length === 0) {
      const next = await it.next();
      if (next.done) return 0;
      pending = next.value;
    }
    const n = Math.min(length, pending.length);
    buf.set(pending.subarray(0, n), offset);
    pending = pending.subarray(n);
    return n;
  };
  try {
    yield* chunkWith(fill, cutter);
  } finally {
    await it.return?.();
  }
}
