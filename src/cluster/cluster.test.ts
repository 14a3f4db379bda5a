import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseClusterConfig } from '../config/load.js';
import { leaseKey, type LeaseRecord } from '../dhcp/lease-record.js';
import { silentLogger } from '../obs/log.js';
import { leader } from '../store/election.js';
import { openEmbeddedStore } from '../store/embedded/embedded-store.js';
import { rejectsWith, waitFor } from '../store/contract.js';
import type { Store } from '../store/store.js';
import { FakeClock, systemClock } from '../util/clock.js';
import { clusterStatusFromStore, formatClusterStatus } from '../cli/cluster.js';
import { formatBackup, parseBackup, restoreBackup, takeBackup } from './backup.js';
import { ClusterNode } from './cluster-node.js';
import { failoverWarnings } from './failover.js';
import { fencedTxn, type Fence, type LeaderJob } from './leader-jobs.js';
import { isExpiredRecord, leaseExpiryJob } from './lease-expiry.js';
import { clusterStatusOf, LEADER_ELECTION, memberKey, type MemberRecord, type MemberView } from './member-record.js';

const log = silentLogger();

async function withStore(body: (store: Store, dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'pxeha-cluster-'));
  const store = await openEmbeddedStore({ path: join(dir, 'store.db') });
  try {
    await body(store, dir);
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** A store whose calls fail while `down` is set, as a store behind a cut link would. */
function cuttable(store: Store): { store: Store; setDown(down: boolean): void } {
  let down = false;
  const proxy = new Proxy(store, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        if (down && prop !== 'close' && prop !== 'watch') {
          return Promise.reject(Object.assign(new Error('store unreachable (test cut)'), { code: 'PXE_ERR_STORE_UNAVAILABLE' }));
        }
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { store: proxy, setDown: (d) => (down = d) };
}

function startNode(store: Store, name: string, jobs: LeaderJob[] = [], ttlSeconds = 1): Promise<ClusterNode> {
  return ClusterNode.start(
    store,
    {
      name,
      httpPort: 8080,
      advertiseAddress: '127.0.0.1',
      memberTtlSeconds: ttlSeconds,
      publishIntervalMs: 200,
      clockSkewWarnMs: 2000,
      jobs,
      clock: systemClock,
      log,
    },
    0,
  );
}

function record(name: string, configRevision: number, clockMs: number): MemberRecord {
  return {
    name,
    addresses: ['10.0.0.1'],
    httpPort: 8080,
    version: '0.1.0',
    configRevision,
    images: [],
    artifacts: [],
    load: { loadAvg1: 0, rssBytes: 0, leaseRecords: 0 },
    clockMs,
    startedAtMs: 0,
  };
}

function lease(ip: string, state: LeaseRecord['state'], expiresAtMs: number): LeaseRecord {
  return { ip, subnet: 'lab', state, clientKey: `mac:${ip}`, mac: '52:54:00:00:00:01', expiresAtMs, node: 'a' };
}

describe('cluster status (pure)', () => {
  it('flags nodes behind on configuration and clock skew above the threshold', () => {
    const members: MemberView[] = [
      { record: record('a', 10, 1000), modRevision: 5, receivedAtMs: 1000 },
      // 3000 ms ahead of a: the write that took least time through the store tells.
      { record: record('b', 7, 4500), modRevision: 6, receivedAtMs: 1500, offsetSamplesMs: [2100, 3000, 2950] },
      { record: record('c', 10, 900), modRevision: 7 }, // already there at start: offset unknown
    ];
    const status = clusterStatusOf({
      observer: 'a',
      observedAtMs: 2000,
      members,
      leaderName: 'c',
      configRevision: 10,
      clockSkewThresholdMs: 2000,
      store: { kind: 'etcd', reachable: true, revision: 12 },
      degraded: false,
    });
    assert.deepEqual(
      status.nodes.map((n) => [n.name, n.behind, n.leader, n.clockOffsetMs]),
      [
        ['a', false, false, 0],
        ['b', true, false, 3000],
        ['c', false, true, undefined],
      ],
    );
    assert.equal(status.leader, 'c');
    assert.equal(status.clockSkewMs, 3000);
    assert.equal(status.warnings.length, 2);
    assert.match(status.warnings[0]!, /node b applied configuration revision 7, the store has 10/);
    assert.match(status.warnings[1]!, /clocks differ by 3000 ms/);
  });

  it('warns when the store is unreachable, the observer degraded, or nobody leads', () => {
    const status = clusterStatusOf({
      observer: 'a',
      observedAtMs: 0,
      members: [{ record: record('a', 1, 0), modRevision: 1 }],
      leaderName: undefined,
      configRevision: 1,
      clockSkewThresholdMs: 2000,
      store: { kind: 'etcd', reachable: false, error: 'timeout' },
      degraded: true,
    });
    assert.equal(status.clockSkewMs, undefined);
    assert.deepEqual(status.warnings, [
      'node a cannot reach the store: this view may be stale',
      'store unreachable: timeout',
      'no leader elected: cluster-wide jobs are not running',
    ]);
  });
});

describe('failover warnings', () => {
  it('warn when the time from rebinding to expiry is shorter than the failover window', () => {
    const config = parseClusterConfig({
      subnets: [
        { name: 'short', subnet: '10.0.0.0/24', leaseSeconds: 60 },
        { name: 'long', subnet: '10.0.1.0/24', leaseSeconds: 3600 },
        { name: 'proxy', subnet: '10.0.2.0/24', mode: 'proxy', leaseSeconds: 60 },
      ],
    });
    assert.deepEqual(failoverWarnings(config, { memberTtlSeconds: 3, storeElectionTimeoutMs: 1000 }), []);
    const warnings = failoverWarnings(config, { memberTtlSeconds: 10, storeElectionTimeoutMs: 1000 });
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /^\/subnets\/0\/leaseSeconds: subnet short leases of 60s leave 7500 ms .* 11000 ms failover window/);
  });
});

describe('lease expiry rule', () => {
  it('removes only offered and released records past their end plus grace', () => {
    assert.equal(isExpiredRecord(lease('10.0.0.1', 'offered', 1000), 1500, 500), true);
    assert.equal(isExpiredRecord(lease('10.0.0.1', 'offered', 1000), 1499, 500), false);
    assert.equal(isExpiredRecord(lease('10.0.0.1', 'released', 1000), 1000, 0), true);
    assert.equal(isExpiredRecord(lease('10.0.0.1', 'bound', 1000), 99_999, 0), false);
    assert.equal(isExpiredRecord(lease('10.0.0.1', 'declined', 1000), 99_999, 0), false);
  });
});

describe('membership (embedded store)', () => {
  it('every node sees every registered node; a closed node leaves at once', () =>
    withStore(async (store) => {
      const a = await startNode(store, 'a');
      const b = await startNode(store, 'b');
      try {
        await waitFor(() => a.membership.members().length === 2 && b.membership.members().length === 2, 3000, 'both registered');
        const kv = await store.get(memberKey('a'));
        assert.ok(kv && kv.lease !== '0', 'the record hangs on a lease');
        const seen = b.membership.members().find((m) => m.record.name === 'a')!.record;
        assert.deepEqual(seen.addresses, ['127.0.0.1']);
        assert.equal(seen.httpPort, 8080);
        assert.deepEqual(seen.images, []);
        a.membership.setAppliedRevision(42);
        await waitFor(
          () => b.membership.members().find((m) => m.record.name === 'a')?.record.configRevision === 42,
          1000,
          'revision published',
        );
      } finally {
        await a.close();
      }
      await waitFor(() => b.membership.members().length === 1, 1000, 'a gone after close');
      await b.close();
    }));

  it('a node cut off from the store reports itself degraded, disappears within its TTL, and re-registers when the store returns', () =>
    withStore(async (raw) => {
      const cut = cuttable(raw);
      const a = await startNode(cut.store, 'a');
      const b = await startNode(raw, 'b');
      try {
        await waitFor(() => b.membership.members().length === 2, 3000, 'both registered');
        assert.equal(a.health().state, 'ok');
        const t0 = performance.now();
        cut.setDown(true);
        await waitFor(() => a.health().state === 'degraded', 2000, 'a degraded');
        await waitFor(() => !b.membership.members().some((m) => m.record.name === 'a'), 3000, 'a gone for b');
        const goneAfterMs = performance.now() - t0;
        assert.ok(goneAfterMs < 1000 + 1500, `gone after ${goneAfterMs} ms with a 1 s TTL`);
        const status = await a.status();
        assert.equal(status.degraded, true);
        assert.equal(status.store.reachable, false);
        cut.setDown(false);
        await waitFor(() => a.health().state === 'ok', 3000, 'a healthy again');
        await waitFor(() => b.membership.members().some((m) => m.record.name === 'a'), 3000, 'a registered again');
      } finally {
        await a.close();
        await b.close();
      }
    }));
});

describe('leader jobs (embedded store)', () => {
  it('one node leads; on close it resigns and another takes over; a deposed fence can no longer write', () =>
    withStore(async (store) => {
      const running = new Map<string, number>();
      const job = (node: string): LeaderJob => ({
        name: 'count',
        async run({ signal }) {
          running.set(node, (running.get(node) ?? 0) + 1);
          await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
          running.set(node, (running.get(node) ?? 0) - 1);
        },
      });
      const a = await startNode(store, 'a', [job('a')]);
      await waitFor(() => a.leaderJobs.isLeader, 2000, 'a leads');
      const b = await startNode(store, 'b', [job('b')]);
      const c = await startNode(store, 'c', [job('c')]);
      try {
        await waitFor(() => running.get('a') === 1, 1000, 'a runs its job');
        const fenceA: Fence = a.leaderJobs.fence!;
        assert.equal(b.leaderJobs.isLeader || c.leaderJobs.isLeader, false);
        assert.equal(JSON.parse((await leader(store, LEADER_ELECTION))!.value).name, 'a');
        const ok = await fencedTxn(store, fenceA, { success: [{ type: 'put', key: '/pxeha/test/x', value: '1' }] });
        assert.equal(ok.succeeded, true);

        const t0 = performance.now();
        await a.close();
        assert.equal(running.get('a'), 0, 'a stopped its job before close returned');
        await waitFor(() => b.leaderJobs.isLeader || c.leaderJobs.isLeader, 2000, 'a new leader');
        const handoverMs = performance.now() - t0;
        assert.ok(handoverMs < 1000, `resign hands over at once (${handoverMs} ms)`);
        assert.equal(b.leaderJobs.isLeader && c.leaderJobs.isLeader, false, 'never two leaders');
        await rejectsWith(fencedTxn(store, fenceA, { success: [{ type: 'put', key: '/pxeha/test/x', value: '2' }] }), 'PXE_ERR_NOT_LEADER');
        assert.equal((await store.get('/pxeha/test/x'))?.value, '1');
      } finally {
        await b.close();
        await c.close();
      }
    }));

  it('a leader cut off from the store stops its jobs at once; another node leads after the TTL', () =>
    withStore(async (raw) => {
      const cut = cuttable(raw);
      const a = await startNode(cut.store, 'a');
      await waitFor(() => a.leaderJobs.isLeader, 2000, 'a leads');
      const b = await startNode(raw, 'b');
      try {
        const deposed = new Promise<string>((resolve) => a.leaderJobs.on('deposed', resolve));
        cut.setDown(true);
        assert.match(await deposed, /store unreachable|expired/);
        assert.equal(a.leaderJobs.isLeader, false);
        await waitFor(() => b.leaderJobs.isLeader, 4000, 'b leads after a’s lease lapsed');
        cut.setDown(false);
        await waitFor(() => a.health().state === 'ok', 3000, 'a back');
        // The old leader campaigns again with a new lease, behind b: it must not lead.
        await new Promise((r) => setTimeout(r, 1500));
        assert.equal(a.leaderJobs.isLeader, false);
        assert.equal(b.leaderJobs.isLeader, true);
      } finally {
        await a.close();
        await b.close();
      }
    }));

  it('the lease-expiry job removes ended offers and releases, keeps the rest, and only while leading', () =>
    withStore(async (store) => {
      const clock = new FakeClock(1_000_000);
      const records = [
        lease('10.0.0.1', 'offered', 900_000), // ended
        lease('10.0.0.2', 'offered', 2_000_000), // still held
        lease('10.0.0.3', 'released', 990_000), // ended
        lease('10.0.0.4', 'bound', 1), // expired binding: kept, the client gets it back
        lease('10.0.0.5', 'declined', 1),
      ];
      for (const r of records) await store.put(leaseKey(r.subnet, r.ip), JSON.stringify(r));
      let removedTotal = 0;
      const a = await startNode(store, 'a', [leaseExpiryJob({ clock, intervalMs: 50, graceMs: 0, onRemoved: (n) => (removedTotal += n) })]);
      try {
        await waitFor(() => removedTotal === 2, 3000, 'two records removed');
        const left = (await store.range('/pxeha/leases/', { prefix: true })).kvs.map((kv) => kv.key.split('/').pop());
        assert.deepEqual(left, ['10.0.0.2', '10.0.0.4', '10.0.0.5']);
      } finally {
        await a.close();
      }
    }));
});

describe('cluster status read from the store (CLI without a node)', () => {
  it('lists registered nodes and the leader, without clock estimates, and formats a table', () =>
    withStore(async (store) => {
      const a = await startNode(store, 'a');
      try {
        await waitFor(() => a.leaderJobs.isLeader, 2000, 'a leads');
        const status = await clusterStatusFromStore(store, 2000);
        assert.deepEqual(
          status.nodes.map((n) => [n.name, n.leader, n.clockOffsetMs]),
          [['a', true, undefined]],
        );
        assert.equal(status.leader, 'a');
        assert.deepEqual(status.warnings, []);
        const table = formatClusterStatus(status);
        assert.match(table, /│ a +│ 127\.0\.0\.1:8080 +│ leader/);
        assert.match(table, /^leader: a$/m);
        assert.match(table, /^clock skew: unknown/m);
      } finally {
        await a.close();
      }
    }));
});

describe('backup and restore', () => {
  it('round-trips every durable key, leaves ephemeral keys out, refuses a non-empty target unless forced', () =>
    withStore(async (store, dir) => {
      await store.put('/pxeha/config/cluster', '{"subnets":[]}');
      await store.put('/pxeha/machines/m1', '{"name":"m1"}');
      await store.put(leaseKey('lab', '10.0.0.9'), JSON.stringify(lease('10.0.0.9', 'bound', 5)));
      const session = await store.leaseGrant(30);
      await store.put(memberKey('a'), '{}', { lease: session.id });
      await store.put('/elsewhere/x', 'not ours');
      const text = formatBackup(await takeBackup(store, 0));
      const backup = parseBackup(text);
      assert.equal(backup.header.keys, 3);
      assert.deepEqual(
        backup.entries.map((e) => e.key),
        ['/pxeha/config/cluster', leaseKey('lab', '10.0.0.9'), '/pxeha/machines/m1'],
      );

      const target = await openEmbeddedStore({ path: join(dir, 'target.db') });
      try {
        await target.put(memberKey('z'), '{}', { lease: (await target.leaseGrant(30)).id }); // ephemeral: still "empty"
        await restoreBackup(target, backup);
        assert.equal(
          formatBackup(await takeBackup(target, 0))
            .split('\n')
            .slice(1)
            .join('\n'),
          text.split('\n').slice(1).join('\n'),
        );
        await rejectsWith(restoreBackup(target, backup), 'PXE_ERR_CONFLICT');
        await target.put('/pxeha/machines/extra', '{}');
        await restoreBackup(target, backup, { force: true });
        assert.equal(await target.get('/pxeha/machines/extra'), undefined);
      } finally {
        await target.close();
      }
    }));

  it('refuses a truncated or foreign file', () => {
    const text = formatBackup({
      header: { format: 'pxeha-backup', version: 1, revision: 3, createdAt: '', store: 'embedded', keys: 2 },
      entries: [
        { key: '/pxeha/a', value: '1' },
        { key: '/pxeha/b', value: '2' },
      ],
    });
    assert.throws(() => parseBackup(text.split('\n').slice(0, 2).join('\n')), /has 1 keys, its header says 2/);
    assert.throws(() => parseBackup('{"hello":1}\n'), /not a pxeha-backup header/);
    assert.throws(() => parseBackup(''), /is empty/);
  });
});
