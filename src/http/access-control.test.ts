/**
 * Access control through app.inject(): the role every API route needs (one table, checked with a
 * token of each role), credentials refused with 401, weak roles with 403, sessions, the Unix
 * socket's trust, the plain port when the API is on HTTPS, and machine callback tokens.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify';
import { Auth } from '../auth/auth.js';
import { machineToken } from '../auth/machine-token.js';
import type { Role } from '../auth/roles.js';
import { createToken, revokeToken, TOKENS_PREFIX } from '../auth/tokens.js';
import { writeClusterConfig } from '../config/cluster-store.js';
import { parseClusterConfig } from '../config/load.js';
import type { ClusterConfig } from '../config/schema.js';
import { Inventory } from '../inventory/inventory.js';
import { silentLogger } from '../obs/log.js';
import { Metrics } from '../obs/metrics.js';
import { openStore } from '../store/open.js';
import type { Store } from '../store/store.js';
import { FakeClock } from '../util/clock.js';
import { registerAccessControl } from './access-control.js';
import { buildHttpApp } from './app.js';
import type { HttpContext } from './context.js';

const MAC_A = '52:54:00:00:00:0a';
const MAC_B = '52:54:00:00:00:0b';

describe('API access control', () => {
  let dir: string;
  let store: Store;
  let inventory: Inventory;
  let auth: Auth;
  let ctx: HttpContext;
  let app: FastifyInstance;
  let metrics: Metrics;
  let cluster: ClusterConfig;
  const tokens = {} as Record<Role, string>;
  const clock = new FakeClock(Date.UTC(2026, 10, 24, 12, 0, 0));

  before(async () => {
    dir = await realpath(await mkdtemp(join(tmpdir(), 'pxeha-access-')));
    await mkdir(join(dir, 'artifacts'));
    for (const f of ['undionly.kpxe', 'ipxe.efi']) await writeFile(join(dir, 'artifacts', f), f);
    store = await openStore({ kind: 'embedded', path: join(dir, 'store.db') });
    cluster = parseClusterConfig({ boot: { defaultProfile: 'installer' } });
    await writeClusterConfig(store, cluster);
    inventory = await Inventory.open(store, (err) => assert.fail(err));
    await inventory.putProfile({ name: 'installer', once: true, boot: { kind: 'script', script: '#!ipxe\nchain {{callbackUrl}}\n' } });
    await inventory.putMachine({ name: 'a', mac: MAC_A });
    await inventory.putMachine({ name: 'b', mac: MAC_B });
    for (const role of ['viewer', 'operator', 'admin'] as const) tokens[role] = (await createToken(store, { role, name: `test-${role}` })).token;
    metrics = new Metrics();
    auth = await Auth.open(store, { onError: (err) => assert.fail(err) });
    ctx = {
      nodeName: 'lab1',
      advertiseAddress: '10.99.0.1',
      httpPort: 8080,
      artifactsRoot: join(dir, 'artifacts'),
      store,
      inventory,
      cluster: () => cluster,
      metrics,
      log: silentLogger(),
      clock,
      auth,
      // A rebalance that does nothing, so the route's role is what the test sees.
      rebalance: async () => ({ mode: 'manual', record: { members: ['lab1'], by: 'lab1', atMs: 0, revision: 1 }, moved: [] }),
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

  const call = (method: string, url: string, role?: Role | string, payload?: unknown): Promise<LightMyRequestResponse> =>
    app.inject({
      method: method as 'GET',
      url,
      headers: role === undefined ? {} : { authorization: `Bearer ${role in tokens ? tokens[role as Role] : role}` },
      ...(payload !== undefined ? { payload: payload as object } : {}),
    });
  const denied = (m: string, reason: string): number => {
    const line = m.split('\n').find((l) => l.startsWith(`pxeha_api_denied_total{reason="${reason}"}`));
    return line ? Number(line.split(' ').at(-1)) : 0;
  };

  /**
   * Every route of src/api/routes.ts and src/api/auth-routes.ts with the role it needs. A body
   * that fails validation is fine here: what matters is whether access control let it through.
   */
  const TABLE: { method: string; url: string; role: Role; body?: unknown }[] = [
    { method: 'GET', url: '/api/v1/status', role: 'viewer' },
    { method: 'GET', url: '/api/v1/cluster', role: 'viewer' },
    { method: 'GET', url: '/api/v1/cluster/placement', role: 'viewer' },
    { method: 'POST', url: '/api/v1/cluster/rebalance', role: 'operator' },
    { method: 'GET', url: '/api/v1/backup', role: 'admin' },
    { method: 'GET', url: '/api/v1/config/cluster', role: 'viewer' },
    { method: 'PUT', url: '/api/v1/config/cluster', role: 'admin', body: { boot: { defaultProfile: 'installer' } } },
    { method: 'GET', url: '/api/v1/subnets', role: 'viewer' },
    { method: 'GET', url: '/api/v1/subnets/lab', role: 'viewer' },
    { method: 'PUT', url: '/api/v1/subnets/lab', role: 'admin', body: { name: 'lab', subnet: '10.99.0.0/24' } },
    { method: 'DELETE', url: '/api/v1/subnets/lab', role: 'admin' },
    { method: 'GET', url: '/api/v1/subnets/lab/reservations', role: 'viewer' },
    { method: 'PUT', url: '/api/v1/subnets/lab/reservations/10.99.0.10', role: 'admin', body: { address: '10.99.0.10', mac: MAC_A } },
    { method: 'DELETE', url: '/api/v1/subnets/lab/reservations/10.99.0.10', role: 'admin' },
    { method: 'GET', url: '/api/v1/profiles', role: 'viewer' },
    { method: 'GET', url: '/api/v1/profiles/installer', role: 'viewer' },
    { method: 'PUT', url: '/api/v1/profiles/other', role: 'admin', body: { name: 'other', boot: { kind: 'localboot' } } },
    { method: 'DELETE', url: '/api/v1/profiles/other', role: 'admin' },
    { method: 'GET', url: '/api/v1/machines', role: 'viewer' },
    { method: 'GET', url: '/api/v1/machines/a', role: 'viewer' },
    { method: 'PUT', url: '/api/v1/machines/c', role: 'admin', body: { name: 'c', mac: '52:54:00:00:00:0c' } },
    { method: 'DELETE', url: '/api/v1/machines/c', role: 'admin' },
    { method: 'POST', url: '/api/v1/machines/a/reprovision', role: 'operator' },
    { method: 'GET', url: '/api/v1/machine-status', role: 'viewer' },
    { method: 'GET', url: '/api/v1/leases', role: 'viewer' },
    { method: 'GET', url: '/api/openapi.json', role: 'viewer' },
    { method: 'GET', url: '/api/v1/tokens', role: 'admin' },
    { method: 'POST', url: '/api/v1/tokens', role: 'admin', body: { role: 'viewer', name: 'from-table' } },
    { method: 'DELETE', url: '/api/v1/tokens/0000000000000000', role: 'admin' },
    { method: 'GET', url: '/api/v1/session', role: 'viewer' },
  ];
  const RANK: Role[] = ['viewer', 'operator', 'admin'];

  it('gives every API route its role: weaker roles get 403, the role and stronger ones get through', async () => {
    for (const route of TABLE) {
      for (const role of RANK) {
        const res = await call(route.method, route.url, role, route.body);
        const allowed = RANK.indexOf(role) >= RANK.indexOf(route.role);
        if (allowed) assert.ok(![401, 403].includes(res.statusCode), `${route.method} ${route.url} as ${role}: ${res.statusCode} ${res.body}`);
        else {
          assert.equal(res.statusCode, 403, `${route.method} ${route.url} as ${role}: ${res.body}`);
          const body = res.json() as { statusCode: number; code: string; error: string; message: string };
          assert.deepEqual(Object.keys(body).sort(), ['code', 'error', 'message', 'statusCode']);
          assert.equal(body.code, 'PXE_ERR_FORBIDDEN');
          assert.match(body.message, new RegExp(`needs the ${route.role} role; token test-${role} \\(\\w+\\) has ${role}`));
        }
      }
    }
  });

  it('a viewer cannot rebalance (403); an operator can, and can reprovision, but cannot write configuration; an admin can', async () => {
    const m0 = await metrics.registry.metrics();
    assert.equal((await call('POST', '/api/v1/cluster/rebalance', 'viewer')).statusCode, 403);
    const rebalanced = await call('POST', '/api/v1/cluster/rebalance', 'operator');
    assert.equal(rebalanced.statusCode, 200, rebalanced.body);
    assert.deepEqual(rebalanced.json().record.members, ['lab1']);
    assert.equal((await call('POST', '/api/v1/machines/a/reprovision', 'operator')).statusCode, 200);
    const config = { boot: { defaultProfile: 'installer' } };
    assert.equal((await call('PUT', '/api/v1/config/cluster', 'operator', config)).statusCode, 403);
    const written = await call('PUT', '/api/v1/config/cluster', 'admin', config);
    assert.equal(written.statusCode, 200, written.body);
    const m1 = await metrics.registry.metrics();
    assert.equal(denied(m1, 'role') - denied(m0, 'role'), 2);
  });

  it('refuses a request without a token (401, WWW-Authenticate) or with a wrong one, and counts each', async () => {
    const m0 = await metrics.registry.metrics();
    const none = await call('GET', '/api/v1/status');
    assert.equal(none.statusCode, 401);
    assert.equal(none.headers['www-authenticate'], 'Bearer realm="pxeha"');
    assert.deepEqual(Object.keys(none.json()).sort(), ['code', 'error', 'message', 'statusCode']);
    assert.equal(none.json().code, 'PXE_ERR_UNAUTHORIZED');
    assert.match(none.json().message, /needs a token/);
    // Shaped like a token, with the right id but another secret; and not a token at all.
    const forged = `${tokens.admin.slice(0, -43)}${'A'.repeat(43)}`;
    assert.equal((await call('GET', '/api/v1/status', forged)).statusCode, 401);
    assert.equal((await call('GET', '/api/v1/status', 'hunter2')).statusCode, 401);
    // Unknown API paths are not revealed to strangers either.
    assert.equal((await call('GET', '/api/v1/nothing-here')).statusCode, 401);
    // A route reached through an encoded path is still the API.
    assert.equal((await call('GET', '/%61pi/v1/status')).statusCode, 401);
    const m1 = await metrics.registry.metrics();
    assert.equal(denied(m1, 'missing') - denied(m0, 'missing'), 3);
    assert.equal(denied(m1, 'invalid') - denied(m0, 'invalid'), 2);
  });

  it('refuses a revoked token at once', async () => {
    const t = await createToken(store, { role: 'admin', name: 'short-lived' });
    assert.equal((await call('GET', '/api/v1/backup', t.token)).statusCode, 200);
    assert.equal(await revokeToken(store, t.id), true);
    const res = await call('GET', '/api/v1/backup', t.token);
    assert.equal(res.statusCode, 401);
    assert.match(res.json().message, /revoked/);
  });

  it('stores tokens hashed: no store value (nor a backup) holds a token secret', async () => {
    const created = await call('POST', '/api/v1/tokens', 'admin', { role: 'operator', name: 'hashed' });
    assert.equal(created.statusCode, 201, created.body);
    const { id, token } = created.json() as { id: string; token: string };
    const secret = token.slice(-43);
    const { kvs } = await store.range(TOKENS_PREFIX, { prefix: true });
    assert.ok(kvs.some((kv) => kv.key === `${TOKENS_PREFIX}${id}`));
    for (const s of [...Object.values(tokens).map((t) => t.slice(-43)), secret]) {
      for (const kv of kvs) assert.ok(!kv.value.includes(s), `${kv.key} holds a secret`);
    }
    const backup = await call('GET', '/api/v1/backup', 'admin');
    assert.ok(!backup.body.includes(secret));
    const listed = await call('GET', '/api/v1/tokens', 'admin');
    assert.ok(!listed.body.includes('sha256'), 'the list shows no hashes');
    assert.equal((await call('GET', '/api/v1/status', token)).statusCode, 200, 'the new token works');
  });

  it('lets a browser log in with a token and use a session cookie; revoking the token ends it', async () => {
    const t = await createToken(store, { role: 'operator', name: 'browser' });
    const bad = await call('POST', '/api/v1/session', undefined, { token: 'pxeha_nope' });
    assert.equal(bad.statusCode, 401);
    const login = await call('POST', '/api/v1/session', undefined, { token: t.token });
    assert.equal(login.statusCode, 200, login.body);
    const setCookie = String(login.headers['set-cookie']);
    assert.match(setCookie, /^pxeha_session=[0-9a-f]{16}\.\d+\.[A-Za-z0-9_-]{43}; Path=\/; Max-Age=43200; HttpOnly; SameSite=Strict$/);
    assert.ok(!setCookie.includes(t.token.slice(-43)), 'the cookie does not carry the token secret');
    const cookie = setCookie.split(';')[0]!;
    const who = await app.inject({ url: '/api/v1/session', headers: { cookie } });
    assert.deepEqual(who.json(), { kind: 'token', via: 'session', id: t.id, name: 'browser', role: 'operator' });
    const host = 'lab1.example:8080';
    const ok = await app.inject({ method: 'POST', url: '/api/v1/machines/a/reprovision', headers: { cookie, host, origin: `http://${host}` } });
    assert.equal(ok.statusCode, 200, ok.body);
    const csrf = await app.inject({ method: 'POST', url: '/api/v1/machines/a/reprovision', headers: { cookie, host, origin: 'http://evil.example' } });
    assert.equal(csrf.statusCode, 403);
    assert.equal((await app.inject({ method: 'PUT', url: '/api/v1/config/cluster', headers: { cookie }, payload: {} })).statusCode, 403, 'still an operator');
    const tampered = cookie.replace(/\.(\d+)\./, (_m, exp: string) => `.${Number(exp) + 1000}.`);
    assert.equal((await app.inject({ url: '/api/v1/status', headers: { cookie: tampered } })).statusCode, 401);
    await revokeToken(store, t.id);
    assert.equal((await app.inject({ url: '/api/v1/status', headers: { cookie } })).statusCode, 401);
  });

  it('leaves boot paths, health and metrics open', async () => {
    for (const url of [`/boot.ipxe?mac=${MAC_A}`, '/healthz', '/livez', '/metrics', '/artifacts/undionly.kpxe']) {
      const res = await call('GET', url);
      assert.equal(res.statusCode, 200, `${url}: ${res.body}`);
    }
  });

  it('trusts the Unix socket listener as admin (local root)', async () => {
    const local = await buildHttpApp(ctx, { listener: 'local' });
    try {
      const res = await local.inject({ method: 'GET', url: '/api/v1/backup' });
      assert.equal(res.statusCode, 200);
      assert.deepEqual((await local.inject('/api/v1/session')).json(), { kind: 'local', role: 'admin' });
    } finally {
      await local.close();
    }
  });

  it('with the API on HTTPS, the plain port serves boot paths only', async () => {
    const plain = await buildHttpApp(ctx, { listener: 'tcp', httpsPort: 8443 });
    try {
      const m0 = await metrics.registry.metrics();
      for (const url of ['/api/v1/status', '/api/openapi.json', '/ui/', '/anything']) {
        const res = await plain.inject({ url, headers: { authorization: `Bearer ${tokens.admin}` } });
        assert.equal(res.statusCode, 403, url);
        assert.equal(res.json().code, 'PXE_ERR_HTTPS_REQUIRED');
        assert.match(res.json().message, /HTTPS on port 8443/);
      }
      assert.equal(denied(await metrics.registry.metrics(), 'plain-http') - denied(m0, 'plain-http'), 4);
      for (const url of [`/boot.ipxe?mac=${MAC_A}`, '/healthz', '/metrics', '/artifacts/ipxe.efi']) assert.equal((await plain.inject(url)).statusCode, 200, url);
    } finally {
      await plain.close();
    }
  });

  it('renders each machine its own callback token, and /boot/done refuses any other (403, counted)', async () => {
    const script = (await call('GET', `/boot.ipxe?mac=${MAC_A}`)).body;
    const url = /^chain http:\/\/10\.99\.0\.1:8080(\/boot\/done\?mac=52%3A54%3A00%3A00%3A00%3A0a&token=([A-Za-z0-9_-]{43}))$/m.exec(script);
    assert.ok(url, script);
    assert.equal(url[2], await auth.machineToken(MAC_A));
    const scriptB = (await call('GET', `/boot.ipxe?mac=${MAC_B}`)).body;
    assert.ok(!scriptB.includes(url[2]!), "B's script does not hold A's token");
    const refused = (m: string, reason: string): number => {
      const line = m.split('\n').find((l) => l.startsWith(`pxeha_boot_callback_refused_total{reason="${reason}"}`));
      return line ? Number(line.split(' ').at(-1)) : 0;
    };
    const m0 = await metrics.registry.metrics();
    // A's token cannot mark B done; nor can no token; nor one from another cluster secret.
    const forB = await call('POST', `/boot/done?mac=${encodeURIComponent(MAC_B)}&token=${url[2]}`);
    assert.equal(forB.statusCode, 403);
    assert.equal(forB.json().code, 'PXE_ERR_FORBIDDEN');
    assert.equal((await call('GET', `/boot/done?mac=${encodeURIComponent(MAC_B)}`)).statusCode, 403);
    const foreign = machineToken(Buffer.alloc(32, 7), MAC_B);
    assert.equal((await call('GET', `/boot/done?mac=${encodeURIComponent(MAC_B)}&token=${foreign}`)).statusCode, 403);
    assert.equal(inventory.status(MAC_B)?.installedAtMs, undefined, 'B is not marked installed');
    const m1 = await metrics.registry.metrics();
    assert.equal(refused(m1, 'mismatch') - refused(m0, 'mismatch'), 2);
    assert.equal(refused(m1, 'missing') - refused(m0, 'missing'), 1);
    // A's own URL works, and marks A.
    const ok = await call('POST', url[1]!);
    assert.equal(ok.statusCode, 200, ok.body);
    assert.equal(inventory.status(MAC_A)?.installedAtMs, clock.now());
  });
});

describe('access control defaults', () => {
  it('a route under /api/ that declares no role needs viewer to read and admin for anything else', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pxeha-access-defaults-'));
    const store = await openStore({ kind: 'embedded', path: join(dir, 'store.db') });
    const auth = await Auth.open(store, { onError: (err) => assert.fail(err) });
    const app = Fastify();
    registerAccessControl(app, { listener: 'tcp', auth, metrics: new Metrics(), clock: new FakeClock(0) });
    app.get('/api/v1/undeclared', async () => ({ ok: true }));
    app.post('/api/v1/undeclared', async () => ({ ok: true }));
    app.post('/outside', { config: { role: 'operator' } }, async () => ({ ok: true }));
    app.get('/open', async () => ({ ok: true }));
    try {
      const viewer = (await createToken(store, { role: 'viewer' })).token;
      const operator = (await createToken(store, { role: 'operator' })).token;
      const admin = (await createToken(store, { role: 'admin' })).token;
      const as = (method: 'GET' | 'POST', url: string, token: string) => app.inject({ method, url, headers: { authorization: `Bearer ${token}` } });
      assert.equal((await as('GET', '/api/v1/undeclared', viewer)).statusCode, 200);
      assert.equal((await as('POST', '/api/v1/undeclared', operator)).statusCode, 403);
      assert.equal((await as('POST', '/api/v1/undeclared', admin)).statusCode, 200);
      // A route outside /api/ that declares a role is enforced as well.
      assert.equal((await as('POST', '/outside', viewer)).statusCode, 403);
      assert.equal((await as('POST', '/outside', operator)).statusCode, 200);
      assert.equal((await app.inject('/open')).statusCode, 200);
    } finally {
      await app.close();
      await auth.close();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
