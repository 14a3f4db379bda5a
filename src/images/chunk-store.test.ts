import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { PxehaError } from '../errors.js';
import { sha256Hex } from './chunker.js';
import { ChunkStore, type CorruptChunkReport } from './chunk-store.js';
import { seededBytes } from './test-support.js';

const isCode = (code: string) => (e: unknown) => e instanceof PxehaError && e.code === code;

describe('ChunkStore', () => {
  let dir: string;
  let store: ChunkStore;
  let nowMs = 1_800_000_000_000;
  const reports: CorruptChunkReport[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pxeha-chunks-'));
    store = await ChunkStore.open(dir, { onCorrupt: (r) => reports.push(r), nowMs: () => nowMs });
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it('stores a chunk under chunks/ab/abcdef…, once, and reads it back', async () => {
    const data = seededBytes(1, 5000);
    const hash = sha256Hex(data);
    assert.equal(await store.has(hash), false);
    assert.equal(await store.put(hash, data), true);
    assert.equal(await store.put(hash, data), false, 'already held: not written again');
    assert.equal(store.pathOf(hash), join(dir, 'chunks', hash.slice(0, 2), hash));
    assert.deepEqual(await readFile(store.pathOf(hash)), data);
    assert.deepEqual(await store.get(hash, 5000), data);
    assert.deepEqual(await readdir(join(dir, 'chunks', 'tmp')), [], 'no temp file left behind');
  });

  it('putContent names a chunk by its own hash; the same chunk put many times at once is written once, and each write is durable before it resolves', async () => {
    const data = seededBytes(3, 70_000);
    const puts = Array.from({ length: 8 }, () => store.putContent(data));
    assert.ok(puts.every((p) => p.hash === sha256Hex(data)));
    const wrote = await Promise.all(puts.map((p) => p.stored));
    assert.deepEqual(wrote.filter(Boolean).length, 1, 'one write; the others waited for it and only touched it');
    assert.deepEqual(await store.get(sha256Hex(data)), data);
    // Many chunks at once (directory fsyncs shared where they land in one fan-out directory).
    const many = Array.from({ length: 64 }, (_, i) => seededBytes(1000 + i, 1000));
    assert.deepEqual(await Promise.all(many.map((d) => store.put(sha256Hex(d), d))), many.map(() => true));
    for (const d of many) assert.deepEqual(await store.get(sha256Hex(d)), d);
    assert.deepEqual(await readdir(join(dir, 'chunks', 'tmp')), [], 'no temp file left behind');
  });

  it('refuses to store bytes that do not match their hash', async () => {
    const data = seededBytes(2, 100);
    await assert.rejects(store.put(sha256Hex(Buffer.from('other')), data), isCode('PXE_ERR_CHUNK_CORRUPT'));
    assert.equal(await store.has(sha256Hex(Buffer.from('other'))), false);
  });

  it('putStream: writes a streamed chunk (several pieces, over 1 MiB), once', async () => {
    const data = seededBytes(11, 1_300_000); // a 2 MiB receive buffer
    const hash = sha256Hex(data);
    const pieces = [data.subarray(0, 70_000), data.subarray(70_000, 700_000), data.subarray(700_000)];
    assert.equal(await store.putStream(hash, data.length, Readable.from(pieces)), true);
    assert.deepEqual(await store.get(hash, data.length), data);
    assert.equal(await store.putStream(hash, data.length, Readable.from([data])), false, 'already held: not written again');
    assert.deepEqual(await readdir(join(dir, 'chunks', 'tmp')), []);
  });

  it('receive with a deferred directory fsync: the chunk is in place once committed, and syncDirs() fsyncs its directories once', async () => {
    const many = Array.from({ length: 20 }, (_, i) => seededBytes(500 + i, 3000 + i));
    const commits = many.map((d) => {
      const r = store.receive(sha256Hex(d), d.length, { dirSync: 'deferred' });
      r.write(d.subarray(0, 1000));
      r.write(d.subarray(1000));
      return r.commit();
    });
    assert.deepEqual(await Promise.all(commits), many.map(() => true));
    for (const d of many) assert.deepEqual(await store.get(sha256Hex(d)), d);
    assert.deepEqual(await readdir(join(dir, 'chunks', 'tmp')), [], 'no temp file left behind');
    await store.syncDirs();
    await store.syncDirs(); // nothing left to sync
    // A wrong chunk is refused before anything is written, deferred or not.
    const bad = store.receive(sha256Hex(many[0]!), many[0]!.length, { dirSync: 'deferred' });
    bad.write(many[1]!.subarray(0, many[0]!.length));
    await assert.rejects(bad.commit(), isCode('PXE_ERR_CHUNK_CORRUPT'));
  });

  it('putStream: refuses wrong bytes, a short or long body and a failing source, leaving nothing', async () => {
    const data = seededBytes(12, 600_000);
    const hash = sha256Hex(data);
    const bad = Buffer.from(data);
    bad[599_999] = bad[599_999]! ^ 1;
    await assert.rejects(store.putStream(hash, data.length, Readable.from([bad])), isCode('PXE_ERR_CHUNK_CORRUPT'));
    await assert.rejects(store.putStream(hash, data.length, Readable.from([data.subarray(0, 500_000)])), isCode('PXE_ERR_CHUNK_CORRUPT'));
    const long = Readable.from([data, Buffer.from('x')]);
    await assert.rejects(store.putStream(hash, data.length, long), isCode('PXE_ERR_CHUNK_CORRUPT'));
    assert.equal(long.destroyed, true);
    const failing = new Readable({ read() {} });
    failing.push(data.subarray(0, 1000));
    setImmediate(() => failing.destroy(new Error('connection reset')));
    await assert.rejects(store.putStream(hash, data.length, failing), /connection reset|refused/);
    assert.equal(await store.has(hash), false);
    assert.deepEqual(await readdir(join(dir, 'chunks', 'tmp')), [], 'temp files removed');
  });

  it('refuses hashes that are not 64 lower-case hex digits (no path from a bad manifest)', async () => {
    for (const bad of ['../../etc/passwd', 'AB'.repeat(32), 'ab', `${'a'.repeat(63)}/`]) {
      await assert.rejects(store.get(bad), isCode('PXE_ERR_BAD_REQUEST'));
    }
  });

  it('reports a missing chunk as not found', async () => {
    await assert.rejects(store.get(sha256Hex(Buffer.from('never stored'))), isCode('PXE_ERR_NOT_FOUND'));
  });

  it('detects a corrupt chunk: reported, quarantined, never returned, and can be stored again', async () => {
    const data = seededBytes(3, 3000);
    const hash = sha256Hex(data);
    await store.put(hash, data);
    const bad = Buffer.from(data);
    bad[1234]! ^= 1;
    await writeFile(store.pathOf(hash), bad);
    await assert.rejects(store.get(hash), (e: unknown) => isCode('PXE_ERR_CHUNK_CORRUPT')(e) && /none of its bytes were served/.test((e as Error).message));
    assert.equal(reports.length, 1);
    assert.equal(reports[0]!.hash, hash);
    assert.equal(reports[0]!.found, `bytes hashing to ${sha256Hex(bad)}`);
    assert.deepEqual(await readFile(reports[0]!.quarantinedAs!), bad, 'kept for inspection');
    assert.equal(await store.has(hash), false, 'no longer held: replication fetches it again');
    assert.equal(await store.put(hash, data), true);
    assert.deepEqual(await store.get(hash), data);
  });

  it('fails a read whose size disagrees with the manifest, keeping the sound chunk', async () => {
    const data = seededBytes(4, 700);
    const hash = sha256Hex(data);
    await store.put(hash, data);
    await assert.rejects(store.get(hash, 701), isCode('PXE_ERR_CHUNK_CORRUPT'));
    assert.equal(await store.has(hash), true);
  });

  it('lists what it holds and collects unreferenced chunks older than the grace period', async () => {
    const gcDir = await mkdtemp(join(tmpdir(), 'pxeha-chunks-gc-'));
    try {
      let now = 1_800_000_000_000;
      const s = await ChunkStore.open(gcDir, { nowMs: () => now });
      const blobs = [10, 11, 12, 13].map((seed) => seededBytes(seed, 1000 + seed));
      const hashes = blobs.map((b) => sha256Hex(b));
      for (let i = 0; i < blobs.length; i++) await s.put(hashes[i]!, blobs[i]!);
      const listed = [];
      for await (const c of s.list()) listed.push(c);
      assert.deepEqual(listed.map((c) => c.hash), [...hashes].sort());
      assert.deepEqual(listed.map((c) => c.size).sort(), [1010, 1011, 1012, 1013]);

      // An hour and a bit later: 0 and 1 are referenced, 2 was reused by a publish just now.
      now += 61 * 60 * 1000;
      await s.put(hashes[2]!, blobs[2]!);
      const result = await s.gc(new Set([hashes[0]!, hashes[1]!]));
      assert.deepEqual(result.deleted, [hashes[3]]);
      assert.equal(result.deletedBytes, 1013);
      assert.equal(result.spared, 1);
      assert.deepEqual(await Promise.all(hashes.map((h) => s.has(h))), [true, true, true, false]);
      assert.deepEqual((await s.gc(new Set(hashes), { graceMs: 0 })).deleted, []);
    } finally {
      await rm(gcDir, { recursive: true, force: true });
    }
  });

  it('removes temp files a crash left behind, at open', async () => {
    const stale = join(dir, 'chunks', 'tmp', `${'0'.repeat(64)}.dead`);
    await writeFile(stale, 'half a chunk');
    const old = new Date(nowMs - 2 * 60 * 60 * 1000);
    await utimes(stale, old, old);
    const fresh = join(dir, 'chunks', 'tmp', `${'1'.repeat(64)}.live`);
    await writeFile(fresh, 'being written');
    const fresher = new Date(nowMs);
    await utimes(fresh, fresher, fresher);
    await ChunkStore.open(dir, { nowMs: () => nowMs });
    await assert.rejects(stat(stale));
    await stat(fresh);
    await rm(fresh);
  });
});
