import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { PxehaError } from '../errors.js';
import { sha256Hex } from './chunker.js';
import { ChunkStore } from './chunk-store.js';
import type { ChunkRef, ManifestFile } from './manifest.js';
import { planRange, readRange, readWhole } from './reader.js';
import { seededBytes } from './test-support.js';

/** Cuts `data` into chunks of 1..maxChunk bytes (sizes from a seeded sequence) and stores them. */
async function storeTiny(store: ChunkStore, path: string, data: Buffer, maxChunk = 13): Promise<ManifestFile> {
  const sizes = seededBytes(5, data.length);
  const chunks: ChunkRef[] = [];
  for (let offset = 0, i = 0; offset < data.length; i++) {
    const size = Math.min(data.length - offset, 1 + (sizes[i]! % maxChunk));
    const bytes = data.subarray(offset, offset + size);
    const hash = sha256Hex(bytes);
    await store.put(hash, bytes);
    chunks.push({ hash, size, offset });
    offset += size;
  }
  return { path, size: data.length, chunks };
}

/** The bytes a stream gave before it ended, and its error if it failed. */
async function drain(stream: Readable): Promise<{ bytes: Buffer; error?: unknown }> {
  const parts: Buffer[] = [];
  try {
    for await (const part of stream) parts.push(part as Buffer);
    return { bytes: Buffer.concat(parts) };
  } catch (error) {
    return { bytes: Buffer.concat(parts), error };
  }
}

describe('reading a file from its chunks', () => {
  let dir: string;
  let store: ChunkStore;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pxeha-reader-'));
    store = await ChunkStore.open(dir);
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it('plans only the chunks that overlap the range, with the right slices', async () => {
    const data = seededBytes(1, 600);
    const file = await storeTiny(store, 'big', data);
    assert.ok(file.chunks.length > 60);
    for (let start = 0; start < data.length; start += 7) {
      for (let end = start; end < data.length; end += 5) {
        const steps = planRange(file, start, end);
        assert.ok(steps[0]!.chunk.offset <= start && steps.at(-1)!.chunk.offset + steps.at(-1)!.chunk.size > end);
        assert.ok(steps.every((s) => s.from < s.to), 'no empty slice');
        const rebuilt = Buffer.concat(steps.map((s) => data.subarray(s.chunk.offset + s.from, s.chunk.offset + s.to)));
        assert.deepEqual(rebuilt, data.subarray(start, end + 1));
      }
    }
  });

  it('streams every byte range of a small file of many tiny chunks exactly', async () => {
    const data = seededBytes(2, 64);
    const file = await storeTiny(store, 'boot/tiny', data, 7);
    assert.ok(file.chunks.length >= 12, `${file.chunks.length} chunks`);
    for (let start = 0; start < data.length; start++) {
      for (let end = start; end < data.length; end++) {
        const { bytes, error } = await drain(readRange(file, store, start, end));
        assert.equal(error, undefined);
        assert.ok(bytes.equals(data.subarray(start, end + 1)), `range [${start}, ${end}]`);
      }
    }
    assert.deepEqual((await drain(readWhole(file, store))).bytes, data);
    assert.deepEqual((await drain(readWhole({ path: 'empty', size: 0, chunks: [] }, store))).bytes, Buffer.alloc(0));
  });

  it('refuses a range outside the file before reading anything', () => {
    const file: ManifestFile = { path: 'f', size: 10, chunks: [{ hash: 'a'.repeat(64), size: 10, offset: 0 }] };
    for (const [start, end] of [[-1, 3], [5, 4], [0, 10], [10, 10], [0.5, 3]] as const) {
      assert.throws(() => readRange(file, store, start, end), (e: unknown) => e instanceof PxehaError && e.code === 'PXE_ERR_BAD_REQUEST');
    }
  });

  it('fails with PXE_ERR_CHUNK_CORRUPT naming the file, sending none of the corrupt chunk’s bytes', async () => {
    const data = seededBytes(3, 200);
    const file = await storeTiny(store, 'boot/vmlinuz', data);
    const victim = file.chunks[Math.floor(file.chunks.length / 2)]!;
    const bad = Buffer.from(data.subarray(victim.offset, victim.offset + victim.size));
    bad[0]! ^= 0xff;
    await writeFile(store.pathOf(victim.hash), bad);
    const { bytes, error } = await drain(readWhole(file, store));
    assert.ok(error instanceof PxehaError, String(error));
    assert.equal(error.code, 'PXE_ERR_CHUNK_CORRUPT');
    assert.match(error.message, new RegExp(`^boot/vmlinuz at byte ${victim.offset}: chunk ${victim.hash} failed verification`));
    assert.ok(bytes.length <= victim.offset, 'nothing from the corrupt chunk on');
    assert.ok(bytes.equals(data.subarray(0, bytes.length)), 'what went out before is right');
    // A range that does not touch the bad chunk is still served.
    assert.deepEqual((await drain(readRange(file, store, 0, victim.offset - 1))).bytes, data.subarray(0, victim.offset));
    // The bad chunk was quarantined: now it is missing, not corrupt.
    const again = await drain(readRange(file, store, victim.offset, victim.offset));
    assert.ok(again.error instanceof PxehaError && again.error.code === 'PXE_ERR_NOT_FOUND', String(again.error));
  });
});
