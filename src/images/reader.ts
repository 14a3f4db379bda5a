/**
 * Reads a byte range of an image file from its chunks, for HTTP (Range) and TFTP: only the
 * chunks that overlap the range are read, each verified whole before any of its bytes go out
 * (ChunkStore.get), so a corrupt chunk fails the stream instead of sending bad bytes. Memory is
 * one chunk (≤ maxBytes of the chunking) per open stream.
 *
 * Serve a TFTP transfer or an HTTP response from one stream: each stream reads and checks every
 * chunk it touches once, so a stream per 512-byte block would read and hash a whole chunk for
 * each block.
 */
import { Readable } from 'node:stream';
import { PxehaError } from '../errors.js';
import type { ChunkStore } from './chunk-store.js';
import type { ChunkRef, ManifestFile } from './manifest.js';

/** Where to read: the chunks that overlap [start, end] and the slice of each to send. */
export interface ReadStep {
  chunk: ChunkRef;
  /** Slice of the chunk's bytes: [from, to). */
  from: number;
  to: number;
}

/** Index of the chunk holding byte `pos` (chunks tile the file: manifest.ts checks it). */
export function chunkIndexAt(chunks: readonly ChunkRef[], pos: number): number {
  let lo = 0;
  let hi = chunks.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (chunks[mid]!.offset <= pos) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** Checks a range against a file's size; the pure half of readRange. */
export function checkRange(size: number, start: number, end: number): void {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start || end >= size) {
    throw new PxehaError('PXE_ERR_BAD_REQUEST', `byte range [${start}, ${end}] is not within a file of ${size} bytes`);
  }
}

/** The read plan for bytes [start, end] (inclusive, as HTTP ranges are). */
export function planRange(file: ManifestFile, start: number, end: number): ReadStep[] {
  checkRange(file.size, start, end);
  const steps: ReadStep[] = [];
  for (let i = chunkIndexAt(file.chunks, start); i < file.chunks.length; i++) {
    const chunk = file.chunks[i]!;
    if (chunk.offset > end) break;
    steps.push({
      chunk,
      from: Math.max(0, start - chunk.offset),
      to: Math.min(chunk.size, end + 1 - chunk.offset),
    });
  }
  return steps;
}

/**
 * A stream of bytes [start, end] (inclusive) of `file`. Fails with PXE_ERR_BAD_REQUEST for a
 * range outside the file (before any read), PXE_ERR_NOT_FOUND for a chunk this node lacks and
 * PXE_ERR_CHUNK_CORRUPT for one that fails its hash; the error names the file.
 */
export function readRange(file: ManifestFile, chunks: ChunkStore, start: number, end: number): Readable {
  const steps = planRange(file, start, end);
  async function* bytes(): AsyncGenerator<Buffer> {
    for (const step of steps) {
      let data: Buffer;
      try {
        data = await chunks.get(step.chunk.hash, step.chunk.size);
      } catch (err) {
        if (err instanceof PxehaError) {
          throw new PxehaError(err.code, `${file.path} at byte ${step.chunk.offset}: ${err.message}`, { cause: err });
        }
        throw err;
      }
      yield data.subarray(step.from, step.to);
    }
  }
  // Byte mode, one chunk slice buffered ahead at most: backpressure keeps memory to a chunk.
  return Readable.from(bytes(), { objectMode: false, highWaterMark: 1 });
}

/** The whole file as a stream (an empty file is an empty stream). */
export function readWhole(file: ManifestFile, chunks: ChunkStore): Readable {
  if (file.size === 0) return Readable.from([], { objectMode: false });
  return readRange(file, chunks, 0, file.size - 1);
}
