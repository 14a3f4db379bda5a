import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sha256Hex } from './chunker.js';
import { ChunkStore } from './chunk-store.js';
import { buildManifest, manifestId, type Manifest } from './manifest.js';
import { httpChunkFetcher, Replicator, type ChunkFetcher, type ReplicaPeer, type WantedVersion } from './replicator.js';
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
    const fetchedFrom: Record<string, number> = {};
    const r = new Replicator({
      chunks: target,
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
    for (const [h, bytes] of a.bytes) await node.put(h, bytes);
    await node.put([...b.bytes.keys()][0]!, [...b.bytes.values()][0]!);
    const r = new Replicator({
      chunks: node,
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
    const { version, bytes } = image(13, 4096, 6);
    const node = await fresh();
    let open = true;
    let fetched = 0;
    const r = new Replicator({
      chunks: node,
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
