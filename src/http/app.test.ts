/**
 * The node's HTTP server through app.inject(): boot scripts, artifacts with ranges and
 * conditional requests, the path rules, the REST API's validation, install-once.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { writeClusterConfig } from '../config/cluster-store.js';
import { parseClusterConfig } from '../config/load.js';
import type { ClusterConfig } from '../config/schema.js';
import { Inventory } from '../inventory/inventory.js';
import { silentLogger } from '../obs/log.js';
import { Metrics } from '../obs/metrics.js';
import { openStore } from '../store/open.js';
import type { Store } from '../store/store.js';
import { FakeClock } from '../util/clock.js';
import { buildHttpApp } from './app.js';

describe('node HTTP server', () => {
  let dir: string;
  let root: string;
  let store: Store;
  let inventory: Inventory;
  let app: FastifyInstance;
  let metrics: Metrics;
  let cluster: ClusterConfig;
  const clock = new FakeClock(Date.UTC(2026, 10, 24, 12, 0, 0));
  const kernel = Buffer.from(Array.from({ length: 10_000 }, (_, i) => i % 251));

  before(async () => {
    dir = await realpath(await mkdtemp(join(tmpdir(), 'pxeha-http-')));
    root = join(dir, 'artifacts');
    await mkdir(join(root, 'debian'), { recursive: true });
    await writeFile(join(root, 'debian', 'linux'), kernel);
    await writeFile(join(root, 'debian', 'initrd.gz'), 'initrd');
    for (const f of ['undionly.kpxe', 'ipxe.efi']) await writeFile(join(root, f), f);
    await writeFile(join(dir, 'secret'), 'secret');
    await symlink(join(dir, 'secret'), join(root, 'escape'));
    store = await openStore({ kind: 'embedded', path: join(dir, 'store.db') });
    cluster = parseClusterConfig({ boot: { defaultProfile: 'discovery' } });
    await writeClusterConfig(store, cluster);
    inventory = await Inventory.open(store, (err) => assert.fail(err));
    metrics = new Metrics();
    // As the node's Unix socket serves it (local root: admin); access control over TCP has its
    // own tests (src/http/access-control.test.ts).
    app = await buildHttpApp({
      nodeName: 'lab1',
      advertiseAddress: '10.99.0.1',
      httpPort: 8080,
      artifactsRoot: root,
      store,
      inventory,
      cluster: () => cluster,
      metrics,
      log: silentLogger(),
      clock,
    }, { listener: 'local' });
  });
  after(async () => {
    await app.close();
    await inventory.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  const put = (url: string, payload: unknown) => app.inject({ method: 'PUT', url, payload: payload as object });

  it('validates API bodies with the field path, and counts rejections', async () => {
    const res = await put('/api/v1/profiles/debian', { name: 'debian', boot: { kind: 'kernel', kernel: 'debian/linux' }, color: 'red' });
    assert.equal(res.statusCode, 400);
    const body = res.json();
    assert.equal(body.code, 'PXE_ERR_CONFIG_INVALID');
    assert.deepEqual(body.issues, [{ path: '/color', message: 'is not a known field' }]);
    const bad = await put('/api/v1/subnets/lab', { name: 'lab', subnet: '10.99.0.0/24', pools: [{ start: '10.99.0.10', end: '10.98.0.20' }] });
    assert.equal(bad.statusCode, 400);
    assert.deepEqual(bad.json().issues.map((i: { path: string }) => i.path), ['/subnets/0/pools/0/end', '/subnets/0/pools/0/end']);
    const text = await metrics.registry.getSingleMetricAsString('pxeha_api_rejected_total');
    assert.match(text, /route="\/api\/v1\/profiles\/:name"} 1/);
  });

  it('creates profiles and machines, refusing a machine whose profile is missing', async () => {
    assert.equal((await put('/api/v1/machines/web1', { name: 'web1', mac: '52:54:00:12:34:56', profile: 'debian' })).statusCode, 404);
    const p = await put('/api/v1/profiles/debian', {
      name: 'debian',
      once: true,
      boot: { kind: 'kernel', kernel: 'debian/linux', initrds: ['debian/initrd.gz'], args: 'url={{files.preseed_cfg}} console=ttyS0' },
      files: { 'preseed.cfg': 'd-i netcfg/get_hostname string {{hostname}}\n', 'done.ipxe': '#!ipxe\nchain {{callbackUrl}}\n' },
    });
    assert.equal(p.statusCode, 200, p.body);
    assert.equal((await put('/api/v1/profiles/discovery', { name: 'discovery', boot: { kind: 'script', script: 'echo discovered {{mac}}\nexit' } })).statusCode, 200);
    const m = await put('/api/v1/machines/web1', { name: 'web1', mac: '52:54:00:12:34:56', profile: 'debian', hostname: 'web1' });
    assert.equal(m.statusCode, 200, m.body);
    assert.equal((await app.inject('/api/v1/machines')).json().length, 1);
    const del = await app.inject({ method: 'DELETE', url: '/api/v1/profiles/debian' });
    assert.equal(del.statusCode, 409, 'a profile in use cannot be removed');
  });

  it('renders the script of a known machine, and serves its files', async () => {
    const res = await app.inject('/boot.ipxe?mac=52:54:00:12:34:56&uuid=12345678-9abc-def0-1234-56789abcdef0&arch=x86_64&serial=&asset=');
    assert.equal(res.statusCode, 200);
    assert.equal(
      res.body,
      [
        '#!ipxe',
        '# pxeha lab1: machine web1 (52:54:00:12:34:56), profile debian',
        'kernel http://10.99.0.1:8080/artifacts/debian/linux initrd=initrd.gz url=http://10.99.0.1:8080/machines/52%3A54%3A00%3A12%3A34%3A56/files/preseed.cfg console=ttyS0',
        'initrd http://10.99.0.1:8080/artifacts/debian/initrd.gz',
        'boot',
        '',
      ].join('\n'),
    );
    const file = await app.inject('/machines/52:54:00:12:34:56/files/preseed.cfg');
    assert.equal(file.body, 'd-i netcfg/get_hostname string web1\n');
    assert.equal((await app.inject('/machines/52:54:00:12:34:56/files/other.cfg')).statusCode, 404);
  });

  it('gives an unknown machine the default profile and records it as discovered', async () => {
    const res = await app.inject('/boot.ipxe?mac=52-54-00-AA-BB-CC&arch=i386');
    assert.equal(res.body, ['#!ipxe', '# pxeha lab1: unknown machine 52:54:00:aa:bb:cc, profile discovery', 'echo discovered 52:54:00:aa:bb:cc', 'exit', ''].join('\n'));
    const statuses = (await app.inject('/api/v1/machine-status')).json() as { mac: string; lastStage: string; facts: { arch: string } }[];
    const seen = statuses.find((s) => s.mac === '52:54:00:aa:bb:cc');
    assert.equal(seen?.lastStage, 'script');
    assert.equal(seen?.facts.arch, 'i386');
    const missing = await app.inject('/boot.ipxe?uuid=x');
    assert.equal(missing.statusCode, 400);
    assert.deepEqual(missing.json().issues, [{ path: '', message: "must have required property 'mac'" }]);
  });

  it('boots a machine without a profile of its own by the profile its labels select', async () => {
    const web = { name: 'web', selector: { role: 'web' }, boot: { kind: 'script', script: 'echo web {{hostname}} {{labels.rack}}' } };
    assert.equal((await put('/api/v1/profiles/web', web)).statusCode, 200);
    const m = await put('/api/v1/machines/web2', { name: 'web2', mac: '52:54:00:00:00:02', hostname: 'web2', labels: { role: 'web', rack: 'b3' } });
    assert.equal(m.statusCode, 200, m.body);
    await put('/api/v1/machines/db1', { name: 'db1', mac: '52:54:00:00:00:03', labels: { role: 'db' } });
    const selected = await app.inject('/boot.ipxe?mac=52:54:00:00:00:02');
    assert.equal(selected.body, ['#!ipxe', '# pxeha lab1: machine web2 (52:54:00:00:00:02), profile web', 'echo web web2 b3', ''].join('\n'));
    const fallback = await app.inject('/boot.ipxe?mac=52:54:00:00:00:03');
    assert.match(fallback.body, /machine db1 \(52:54:00:00:00:03\), profile discovery\n/);
  });

  it('install once: the done callback sends the machine to local disk until reprovisioned', async () => {
    // The callback URL as the machine's own files carry it (with its token).
    const rendered = (await app.inject('/machines/52:54:00:12:34:56/files/done.ipxe')).body;
    const callback = /^chain http:\/\/10\.99\.0\.1:8080(\/boot\/done\?mac=52%3A54%3A00%3A12%3A34%3A56&token=[A-Za-z0-9_-]{43})$/m.exec(rendered)?.[1];
    assert.ok(callback, rendered);
    // As an installer's `curl -d ""` posts it: a form content type, an empty body.
    const done = await app.inject({
      method: 'POST',
      url: callback,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: '',
    });
    assert.equal(done.statusCode, 200, done.body);
    const after = await app.inject('/boot.ipxe?mac=52:54:00:12:34:56');
    assert.match(after.body, /^# installed at 2026-11-24T12:00:00.000Z; reprovision to install again$/m);
    assert.match(after.body, /^sanboot --no-describe --drive 0x80 \|\| exit$/m);
    assert.equal((await app.inject({ method: 'POST', url: '/api/v1/machines/web1/reprovision' })).statusCode, 200);
    assert.match((await app.inject('/boot.ipxe?mac=52:54:00:12:34:56')).body, /^kernel /m);
  });

  it('serves artifacts with ranges, HEAD and conditional requests', async () => {
    const full = await app.inject('/artifacts/debian/linux');
    assert.equal(full.statusCode, 200);
    assert.deepEqual(full.rawPayload, kernel);
    const etag = full.headers.etag as string;
    assert.ok(etag && full.headers['last-modified']);
    const part = await app.inject({ url: '/artifacts/debian/linux', headers: { range: 'bytes=100-199' } });
    assert.equal(part.statusCode, 206);
    assert.equal(part.headers['content-range'], `bytes 100-199/${kernel.length}`);
    assert.deepEqual(part.rawPayload, kernel.subarray(100, 200));
    const unsatisfiable = await app.inject({ url: '/artifacts/debian/linux', headers: { range: 'bytes=20000-' } });
    assert.equal(unsatisfiable.statusCode, 416);
    assert.equal(unsatisfiable.headers['content-range'], `bytes */${kernel.length}`, 'RFC 9110 §15.5.17');
    assert.equal((await app.inject({ url: '/artifacts/debian/linux', headers: { 'if-none-match': etag } })).statusCode, 304);
    const head = await app.inject({ method: 'HEAD', url: '/artifacts/debian/linux' });
    assert.equal(head.statusCode, 200);
    assert.equal(head.headers['content-length'], String(kernel.length));
    assert.equal(head.body, '');
  });

  it('serves every one of many concurrent script requests of one machine (status writes queue, never 409)', async () => {
    const replies = await Promise.all(Array.from({ length: 16 }, () => app.inject('/boot.ipxe?mac=52:54:00:00:00:42')));
    assert.deepEqual(
      replies.map((r) => r.statusCode),
      replies.map(() => 200),
      replies.find((r) => r.statusCode !== 200)?.body,
    );
  });

  it('answers plain requests for a small artifact from memory, until the file changes', async () => {
    const file = join(root, 'menu.ipxe');
    await writeFile(file, '#!ipxe\necho one\n');
    const first = await app.inject('/artifacts/menu.ipxe');
    assert.equal(first.body, '#!ipxe\necho one\n');
    const cached = await app.inject('/artifacts/menu.ipxe');
    assert.equal(cached.body, first.body);
    for (const h of ['etag', 'last-modified', 'content-type', 'content-length', 'accept-ranges']) assert.equal(cached.headers[h], first.headers[h], h);
    const head = await app.inject({ method: 'HEAD', url: '/artifacts/menu.ipxe' });
    assert.equal(head.statusCode, 200);
    assert.equal(head.headers['content-length'], String(first.body.length));
    assert.equal(head.body, '');
    // Conditional and ranged requests still get their 304 and 206.
    assert.equal((await app.inject({ url: '/artifacts/menu.ipxe', headers: { 'if-none-match': first.headers.etag as string } })).statusCode, 304);
    const part = await app.inject({ url: '/artifacts/menu.ipxe', headers: { range: 'bytes=0-5' } });
    assert.equal(part.statusCode, 206);
    assert.equal(part.body, '#!ipxe');
    // Same length, new content and mtime: the cache notices.
    await writeFile(file, '#!ipxe\necho two\n');
    const changed = await app.inject('/artifacts/menu.ipxe');
    assert.equal(changed.body, '#!ipxe\necho two\n');
    await rm(file);
    assert.equal((await app.inject('/artifacts/menu.ipxe')).statusCode, 404);
  });

  it('refuses hostile paths with a reason, and counts them', async () => {
    const cases: [string, number][] = [
      ['/artifacts/..%2fsecret', 403],
      ['/artifacts/debian/..%2f..%2fsecret', 403],
      ['/artifacts/escape', 403],
      ['/artifacts/undionly.kpxe%00.png', 403],
      ['/artifacts/debian', 403],
      ['/artifacts/nothing-here', 404],
      // The router decodes once: a literal `%` is a (missing) name, not a URIError.
      ['/artifacts/%25', 404],
    ];
    for (const [url, status] of cases) {
      const res = await app.inject(url);
      assert.equal(res.statusCode, status, url);
      assert.doesNotMatch(res.body, /secret/);
    }
    const text = await metrics.registry.getSingleMetricAsString('pxeha_artifact_refused_total');
    assert.match(text, /protocol="http",reason="parent-segment"} 2/);
    assert.match(text, /protocol="http",reason="outside-root"} 1/);
    assert.match(text, /protocol="http",reason="nul-byte"} 1/);
  });

  it('serves an OpenAPI document, metrics, and health that knows its artifacts', async () => {
    const doc = (await app.inject('/api/openapi.json')).json();
    assert.equal(doc.openapi, '3.0.3');
    assert.ok(doc.paths['/api/v1/machines/{name}'].put.requestBody);
    assert.ok(!('/boot.ipxe' in doc.paths));
    const m = await app.inject('/metrics');
    assert.match(m.body, /pxeha_http_requests_total\{route="\/boot.ipxe",status="200"\}/);
    assert.match(m.body, /pxeha_store_op_seconds|pxeha_boot_stage_total/);
    assert.equal((await app.inject('/healthz')).statusCode, 200);
    cluster = parseClusterConfig({ boot: { defaultProfile: 'discovery', files: { efiArm64: 'arm64/ipxe.efi' } } });
    const sick = await app.inject('/healthz');
    assert.equal(sick.statusCode, 503);
    assert.match(sick.json().problems[0], /arm64\/ipxe.efi/);
  });
});
