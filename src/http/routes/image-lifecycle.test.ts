/**
 * The image lifecycle API through app.inject() on an embedded store: upload (missing → PUT
 * chunk → record), channels (set, If-Match conflicts, rollback, promote), rm refused in use,
 * placement, gc, roles, body validation (unknown fields, JSON pointers) and the OpenAPI document.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, realpath, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { Auth } from '../../auth/auth.js';
import { createToken } from '../../auth/tokens.js';
import { writeClusterConfig } from '../../config/cluster-store.js';
import { parseClusterConfig } from '../../config/load.js';
import { sha256Hex } from '../../images/chunker.js';
import { ChunkStore } from '../../images/chunk-store.js';
import { buildManifest, manifestId, paginateManifest, type Manifest } from '../../images/manifest.js';
import { Inventory } from '../../inventory/inventory.js';
import { silentLogger } from '../../obs/log.js';
import { Metrics } from '../../obs/metrics.js';
import { openStore } from '../../store/open.js';
import type { Store } from '../../store/store.js';
import { FakeClock } from '../../util/clock.js';
import { buildHttpApp } from '../app.js';
import type { HttpContext } from '../context.js';

function image(text: string): { manifest: Manifest; id: string; chunk: Buffer; hash: string } {
  const chunk = Buffer.from(text.repeat(500));
  const hash = sha256Hex(chunk);
  const manifest = buildManifest([{ path: 'rootfs.img', size: chunk.length, chunks: [{ hash, size: chunk.length, offset: 0 }] }]);
  return { manifest, id: manifestId(manifest), chunk, hash };
}

describe('image lifecycle API', () => {
  let dir: string;
  let store: Store;
  let inventory: Inventory;
  let auth: Auth;
  let app: FastifyInstance;
  let chunks: ChunkStore;
  const clock = new FakeClock(1_000_000);
  const tokens: Record<string, string> = {};
  const v1 = image('version one ');
  const v2 = image('version two ');

  before(async () => {
    dir = await realpath(await mkdtemp(join(tmpdir(), 'pxeha-image-api-')));
    await mkdir(join(dir, 'artifacts'));
    store = await openStore({ kind: 'embedded', path: join(dir, 'store.db') });
    const cluster = parseClusterConfig({});
    await writeClusterConfig(store, cluster);
    inventory = await Inventory.open(store, (err) => assert.fail(err));
    for (const role of ['viewer', 'operator', 'admin'] as const)
      tokens[role] = (await createToken(store, { role, name: `t-${role}` })).token;
    auth = await Auth.open(store, { onError: (err) => assert.fail(err) });
    chunks = await ChunkStore.open(dir, { nowMs: () => clock.now() });
    const ctx = {
      nodeName: 'lab1',
      advertiseAddress: '10.99.0.1',
      httpPort: 8080,
      artifactsRoot: join(dir, 'artifacts'),
      store,
      inventory,
      cluster: () => cluster,
      metrics: new Metrics(),
      log: silentLogger(),
      clock,
      auth,
      chunks,
    } as HttpContext;
    app = await buildHttpApp(ctx, { listener: 'tcp' });
  });
  after(async () => {
    await app.close();
    await auth.close();
    await inventory.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  const call = (
    method: 'GET' | 'POST' | 'PUT' | 'DELETE',
    url: string,
    body?: unknown,
    options: { role?: string; headers?: Record<string, string> } = {},
  ) =>
    app.inject({
      method,
      url,
      headers: { authorization: `Bearer ${tokens[options.role ?? 'operator']}`, ...options.headers },
      ...(body === undefined
        ? {}
        : Buffer.isBuffer(body)
          ? {
              payload: body,
              headers: {
                authorization: `Bearer ${tokens[options.role ?? 'operator']}`,
                'content-type': 'application/octet-stream',
                ...options.headers,
              },
            }
          : { payload: body as object }),
    });
  const json = <T>(res: { body: string }): T => JSON.parse(res.body) as T;

  it('uploads: asks what is missing, takes verified chunks only, records a manifest only when every chunk is here', async () => {
    const missing = await call('POST', '/api/v1/chunks/missing', { hashes: [v1.hash, v2.hash, v1.hash] });
    assert.equal(missing.statusCode, 200, missing.body);
    assert.deepEqual(json<{ missing: string[] }>(missing).missing.sort(), [v1.hash, v2.hash].sort());
    // Recording before the chunks are here: refused, nothing recorded.
    const early = await call('POST', '/api/v1/images/rocky/versions', { manifest: v1.manifest });
    assert.equal(early.statusCode, 409, early.body);
    assert.match(json<{ message: string }>(early).message, /lacks 1 chunk/);
    // Bytes that are not the chunk: 400, not stored.
    const bad = await call('PUT', `/api/v1/chunks/${v1.hash}`, Buffer.from('other bytes'));
    assert.equal(bad.statusCode, 400, bad.body);
    assert.equal(await chunks.has(v1.hash), false);
    // A viewer may not upload.
    assert.equal((await call('PUT', `/api/v1/chunks/${v1.hash}`, v1.chunk, { role: 'viewer' })).statusCode, 403);
    const put = await call('PUT', `/api/v1/chunks/${v1.hash}`, v1.chunk);
    assert.equal(put.statusCode, 200, put.body);
    assert.deepEqual(json(put), { created: true, bytes: v1.chunk.length });
    assert.deepEqual(
      json<{ created: boolean }>(await call('PUT', `/api/v1/chunks/${v1.hash}`, v1.chunk)).created,
      false,
      'again: already held',
    );
    assert.deepEqual(json<{ missing: string[] }>(await call('POST', '/api/v1/chunks/missing', { hashes: [v1.hash, v2.hash] })).missing, [
      v2.hash,
    ]);
    const rec = await call('POST', '/api/v1/images/rocky/versions', { manifest: v1.manifest, channel: 'test' });
    assert.equal(rec.statusCode, 200, rec.body);
    const body = json<{ id: string; created: boolean; channel: { channel: string; version: string } }>(rec);
    assert.equal(body.id, v1.id);
    assert.equal(body.created, true);
    assert.deepEqual([body.channel.channel, body.channel.version], ['test', v1.id]);
  });

  it('records by manifest pages uploaded like chunks (what push sends), proving they are the version', async () => {
    const v = image('recorded by its pages ');
    await call('PUT', `/api/v1/chunks/${v.hash}`, v.chunk);
    const { id, ref, pages } = paginateManifest(v.manifest);
    const byRef = { manifestRef: { id, ...ref } };
    const early = await call('POST', '/api/v1/images/paged/versions', byRef);
    assert.equal(early.statusCode, 409, early.body);
    assert.match(json<{ message: string }>(early).message, /lacks 1 manifest page/);
    assert.equal((await call('PUT', `/api/v1/chunks/${ref.pages[0]}`, pages[0]!)).statusCode, 200);
    // Pages that are not the version the request names: refused.
    const other = image('some other version ');
    const lying = await call('POST', '/api/v1/images/paged/versions', { manifestRef: { id: other.id, ...ref } });
    assert.equal(lying.statusCode, 400, lying.body);
    assert.match(json<{ message: string }>(lying).message, /not the version/);
    const both = await call('POST', '/api/v1/images/paged/versions', { ...byRef, manifest: v.manifest });
    assert.equal(both.statusCode, 400, both.body);
    const rec = await call('POST', '/api/v1/images/paged/versions', byRef);
    assert.equal(rec.statusCode, 200, rec.body);
    assert.deepEqual(json(rec), { id: v.id, created: true });
    assert.equal(json<{ versions: { chunks: number }[] }>(await call('GET', '/api/v1/images/paged', undefined, { role: 'viewer' })).versions[0]!.chunks, 1);
  });

  it('refuses unknown and bad fields with their JSON pointer', async () => {
    const unknown = await call('POST', `/api/v1/images/rocky/channels/test`, { version: v1.id, force: true });
    assert.equal(unknown.statusCode, 400);
    const e = json<{ code: string; issues: { path: string; message: string }[] }>(unknown);
    assert.equal(e.code, 'PXE_ERR_CONFIG_INVALID');
    assert.ok(
      e.issues.some((i) => /force/.test(i.path + i.message)),
      unknown.body,
    );
    const badPlacement = await call('PUT', '/api/v1/images/rocky/placement', { replicas: 0 });
    assert.equal(badPlacement.statusCode, 400);
    assert.ok(
      json<{ issues: { path: string }[] }>(badPlacement).issues.some((i) => i.path === '/replicas'),
      badPlacement.body,
    );
    const badManifest = await call('POST', '/api/v1/images/rocky/versions', {
      manifest: { format: 1, files: [{ path: 'x', size: -1, chunks: [] }] },
    });
    assert.equal(badManifest.statusCode, 400);
    assert.ok(
      json<{ issues: { path: string }[] }>(badManifest).issues.some((i) => i.path.startsWith('/manifest/files/0')),
      badManifest.body,
    );
    assert.equal((await call('POST', '/api/v1/images/Bad_Name/channels/test', { version: v1.id })).statusCode, 400);
  });

  it('points channels with compare-and-set (baseRevision or If-Match), rolls back and promotes', async () => {
    await call('PUT', `/api/v1/chunks/${v2.hash}`, v2.chunk);
    assert.equal((await call('POST', '/api/v1/images/rocky/versions', { manifest: v2.manifest })).statusCode, 200);
    const show = json<{ channels: { channel: string; modRevision: number }[] }>(
      await call('GET', '/api/v1/images/rocky', undefined, { role: 'viewer' }),
    );
    const test = show.channels.find((c) => c.channel === 'test')!;
    // Stale If-Match: 409, nothing changes.
    const stale = await call(
      'POST',
      '/api/v1/images/rocky/channels/test',
      { version: v2.id },
      { headers: { 'if-match': `"${test.modRevision - 1}"` } },
    );
    assert.equal(stale.statusCode, 409, stale.body);
    assert.equal(json<{ code: string }>(stale).code, 'PXE_ERR_CONFLICT');
    assert.equal((await call('POST', '/api/v1/images/rocky/channels/test', { version: v2.id }, { role: 'viewer' })).statusCode, 403);
    const set = await call(
      'POST',
      '/api/v1/images/rocky/channels/test',
      { version: v2.id },
      { headers: { 'if-match': `"${test.modRevision}"` } },
    );
    assert.equal(set.statusCode, 200, set.body);
    assert.deepEqual(json<{ version: string; history: string[] }>(set).history, [v1.id]);
    // A version not recorded: 404.
    assert.equal((await call('POST', '/api/v1/images/rocky/channels/test', { version: 'f'.repeat(64) })).statusCode, 404);

    // Stages: production follows test.
    const promoted = await call('POST', '/api/v1/images/rocky/promote', { from: 'test', to: 'production', baseRevision: 0 });
    assert.equal(promoted.statusCode, 200, promoted.body);
    assert.equal(json<{ version: string }>(promoted).version, v2.id);
    const again = await call('POST', '/api/v1/images/rocky/promote', { from: 'test', to: 'production', baseRevision: 0 });
    assert.equal(again.statusCode, 409, 'production exists now: a promotion based on its absence is refused');

    const back = await call('POST', '/api/v1/images/rocky/channels/test/rollback', {});
    assert.equal(back.statusCode, 200, back.body);
    assert.equal(json<{ version: string; change: string }>(back).version, v1.id);
    const none = await call('POST', '/api/v1/images/rocky/channels/test/rollback', {});
    assert.equal(none.statusCode, 404, 'no previous version left');
  });

  it('refuses to remove a version in use, naming the channels; removes one that is not', async () => {
    const inUse = await call('DELETE', `/api/v1/images/rocky/versions/${v2.id}`);
    assert.equal(inUse.statusCode, 409);
    assert.match(json<{ message: string }>(inUse).message, /production/);
    // v1: test serves it. Move test to v2, drop its history by rolling back is not possible, so use a fresh image.
    const v3 = image('version three ');
    await call('PUT', `/api/v1/chunks/${v3.hash}`, v3.chunk);
    await call('POST', '/api/v1/images/rocky/versions', { manifest: v3.manifest });
    const removed = await call('DELETE', `/api/v1/images/rocky/versions/${v3.id}`);
    assert.equal(removed.statusCode, 200, removed.body);
    assert.equal((await call('DELETE', `/api/v1/images/rocky/versions/${v3.id}`)).statusCode, 404);
  });

  it('shows an image: versions, files, sizes, channels, placement', async () => {
    assert.equal((await call('PUT', '/api/v1/images/rocky/placement', { replicas: 2, labels: { site: 'a' } })).statusCode, 200);
    const res = await call('GET', '/api/v1/images/rocky', undefined, { role: 'viewer' });
    assert.equal(res.statusCode, 200, res.body);
    const show = json<{
      versions: { id: string; bytes: number; files: { path: string; size: number }[]; channels: string[] }[];
      channels: { channel: string; version: string }[];
      placement: { replicas: number; labels: Record<string, string> };
    }>(res);
    assert.deepEqual(
      show.versions.map((v) => v.id),
      [v1.id, v2.id],
    );
    assert.deepEqual(show.versions[1]!.files, [{ path: 'rootfs.img', size: v2.chunk.length, chunks: 1 }]);
    assert.deepEqual(show.versions[1]!.channels, ['production']);
    assert.deepEqual(
      show.channels.map((c) => c.channel),
      ['production', 'test'],
    );
    assert.deepEqual([show.placement.replicas, show.placement.labels], [2, { site: 'a' }]);
    assert.equal((await call('GET', '/api/v1/images/nothing', undefined, { role: 'viewer' })).statusCode, 404);
    assert.deepEqual(json(await call('DELETE', '/api/v1/images/rocky/placement')), { deleted: true });
  });

  it('collects unreferenced chunks after the grace period, never referenced ones', async () => {
    const stray = Buffer.from('an upload whose version was never recorded');
    await chunks.put(sha256Hex(stray), stray);
    const young = json<{ deletedChunks: number; spared: number }>(await call('POST', '/api/v1/images/gc', {}));
    assert.deepEqual([young.deletedChunks, young.spared], [0, 3], 'the stray chunk, v3 (removed) and its manifest page are within the grace period');
    clock.advance(2 * 3600_000);
    const res = await call('POST', '/api/v1/images/gc', { graceSeconds: 3600 });
    assert.equal(res.statusCode, 200, res.body);
    const gc = json<{ deletedChunks: number; deletedBytes: number }>(res);
    assert.equal(gc.deletedChunks, 3);
    assert.ok((await chunks.has(v1.hash)) && (await chunks.has(v2.hash)), 'referenced chunks stay');
    for (const v of [v1, v2]) assert.ok(await chunks.has(v.id), 'manifest pages of recorded versions stay (one page: its hash is the version id)');
    assert.equal((await call('POST', '/api/v1/images/gc', {}, { role: 'viewer' })).statusCode, 403);
    const noBody = await call('POST', '/api/v1/images/gc');
    assert.equal(noBody.statusCode, 200, `a POST without a body takes the defaults: ${noBody.body}`);
  });

  it('documents every route in the OpenAPI document', async () => {
    const doc = json<{ paths: Record<string, Record<string, unknown>> }>(
      await call('GET', '/api/openapi.json', undefined, { role: 'viewer' }),
    );
    const expected: [string, string][] = [
      ['/api/v1/images/{name}', 'get'],
      ['/api/v1/images/{name}/versions', 'post'],
      ['/api/v1/images/{name}/versions/{id}', 'delete'],
      ['/api/v1/images/{name}/channels/{channel}', 'post'],
      ['/api/v1/images/{name}/channels/{channel}/rollback', 'post'],
      ['/api/v1/images/{name}/promote', 'post'],
      ['/api/v1/images/{name}/placement', 'put'],
      ['/api/v1/images/gc', 'post'],
      ['/api/v1/chunks/missing', 'post'],
      ['/api/v1/chunks/{hash}', 'put'],
    ];
    for (const [path, method] of expected) assert.ok(doc.paths[path]?.[method], `${method.toUpperCase()} ${path}`);
  });
});
