/**
 * The dashboard's routes through app.inject() on one node with the embedded store: the static
 * dashboard (built and not built, path rules), the joined page views, change of profile,
 * node overrides (pure rules and the routes' refusal of unknown nodes), and the event hub's
 * record of changes.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { createToken } from '../auth/tokens.js';
import { effectiveWeight, parseNodeOverride, updateNodeOverride } from '../cluster/node-overrides.js';
import { writeClusterConfig } from '../config/cluster-store.js';
import { parseClusterConfig } from '../config/load.js';
import { memberKey } from '../cluster/member-record.js';
import { Catalog } from '../images/catalog.js';
import { ChunkStore } from '../images/chunk-store.js';
import type { ClusterConfig } from '../config/schema.js';
import { buildHttpApp } from '../http/app.js';
import { Inventory } from '../inventory/inventory.js';
import { silentLogger } from '../obs/log.js';
import { Metrics } from '../obs/metrics.js';
import { openStore } from '../store/open.js';
import type { Store } from '../store/store.js';
import { FakeClock } from '../util/clock.js';

describe('node overrides', () => {
  it('drained means weight 0; an override weight replaces the configured one', () => {
    assert.equal(effectiveWeight(100, undefined), 100);
    assert.equal(effectiveWeight(100, { weight: 30 }), 30);
    assert.equal(effectiveWeight(100, { weight: 30, drained: true }), 0);
    assert.equal(effectiveWeight(100, { drained: false }), 100);
    assert.deepEqual(parseNodeOverride('{"weight":-1,"drained":"yes"}'), {});
    assert.equal(parseNodeOverride('not json'), undefined);
  });
});

describe('dashboard routes', () => {
  let dir: string;
  let store: Store;
  let inventory: Inventory;
  let cluster: ClusterConfig;
  const clock = new FakeClock(Date.now());
  const apps: FastifyInstance[] = [];
  let auth: Record<string, string> = {};
  /** inject() with the operator token (API routes need one over TCP). */
  const call = (app: FastifyInstance, method: 'GET' | 'PUT' | 'POST', url: string, payload?: unknown) =>
    app.inject({ method, url, headers: auth, ...(payload !== undefined ? { payload: payload as object } : {}) });

  async function appWithUi(uiDir: string): Promise<FastifyInstance> {
    process.env.PXEHA_UI_DIR = uiDir;
    try {
      const app = await buildHttpApp({
        nodeName: 'lab1',
        advertiseAddress: '10.99.0.1',
        httpPort: 8080,
        artifactsRoot: dir,
        store,
        inventory,
        cluster: () => cluster,
        metrics: new Metrics(),
        log: silentLogger(),
        clock,
      });
      apps.push(app);
      return app;
    } finally {
      delete process.env.PXEHA_UI_DIR;
    }
  }

  before(async () => {
    dir = await realpath(await mkdtemp(join(tmpdir(), 'pxeha-dash-')));
    store = await openStore({ kind: 'embedded', path: join(dir, 'store.db') });
    cluster = parseClusterConfig({
      subnets: [{ name: 'lab', subnet: '10.99.0.0/24', pools: [{ start: '10.99.0.100', end: '10.99.0.199' }] }],
      boot: { defaultProfile: 'discovery' },
    });
    await writeClusterConfig(store, cluster);
    inventory = await Inventory.open(store, (err) => assert.fail(err));
    await inventory.putProfile({ name: 'discovery', boot: { kind: 'localboot' } });
    await inventory.putProfile({ name: 'ubuntu', boot: { kind: 'kernel', kernel: 'ubuntu/linux' } });
    await inventory.putMachine({ name: 'web-01', mac: '52:54:00:aa:00:01', hostname: 'web-01' });
    auth = { authorization: `Bearer ${(await createToken(store, { role: 'operator', name: 'dashboard-test' })).token}` };
  });
  after(async () => {
    for (const app of apps) await app.close();
    await inventory.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('says so at /ui/ when the dashboard is not built', async () => {
    const app = await appWithUi(join(dir, 'no-ui'));
    const res = await app.inject({ method: 'GET', url: '/ui/' });
    assert.equal(res.statusCode, 503);
    assert.match(res.body, /not built/);
    assert.match(res.body, /npm run build:ui/);
    const redirect = await app.inject({ method: 'GET', url: '/ui' });
    assert.equal(redirect.statusCode, 302);
    assert.equal(redirect.headers.location, '/ui/');
  });

  it('serves the built dashboard under the artifact path rules', async () => {
    const ui = join(dir, 'ui');
    await mkdir(join(ui, 'assets'), { recursive: true });
    await writeFile(join(ui, 'index.html'), '<!doctype html><title>pxeha</title>');
    await writeFile(join(ui, 'assets', 'index-abc.js'), 'console.log(1)');
    await writeFile(join(dir, 'outside.txt'), 'secret');
    const app = await appWithUi(ui);
    const index = await app.inject({ method: 'GET', url: '/ui/' });
    assert.equal(index.statusCode, 200);
    assert.match(String(index.headers['content-type']), /text\/html/);
    assert.equal(index.headers['cache-control'], 'no-cache');
    const js = await app.inject({ method: 'GET', url: '/ui/assets/index-abc.js' });
    assert.equal(js.statusCode, 200);
    assert.match(String(js.headers['content-type']), /javascript/);
    assert.match(String(js.headers['cache-control']), /immutable/);
    for (const url of ['/ui/../outside.txt', '/ui/%2e%2e/outside.txt', '/ui/assets/%00x']) {
      const r = await app.inject({ method: 'GET', url });
      assert.ok([403, 404].includes(r.statusCode), `${url}: ${r.statusCode}`);
      assert.doesNotMatch(r.body, /secret/);
    }
    assert.equal((await app.inject({ method: 'GET', url: '/ui/missing.js' })).statusCode, 404);
  });

  it('joins machines, statuses and leases; counts the funnel; changes a profile', async () => {
    const app = await appWithUi(join(dir, 'no-ui'));
    await inventory.recordStage('52:54:00:aa:00:01', 'script', 'lab1', clock.now());
    await inventory.recordStage('52:54:00:aa:00:02', 'done', 'lab1', clock.now());
    await store.put(
      '/pxeha/leases/lab/10.99.0.100',
      JSON.stringify({ ip: '10.99.0.100', subnet: 'lab', state: 'bound', clientKey: 'mac:52:54:00:aa:00:01', mac: '52:54:00:aa:00:01', expiresAtMs: clock.now() + 3_600_000, boundAtMs: clock.now(), node: 'lab1' }),
    );
    await store.put(
      '/pxeha/leases/lab/10.99.0.101',
      JSON.stringify({ ip: '10.99.0.101', subnet: 'lab', state: 'bound', clientKey: 'mac:52:54:00:aa:00:09', mac: '52:54:00:aa:00:09', expiresAtMs: clock.now() + 3_600_000, boundAtMs: clock.now(), node: 'lab1' }),
    );
    const machines = (await call(app, 'GET', '/api/v1/dashboard/machines')).json() as { machines: Array<Record<string, any>>; profiles: string[] };
    const web = machines.machines.find((m) => m.name === 'web-01')!;
    assert.equal(web.lease.ip, '10.99.0.100');
    assert.equal(web.status.lastStage, 'script');
    assert.equal(web.profile, 'discovery');
    assert.ok(machines.machines.some((m) => m.mac === '52:54:00:aa:00:02' && !m.known));
    assert.deepEqual(machines.profiles.sort(), ['discovery', 'ubuntu']);

    const leases = (await call(app, 'GET', '/api/v1/dashboard/leases')).json() as { subnets: Array<{ pools: Array<{ size: number; bound: number }> }> };
    assert.deepEqual(leases.subnets[0]!.pools.map((p) => [p.size, p.bound]), [[100, 2]]);

    const funnel = (await call(app, 'GET', '/api/v1/dashboard/funnel')).json() as { stopped: Record<string, number>; minutes: unknown[] };
    assert.equal(funnel.minutes.length, 60);
    assert.deepEqual(funnel.stopped, { dhcp: 1, tftp: 0, script: 1, kernel: 0, done: 1 });

    const changed = await call(app, 'PUT', '/api/v1/machines/web-01/profile', { profile: 'ubuntu' });
    assert.equal(changed.statusCode, 200, changed.body);
    assert.equal(inventory.machine('web-01')?.profile, 'ubuntu');
    assert.equal(inventory.machine('web-01')?.hostname, 'web-01');
    assert.equal((await call(app, 'PUT', '/api/v1/machines/web-01/profile', { profile: 'nope' })).statusCode, 404);
    assert.equal((await call(app, 'PUT', '/api/v1/machines/web-01/profile', { profile: null })).statusCode, 200);
    assert.equal(inventory.machine('web-01')?.profile, undefined);
  });

  it('refuses overrides of unknown nodes and records the changes it sees as events', async () => {
    const app = await appWithUi(join(dir, 'no-ui'));
    const viewer = `Bearer ${(await createToken(store, { role: 'viewer', name: 'look-only' })).token}`;
    await new Promise((r) => setTimeout(r, 100)); // the token watch
    assert.equal((await app.inject({ method: 'POST', url: '/api/v1/nodes/lab1/drain', headers: { authorization: viewer } })).statusCode, 403);
    assert.equal((await app.inject({ method: 'GET', url: '/api/v1/dashboard/cluster' })).statusCode, 401);
    const refused = await call(app, 'POST', '/api/v1/nodes/ghost/drain');
    assert.equal(refused.statusCode, 404);
    const bad = await call(app, 'PUT', '/api/v1/nodes/lab1/weight', { weight: -3 });
    assert.equal(bad.statusCode, 400);
    const ok = await call(app, 'PUT', '/api/v1/nodes/lab1/weight', { weight: 40 });
    assert.equal(ok.statusCode, 200, ok.body);
    await updateNodeOverride(store, 'lab1', (o) => ({ ...o, drained: true }));
    const deadline = Date.now() + 3000;
    let kinds: string[] = [];
    while (Date.now() < deadline) {
      const recent = (await call(app, 'GET', '/api/v1/events/recent')).json() as Array<{ kind: string; message: string }>;
      kinds = recent.filter((e) => e.kind === 'override').map((e) => e.message);
      if (kinds.length >= 2) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.deepEqual(kinds, ['lab1: weight set to 40 (dashboard-test on lab1)', 'lab1: drained (dashboard-test on lab1)']);
    const overrides = (await call(app, 'GET', '/api/v1/node-overrides')).json() as Record<string, unknown>;
    assert.deepEqual(overrides.lab1, { weight: 40, drained: true, atMs: clock.now(), by: 'dashboard-test on lab1' });
  });

  it('streams image changes as images events: published, channel set and rolled back, a node holding a version', async () => {
    const app = await appWithUi(join(dir, 'no-ui'));
    const member = (images: string[]) =>
      JSON.stringify({ name: 'lab2', addresses: ['10.99.0.2'], httpPort: 8080, version: '0.1.0', configRevision: 1, images, artifacts: [], load: {}, clockMs: clock.now() });
    await store.put(memberKey('lab2'), member([]));
    const images = (): Promise<string[]> =>
      call(app, 'GET', '/api/v1/events/recent').then((r) => (r.json() as Array<{ kind: string; message: string }>).filter((e) => e.kind === 'images').map((e) => e.message));
    // The hub's watches are open once its first view answers.
    for (let i = 0; i < 60 && (await call(app, 'GET', '/api/v1/dashboard/cluster')).statusCode !== 200; i++) await new Promise((r) => setTimeout(r, 50));
    const catalog = new Catalog(store, { nowMs: () => clock.now() });
    const manifest = (n: number) => ({ format: 1 as const, files: [{ path: 'vmlinuz', size: 10 + n, chunks: [{ hash: n.toString(16).padStart(64, '0'), size: 10 + n, offset: 0 }] }] });
    const chunks = await ChunkStore.open(join(dir, 'node')); // where the manifests' pages go
    const v1 = await catalog.recordVersion('demo', manifest(1), chunks);
    await catalog.setChannel('demo', 'stable', v1.id);
    const v2 = await catalog.recordVersion('demo', manifest(2), chunks);
    await catalog.setChannel('demo', 'stable', v2.id);
    await catalog.rollbackChannel('demo', 'stable');
    await store.put(memberKey('lab2'), member([v1.id]));
    const s = (id: string) => id.slice(0, 12);
    const expected = [
      `demo: version ${s(v1.id)} published`,
      `demo@stable → ${s(v1.id)}`,
      `demo: version ${s(v2.id)} published`,
      `demo@stable → ${s(v2.id)} (was ${s(v1.id)})`,
      `demo@stable → ${s(v1.id)} (was ${s(v2.id)}), rolled back`,
      `lab2 holds demo ${s(v1.id)}`,
    ];
    let seen: string[] = [];
    for (let i = 0; i < 60; i++) {
      seen = await images();
      if (seen.length >= expected.length) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.deepEqual(seen, expected);
  });
});
