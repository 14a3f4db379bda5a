/**
 * Pinned image files over HTTP (/images/<name>/<version>/<path>), served from the chunk store:
 * whole, ranges (one chunk, several chunks, open-ended, suffix, unsatisfiable), HEAD, ETag, a
 * version not held, and a corrupt chunk that is never served (first chunk: a clean 500; a later
 * one: the response is cut short), on a real loopback socket where framing matters.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, realpath, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { Auth } from '../../auth/auth.js';
import { writeClusterConfig } from '../../config/cluster-store.js';
import { parseClusterConfig } from '../../config/load.js';
import { sha256Hex } from '../../images/chunker.js';
import { ChunkStore } from '../../images/chunk-store.js';
import { buildManifest, manifestId, type ChunkRef, type Manifest, type ManifestFile } from '../../images/manifest.js';
import { seededBytes } from '../../images/test-support.js';
import { Inventory } from '../../inventory/inventory.js';
import { silentLogger } from '../../obs/log.js';
import { Metrics } from '../../obs/metrics.js';
import { openStore } from '../../store/open.js';
import type { Store } from '../../store/store.js';
import { FakeClock } from '../../util/clock.js';
import { buildHttpApp } from '../app.js';
import type { HttpContext } from '../context.js';
import { parseByteRange } from './image-files.js';

const CHUNK = 1000;

/** Stores `data` as chunks of CHUNK bytes (the last shorter) and returns its manifest entry. */
async function storeFile(chunks: ChunkStore, path: string, data: Buffer): Promise<ManifestFile> {
  const refs: ChunkRef[] = [];
  for (let offset = 0; offset < data.length; offset += CHUNK) {
    const bytes = data.subarray(offset, Math.min(data.length, offset + CHUNK));
    const hash = sha256Hex(bytes);
    await chunks.put(hash, bytes);
    refs.push({ hash, size: bytes.length, offset });
  }
  return { path, size: data.length, chunks: refs };
}

describe('parseByteRange', () => {
  it('reads a-b, a-, -n; ignores what it may ignore; refuses what is past the end', () => {
    assert.deepEqual(parseByteRange(undefined, 10), { kind: 'whole' });
    assert.deepEqual(parseByteRange('bytes=2-5', 10), { kind: 'range', start: 2, end: 5 });
    assert.deepEqual(parseByteRange('bytes=2-50', 10), { kind: 'range', start: 2, end: 9 });
    assert.deepEqual(parseByteRange('bytes=7-', 10), { kind: 'range', start: 7, end: 9 });
    assert.deepEqual(parseByteRange('bytes=-3', 10), { kind: 'range', start: 7, end: 9 });
    assert.deepEqual(parseByteRange('bytes=-30', 10), { kind: 'range', start: 0, end: 9 });
    assert.deepEqual(parseByteRange('bytes=10-', 10), { kind: 'unsatisfiable' });
    assert.deepEqual(parseByteRange('bytes=-0', 10), { kind: 'unsatisfiable' });
    assert.deepEqual(parseByteRange('bytes=0-0', 0), { kind: 'unsatisfiable' });
    for (const ignored of ['bytes=0-1,4-5', 'items=0-1', 'bytes=5-2', 'bytes=-', 'nonsense'])
      assert.deepEqual(parseByteRange(ignored, 10), { kind: 'whole' });
  });
});

describe('GET/HEAD /images/<name>/<version>/<path>', () => {
  let dir: string;
  let store: Store;
  let inventory: Inventory;
  let auth: Auth;
  let app: FastifyInstance;
  let local: FastifyInstance;
  let chunks: ChunkStore;
  let manifest: Manifest;
  let version: string;
  const held = new Set<string>();
  const kernel = seededBytes(11, 5 * CHUNK + 321);
  const corruptible = seededBytes(12, 4 * CHUNK);
  const reads: string[] = [];

  before(async () => {
    dir = await realpath(await mkdtemp(join(tmpdir(), 'pxeha-image-files-')));
    await mkdir(join(dir, 'artifacts'));
    store = await openStore({ kind: 'embedded', path: join(dir, 'store.db') });
    const cluster = parseClusterConfig({});
    await writeClusterConfig(store, cluster);
    inventory = await Inventory.open(store, (err) => assert.fail(err));
    auth = await Auth.open(store, { onError: (err) => assert.fail(err) });
    chunks = await ChunkStore.open(dir);
    manifest = buildManifest([
      await storeFile(chunks, 'boot/vmlinuz', kernel),
      await storeFile(chunks, 'bad.img', corruptible),
      { path: 'empty', size: 0, chunks: [] },
    ]);
    version = manifestId(manifest);
    held.add(version);
    // Every chunk read goes through here: the test sees which chunks a range touched.
    const get = chunks.get.bind(chunks);
    chunks.get = async (hash, size) => {
      reads.push(hash);
      return get(hash, size);
    };
    const ctx = {
      nodeName: 'lab1',
      advertiseAddress: '127.0.0.1',
      httpPort: 0,
      artifactsRoot: join(dir, 'artifacts'),
      store,
      inventory,
      cluster: () => cluster,
      metrics: new Metrics(),
      log: silentLogger(),
      clock: new FakeClock(0),
      auth,
      chunks,
      imageFiles: { held: () => held, manifestOf: (name, id) => (name === 'demo' && id === version ? manifest : undefined), chunks },
      resolveImage: (ref: string) => (ref === 'demo@stable' ? { name: 'demo', version, channel: 'stable' } : undefined),
    } as HttpContext;
    app = await buildHttpApp(ctx, { listener: 'tcp' });
    local = await buildHttpApp(ctx, { listener: 'local' });
    await app.listen({ host: '127.0.0.1', port: 0 });
  });
  after(async () => {
    await app?.close();
    await local?.close();
    await auth?.close();
    await inventory?.close();
    await store?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const url = (path: string): string => `/images/demo/${version}/${path}`;

  it('serves the whole file with a strong ETag, and 304 for it', async () => {
    const res = await app.inject(url('boot/vmlinuz'));
    assert.equal(res.statusCode, 200);
    assert.ok(res.rawPayload.equals(kernel));
    assert.equal(res.headers['content-length'], String(kernel.length));
    assert.equal(res.headers['accept-ranges'], 'bytes');
    assert.equal(res.headers.etag, `"${version}/boot%2Fvmlinuz"`);
    assert.equal(
      (await app.inject({ url: url('boot/vmlinuz'), headers: { 'if-none-match': res.headers.etag as string } })).statusCode,
      304,
    );
    const empty = await app.inject(url('empty'));
    assert.equal(empty.statusCode, 200);
    assert.equal(empty.rawPayload.length, 0);
  });

  it('serves a range across several chunks, reading only the chunks it overlaps', async () => {
    reads.length = 0;
    const res = await app.inject({ url: url('boot/vmlinuz'), headers: { range: 'bytes=1500-3499' } });
    assert.equal(res.statusCode, 206);
    assert.equal(res.headers['content-range'], `bytes 1500-3499/${kernel.length}`);
    assert.ok(res.rawPayload.equals(kernel.subarray(1500, 3500)));
    const file = manifest.files.find((f) => f.path === 'boot/vmlinuz')!;
    assert.deepEqual(reads, [file.chunks[1]!.hash, file.chunks[2]!.hash, file.chunks[3]!.hash]);

    const tail = await app.inject({ url: url('boot/vmlinuz'), headers: { range: 'bytes=-100' } });
    assert.equal(tail.statusCode, 206);
    assert.ok(tail.rawPayload.equals(kernel.subarray(kernel.length - 100)));
    const open = await app.inject({ url: url('boot/vmlinuz'), headers: { range: 'bytes=4999-' } });
    assert.ok(open.rawPayload.equals(kernel.subarray(4999)));
    const past = await app.inject({ url: url('boot/vmlinuz'), headers: { range: `bytes=${kernel.length}-` } });
    assert.equal(past.statusCode, 416);
    assert.equal(past.headers['content-range'], `bytes */${kernel.length}`);
    // If-Range with another validator: the whole file (RFC 9110 §13.1.5).
    const stale = await app.inject({ url: url('boot/vmlinuz'), headers: { range: 'bytes=0-9', 'if-range': '"other"' } });
    assert.equal(stale.statusCode, 200);
  });

  it('HEAD gives the headers and reads no chunk', async () => {
    reads.length = 0;
    const res = await app.inject({ method: 'HEAD', url: url('boot/vmlinuz'), headers: { range: 'bytes=0-99' } });
    assert.equal(res.statusCode, 206);
    assert.equal(res.headers['content-length'], '100');
    assert.equal(res.rawPayload.length, 0);
    assert.deepEqual(reads, []);
  });

  it('refuses channels in paths, unknown files and versions, and versions not held whole', async () => {
    const channel = await app.inject(`/images/demo/stable/boot/vmlinuz`);
    assert.equal(channel.statusCode, 403);
    assert.equal(channel.json().code, 'PXE_ERR_PATH_REFUSED');
    assert.equal((await app.inject(url('boot/nope'))).json().code, 'PXE_ERR_NOT_FOUND');
    assert.equal((await app.inject(`/images/demo/${'f'.repeat(64)}/boot/vmlinuz`)).statusCode, 404);
    assert.equal((await app.inject(`/images/demo/${version}/%2e%2e/boot/vmlinuz`)).statusCode, 403);
    held.delete(version);
    try {
      const res = await app.inject(url('boot/vmlinuz'));
      assert.equal(res.statusCode, 503);
      assert.equal(res.json().code, 'PXE_ERR_IMAGE_NOT_HELD');
    } finally {
      held.add(version);
    }
  });

  it('never serves a corrupt chunk: 500 when it is the first, a cut-short response later; quarantined either way', async () => {
    const file = manifest.files.find((f) => f.path === 'bad.img')!;
    const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    // Corrupt chunk 2 (bytes 2000–2999) on disk: one bit flipped.
    const victim = file.chunks[2]!;
    const bad = Buffer.from(corruptible.subarray(victim.offset, victim.offset + victim.size));
    bad[10]! ^= 1;
    await writeFile(chunks.pathOf(victim.hash), bad);

    // A range starting in the bad chunk: refused before the status line, no byte of it sent.
    const first = await fetch(`${base}${url('bad.img')}`, { headers: { range: 'bytes=2500-2599' } });
    assert.equal(first.status, 500);
    const body = (await first.json()) as { code: string };
    assert.equal(body.code, 'PXE_ERR_CHUNK_CORRUPT');
    assert.deepEqual((await readdir(join(dir, 'chunks', 'corrupt'))).filter((n) => n.startsWith(victim.hash)).length, 1);

    // Put the bad bytes back, then fetch from the start: chunks 0 and 1 go out, then the
    // response is cut short; what arrived is a prefix of the good bytes, never the bad ones.
    await writeFile(chunks.pathOf(victim.hash), bad);
    const whole = await fetch(`${base}${url('bad.img')}`);
    assert.equal(whole.status, 200);
    const got: Buffer[] = [];
    await assert.rejects(async () => {
      for await (const part of whole.body!) got.push(Buffer.from(part));
    });
    const received = Buffer.concat(got);
    assert.ok(received.length <= victim.offset, `received ${received.length} bytes, the bad chunk starts at ${victim.offset}`);
    assert.ok(received.equals(corruptible.subarray(0, received.length)));
    // Quarantined: a request for it now finds it missing (replication fetches it again).
    const gone = await app.inject({ url: url('bad.img'), headers: { range: 'bytes=2000-2001' } });
    assert.equal(gone.statusCode, 503);
    assert.equal(gone.json().code, 'PXE_ERR_IMAGE_NOT_HELD');
  });

  it('the boot script of an image-backed profile pins the version its channel names; says why when it cannot', async () => {
    const put = (url: string, payload: unknown) => local.inject({ method: 'PUT', url, payload: payload as object });
    const live = { name: 'live', image: 'demo@stable', boot: { kind: 'kernel', kernel: 'boot/vmlinuz', args: 'console=ttyS0' } };
    assert.equal((await put('/api/v1/profiles/live', live)).statusCode, 200);
    assert.equal((await put('/api/v1/machines/m1', { name: 'm1', mac: '52:54:00:00:07:01', profile: 'live' })).statusCode, 200);
    const bad = await put('/api/v1/profiles/bad', { ...live, name: 'bad', image: 'demo' });
    assert.equal(bad.statusCode, 400);
    assert.match(bad.body, /\/image/);
    const script = (await app.inject('/boot.ipxe?mac=52:54:00:00:07:01')).body;
    assert.match(script, new RegExp(`^# image demo@stable = version ${version}$`, 'm'));
    assert.ok(script.split('\n').includes(`kernel http://127.0.0.1:0/images/demo/${version}/boot/vmlinuz console=ttyS0`), script);
    held.delete(version);
    try {
      assert.match(
        (await app.inject('/boot.ipxe?mac=52:54:00:00:07:01')).body,
        /this node does not hold version [0-9a-f]{12} of image demo whole yet; trying the next boot device\nexit/,
      );
    } finally {
      held.add(version);
    }
    assert.equal((await put('/api/v1/profiles/live', { ...live, image: 'demo@beta' })).statusCode, 200);
    assert.match((await app.inject('/boot.ipxe?mac=52:54:00:00:07:01')).body, /image demo@beta is not known/);
  });
});
