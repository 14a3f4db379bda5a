import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sha256Hex } from './chunker.js';
import { ChunkStore } from './chunk-store.js';
import { buildManifest, paginateManifest, type Manifest } from './manifest.js';
import { ManifestCache } from './manifest-store.js';
import { Readable } from 'node:stream';
import { encodeChunkBatch } from './chunk-batch.js';
import { BatchUnsupportedError, httpBatchFetcher, httpChunkFetcher, Replicator, type BatchFetcher, type ChunkFetcher, type ReplicaPeer, type WantedVersion } from './replicator.js';
import { seededBytes } from './test-support.js';
import { TokenBucket, type ThrottleClock } from './throttle.js';
import { openStore } from '../store/open.js';
import { Catalog, MAX_VERSION_RECORD_BYTES, versionKey } from './catalog.js';
import { readRange, readWhole } from './reader.js';
import { findImageFile } from './serve.js';
import { overriding } from '../util/test-override.js';

interface Fixture {
  version: WantedVersion;
  manifest: Manifest;
  /** Chunk bytes by hash. */
  bytes: Map<string, Buffer>;
  /** Manifest page bytes by hash. */
  pages: Map<string, Buffer>;
}

/** A one-file image cut into fixed-size chunks (any tiling is a valid manifest). */
function image(seed: number, chunkBytes: number, count: number): Fixture {
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
  const paged = paginateManifest(manifest);
  const pages = new Map(paged.ref.pages.map((h, i) => [h, paged.pages[i]!]));
  return { version: { id: paged.id, manifest: paged.ref }, manifest, bytes, pages };
}

/** Puts a fixture's manifest pages in a store (a node that has fetched or published them). */
async function holdManifest(store: ChunkStore, ...fixtures: Fixture[]): Promise<void> {
  for (const f of fixtures) for (const [h, b] of f.pages) await store.put(h, b);
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
    const fixture = image(1, 64 * 1024, 6);
    const { version, bytes } = fixture;
    const source = await fresh();
    for (const [h, b] of bytes) await source.put(h, b);
    const target = await fresh();
    await holdManifest(target, fixture);
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
      manifests: new ManifestCache(target),
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

  it('a pass does not stat chunks it already saw on disk; a chunk the store quarantines is looked for again and fetched', async () => {
    const fixture = image(7, 16 * 1024, 8);
    const { version, bytes } = fixture;
    const target = await fresh();
    await holdManifest(target, fixture);
    for (const [h, b] of bytes) await target.put(h, b);
    let stats = 0;
    const counted = overriding(target, { has: (h: string) => (stats++, target.has(h)) });
    const asked: string[] = [];
    const r = new Replicator({
      chunks: counted,
      manifests: new ManifestCache(target),
      wanted: () => [version],
      peers: () => [{ name: 'a', baseUrl: 'http://a', versions: new Set([version.id]) }],
      fetchChunk: async (_peer, hash) => (asked.push(hash), bytes.get(hash)!),
    });
    assert.deepEqual((await r.syncOnce()).held, [version.id]);
    assert.equal(stats, 8 + fixture.pages.size, 'the first pass looks at every chunk and page once');
    stats = 0;
    for (let i = 0; i < 5; i++) assert.deepEqual((await r.syncOnce()).held, [version.id]);
    assert.equal(stats, 0, 'later passes (a membership heartbeat each) stat nothing');
    // A chunk goes bad on disk: the read that finds it quarantines it; the next pass sees it gone.
    const [bad] = [...bytes.keys()];
    const { writeFile } = await import('node:fs/promises');
    await writeFile(target.pathOf(bad!), Buffer.alloc(16 * 1024, 1));
    await assert.rejects(target.get(bad!), /failed verification/);
    const healed = await r.syncOnce();
    assert.deepEqual(asked, [bad], 'only the quarantined chunk is fetched again');
    assert.deepEqual(healed.held, [version.id]);
    assert.ok((await target.get(bad!)).equals(bytes.get(bad!)!));
  });

  it('refuses a peer that serves corrupt bytes and takes the chunk from another holder', async () => {
    const fixture = image(2, 32 * 1024, 8);
    const { version, bytes } = fixture;
    const target = await fresh();
    await holdManifest(target, fixture);
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
    const fetchedFrom: Record<string, number> = {};
    const r = new Replicator({
      chunks: target,
      manifests: new ManifestCache(target),
      wanted: () => [version],
      peers: () => peers,
      fetchChunk,
      parallel: 3,
      onReject: (p) => rejects.push(p),
      onFetched: (p, _h, size) => (fetchedFrom[p] = (fetchedFrom[p] ?? 0) + size),
    });
    const result = await r.syncOnce();
    assert.equal(result.fetched, 8);
    assert.equal(result.failed, 0);
    assert.ok(served.bad! > 0, 'the bad peer was asked (chunks are spread over holders)');
    assert.equal(served.none, 0, 'a peer that does not hold the version is never asked');
    assert.equal(result.rejected, served.bad);
    assert.ok(rejects.every((p) => p === 'bad'));
    // The accounting the node's metrics are fed from: only stored chunks count as fetched.
    assert.deepEqual(r.totals(), { fetchedChunks: 8, fetchedBytes: 8 * 32 * 1024, rejected: served.bad });
    assert.deepEqual(fetchedFrom, { good: 8 * 32 * 1024 });
    for (const [h, b] of bytes) assert.ok((await target.get(h)).equals(b), 'only verified bytes were stored');
    assert.deepEqual(result.held, [version.id]);
  });

  it('fetches several chunks per batch request, spread over the holders; one a batch did not deliver is fetched alone from another holder', async () => {
    const fixture = image(12, 32 * 1024, 24);
    const { version, bytes } = fixture;
    const target = await fresh();
    await holdManifest(target, fixture);
    const peers: ReplicaPeer[] = [
      { name: 'a', baseUrl: 'http://a', versions: new Set([version.id]) },
      { name: 'b', baseUrl: 'http://b', versions: new Set([version.id]) },
    ];
    const [lostOnA, corruptOnB] = [[...bytes.keys()][1]!, [...bytes.keys()][20]!];
    const batches: { peer: string; count: number }[] = [];
    const fetchBatch: BatchFetcher = async (peer, wants) => {
      batches.push({ peer: peer.name, count: wants.length });
      const read = async (h: string): Promise<Buffer> => {
        if (peer.name === 'a' && h === lostOnA) throw new Error('not held');
        const b = Buffer.from(bytes.get(h)!);
        if (peer.name === 'b' && h === corruptOnB) b[7] = b[7]! ^ 1; // sent wrong: the receiver's hash refuses it
        return b;
      };
      return Readable.from(encodeChunkBatch(wants.map((w) => w.hash), read), { objectMode: false });
    };
    const alone: string[] = [];
    const fetchChunk: ChunkFetcher = async (peer, hash) => {
      alone.push(`${peer.name}:${hash}`);
      return bytes.get(hash)!;
    };
    const r = new Replicator({ chunks: target, manifests: new ManifestCache(target), wanted: () => [version], peers: () => peers, fetchChunk, fetchBatch, batchBytes: 4 * 32 * 1024, parallel: 2 });
    const result = await r.syncOnce();
    assert.equal(result.fetched, 24);
    assert.equal(result.failed, 0);
    assert.equal(result.rejected, 2);
    assert.deepEqual(batches.map((b) => b.count), [4, 4, 4, 4, 4, 4], 'batches of batchBytes');
    assert.deepEqual(new Set(batches.map((b) => b.peer)), new Set(['a', 'b']), 'spread over the holders');
    assert.deepEqual(alone.sort(), [`a:${corruptOnB}`, `b:${lostOnA}`].sort(), 'the two undelivered chunks, alone, from the other holder');
    for (const [h, b] of bytes) assert.ok((await target.get(h)).equals(b));
    assert.deepEqual(result.held, [version.id]);
    assert.deepEqual(r.totals(), { fetchedChunks: 24, fetchedBytes: 24 * 32 * 1024, rejected: 2 });
  });

  it('a holder without the batch endpoint (an older node) is asked chunk by chunk, not counted as rejecting', async () => {
    const fixture = image(10, 32 * 1024, 12);
    const { version, bytes } = fixture;
    const target = await fresh();
    await holdManifest(target, fixture);
    const peers: ReplicaPeer[] = [{ name: 'old', baseUrl: 'http://old', versions: new Set([version.id]) }];
    let batchAsks = 0;
    const fetchBatch: BatchFetcher = async (peer) => {
      batchAsks++;
      throw new BatchUnsupportedError(peer.name, 404);
    };
    const alone: string[] = [];
    const fetchChunk: ChunkFetcher = async (peer, hash) => {
      alone.push(`${peer.name}:${hash}`);
      return bytes.get(hash)!;
    };
    const told: string[] = [];
    const r = new Replicator({
      chunks: target,
      manifests: new ManifestCache(target),
      wanted: () => [version],
      peers: () => peers,
      fetchChunk,
      fetchBatch,
      batchBytes: 4 * 32 * 1024,
      parallel: 1,
      onBatchUnsupported: (peer) => told.push(peer),
    });
    const result = await r.syncOnce();
    assert.equal(result.fetched, 12);
    assert.equal(result.rejected, 0, 'no chunk counted as refused');
    assert.equal(batchAsks, 1, 'asked for a batch once, then chunk by chunk');
    assert.equal(alone.length, 12);
    assert.deepEqual(told, ['old']);
    assert.deepEqual(result.held, [version.id]);
  });

  it('reports a version as not held while a chunk has no holder, and resumes on the next pass', async () => {
    const fixture = image(3, 16 * 1024, 4);
    const { version, bytes } = fixture;
    const target = await fresh();
    await holdManifest(target, fixture);
    let online = false;
    const fetchChunk: ChunkFetcher = async (_p, hash) => {
      if (!online) throw new Error('connection reset');
      return bytes.get(hash)!;
    };
    const r = new Replicator({ chunks: target, manifests: new ManifestCache(target), wanted: () => [version], peers: () => [{ name: 'a', baseUrl: 'http://a', versions: new Set([version.id]) }], fetchChunk });
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
    const fixture = image(4, chunk, 16); // 4 MiB
    const { version, bytes } = fixture;
    const target = await fresh();
    await holdManifest(target, fixture);
    const clock = new VirtualClock();
    const rate = 1024 * 1024; // 1 MiB/s, burst 256 KiB
    const throttle = new TokenBucket(rate, { burst: chunk, clock });
    const r = new Replicator({
      chunks: target,
      manifests: new ManifestCache(target),
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

describe('Replicator: placement and the time window', () => {
  let dir: string;
  let n = 0;
  const fresh = async (): Promise<ChunkStore> => ChunkStore.open(join(dir, `node${n++}`));
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pxeha-repl-window-'));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it('advertises an offered version held whole without fetching it, and never fetches one only partly held', async () => {
    const a = image(11, 4096, 3);
    const b = image(12, 4096, 3);
    const node = await fresh();
    await holdManifest(node, a, b); // the publisher stored the manifests with the chunks
    for (const [h, bytes] of a.bytes) await node.put(h, bytes);
    await node.put([...b.bytes.keys()][0]!, [...b.bytes.values()][0]!);
    const r = new Replicator({
      chunks: node,
      manifests: new ManifestCache(node),
      wanted: () => [],
      offered: () => [a.version, b.version],
      peers: () => [{ name: 'p', baseUrl: 'http://p', versions: new Set([a.version.id, b.version.id]) }],
      fetchChunk: async () => assert.fail('nothing is wanted here: nothing is fetched'),
    });
    const result = await r.syncOnce();
    assert.deepEqual(result.held, [a.version.id]);
    assert.equal(result.fetched, 0);
  });

  it('pauses between chunks when the window closes and resumes when it opens', async () => {
    const fixture = image(13, 4096, 6);
    const { version, bytes } = fixture;
    const node = await fresh();
    await holdManifest(node, fixture);
    let open = true;
    let fetched = 0;
    const r = new Replicator({
      chunks: node,
      manifests: new ManifestCache(node),
      wanted: () => [version],
      peers: () => [{ name: 'p', baseUrl: 'http://p', versions: new Set([version.id]) }],
      parallel: 1,
      mayFetch: () => open,
      fetchChunk: async (_peer, hash) => {
        if (++fetched === 2) open = false; // the window closes during the second chunk
        return bytes.get(hash)!;
      },
    });
    const first = await r.syncOnce();
    assert.equal(first.fetched, 2, 'the chunk in flight lands, no further one is started');
    assert.equal(first.waiting, true);
    assert.equal(r.waiting(), true);
    assert.deepEqual(first.held, []);
    const closed = await r.syncOnce();
    assert.equal(closed.fetched, 0);
    open = true;
    const second = await r.syncOnce();
    assert.equal(second.fetched, 4);
    assert.equal(second.waiting, false);
    assert.equal(r.waiting(), false);
    assert.deepEqual(second.held, [version.id]);
  });
});

describe('Replicator: manifests as pages in the chunk store', () => {
  let dir: string;
  let n = 0;
  const fresh = async (): Promise<ChunkStore> => ChunkStore.open(join(dir, `node${n++}`));
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pxeha-repl-pages-'));
  });
  after(async () => rm(dir, { recursive: true, force: true }));
  const bytesOf = async (stream: import('node:stream').Readable): Promise<Buffer> => {
    const parts: Buffer[] = [];
    for await (const part of stream) parts.push(part as Buffer);
    return Buffer.concat(parts);
  };

  it('records, replicates and serves a version whose chunk list would not fit the old 1 MiB record', async () => {
    // 12 000 chunks of 100 bytes cycling over 3 distinct ones: a chunk list of ~1.3 MB (two
    // manifest pages) with few files to write.
    const distinct = [0, 1, 2].map((i) => seededBytes(100 + i, 100));
    const data = Buffer.concat(Array.from({ length: 12_000 }, (_, i) => distinct[i % 3]!));
    const refs = Array.from({ length: 12_000 }, (_, i) => ({ hash: sha256Hex(distinct[i % 3]!), size: 100, offset: i * 100 }));
    const manifest = buildManifest([{ path: 'disk.img', size: data.length, chunks: refs }]);
    const store = await openStore({ kind: 'embedded', path: join(dir, 'store.db') });
    try {
      const source = await fresh();
      for (const d of distinct) await source.put(sha256Hex(d), d);
      const catalog = new Catalog(store);
      const { id } = await catalog.recordVersion('huge', manifest, source);
      const kv = await store.get(versionKey('huge', id));
      assert.ok(kv!.value.length < 1000 && MAX_VERSION_RECORD_BYTES > 1000, `the record is ${kv!.value.length} bytes`);
      const [version] = await catalog.listVersions('huge');
      assert.equal(version!.record.manifest.pages.length, 2);

      const target = await fresh();
      const manifests = new ManifestCache(target);
      const asked: string[] = [];
      const r = new Replicator({
        chunks: target,
        manifests,
        wanted: () => [{ id, manifest: version!.record.manifest }],
        peers: () => [{ name: 'a', baseUrl: 'http://a', versions: new Set([id]) }],
        fetchChunk: async (_p, hash) => {
          asked.push(hash);
          return source.get(hash);
        },
      });
      const result = await r.syncOnce();
      assert.deepEqual(asked.slice(0, 2), version!.record.manifest.pages, 'the manifest pages come first');
      assert.equal(result.fetched, 5, '2 pages + 3 distinct chunks');
      assert.deepEqual(result.held, [id]);
      assert.deepEqual(r.progress(), [{ id, chunks: 3, heldChunks: 3, bytes: 300, heldBytes: 300 }]);

      // Served from the target's chunk store, the manifest loaded from its own pages.
      const found = findImageFile(`images/huge/${id}/disk.img`, { held: () => r.held(), manifestOf: (_n, v) => manifests.get(v) });
      assert.ok(found?.ok);
      assert.ok((await bytesOf(readWhole(found.file, target))).equals(data));
      assert.ok((await bytesOf(readRange(found.file, target, 555_555, 777_777))).equals(data.subarray(555_555, 777_778)));
      // A fresh cache on the same disk (a restarted node) loads it without the network.
      assert.deepEqual(await new ManifestCache(target).load(id, version!.record.manifest), manifest);
    } finally {
      await store.close();
    }
  });

  it('refuses manifest pages whose bytes are not the version the record names, and fetches none of its chunks', async () => {
    const real = image(21, 4096, 3);
    const other = image(22, 4096, 3);
    // A record under real's id that names other's pages (sound pages, the wrong version).
    const forged: WantedVersion = { id: real.version.id, manifest: other.version.manifest };
    const target = await fresh();
    const bad: string[] = [];
    const asked: string[] = [];
    const r = new Replicator({
      chunks: target,
      manifests: new ManifestCache(target),
      wanted: () => [forged],
      peers: () => [{ name: 'a', baseUrl: 'http://a', versions: new Set([forged.id]) }],
      fetchChunk: async (_p, hash) => {
        asked.push(hash);
        return other.pages.get(hash) ?? other.bytes.get(hash) ?? real.bytes.get(hash)!;
      },
      onBadManifest: (id, err) => bad.push(`${id} ${err.message}`),
    });
    const result = await r.syncOnce();
    assert.deepEqual(asked, other.version.manifest.pages, 'only the pages were fetched');
    assert.deepEqual(result.held, []);
    assert.equal(bad.length, 1);
    assert.match(bad[0]!, /not the version/);
    // A page whose bytes are not its hash is refused by the chunk store on the way in.
    const wrong = new Replicator({
      chunks: target,
      manifests: new ManifestCache(target),
      wanted: () => [real.version],
      peers: () => [{ name: 'a', baseUrl: 'http://a', versions: new Set([real.version.id]) }],
      fetchChunk: async () => [...other.pages.values()][0]!,
    });
    const w = await wrong.syncOnce();
    assert.equal(w.fetched, 0);
    assert.ok(w.rejected >= 1);
    assert.equal(await target.has(real.version.manifest.pages[0]!), false);
  });

  it('fetches the manifest of a known version not placed here, and none of its chunks', async () => {
    const f = image(23, 4096, 3);
    const target = await fresh();
    const manifests = new ManifestCache(target);
    const asked: string[] = [];
    const r = new Replicator({
      chunks: target,
      manifests,
      wanted: () => [],
      known: () => [f.version],
      peers: () => [{ name: 'a', baseUrl: 'http://a', versions: new Set([f.version.id]) }],
      fetchChunk: async (_p, hash) => {
        asked.push(hash);
        return f.pages.get(hash) ?? f.bytes.get(hash)!;
      },
    });
    const result = await r.syncOnce();
    assert.deepEqual(asked, f.version.manifest.pages);
    assert.deepEqual(result.held, []);
    assert.deepEqual(manifests.get(f.version.id), f.manifest);
  });
});

describe('httpChunkFetcher (127.0.0.1)', () => {
  const body = seededBytes(9, 300_000);
  let server: http.Server;
  let peer: ReplicaPeer;
  const seen: { url: string; authorization: string | undefined }[] = [];
  before(async () => {
    server = http.createServer((req, res) => {
      seen.push({ url: req.url ?? '', authorization: req.headers.authorization });
      const hash = (req.url ?? '').split('/').pop() ?? '';
      if (hash.startsWith('0')) res.writeHead(404).end('{"code":"PXE_ERR_NOT_FOUND"}');
      else if (hash.startsWith('1')) {
        // Announces the whole body, sends half, then drops the connection.
        res.writeHead(200, { 'content-length': body.length });
        res.write(body.subarray(0, body.length / 2), () => res.socket?.destroy());
      } else res.writeHead(200, { 'content-length': body.length }).end(body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    peer = { name: 'p', baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, versions: new Set() };
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('returns the body with the bearer sent, and refuses errors, a wrong size and a short body', async () => {
    const fetchChunk = httpChunkFetcher(async () => 'tok');
    const signal = new AbortController().signal;
    const ok = 'a'.repeat(64);
    const bytesOf = async (got: Uint8Array | import('node:stream').Readable): Promise<Buffer> => {
      if (got instanceof Uint8Array) return Buffer.from(got);
      const parts: Buffer[] = [];
      for await (const part of got) parts.push(part as Buffer);
      return Buffer.concat(parts);
    };
    assert.ok((await bytesOf(await fetchChunk(peer, ok, body.length, signal))).equals(body));
    // Twice more on kept-alive connections.
    for (let i = 0; i < 2; i++) assert.equal((await bytesOf(await fetchChunk(peer, ok, body.length, signal))).length, body.length);
    assert.deepEqual(seen[0], { url: `/api/v1/chunks/${ok}`, authorization: 'Bearer tok' });
    await assert.rejects(fetchChunk(peer, '0'.repeat(64), body.length, signal), /HTTP 404/);
    await assert.rejects(fetchChunk(peer, ok, body.length - 1, signal), /announced/);
    // A body cut short: the chunk store refuses it (and writes nothing), whatever the stream says.
    const dir = await mkdtemp(join(tmpdir(), 'pxeha-fetch-'));
    try {
      const store = await ChunkStore.open(dir);
      const hash = '1' + sha256Hex(body).slice(1);
      await assert.rejects(store.putStream(hash, body.length, (await fetchChunk(peer, hash, body.length, signal)) as import('node:stream').Readable), /refused|aborted/);
      assert.equal(await store.has(hash), false);
      // The right bytes over the wire are stored.
      assert.equal(await store.putStream(sha256Hex(body), body.length, (await fetchChunk(peer, ok, body.length, signal)) as import('node:stream').Readable), true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('httpBatchFetcher (127.0.0.1)', () => {
  it('tells a peer without the endpoint (404, 405) from a failing one', async () => {
    const statuses = [404, 405, 500];
    const server = http.createServer((req, res) => {
      req.resume();
      res.writeHead(statuses.shift() ?? 500).end('{}');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const peer: ReplicaPeer = { name: 'p', baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, versions: new Set() };
      const fetchBatch = httpBatchFetcher(async () => 'tok');
      const wants = [{ hash: 'a'.repeat(64), size: 1 }];
      const signal = new AbortController().signal;
      await assert.rejects(fetchBatch(peer, wants, signal), BatchUnsupportedError);
      await assert.rejects(fetchBatch(peer, wants, signal), BatchUnsupportedError);
      await assert.rejects(fetchBatch(peer, wants, signal), (err: Error) => !(err instanceof BatchUnsupportedError) && /HTTP 500/.test(err.message));
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
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
