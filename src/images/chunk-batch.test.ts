import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { encodeChunkBatch, NOT_SENT, readChunkBatch, receiveChunkBatch, type BatchWant } from './chunk-batch.js';
import { ChunkStore } from './chunk-store.js';
import { sha256Hex } from './chunker.js';
import { PxehaError } from '../errors.js';
import { seededBytes } from './test-support.js';

/** The body as `pieceBytes`-sized reads (1: every length word straddles reads). */
function body(parts: readonly Uint8Array[], pieceBytes: number): Readable {
  const all = Buffer.concat(parts);
  const pieces: Buffer[] = [];
  for (let o = 0; o < all.length; o += pieceBytes) pieces.push(all.subarray(o, o + pieceBytes));
  return Readable.from(pieces, { objectMode: false });
}

async function collect(gen: AsyncIterable<Uint8Array>): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const p of gen) out.push(Buffer.from(p));
  return out;
}

describe('chunk batch (encode, receive)', () => {
  let dir: string;
  let n = 0;
  const fresh = async (): Promise<ChunkStore> => ChunkStore.open(join(dir, `s${n++}`));
  const chunks = [seededBytes(1, 300_000), seededBytes(2, 70_000), seededBytes(3, 1)];
  const wants: BatchWant[] = chunks.map((c) => ({ hash: sha256Hex(c), size: c.length }));
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pxeha-batch-'));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  const run = async (store: ChunkStore, source: Readable, asked: readonly BatchWant[] = wants): Promise<{ stored: string[]; failed: Map<string, string> }> => {
    const stored: string[] = [];
    const failed = new Map<string, string>();
    await receiveChunkBatch(source, asked, store, {
      stored: (w) => stored.push(w.hash),
      failed: (w, err) => {
        assert.ok(!failed.has(w.hash) && !stored.includes(w.hash), 'one outcome per chunk');
        failed.set(w.hash, err.message);
      },
    });
    return { stored, failed };
  };

  it('encodes length-framed chunks, NOT_SENT for one the reader refuses, and stores them all whatever the read sizes', async () => {
    const sender = await fresh();
    for (let i = 0; i < 2; i++) await sender.put(wants[i]!.hash, chunks[i]!);
    const skipped: string[] = [];
    const parts = await collect(encodeChunkBatch(wants.map((w) => w.hash), (h) => sender.get(h), (h) => skipped.push(h)));
    assert.deepEqual(skipped, [wants[2]!.hash]);
    const whole = Buffer.concat(parts);
    assert.equal(whole.readUInt32BE(0), chunks[0]!.length);
    assert.equal(whole.readUInt32BE(whole.length - 4), NOT_SENT);
    assert.equal(whole.length, 4 + chunks[0]!.length + 4 + chunks[1]!.length + 4);
    for (const pieceBytes of [1, 3, 4096, whole.length]) {
      const store = await fresh();
      const r = await run(store, body(parts, pieceBytes));
      assert.deepEqual(r.stored.sort(), [wants[0]!.hash, wants[1]!.hash].sort());
      assert.deepEqual([...r.failed.keys()], [wants[2]!.hash]);
      assert.ok((await store.get(wants[0]!.hash)).equals(chunks[0]!));
      assert.ok((await store.get(wants[1]!.hash)).equals(chunks[1]!));
    }
  });

  it('refuses wrong bytes (nothing stored under the name) and goes on with the next chunk', async () => {
    const bad = Buffer.from(chunks[0]!);
    bad[1000]! ^= 1;
    const frame = (b: Uint8Array): Buffer[] => [Buffer.from([b.length >>> 24, (b.length >>> 16) & 255, (b.length >>> 8) & 255, b.length & 255]), Buffer.from(b)];
    const store = await fresh();
    const r = await run(store, body([...frame(bad), ...frame(chunks[1]!), ...frame(chunks[2]!)], 8192));
    assert.deepEqual(r.stored.sort(), [wants[1]!.hash, wants[2]!.hash].sort());
    assert.match(r.failed.get(wants[0]!.hash)!, /refused/);
    assert.equal(await store.has(wants[0]!.hash), false);
  });

  it('fails the rest when the body is cut short, announces a wrong size, or errors', async () => {
    const frames = await collect(encodeChunkBatch(wants.map((w) => w.hash), async (h) => chunks[wants.findIndex((w) => w.hash === h)]!));
    const whole = Buffer.concat(frames);
    // Cut inside the second chunk: the first is stored, the second and third fail.
    const store = await fresh();
    const cut = await run(store, body([whole.subarray(0, 4 + chunks[0]!.length + 4 + 100)], 65536));
    assert.deepEqual(cut.stored, [wants[0]!.hash]);
    assert.deepEqual([...cut.failed.keys()], [wants[1]!.hash, wants[2]!.hash]);
    assert.match(cut.failed.get(wants[1]!.hash)!, /ended after 1 of 3/);
    assert.equal(await store.has(wants[1]!.hash), false);
    // A length other than the manifest's: that chunk and the rest fail.
    const wrong = await run(await fresh(), body([whole], 65536), [wants[0]!, { ...wants[1]!, size: wants[1]!.size + 1 }, wants[2]!]);
    assert.deepEqual(wrong.stored, [wants[0]!.hash]);
    assert.match(wrong.failed.get(wants[1]!.hash)!, /announced/);
    // A source that errors mid-way.
    const failing = new Readable({
      read() {
        this.push(whole.subarray(0, 10));
        this.destroy(new PxehaError('PXE_ERR_INTERNAL', 'connection reset'));
      },
    });
    const errored = await run(await fresh(), failing);
    assert.equal(errored.stored.length, 0);
    assert.equal(errored.failed.size, 3);
  });

  it('reads ahead a bounded number of chunks while sending them in the asked order', async () => {
    const many = Array.from({ length: 12 }, (_, i) => seededBytes(100 + i, 1000 + i));
    const byHash = new Map(many.map((c) => [sha256Hex(c), c]));
    let inFlight = 0;
    let most = 0;
    const read = async (h: string): Promise<Uint8Array> => {
      most = Math.max(most, ++inFlight);
      await new Promise((resolve) => setTimeout(resolve, 1));
      inFlight--;
      return byHash.get(h)!;
    };
    const frames = Buffer.concat(await collect(encodeChunkBatch([...byHash.keys()], read, undefined, 3)));
    let at = 0;
    for (const c of many) {
      assert.equal(frames.readUInt32BE(at), c.length);
      assert.ok(frames.subarray(at + 4, at + 4 + c.length).equals(c));
      at += 4 + c.length;
    }
    assert.equal(at, frames.length);
    assert.ok(most > 1 && most <= 4, `reads in flight: ${most} (the one sent and at most 3 ahead)`);
  });

  it('readChunkBatch: the body is read first, then every chunk settles once it is durable', async () => {
    const store = await fresh();
    const frames = await collect(encodeChunkBatch(wants.map((w) => w.hash), async (h) => chunks[wants.findIndex((w) => w.hash === h)]!));
    const stored: string[] = [];
    const { settled } = await readChunkBatch(body(frames, 4096), wants, store, {
      stored: (w) => stored.push(w.hash),
      failed: (w, err) => assert.fail(`${w.hash}: ${err.message}`),
    });
    await settled;
    assert.deepEqual(stored.sort(), wants.map((w) => w.hash).sort());
    for (let i = 0; i < chunks.length; i++) assert.ok((await store.get(wants[i]!.hash)).equals(chunks[i]!));
    assert.deepEqual(await readdir(join(store.root, 'tmp')), [], 'no temp file left behind');
  });
});
