/**
 * The artifacts fast path (src/http/artifact-fast-path.ts) on a real listening server, where it
 * runs (app.inject() goes straight to Fastify): the same bytes, headers and metrics as the
 * route, a changed or replaced file answered fresh, hostile paths still refused and counted,
 * Range and conditional requests still answered by the route; and the fast path alone.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, realpath, rename, rm, symlink, unlink, utimes, writeFile } from 'node:fs/promises';
import { request, type IncomingHttpHeaders } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { writeClusterConfig } from '../config/cluster-store.js';
import { parseClusterConfig } from '../config/load.js';
import { Inventory } from '../inventory/inventory.js';
import { silentLogger } from '../obs/log.js';
import { Metrics } from '../obs/metrics.js';
import { openStore } from '../store/open.js';
import type { Store } from '../store/store.js';
import { FakeClock } from '../util/clock.js';
import { buildHttpApp } from './app.js';
import { ArtifactFastPath } from './artifact-fast-path.js';
import { SmallFileCache } from './small-file-cache.js';

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** One request with the path sent exactly as given (no normalisation, unlike fetch). */
function get(port: number, path: string, options: { method?: string; headers?: Record<string, string> } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: options.method ?? 'GET', headers: options.headers ?? {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** Headers that differ between any two responses of the same file. */
const PER_RESPONSE = new Set(['date', 'connection', 'keep-alive']);
const stable = (headers: IncomingHttpHeaders): Record<string, unknown> => Object.fromEntries(Object.entries(headers).filter(([k]) => !PER_RESPONSE.has(k)));

describe('artifacts fast path', () => {
  let dir: string;
  let root: string;
  let store: Store;
  let inventory: Inventory;
  let app: FastifyInstance;
  let metrics: Metrics;
  let port: number;
  const fetched: string[] = [];
  /** URLs that reached Fastify (and so not the fast path). */
  const viaFastify: string[] = [];
  /** A request over the socket, and whether the fast path answered it. */
  const fetch = async (path: string, options: Parameters<typeof get>[2] = {}): Promise<Answer & { fast: boolean }> => {
    const before = viaFastify.length;
    const answer = await get(port, path, options);
    return { ...answer, fast: viaFastify.length === before };
  };

  before(async () => {
    dir = await realpath(await mkdtemp(join(tmpdir(), 'pxeha-fast-')));
    root = join(dir, 'artifacts');
    await mkdir(join(root, 'menus', 'v1'), { recursive: true });
    await mkdir(join(root, 'menus', 'v2'), { recursive: true });
    await writeFile(join(root, 'menu.ipxe'), '#!ipxe\necho one\n');
    await writeFile(join(root, 'menus', 'v1', 'boot.ipxe'), '#!ipxe\necho v1\n');
    await writeFile(join(root, 'menus', 'v2', 'boot.ipxe'), '#!ipxe\necho v2\n');
    await symlink('v1', join(root, 'menus', 'current'));
    await writeFile(join(dir, 'secret'), 'secret');
    await symlink(join(dir, 'secret'), join(root, 'escape'));
    store = await openStore({ kind: 'embedded', path: join(dir, 'store.db') });
    await writeClusterConfig(store, parseClusterConfig({ boot: { defaultProfile: 'discovery' } }));
    inventory = await Inventory.open(store, (err) => assert.fail(err));
    metrics = new Metrics();
    app = await buildHttpApp(
      {
        nodeName: 'lab1',
        advertiseAddress: '127.0.0.1',
        httpPort: 0,
        artifactsRoot: root,
        store,
        inventory,
        cluster: () => parseClusterConfig({ boot: { defaultProfile: 'discovery' } }),
        metrics,
        log: silentLogger(),
        clock: new FakeClock(Date.UTC(2026, 10, 24, 12, 0, 0)),
        onArtifactFetched: (_ip, relative) => fetched.push(relative),
      },
      { listener: 'tcp' },
    );
    app.addHook('onRequest', (req, _reply, done) => {
      viaFastify.push(req.url);
      done();
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    port = (app.server.address() as AddressInfo).port;
  });
  after(async () => {
    await app.close();
    await inventory.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  const metric = async (name: string): Promise<string> => metrics.registry.getSingleMetricAsString(name);
  const servedCount = async (): Promise<number> => Number(/route="\/artifacts\/\*",status="200"} (\d+)/.exec(await metric('pxeha_http_requests_total'))?.[1] ?? 0);
  const artifactBytes = async (): Promise<number> => Number(/pxeha_http_artifact_bytes_total (\d+)/.exec(await metric('pxeha_http_artifact_bytes_total'))?.[1] ?? 0);

  it('answers a cached file with the bytes, headers and metrics of the route', async () => {
    const viaRoute = await app.inject('/artifacts/menu.ipxe'); // fills the cache
    const [served0, bytes0, fetched0] = [await servedCount(), await artifactBytes(), fetched.length];
    const fast = await fetch('/artifacts/menu.ipxe');
    assert.ok(fast.fast);
    const again = await app.inject('/artifacts/menu.ipxe'); // a cache hit through Fastify
    assert.equal(fast.status, 200);
    assert.equal(fast.body.toString(), '#!ipxe\necho one\n');
    assert.deepEqual(stable(fast.headers), stable(again.headers as IncomingHttpHeaders));
    assert.deepEqual(stable(fast.headers), stable(viaRoute.headers as IncomingHttpHeaders));
    assert.deepEqual(Object.keys(stable(fast.headers)), Object.keys(stable(again.headers as IncomingHttpHeaders)), 'same header order');
    const head = await fetch('/artifacts/menu.ipxe', { method: 'HEAD' });
    assert.ok(head.fast);
    assert.equal(head.status, 200);
    assert.equal(head.body.length, 0);
    assert.deepEqual(stable(head.headers), stable(fast.headers));
    // GET, inject GET, HEAD: three 200s; bytes and boot stages for the two GETs only.
    assert.equal(await servedCount(), served0 + 3);
    assert.equal(await artifactBytes(), bytes0 + 2 * fast.body.length);
    assert.deepEqual(fetched.slice(fetched0), ['menu.ipxe', 'menu.ipxe']);
    const encoded = await fetch('/artifacts/%6denu.ipxe');
    assert.deepEqual([encoded.status, encoded.fast, encoded.body.toString()], [200, false, fast.body.toString()], 'left to the router to decode');
  });

  it('never answers a changed or replaced file from memory', async () => {
    const file = join(root, 'menu.ipxe');
    const body = async (path: string, fast: boolean): Promise<string> => {
      const r = await fetch(path);
      assert.equal(r.fast, fast, `${path} ${fast ? 'from the fast path' : 'through the route'}`);
      return r.body.toString();
    };
    await writeFile(file, '#!ipxe\necho one\n');
    assert.equal(await body('/artifacts/menu.ipxe', false), '#!ipxe\necho one\n');
    assert.equal(await body('/artifacts/menu.ipxe', true), '#!ipxe\necho one\n');
    // In place, same length, mtime put back: the ctime still tells.
    const before = (await fetch('/artifacts/menu.ipxe')).headers['last-modified'];
    await writeFile(file, '#!ipxe\necho two\n');
    await utimes(file, new Date(before!), new Date(before!));
    assert.equal(await body('/artifacts/menu.ipxe', false), '#!ipxe\necho two\n');
    assert.equal(await body('/artifacts/menu.ipxe', true), '#!ipxe\necho two\n');
    // Replaced by rename, as package managers and rsync do: a new inode.
    await writeFile(join(root, 'menu.new'), '#!ipxe\necho три\n');
    await rename(join(root, 'menu.new'), file);
    assert.equal(await body('/artifacts/menu.ipxe', false), '#!ipxe\necho три\n');
    assert.equal(await body('/artifacts/menu.ipxe', true), '#!ipxe\necho три\n');
    // A symlinked directory switched to another version.
    assert.equal(await body('/artifacts/menus/current/boot.ipxe', false), '#!ipxe\necho v1\n');
    assert.equal(await body('/artifacts/menus/current/boot.ipxe', true), '#!ipxe\necho v1\n');
    await unlink(join(root, 'menus', 'current'));
    await symlink('v2', join(root, 'menus', 'current'));
    assert.equal(await body('/artifacts/menus/current/boot.ipxe', false), '#!ipxe\necho v2\n');
    // Removed: 404 from the route, not the old bytes.
    await rm(file);
    const gone = await fetch('/artifacts/menu.ipxe');
    assert.deepEqual([gone.status, gone.fast], [404, false]);
  });

  it('leaves hostile paths to the route, which refuses and counts them', async () => {
    const cases: [string, number, string][] = [
      ['/artifacts/../secret', 403, 'parent-segment'],
      ['/artifacts/menus/../../secret', 403, 'parent-segment'],
      ['/artifacts/escape', 403, 'outside-root'],
      ['/artifacts/menus%2f..%2f..%2fsecret', 403, 'parent-segment'],
      ['/artifacts/menus%00.png', 403, 'nul-byte'],
      [`/artifacts/${'a'.repeat(300)}`, 403, 'too-long'],
      ['/artifacts/menus', 403, 'not-a-file'],
    ];
    const count = async (reason: string): Promise<number> =>
      Number(new RegExp(`protocol="http",reason="${reason}"} (\\d+)`).exec(await metric('pxeha_artifact_refused_total'))?.[1] ?? 0);
    for (const [path, status, reason] of cases) {
      const before = await count(reason);
      const r = await fetch(path);
      assert.equal(r.status, status, path);
      assert.ok(!r.fast, path);
      assert.notEqual(r.body.toString(), 'secret');
      assert.equal(r.headers['content-type'], 'application/json; charset=utf-8', path);
      assert.equal(await count(reason), before + 1, `${path} counted as ${reason}`);
    }
  });

  it('leaves Range and conditional requests to the route', async () => {
    const file = join(root, 'range.ipxe');
    await writeFile(file, '#!ipxe\necho range\n');
    const full = await get(port, '/artifacts/range.ipxe');
    assert.ok((await fetch('/artifacts/range.ipxe')).fast, 'cached now');
    const part = await fetch('/artifacts/range.ipxe', { headers: { range: 'bytes=0-5' } });
    assert.ok(!part.fast);
    assert.equal(part.status, 206);
    assert.equal(part.body.toString(), '#!ipxe');
    assert.equal(part.headers['content-range'], `bytes 0-5/${full.body.length}`);
    assert.equal((await get(port, '/artifacts/range.ipxe', { headers: { range: 'bytes=100-' } })).status, 416);
    assert.equal((await get(port, '/artifacts/range.ipxe', { headers: { 'if-none-match': full.headers.etag! } })).status, 304);
    assert.equal((await get(port, '/artifacts/range.ipxe', { headers: { 'if-modified-since': full.headers['last-modified']! } })).status, 304);
  });

  it('takes only plain requests for cached files, and nothing once closing', () => {
    const cache = new SmallFileCache();
    const calls: string[] = [];
    const fast = new ArtifactFastPath({ artifactsRoot: root, metrics: new Metrics(), log: silentLogger(), onArtifactFetched: (ip, rel) => calls.push(`${ip} ${rel}`) }, cache);
    const res = {
      writeHead: (status: number) => calls.push(`writeHead ${status}`),
      end: (body?: Buffer) => calls.push(`end ${body?.length ?? 0}`),
    } as unknown as ServerResponse;
    const req = (method: string, url: string, headers: Record<string, string> = {}) =>
      ({ method, url, headers, socket: { remoteAddress: '10.0.0.9' } }) as unknown as IncomingMessage;
    return (async () => {
      await writeFile(join(root, 'unit.ipxe'), 'unit');
      assert.equal(fast.serve(req('GET', '/artifacts/unit.ipxe'), res), false, 'not cached yet');
      const { lstatSync } = await import('node:fs');
      cache.set(join(root, 'unit.ipxe'), lstatSync(join(root, 'unit.ipxe')), { headers: { 'Content-Type': 'application/octet-stream' }, body: Buffer.from('unit') });
      assert.equal(fast.serve(req('POST', '/artifacts/unit.ipxe'), res), false);
      assert.equal(fast.serve(req('GET', '/artifacts/unit.ipxe?x=1'), res), false);
      assert.equal(fast.serve(req('GET', '/artifacts/unit%2Eipxe'), res), false);
      assert.equal(fast.serve(req('GET', '/artifacts/unit.ipxe', { range: 'bytes=0-1' }), res), false);
      assert.equal(fast.serve(req('GET', '/artifacts/unit.ipxe', { 'if-none-match': '"x"' }), res), false);
      assert.deepEqual(calls, []);
      assert.equal(fast.serve(req('GET', '/artifacts/unit.ipxe'), res), true);
      assert.equal(fast.serve(req('HEAD', '/artifacts/unit.ipxe'), res), true);
      assert.deepEqual(calls, ['writeHead 200', 'end 4', '10.0.0.9 unit.ipxe', 'writeHead 200', 'end 0']);
      const throwing = new ArtifactFastPath({ artifactsRoot: root, metrics: new Metrics(), log: silentLogger(), onArtifactFetched: () => assert.fail('a bug in the hook') }, cache);
      assert.equal(throwing.serve(req('GET', '/artifacts/unit.ipxe'), res), true, 'answered, the hook\'s throw logged, not thrown');
      fast.close();
      assert.equal(fast.serve(req('GET', '/artifacts/unit.ipxe'), res), false);
    })();
  });
});
