import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sha256Hex } from './chunker.js';
import { ChunkStore } from './chunk-store.js';
import { buildManifest, manifestId, type Manifest } from './manifest.js';
import { Replicator, type ChunkFetcher, type ReplicaPeer, type WantedVersion } from './replicator.js';
import { seededBytes } from './test-support.js';
import { TokenBucket, type ThrottleClock } from './throttle.js';

/** A one-file image cut into fixed-size chunks (any tiling is a valid manifest). */
function image(seed: number, chunkBytes: number, count: number): { version: WantedVersion; bytes: Map<string, Buffer> } {
  const data = seededBytes(seed, chunkBytes * count);
  const bytes = new Map<string, Buffer>();
  const chunks = [];
  for (let i = 0; i < count; i++) {
    const piece = data.subarray(i * chunkBytes, (i + 1) * chunkBytes);
    const hash = sha256Hex(piece);
    bytes.set(hash, Buffer.from(piece));
    chunks.push({ hash, size: piece.length, offset: i * chunkBytes });
  }
  const manifest: Manifest = buildManifest([{ path: 'disk.img', size: data.length, chunks }]);
  return { version: { id: manifestId(manifest), manifest }, bytes };
}

/** Virtual time: sleep() moves the clock forward instead of waiting. */
class VirtualClock implements ThrottleClock {
  ms = 0;
  now(): number {
    return this.ms;
  }
  async sleep(ms: number): Promise<void> {
    this.ms += ms;
  }
}

describe('Replicator', () => {
  let dir: string;
  let n = 0;
  const fresh = async (): Promise<ChunkStore> => ChunkStore.open(join(dir, `node${n++}`));
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pxeha-repl-'));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it('fetches the chunks it lacks from a holder, verifies them, and reports the version held whole', async () => {
    const { version, bytes } = image(1, 64 * 1024, 6);
    const source = await fresh();
    for (const [h, b] of bytes) await source.put(h, b);
    const target = await fresh();
    // The target already holds two chunks (an earlier, interrupted pass): they are not fetched again.
    const [h0, h1] = [...bytes.keys()];
    await target.put(h0!, bytes.get(h0!)!);
    await target.put(h1!, bytes.get(h1!)!);
    const asked: string[] = [];
    const fetchChunk: ChunkFetcher = async (_peer, hash) => {
      asked.push(hash);
      return source.get(hash);
    };
    const heldChanges: string[][] = [];
    const r = new Replicator({
      chunks: target,
      wanted: () => [version],
      peers: () => [{ name: 'a', baseUrl: 'http://a', versions: new Set([version.id]) }],
      fetchChunk,
      onHeldChange: (held) => heldChanges.push(held),
    });
    const result = await r.syncOnce();
    assert.equal(result.fetched, 4);
    assert.equal(result.failed, 0);
    assert.equal(asked.length, 4);
    assert.ok(!asked.includes(h0!) && !asked.includes(h1!), 'chunks already held are not fetched');
    assert.deepEqual(result.held, [version.id]);
    assert.deepEqual(heldChanges, [[version.id]]);
    for (const [h, b] of bytes) assert.ok((await target.get(h)).equals(b));
    assert.deepEqual(r.progress(), [{ id: version.id, chunks: 6, heldChunks: 6, bytes: 6 * 64 * 1024, heldBytes: 6 * 64 * 1024 }]);
    // A second pass finds nothing to do.
    assert.equal((await r.syncOnce()).fetched, 0);
    assert.equal(asked.length, 4);
  });

  it('refuses a peer that serves corrupt bytes and takes the chunk from another holder', async () => {
    const { version, bytes } = image(2, 32 * 1024, 8);
    const target = await fresh();
    const peers: ReplicaPeer[] = [
      { name: 'bad', baseUrl: 'http://bad', versions: new Set([version.id]) },
      { name: 'good', baseUrl: 'http://good', versions: new Set([version.id]) },
      { name: 'none', baseUrl: 'http://none', versions: new Set() },
    ];
    const served = { bad: 0, good: 0, none: 0 } as Record<string, number>;
    const fetchChunk: ChunkFetcher = async (peer, hash) => {
      served[peer.name]!++;
      const b = Buffer.from(bytes.get(hash)!);
      if (peer.name === 'bad') b[100] = b[100]! ^ 0xff; // a flipped bit on the bad peer's disk
      return b;
    };
    const rejects: string[] = [];
    const r = new Replicator({ chunks: target, wanted: () => [version], peers: () => peers, fetchChunk, parallel: 3, onReject: (p) => rejects.push(p) });
    const result = await r.syncOnce();
    assert.equal(result.fetched, 8);
    assert.equal(result.failed, 0);
    assert.ok(served.bad! > 0, 'the bad peer was asked (chunks are spread over holders)');
    assert.equal(served.none, 0, 'a peer that does not hold the version is never asked');
    assert.equal(result.rejected, served.bad);
    assert.ok(rejects.every((p) => p === 'bad'));
    for (const [h, b] of bytes) assert.ok((await target.get(h)).equals(b), 'only verified bytes were stored');
    assert.deepEqual(result.held, [version.id]);
  });

  it('reports a version as not held while a chunk has no holder, and resumes on the next pass', async () => {
    const { version, bytes } = image(3, 16 * 1024, 4);
    const target = await fresh();
    let online = false;
    const fetchChunk: ChunkFetcher = async (_p, hash) => {
      if (!online) throw new Error('connection reset');
      return bytes.get(hash)!;
    };
    const r = new Replicator({ chunks: target, wanted: () => [version], peers: () => [{ name: 'a', baseUrl: 'http://a', versions: new Set([version.id]) }], fetchChunk });
    const first = await r.syncOnce();
    assert.equal(first.failed, 4);
    assert.deepEqual(first.held, []);
    online = true;
    const second = await r.syncOnce();
    assert.equal(second.fetched, 4);
    assert.deepEqual(second.held, [version.id]);
  });

  it('keeps to the bandwidth limit (token bucket, virtual clock)', async () => {
    const chunk = 256 * 1024;
    const { version, bytes } = image(4, chunk, 16); // 4 MiB
    const target = await fresh();
    const clock = new VirtualClock();
    const rate = 1024 * 1024; // 1 MiB/s, burst 256 KiB
    const throttle = new TokenBucket(rate, { burst: chunk, clock });
    const r = new Replicator({
      chunks: target,
      wanted: () => [version],
      peers: () => [{ name: 'a', baseUrl: 'http://a', versions: new Set([version.id]) }],
      fetchChunk: async (_p, hash) => bytes.get(hash)!,
      throttle,
      parallel: 1,
    });
    const result = await r.syncOnce();
    assert.equal(result.fetchedBytes, 16 * chunk);
    // (4 MiB − one burst of 256 KiB) at 1 MiB/s = 3.75 s of virtual time.
    const expectedMs = ((16 * chunk - chunk) / rate) * 1000;
    assert.ok(Math.abs(clock.ms - expectedMs) <= expectedMs * 0.02, `took ${clock.ms} ms of virtual time, expected ~${expectedMs}`);
  });
});

describe('TokenBucket', () => {
  it('lets a burst through at once, then paces takes at the rate, debt included', async () => {
    const clock = new VirtualClock();
    const bucket = new TokenBucket(1000, { burst: 500, clock });
    await bucket.take(500);
    assert.equal(clock.ms, 0);
    await bucket.take(2000); // bigger than the bucket: waits out the debt
    assert.equal(clock.ms, 2000);
    await bucket.take(1000);
    assert.equal(clock.now(), 3000);
    clock.ms = clock.now() + 10_000; // idle: credit refills up to the burst only
    const before = clock.now();
    await bucket.take(1500);
    assert.equal(clock.now() - before, 1000);
  });

  it('paces concurrent takers on real time within tolerance', async () => {
    const bucket = new TokenBucket(200_000, { burst: 10_000 }); // 200 kB/s
    const start = performance.now();
    await Promise.all(Array.from({ length: 4 }, async () => {
      for (let i = 0; i < 5; i++) await bucket.take(10_000);
    }));
    const elapsed = performance.now() - start;
    // 200 kB − 10 kB burst at 200 kB/s = 950 ms.
    assert.ok(elapsed >= 900 && elapsed < 1500, `took ${elapsed} ms`);
  });
});
