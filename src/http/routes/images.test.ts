/**
 * The node-to-node chunk endpoint through app.inject(): who passes (a node bearer derived from
 * the cluster secret, an admin token), who does not (no credential, a forged or foreign node
 * bearer, viewer and operator tokens), a node bearer on any other route, verified bytes only,
 * and the replication matrix route.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { Auth } from '../../auth/auth.js';
import { nodeToken } from '../../auth/node-token.js';
import { createToken } from '../../auth/tokens.js';
import { writeClusterConfig } from '../../config/cluster-store.js';
import { parseClusterConfig } from '../../config/load.js';
import { sha256Hex } from '../../images/chunker.js';
import { ChunkStore } from '../../images/chunk-store.js';
import { Inventory } from '../../inventory/inventory.js';
import { silentLogger } from '../../obs/log.js';
import { Metrics } from '../../obs/metrics.js';
import { openStore } from '../../store/open.js';
import type { Store } from '../../store/store.js';
import { FakeClock } from '../../util/clock.js';
import { buildHttpApp } from '../app.js';
import type { HttpContext } from '../context.js';

describe('GET /api/v1/chunks/:hash (node-to-node)', () => {
  let dir: string;
  let store: Store;
  let inventory: Inventory;
  let auth: Auth;
  let app: FastifyInstance;
  let tlsPlain: FastifyInstance;
  let chunks: ChunkStore;
  const tokens: Record<string, string> = {};
  const data = Buffer.from('a chunk of a boot image\n'.repeat(1000));
  const hash = sha256Hex(data);

  before(async () => {
    dir = await realpath(await mkdtemp(join(tmpdir(), 'pxeha-chunk-route-')));
    await mkdir(join(dir, 'artifacts'));
    store = await openStore({ kind: 'embedded', path: join(dir, 'store.db') });
    const cluster = parseClusterConfig({});
    await writeClusterConfig(store, cluster);
    inventory = await Inventory.open(store, (err) => assert.fail(err));
    for (const role of ['viewer', 'operator', 'admin'] as const) tokens[role] = (await createToken(store, { role, name: `t-${role}` })).token;
    auth = await Auth.open(store, { onError: (err) => assert.fail(err) });
    chunks = await ChunkStore.open(dir);
    await chunks.put(hash, data);
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
      clock: new FakeClock(0),
      auth,
      chunks,
      images: () => ({ observer: 'lab1', nodes: ['lab1'], versions: [] }),
    } as HttpContext;
    app = await buildHttpApp(ctx, { listener: 'tcp' });
    tlsPlain = await buildHttpApp(ctx, { listener: 'tcp', httpsPort: 8443 });
  });
  after(async () => {
    await app.close();
    await tlsPlain.close();
    await auth.close();
    await inventory.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  const get = (url: string, bearer?: string, on = app) => on.inject({ method: 'GET', url, headers: bearer ? { authorization: `Bearer ${bearer}` } : {} });

  it('serves a held chunk, verified, to a node bearer and to admin only', async () => {
    const node2 = await auth.nodeToken('node2');
    for (const bearer of [node2, tokens.admin!]) {
      const res = await get(`/api/v1/chunks/${hash}`, bearer);
      assert.equal(res.statusCode, 200, res.body);
      assert.equal(res.headers['content-type'], 'application/octet-stream');
      assert.ok(res.rawPayload.equals(data));
    }
    assert.equal((await get(`/api/v1/chunks/${hash}`)).statusCode, 401);
    assert.equal((await get(`/api/v1/chunks/${hash}`, tokens.viewer)).statusCode, 403);
    assert.equal((await get(`/api/v1/chunks/${hash}`, tokens.operator)).statusCode, 403);
    // Forged: right shape, wrong key; and a real bearer edited to claim another node.
    assert.equal((await get(`/api/v1/chunks/${hash}`, nodeToken(Buffer.alloc(32, 1), 'node2'))).statusCode, 401);
    assert.equal((await get(`/api/v1/chunks/${hash}`, node2.replace('node2', 'node3'))).statusCode, 401);
    // Still served on the plain port when the API moved to HTTPS (peers use the plain port).
    assert.equal((await get(`/api/v1/chunks/${hash}`, node2, tlsPlain)).statusCode, 200);
  });

  it('a node bearer opens nothing else', async () => {
    const node2 = await auth.nodeToken('node2');
    for (const url of ['/api/v1/status', '/api/v1/tokens', '/api/v1/images', '/api/v1/config/cluster']) {
      assert.equal((await get(url, node2)).statusCode, 403, url);
    }
    assert.equal((await get('/api/v1/images', tokens.viewer)).statusCode, 200);
  });

  it('POST /api/v1/chunks/batch: the asked chunks back to back, verified, NOT_SENT for one not held or corrupt; node role only', async () => {
    const node2 = await auth.nodeToken('node2');
    const other = Buffer.from('another chunk\n'.repeat(500));
    const otherHash = sha256Hex(other);
    await chunks.put(otherHash, other);
    const absent = '0'.repeat(64);
    const post = (hashes: unknown, bearer?: string) =>
      app.inject({ method: 'POST', url: '/api/v1/chunks/batch', payload: { hashes }, headers: bearer ? { authorization: `Bearer ${bearer}` } : {} });
    const res = await post([otherHash, absent, hash], node2);
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(res.headers['content-type'], 'application/octet-stream');
    const word = (n: number): Buffer => {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(n >>> 0);
      return b;
    };
    assert.ok(res.rawPayload.equals(Buffer.concat([word(other.length), other, word(0xffffffff), word(data.length), data])));
    assert.equal((await post([hash])).statusCode, 401);
    assert.equal((await post([hash], tokens.viewer)).statusCode, 403);
    assert.equal((await post(['../etc'], node2)).statusCode, 400);
    assert.equal((await post([], node2)).statusCode, 400);
    assert.equal((await post(Array.from({ length: 65 }, () => hash), node2)).statusCode, 400);
    // A corrupt chunk: quarantined, never sent; the others still are.
    await writeFile(chunks.pathOf(otherHash), Buffer.from('flipped bits'));
    const bad = await post([otherHash, hash], node2);
    assert.equal(bad.statusCode, 200);
    assert.ok(bad.rawPayload.equals(Buffer.concat([word(0xffffffff), word(data.length), data])));
    assert.equal(await chunks.has(otherHash), false, 'quarantined');
  });

  it('answers 404 for a chunk not held, 400 for a bad hash, and never sends bytes of a corrupt chunk', async () => {
    const node2 = await auth.nodeToken('node2');
    assert.equal((await get(`/api/v1/chunks/${'0'.repeat(64)}`, node2)).statusCode, 404);
    assert.equal((await get('/api/v1/chunks/..%2f..%2fetc', node2)).statusCode, 400);
    await writeFile(chunks.pathOf(hash), Buffer.from('flipped bits'));
    const res = await get(`/api/v1/chunks/${hash}`, node2);
    assert.equal(res.statusCode, 500);
    assert.equal(JSON.parse(res.body).code, 'PXE_ERR_CHUNK_CORRUPT');
    assert.equal(await chunks.has(hash), false, 'quarantined');
  });
});
