/**
 * The etcd store against a real 3-member etcd cluster on loopback (test/helpers/etcd-cluster.ts):
 * the shared Store contract, then what only etcd has: start-up against bad endpoints (clear
 * errors within the dial timeout), members killed under continuous writes (no error, nothing
 * lost), quorum loss and whole-cluster restarts (one state change each way, watches resume
 * from their last revision), a watcher cut off by a TCP proxy (catches up, or reports
 * compaction), leadership handed over by resign, revoke or close, TLS with client
 * certificates, and etcd users.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, afterEach, before, describe, it } from 'node:test';
import { PxehaError } from '../../errors.js';
import { createTestCertificates, EtcdCluster, etcdAvailable, type TestCertificates } from '../../../test/helpers/etcd-cluster.js';
import { TcpProxy } from '../../../test/helpers/tcp-proxy.js';
import { rejectsWith, runStoreContract, waitFor, within, WatchRecorder } from '../contract.js';
import { campaign, leader } from '../election.js';
import { openStore } from '../open.js';
import { type ConnectionState, type EtcdStore, type EtcdStoreOptions, openEtcdStore } from './etcd-store.js';

/**
 * Skipped, loudly, only where the etcd binary is missing; scripts/install-deps.sh installs
 * Debian's etcd-server, so CI always runs these tests.
 */
const skip = etcdAvailable() ? false : 'etcd is not installed (Debian package etcd-server; run scripts/install-deps.sh)';
if (skip) console.warn(`# SKIPPING the etcd store tests: ${skip}`);

let cluster: EtcdCluster;

const FAST = { dialTimeoutMs: 3000, requestTimeoutMs: 3000 } as const;

function optionsFor(extra: Partial<EtcdStoreOptions> = {}): EtcdStoreOptions {
  return { endpoints: cluster.endpoints, ...FAST, ...extra };
}


/** Opens a store, runs `body`, closes the store whatever happens. */
async function withStore<T>(options: EtcdStoreOptions, body: (store: EtcdStore) => Promise<T>): Promise<T> {
  const store = await openEtcdStore(options);
  try {
    return await body(store);
  } finally {
    await store.close();
  }
}

function assertCode(err: unknown, code: string): PxehaError {
  assert.ok(err instanceof PxehaError, `expected PxehaError ${code}, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  return err;
}

/** A TCP server on loopback that accepts connections and never says a word (a hung member). */
async function silentServer(): Promise<{ endpoint: string; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    endpoint: `http://127.0.0.1:${port}`,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** A loopback port nobody listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('etcd store on a 3-member cluster', { skip }, () => {
  before(async () => {
    cluster = await EtcdCluster.start({ members: 3 });
  });
  after(async () => {
    await cluster?.stop();
  });

  runStoreContract('etcd', async () => {
    let store = await openEtcdStore(optionsFor());
    return {
      store,
      reopen: async () => {
        await store.close();
        store = await openEtcdStore(optionsFor());
        return store;
      },
      cleanup: async () => {
        await store.close();
      },
    };
  });

  describe('etcd store', () => {
    describe('start-up and configuration', () => {
      it('openStore opens an etcd store from its configuration', async () => {
        const store = await openStore({ kind: 'etcd', endpoints: cluster.endpoints, dialTimeoutMs: 3000 });
        try {
          assert.equal(store.kind, 'etcd');
          assert.ok((await store.revision()) >= 1);
        } finally {
          await store.close();
        }
      });

      it('fails fast and clearly when no endpoint listens', async () => {
        const endpoint = `http://127.0.0.1:${await closedPort()}`;
        const started = Date.now();
        const err = await openEtcdStore({ endpoints: [endpoint], dialTimeoutMs: 1500 }).then(() => undefined, (e: unknown) => e);
        const error = assertCode(err, 'PXE_ERR_STORE_UNAVAILABLE');
        assert.equal(error.retryable, true);
        assert.match(error.message, new RegExp(`cannot reach etcd at ${endpoint} within 1500 ms`));
        assert.ok(Date.now() - started < 5000, 'bounded by the dial timeout');
      });

      it('gives up after the dial timeout when an endpoint accepts TCP but never answers', async () => {
        const silent = await silentServer();
        try {
          const started = Date.now();
          const err = await openEtcdStore({ endpoints: [silent.endpoint], dialTimeoutMs: 800 }).then(() => undefined, (e: unknown) => e);
          assertCode(err, 'PXE_ERR_STORE_UNAVAILABLE');
          const elapsed = Date.now() - started;
          assert.ok(elapsed >= 700 && elapsed < 4000, `failed after ${elapsed} ms, dial timeout 800 ms`);
        } finally {
          await silent.close();
        }
      });

      it('starts when one endpoint of several is dead', async () => {
        const dead = `http://127.0.0.1:${await closedPort()}`;
        await withStore({ endpoints: [dead, ...cluster.endpoints], ...FAST }, async (store) => {
          for (let i = 0; i < 10; i++) await store.put(`/etcd-test/dead-endpoint/${i}`, 'v');
          assert.equal((await store.delete('/etcd-test/dead-endpoint/', { prefix: true })).deleted, 10);
        });
      });

      it('rejects inconsistent options with the JSON pointer of the field', async () => {
        const cases: Array<[Partial<EtcdStoreOptions>, string]> = [
          [{ endpoints: [] }, '/store/endpoints'],
          [{ endpoints: ['127.0.0.1:2379'] }, '/store/endpoints/0'],
          [{ endpoints: ['http://a:1', 'https://b:2'] }, '/store/endpoints'],
          [{ endpoints: ['http://a:1'], tls: { caFile: '/x' } }, '/store/tls'],
          [{ endpoints: ['https://a:1'], tls: { certFile: '/x' } }, '/store/tls/keyFile'],
          [{ endpoints: ['http://a:1'], username: 'pxeha' }, '/store/password'],
          [{ endpoints: ['http://a:1'], password: 'secret' }, '/store/username'],
          [{ endpoints: ['https://a:1'], tls: { caFile: '/nonexistent/ca.pem' } }, '/store/tls/caFile'],
        ];
        for (const [options, pointer] of cases) {
          const err = await openEtcdStore({ endpoints: [], ...options }).then(() => undefined, (e: unknown) => e);
          const error = assertCode(err, 'PXE_ERR_CONFIG_INVALID');
          assert.ok(
            (error as PxehaError & { issues: Array<{ path: string }> }).issues.some((i) => i.path === pointer),
            `${JSON.stringify(options)} → ${pointer}: ${error.message}`,
          );
        }
      });

      it('the node config schema accepts the etcd store section and refuses unknown fields', async () => {
        const { compileChecker } = await import('../../config/load.js');
        const { StoreConfigSchema } = await import('../../config/schema.js');
        const check = compileChecker(StoreConfigSchema);
        const full = {
          kind: 'etcd',
          endpoints: ['https://10.0.0.1:2379', 'https://10.0.0.2:2379'],
          tls: { caFile: '/etc/pxeha/etcd-ca.pem', certFile: '/etc/pxeha/etcd.pem', keyFile: '/etc/pxeha/etcd-key.pem' },
          username: 'pxeha',
          passwordFile: '/etc/pxeha/etcd-password',
          dialTimeoutMs: 5000,
          requestTimeoutMs: 5000,
          healthCheckIntervalMs: 2000,
        };
        assert.deepEqual(check(structuredClone(full)), []);
        assert.notDeepEqual(check({ ...structuredClone(full), hosts: ['x'] }), []);
        assert.notDeepEqual(check({ kind: 'etcd', endpoints: [] }), []);
        assert.notDeepEqual(check({ kind: 'etcd', endpoints: ['10.0.0.1:2379'] }), []);
        assert.notDeepEqual(check({ kind: 'etcd', endpoints: ['http://a:1'], tls: { ca: '/x' } }), []);
      });
    });

    describe('faults', () => {
      // A failed fault test must not leave the next one a broken cluster.
      afterEach(async () => {
        for (let i = 0; i < cluster.endpoints.length; i++) if (cluster.pid(i) === undefined) await cluster.startMember(i);
      });

      it('killing one member of three changes nothing visible: no error, nothing lost, no gap in a watch', { timeout: 60_000 }, async (t) => {
        await withStore(optionsFor(), async (store) => {
          const prefix = '/etcd-test/member-killed/';
          const watch = new WatchRecorder(await store.watch(prefix, { prefix: true }));
          const errors: unknown[] = [];
          // Writers that never stop during the kills: each compare-and-set increments its own
          // counter (a write applied twice or lost would show in the count), plus a plain put
          // and a delete. (A key that one writer both puts and deletes would defeat the history
          // check after a lost put reply, which then fails the call as before: write-outcome.ts.)
          const WRITERS = 4;
          const counts = Array.from({ length: WRITERS }, () => 0);
          let running = true;
          const writer = async (w: number) => {
            const key = `${prefix}counter/${w}`;
            await store.put(key, '0');
            while (running) {
              try {
                const kv = await store.get(key);
                const result = await store.txn({
                  compare: [{ key, target: 'modRevision', op: '==', value: kv!.modRevision }],
                  success: [{ type: 'put', key, value: String(Number(kv!.value) + 1) }],
                });
                assert.ok(result.succeeded, `writer ${w}: nobody else writes ${key}`);
                counts[w]! += 1;
                await store.put(`${prefix}plain/${w}`, String(counts[w]));
                // A delete of nothing still goes through Raft, and may lose its reply the same way.
                assert.equal((await store.delete(`${prefix}absent/${w}`)).deleted, 0);
              } catch (err) {
                errors.push(err);
                return;
              }
            }
          };
          const writers = Array.from({ length: WRITERS }, (_, w) => writer(w));
          try {
            // Kill each member in turn, so whichever one a call or the watch uses goes away.
            for (const member of [0, 1, 2]) {
              await sleep(300);
              await cluster.kill(member);
              await sleep(700);
              await cluster.startMember(member);
            }
            await sleep(300);
          } finally {
            running = false;
            await Promise.all(writers);
          }
          assert.deepEqual(errors.map(String), [], 'no call failed');
          const recovered = store.recoveredWrites;
          t.diagnostic(`writes per writer: ${counts.join(', ')}; lost replies settled from history: ${recovered.applied} applied, ${recovered.resent} sent again`);
          for (let w = 0; w < WRITERS; w++) {
            assert.equal(Number((await store.get(`${prefix}counter/${w}`))?.value), counts[w], `writer ${w}: every confirmed write once`);
          }
          assert.ok(counts.every((n) => n > 10), `writers kept writing: ${counts.join(', ')}`);
          const { revision } = await store.put(`${prefix}done`, '');
          await watch.waitForRevision(revision);
          for (let w = 0; w < WRITERS; w++) {
            const values = watch.events().filter((e) => e.kv.key === `${prefix}counter/${w}`).map((e) => Number(e.kv.value));
            assert.deepEqual(values, Array.from({ length: counts[w]! + 1 }, (_, i) => i), `writer ${w}: each increment seen once, in order`);
          }
          const revisions = watch.batches.map((b) => b.revision);
          assert.deepEqual(revisions, [...new Set(revisions)].sort((x, y) => x - y), 'no revision twice, in order');
          assert.equal(watch.errors.length, 0);
          assert.equal(store.state, 'connected');
          await store.delete(prefix, { prefix: true });
        });
      });

      it('losing quorum fails calls as retryable PXE_ERR_STORE_UNAVAILABLE and emits one state change each way', { timeout: 60_000 }, async () => {
        await withStore(optionsFor({ requestTimeoutMs: 500, healthCheckIntervalMs: 200 }), async (store) => {
          const states: ConnectionState[] = [];
          store.on('state', (state) => states.push(state));
          const prefix = '/etcd-test/quorum/';
          const watch = new WatchRecorder(await store.watch(prefix, { prefix: true }));
          const before = await store.put(`${prefix}a`, 'before');

          await cluster.kill(1);
          await cluster.kill(2);
          const failures: PxehaError[] = [];
          const until = Date.now() + 3000;
          while (Date.now() < until) {
            const err = await store.put(`${prefix}b`, 'during').then(() => undefined, (e: unknown) => e);
            if (err) failures.push(assertCode(err, 'PXE_ERR_STORE_UNAVAILABLE'));
          }
          assert.ok(failures.length >= 2, `calls failed while quorum was lost (${failures.length})`);
          assert.ok(failures.every((e) => e.retryable));
          assert.deepEqual(states, ['disconnected'], 'many failures, one state change');
          assert.equal(watch.errors.length, 0, 'an outage does not end a watch');

          await Promise.all([cluster.startMember(1), cluster.startMember(2)]);
          await waitFor(() => store.state === 'connected', 15_000, 'reconnection');
          const afterwards = await store.put(`${prefix}c`, 'after');
          assert.deepEqual(states, ['disconnected', 'connected']);
          await watch.waitForRevision(afterwards.revision);
          const seen = watch.batches.map((b) => b.revision);
          assert.equal(seen[0], before.revision);
          assert.deepEqual(seen, [...new Set(seen)].sort((x, y) => x - y), 'no revision twice, in order');
          assert.equal(watch.events().at(-1)?.kv.value, 'after');
          await store.delete(prefix, { prefix: true });
        });
      });

      it('a watch resumes from its last revision after the whole cluster restarts; state changes once each way', { timeout: 60_000 }, async () => {
        await withStore(optionsFor({ requestTimeoutMs: 1000, healthCheckIntervalMs: 200 }), async (store) => {
          const states: ConnectionState[] = [];
          store.on('state', (state) => states.push(state));
          const prefix = '/etcd-test/cluster-restart/';
          const watch = new WatchRecorder(await store.watch(prefix, { prefix: true }));
          const before: number[] = [];
          for (let i = 0; i < 5; i++) before.push((await store.put(`${prefix}k${i}`, `before ${i}`)).revision);
          await watch.waitForRevision(before.at(-1)!);

          await Promise.all([0, 1, 2].map((i) => cluster.kill(i)));
          await waitFor(() => store.state === 'disconnected', 5000, 'the store to notice the outage');
          // Refused connections: certainly not applied, so this fails only after its retries.
          await rejectsWith(store.put(`${prefix}during`, 'x'), 'PXE_ERR_STORE_UNAVAILABLE');
          await Promise.all([0, 1, 2].map((i) => cluster.startMember(i)));
          await waitFor(() => store.state === 'connected', 15_000, 'reconnection');

          const after = await store.put(`${prefix}after`, 'after');
          await watch.waitForRevision(after.revision);
          assert.deepEqual(watch.summary(), [
            ...before.map((revision, i): [number, [string, string, string]] => [revision, ['put', `${prefix}k${i}`, `before ${i}`]]),
            [after.revision, ['put', `${prefix}after`, 'after']],
          ], 'every event once, nothing replayed, nothing lost');
          assert.equal(watch.errors.length, 0, 'an outage does not end a watch');
          assert.deepEqual(states, ['disconnected', 'connected'], 'one state change each way, however many calls failed');
          await store.delete(prefix, { prefix: true });
        });
      });

      it('a watch cut off from etcd catches up from its last revision, or reports that history was compacted', { timeout: 60_000 }, async () => {
        const proxy = await TcpProxy.start(cluster.endpoint(0));
        try {
          const remoteOptions = optionsFor({ endpoints: [proxy.endpoint], requestTimeoutMs: 1000, healthCheckIntervalMs: 200 });
          await withStore(remoteOptions, async (remote) => {
            await withStore(optionsFor(), async (store) => {
              const prefix = '/etcd-test/cut-off/';
              const watch = new WatchRecorder(await remote.watch(prefix, { prefix: true }));
              const first = await store.put(`${prefix}a`, 'seen');
              await watch.waitForRevision(first.revision);

              // Writes made while the watcher's connection is down arrive after it comes back.
              proxy.cut();
              const missed: number[] = [];
              for (let i = 0; i < 5; i++) missed.push((await store.put(`${prefix}b${i}`, String(i))).revision);
              await waitFor(() => remote.state === 'disconnected', 5000, 'the cut-off store to notice');
              proxy.resume();
              await watch.waitForRevision(missed.at(-1)!);
              assert.deepEqual(watch.batches.map((b) => b.revision), [first.revision, ...missed], 'each missed revision once, in order');

              // History the watcher still needs is compacted while it is away: it says so.
              proxy.cut();
              const lost = await store.put(`${prefix}c`, 'compacted before the watcher saw it');
              const later = await store.put(`${prefix}d`, '');
              await store.compact(later.revision);
              proxy.resume();
              const error = await watch.waitForError();
              assert.ok(error instanceof PxehaError);
              assert.equal(error.code, 'PXE_ERR_STORE_COMPACTED');
              assert.equal(error.retryable, false);
              assert.match(error.message, new RegExp(`watch needs revision ${lost.revision} but etcd compacted history before ${later.revision}`));
              assert.ok(watch.batches.every((b) => b.revision < lost.revision), 'nothing delivered past the gap');
              await store.delete(prefix, { prefix: true });
            });
          });
        } finally {
          await proxy.close();
        }
      });

      it('resign() or revoking the lease hands leadership to the next candidate at once', { timeout: 30_000 }, async () => {
        const options = { prefix: '/etcd-test/election' };
        const a = await openEtcdStore(optionsFor());
        const b = await openEtcdStore(optionsFor());
        try {
          const [leaseA, leaseB1, leaseB2] = await Promise.all([a.leaseGrant(30), b.leaseGrant(30), b.leaseGrant(30)]);
          const leadA = await campaign(a, 'handover', 'node-a', leaseA.id, options);
          const nextB = campaign(b, 'handover', 'node-b', leaseB1.id, options);
          await sleep(200);
          let started = Date.now();
          await leadA.resign();
          const leadB = await within(nextB, 2000, 'node-b to lead after node-a resigned');
          const afterResignMs = Date.now() - started;
          assert.ok(afterResignMs < 1000, `resign handed over in ${afterResignMs} ms`);
          assert.equal((await leader(a, 'handover', options))?.value, 'node-b');

          const nextB2 = campaign(b, 'handover', 'node-b2', leaseB2.id, options);
          await sleep(200);
          started = Date.now();
          await b.leaseRevoke(leaseB1.id);
          const leadB2 = await within(nextB2, 2000, 'the next candidate to lead after the lease was revoked');
          const afterRevokeMs = Date.now() - started;
          assert.ok(afterRevokeMs < 1000, `revoke handed over in ${afterRevokeMs} ms`);
          await waitFor(() => !leadB.isLeader, 2000, 'the revoked leader to learn it lost');
          await leadB2.resign();
          await Promise.all([a.leaseRevoke(leaseA.id), b.leaseRevoke(leaseB2.id)]);
        } finally {
          await a.close();
          await b.close();
        }
      });

      it('close() stops renewing: a closed node\'s lease expires and its leadership passes on', { timeout: 30_000 }, async () => {
        const options = { prefix: '/etcd-test/election' };
        const a = await openEtcdStore(optionsFor());
        const b = await openEtcdStore(optionsFor());
        let renew: NodeJS.Timeout | undefined;
        try {
          const leaseA = await a.leaseGrant(1);
          const leaseB = await b.leaseGrant(30);
          const leadA = await campaign(a, 'close', 'node-a', leaseA.id, options);
          assert.equal(leadA.isLeader, true);
          // The caller's renewal loop, as a node runs it; it keeps calling after close().
          const renewals: Array<Promise<unknown>> = [];
          renew = setInterval(() => renewals.push(a.leaseKeepAlive(leaseA.id).catch((e: unknown) => e)), 200);
          const leadB = campaign(b, 'close', 'node-b', leaseB.id, options);
          await sleep(1500);
          assert.equal((await leader(b, 'close', options))?.value, 'node-a', 'renewals keep node-a leading past its TTL');

          await a.close();
          const newLeader = await within(leadB, 10_000, 'node-b to lead after node-a closed');
          clearInterval(renew);
          assert.equal(newLeader.isLeader, true);
          assert.equal(await b.leaseTimeToLive(leaseA.id), -1, "node-a's lease expired");
          const late = await Promise.all(renewals.slice(-2));
          for (const outcome of late) assertCode(outcome, 'PXE_ERR_STORE_UNAVAILABLE');
          await newLeader.resign();
          await b.leaseRevoke(leaseB.id);
        } finally {
          clearInterval(renew);
          await a.close();
          await b.close();
        }
      });
    });
  });
});

describe('etcd store security', { skip }, () => {
  describe('TLS with client certificates', () => {
    let certDir: string;
    let certs: TestCertificates;
    let secure: EtcdCluster;
    before(async () => {
      certDir = mkdtempSync(join(tmpdir(), 'pxeha-etcd-tls-'));
      certs = createTestCertificates(certDir);
      secure = await EtcdCluster.start({
        members: 1,
        tls: { caFile: certs.caFile, certFile: certs.serverCertFile, keyFile: certs.serverKeyFile, clientCertAuth: true },
      });
    });
    after(async () => {
      await secure?.stop();
      rmSync(certDir, { recursive: true, force: true });
    });

    it('works over https with the CA and a client certificate', async () => {
      assert.match(secure.endpoints[0]!, /^https:/);
      const tls = { caFile: certs.caFile, certFile: certs.clientCertFile, keyFile: certs.clientKeyFile };
      await withStore({ endpoints: secure.endpoints, tls, ...FAST }, async (store) => {
        const watch = new WatchRecorder(await store.watch('/tls/', { prefix: true }));
        const { revision } = await store.put('/tls/k', 'secret');
        assert.equal((await store.get('/tls/k'))?.value, 'secret');
        await watch.waitForRevision(revision);
      });
    });

    it('fails at start-up, within the dial timeout, without a client certificate or with the wrong CA', async () => {
      for (const tls of [{ caFile: certs.caFile }, { caFile: certs.otherCaFile, certFile: certs.clientCertFile, keyFile: certs.clientKeyFile }]) {
        const started = Date.now();
        const err = await openEtcdStore({ endpoints: secure.endpoints, tls, dialTimeoutMs: 1000 }).then(() => undefined, (e: unknown) => e);
        const error = assertCode(err, 'PXE_ERR_STORE_UNAVAILABLE');
        assert.match(error.message, /cannot reach etcd at https:\/\/127\.0\.0\.1:\d+ within 1000 ms/);
        assert.ok(Date.now() - started < 4000);
      }
    });

    it('refuses plain http against a TLS member', async () => {
      const plain = secure.endpoints.map((e) => e.replace(/^https:/, 'http:'));
      await rejectsWith(openEtcdStore({ endpoints: plain, dialTimeoutMs: 800 }), 'PXE_ERR_STORE_UNAVAILABLE');
    });
  });

  describe('user and password (etcd RBAC)', () => {
    let guarded: EtcdCluster;
    let dir: string;
    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'pxeha-etcd-auth-'));
      guarded = await EtcdCluster.start({ members: 1 });
      for (const args of [
        ['user', 'add', 'root:root-pw', '--interactive=false'],
        ['user', 'grant-role', 'root', 'root'],
        ['role', 'add', 'pxeha'],
        ['role', 'grant-permission', 'pxeha', '--prefix=true', 'readwrite', '/pxeha/'],
        ['user', 'add', 'pxeha:pxeha-pw', '--interactive=false'],
        ['user', 'grant-role', 'pxeha', 'pxeha'],
        ['auth', 'enable'],
      ]) {
        await guarded.etcdctl(args);
      }
    });
    after(async () => {
      await guarded?.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    it('authenticates with a password or a password file and is held to its permissions', async () => {
      const passwordFile = join(dir, 'password');
      writeFileSync(passwordFile, 'pxeha-pw\n', { mode: 0o600 });
      for (const credentials of [{ password: 'pxeha-pw' }, { passwordFile }]) {
        await withStore({ endpoints: guarded.endpoints, username: 'pxeha', ...credentials, ...FAST }, async (store) => {
          const watch = new WatchRecorder(await store.watch('/pxeha/auth/', { prefix: true }));
          const { revision } = await store.put('/pxeha/auth/k', 'v');
          assert.equal((await store.get('/pxeha/auth/k'))?.value, 'v');
          await watch.waitForRevision(revision);
          assert.ok((await store.revision()) >= revision);
          const lease = await store.leaseGrant(5);
          await store.leaseRevoke(lease.id);
          // Outside its prefix the user is refused, clearly and without retries.
          await rejectsWith(store.put('/elsewhere', 'v'), 'PXE_ERR_STORE_AUTH');
          await rejectsWith(store.watch('/elsewhere/', { prefix: true }), 'PXE_ERR_STORE_AUTH');
          assert.equal(store.state, 'connected', 'a refusal is not an outage');
          await store.delete('/pxeha/auth/', { prefix: true });
        });
      }
    });

    it('fails at start-up with PXE_ERR_STORE_AUTH for a wrong password or no credentials', async () => {
      const wrong = await openEtcdStore({ endpoints: guarded.endpoints, username: 'pxeha', password: 'nope', ...FAST }).then(() => undefined, (e: unknown) => e);
      assert.match(assertCode(wrong, 'PXE_ERR_STORE_AUTH').message, /refused the credentials/);
      const anonymous = await openEtcdStore({ endpoints: guarded.endpoints, ...FAST }).then(() => undefined, (e: unknown) => e);
      assertCode(anonymous, 'PXE_ERR_STORE_AUTH');
    });
  });
});
