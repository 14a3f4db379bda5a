/**
 * Acceptance of the cluster layer: a real 3-member etcd cluster on loopback and three pxeha
 * node processes (`pxeha serve`, DHCP and TFTP off, HTTP on 127.0.0.1), so nothing binds a
 * DHCP socket in the host namespace and nothing leaves the machine.
 *
 * Nodes a and b know all three etcd members; node c reaches etcd only through a TCP proxy to
 * member 2, which the test pauses to cut c off. The scenarios run in order on one cluster:
 * same configuration everywhere, backup/restore through an embedded store and a fresh etcd,
 * one etcd member killed, node c cut off and back, the leader node SIGKILLed and restarted.
 * Figures (apply latency, failover time, time to be seen down) are printed, not asserted
 * beyond "a few seconds": the assertions are about who leads and what everyone sees.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { ApiClient } from '../../src/api/client.js';
import { createToken } from '../../src/auth/tokens.js';
import { formatBackup, parseBackup, restoreBackup, takeBackup, type Backup } from '../../src/cluster/backup.js';
import type { ClusterStatus } from '../../src/cluster/member-record.js';
import { main } from '../../src/cli/main.js';
import { writeClusterConfig } from '../../src/config/cluster-store.js';
import { parseClusterConfig } from '../../src/config/load.js';
import { leaseKey, type LeaseRecord } from '../../src/dhcp/lease-record.js';
import { openEtcdStore } from '../../src/store/etcd/etcd-store.js';
import { openStore } from '../../src/store/open.js';
import type { Store } from '../../src/store/store.js';
import { EtcdCluster, etcdAvailable } from '../helpers/etcd-cluster.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';

const REPO = new URL('../../', import.meta.url).pathname;
/** The default (src/config/schema.ts); the figures printed below are for it. */
const MEMBER_TTL_SECONDS = 2;
const skip = etcdAvailable() ? false : 'etcd is not installed (scripts/install-deps.sh installs etcd-server)';

interface NodeStatus {
  node: string;
  state: 'ok' | 'degraded';
  leader: boolean;
  store: { reachable: boolean };
}

/** One `pxeha serve` process. */
class PxehaNode {
  readonly name: string;
  readonly configFile: string;
  readonly api: ApiClient;
  readonly url: string;
  child: ChildProcess | undefined;
  readonly log: string[] = [];

  /** `token`: an API token (the API over TCP needs one; tokens live in the shared store). */
  constructor(name: string, configFile: string, httpPort: number, token: string) {
    this.name = name;
    this.configFile = configFile;
    this.url = `http://127.0.0.1:${httpPort}`;
    this.api = new ApiClient({ baseUrl: this.url, token });
  }

  start(): void {
    const child = spawn(process.execPath, ['--import', 'tsx', join(REPO, 'src/cli/main.ts'), 'serve', '--config', this.configFile], {
      cwd: REPO,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    const keep = (chunk: Buffer) => {
      this.log.push(
        ...chunk
          .toString('utf8')
          .split('\n')
          .filter((l) => l !== ''),
      );
      if (this.log.length > 400) this.log.splice(0, this.log.length - 400);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    live.add(this);
  }

  get pid(): number | undefined {
    const c = this.child;
    return c && c.exitCode === null && c.signalCode === null ? c.pid : undefined;
  }

  async waitReady(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.pid === undefined) throw new Error(`node ${this.name} exited:\n${this.log.slice(-30).join('\n')}`);
      if (await this.api.reachable()) return;
      await sleep(100);
    }
    throw new Error(`node ${this.name} not ready after ${timeoutMs} ms:\n${this.log.slice(-30).join('\n')}`);
  }

  /** SIGKILL by PID: no resign, no lease revoke; the cluster must notice by itself. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const c = this.child;
    const pid = this.pid;
    if (!c || pid === undefined) return;
    const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    process.kill(pid, signal);
    await exited;
    live.delete(this);
  }

  /** Wall-clock time of the first log line at or after `sinceMs` whose message matches, if any. */
  loggedAt(message: RegExp, sinceMs: number, fields: Record<string, string> = {}): number | undefined {
    for (const line of this.log) {
      let entry: { time?: string; msg?: string; [k: string]: unknown };
      try {
        entry = JSON.parse(line) as typeof entry;
      } catch {
        continue;
      }
      const t = entry.time ? Date.parse(entry.time) : NaN;
      if (t >= sinceMs && message.test(entry.msg ?? '') && Object.entries(fields).every(([k, v]) => entry[k] === v)) return t;
    }
    return undefined;
  }

  status(): Promise<NodeStatus> {
    return this.api.call<NodeStatus>('GET', '/api/v1/status');
  }

  cluster(): Promise<ClusterStatus> {
    return this.api.call<ClusterStatus>('GET', '/api/v1/cluster');
  }
}

const live = new Set<PxehaNode>();
process.on('exit', () => {
  for (const n of live) if (n.pid !== undefined) process.kill(n.pid, 'SIGKILL');
});

async function waitUntil<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined | false>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      last = err;
    }
    await sleep(50);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function lease(ip: string): LeaseRecord {
  return {
    ip,
    subnet: 'lab',
    state: 'bound',
    clientKey: `mac:52:54:00:00:00:${ip.split('.')[3]}`,
    mac: `52:54:00:00:00:${ip.split('.')[3]}`,
    expiresAtMs: Date.now() + 3_600_000,
    boundAtMs: Date.now(),
    node: 'a',
  };
}

/** A backup's state without what differs between two stores holding the same state. */
function stateOf(backup: Backup): Record<string, string> {
  return Object.fromEntries(backup.entries.map((e) => [e.key, e.value]));
}

/** Runs the CLI in this process and returns what it printed on stdout. */
async function cli(args: string[]): Promise<{ code: number; out: string }> {
  const lines: string[] = [];
  const original = console.log;
  console.log = (...parts: unknown[]) => lines.push(parts.map(String).join(' '));
  try {
    const code = await main(args);
    return { code, out: lines.join('\n') };
  } finally {
    console.log = original;
  }
}

describe('cluster: 3 etcd members, 3 pxeha node processes', { skip, timeout: 150_000 }, () => {
  let etcd: EtcdCluster;
  let proxy: TcpProxy;
  let dir: string;
  let store: Store;
  let adminToken: string;
  const nodes: PxehaNode[] = [];
  const byName = (name: string) => nodes.find((n) => n.name === name)!;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pxeha-cluster-it-'));
    etcd = await EtcdCluster.start({ members: 3 });
    proxy = await TcpProxy.start(etcd.endpoint(2));
    store = await openEtcdStore({ endpoints: etcd.endpoints, requestTimeoutMs: 2000 });
    adminToken = (await createToken(store, { role: 'admin', name: 'cluster-test' })).token;
    for (const name of ['a', 'b', 'c']) {
      const port = await freePort();
      const endpoints = name === 'c' ? [proxy.endpoint] : etcd.endpoints;
      const config = [
        `name: ${name}`,
        `dataDir: ${join(dir, name)}`,
        'advertiseAddress: 127.0.0.1',
        'store:',
        '  kind: etcd',
        `  endpoints: [${endpoints.join(', ')}]`,
        '  requestTimeoutMs: 1000',
        '  healthCheckIntervalMs: 500',
        'dhcp: { enabled: false, interfaces: [lo] }',
        `http: { address: 127.0.0.1, port: ${port} }`,
        'tftp: { enabled: false }',
        `artifactsDir: ${dir}`,
        `cluster: { memberTtlSeconds: ${MEMBER_TTL_SECONDS}, publishIntervalMs: 1000, leaseExpiryIntervalMs: 500 }`,
        'log: { level: info }',
      ].join('\n');
      const file = join(dir, `${name}.yaml`);
      await writeFile(file, `${config}\n`);
      nodes.push(new PxehaNode(name, file, port, adminToken));
    }
    for (const n of nodes) n.start();
    await Promise.all(nodes.map((n) => n.waitReady()));
  });

  after(async () => {
    await Promise.all(nodes.map((n) => n.kill()));
    await store?.close();
    await proxy?.close();
    await etcd?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('every node registers and sees the same members; one leader', async () => {
    const views = await waitUntil('three members seen by every node', 10_000, async () => {
      const all = await Promise.all(nodes.map((n) => n.cluster()));
      return all.every((s) => s.nodes.length === 3 && s.leader !== undefined) && all;
    });
    const leaders = new Set(views.map((v) => v.leader));
    assert.equal(leaders.size, 1, 'every node names the same leader');
    const statuses = await Promise.all(nodes.map((n) => n.status()));
    assert.equal(statuses.filter((s) => s.leader).length, 1, 'exactly one node says it leads');
    assert.deepEqual(
      statuses.map((s) => s.state),
      ['ok', 'ok', 'ok'],
    );
  });

  it('a configuration applied once is applied by every node within a second, and reported', async () => {
    const config = parseClusterConfig({
      subnets: [{ name: 'lab', subnet: '10.99.0.0/24', pools: [{ start: '10.99.0.100', end: '10.99.0.199' }] }],
    });
    const t0 = Date.now();
    const revision = await writeClusterConfig(store, config);
    const appliedMs = await waitUntil('every node reporting the new revision', 5000, async () => {
      const all = await Promise.all(nodes.map((n) => n.cluster()));
      const ok = all.every((s) => s.configRevision === revision && s.nodes.every((m) => m.configRevision === revision && !m.behind));
      return ok && Date.now() - t0;
    });
    console.log(`# config revision ${revision} applied and reported by all 3 nodes after ${appliedMs} ms`);
    assert.ok(appliedMs <= 1500, `applied within a second or so (took ${appliedMs} ms)`);

    const table = await cli(['cluster', 'status', '--server', byName('a').url, '--token', adminToken]);
    assert.equal(table.code, 0);
    assert.match(table.out, /leader: [abc]/);
    assert.match(table.out, new RegExp(`configuration revision in the store: ${revision}`));
    assert.doesNotMatch(table.out, /behind/);
  });

  it('a token made on one node works on every node; a viewer cannot rebalance, an operator can, and only with a token', async () => {
    const viewer = (await createToken(store, { role: 'viewer', name: 'cluster-viewer' })).token;
    const operator = (await createToken(store, { role: 'operator', name: 'cluster-operator' })).token;
    for (const n of nodes) {
      const asViewer = new ApiClient({ baseUrl: n.url, token: viewer });
      assert.equal((await asViewer.call<NodeStatus>('GET', '/api/v1/status')).node, n.name);
      await assert.rejects(asViewer.call('POST', '/api/v1/cluster/rebalance'), (err: Error & { code?: string }) => err.code === 'PXE_ERR_FORBIDDEN');
      await assert.rejects(new ApiClient({ baseUrl: n.url }).call('GET', '/api/v1/status'), (err: Error & { code?: string }) => err.code === 'PXE_ERR_UNAUTHORIZED');
    }
    const asOperator = new ApiClient({ baseUrl: byName('b').url, token: operator });
    const result = await asOperator.call<{ record: { members: string[] } }>('POST', '/api/v1/cluster/rebalance');
    assert.deepEqual([...result.record.members].sort(), ['a', 'b', 'c']);
    // The CLI over TCP: the token from the environment.
    process.env.PXEHA_TOKEN = operator;
    try {
      const run = await cli(['cluster', 'rebalance', '--server', byName('a').url, '-o', 'json']);
      assert.equal(run.code, 0, run.out);
      assert.deepEqual((JSON.parse(run.out) as { record: { members: string[] } }).record.members.sort(), ['a', 'b', 'c']);
    } finally {
      delete process.env.PXEHA_TOKEN;
    }
  });

  it('backup from etcd, restore into an embedded store and into a fresh etcd: nothing lost', async () => {
    // Real state: profiles and machines through the API, leases as the DHCP engine writes them.
    await byName('b').api.call('PUT', '/api/v1/profiles/debian', {
      name: 'debian',
      boot: { kind: 'kernel', kernel: 'vmlinuz', initrds: ['initrd.gz'] },
    });
    await byName('b').api.call('PUT', '/api/v1/machines/m1', { name: 'm1', mac: '52:54:00:00:00:01', profile: 'debian' });
    for (const ip of ['10.99.0.100', '10.99.0.101', '10.99.0.102']) await store.put(leaseKey('lab', ip), JSON.stringify(lease(ip)));

    const file = join(dir, 'cluster.backup');
    const backupRun = await cli(['backup', '--config', byName('a').configFile, '-f', file]);
    assert.equal(backupRun.code, 0);
    const fromEtcd = parseBackup(await readFile(file, 'utf8'));
    assert.equal(fromEtcd.header.store, 'etcd');
    const state = stateOf(fromEtcd);
    assert.ok(state['/pxeha/config/cluster'], 'configuration');
    assert.ok(
      Object.keys(state).some((k) => k.includes('debian')),
      'profile',
    );
    assert.ok(
      Object.keys(state).some((k) => k.includes('m1')),
      'machine',
    );
    assert.equal(Object.keys(state).filter((k) => k.startsWith('/pxeha/leases/')).length, 3, 'leases');
    assert.ok(!Object.keys(state).some((k) => k.startsWith('/pxeha/nodes/') || k.startsWith('/pxeha/election/')), 'no ephemeral keys');

    // Into an embedded single node, through the CLI.
    const embeddedPath = join(dir, 'restored.db');
    assert.equal((await cli(['restore', file, '--store', embeddedPath])).code, 0);
    assert.equal((await cli(['restore', file, '--store', embeddedPath])).code, 1, 'a non-empty store is refused');
    const embedded = await openStore({ kind: 'embedded', path: embeddedPath });
    let fromEmbedded: Backup;
    try {
      fromEmbedded = parseBackup(formatBackup(await takeBackup(embedded)));
    } finally {
      await embedded.close();
    }
    assert.deepEqual(stateOf(fromEmbedded), state);

    // And back into a fresh etcd cluster.
    const fresh = await EtcdCluster.start({ members: 1 });
    try {
      const target = await openEtcdStore({ endpoints: fresh.endpoints });
      try {
        await restoreBackup(target, fromEmbedded);
        assert.deepEqual(stateOf(await takeBackup(target)), state);
      } finally {
        await target.close();
      }
    } finally {
      await fresh.stop();
    }
  });

  it('killing one etcd member changes nothing visible', async () => {
    const before = await byName('a').cluster();
    await etcd.kill(0);
    const deadline = Date.now() + 4000;
    while (Date.now() < deadline) {
      const [statuses, views] = await Promise.all([Promise.all(nodes.map((n) => n.status())), Promise.all(nodes.map((n) => n.cluster()))]);
      assert.deepEqual(
        statuses.map((s) => s.state),
        ['ok', 'ok', 'ok'],
        'no node degraded',
      );
      for (const v of views) {
        assert.equal(v.nodes.length, 3, `${v.observer} still sees three nodes`);
        assert.equal(v.leader, before.leader, `${v.observer} still sees the same leader`);
      }
      await sleep(250);
    }
    await etcd.startMember(0);
  });

  it('a node cut off from etcd reports itself degraded, the others see it go, and it comes back', async () => {
    const c = byName('c');
    const t0 = Date.now();
    proxy.pause();
    await waitUntil('c degraded', 10_000, async () => (await c.status()).state === 'degraded');
    const degradedMs = (await waitUntil('degraded in the log of c', 5000, async () => c.loggedAt(/node degraded/, t0))) - t0;
    const view = await c.cluster();
    assert.equal(view.degraded, true);
    const metrics = await c.api.call<string>('GET', '/metrics');
    assert.match(metrics, /^pxeha_node_degraded 1$/m);
    await waitUntil('c gone for a and b', 10_000, async () => {
      const views = await Promise.all([byName('a').cluster(), byName('b').cluster()]);
      return views.every((v) => !v.nodes.some((n) => n.name === 'c'));
    });
    // Timed from the nodes' own logs: polling a loaded machine would add its own delays.
    const leftAt = await waitUntil('c leaving in the logs of a and b', 5000, async () => {
      const times = ['a', 'b'].map((n) => byName(n).loggedAt(/^member left/, t0, { member: 'c' }));
      return times.every((t) => t !== undefined) && Math.max(...(times as number[]));
    });
    const goneMs = leftAt - t0;
    console.log(
      `# node c cut off: reports degraded after ${degradedMs} ms; seen down by a and b after ${goneMs} ms (TTL ${MEMBER_TTL_SECONDS} s)`,
    );
    // etcd revokes expired leases every 500 ms; the pause may also fall just after a renewal.
    assert.ok(goneMs <= MEMBER_TTL_SECONDS * 1000 + 1500, `gone within the TTL (${goneMs} ms)`);
    const leaders = (await Promise.all([byName('a').status(), byName('b').status()])).filter((s) => s.leader);
    assert.equal(leaders.length, 1, 'a and b still have one leader between them');

    proxy.resume();
    await waitUntil('c healthy and registered again', 15_000, async () => {
      const [s, v] = await Promise.all([c.status(), byName('a').cluster()]);
      return s.state === 'ok' && v.nodes.some((n) => n.name === 'c');
    });
  });

  it('killing the leader node elects another within a few seconds; restarted, the old one does not lead', async () => {
    const oldName = (await byName('a').cluster()).leader!;
    const old = byName(oldName);
    const others = nodes.filter((n) => n !== old);
    const t0 = Date.now();
    await old.kill('SIGKILL');
    const newLeader = await waitUntil('a new leader', 15_000, async () => {
      const statuses = await Promise.all(others.map((n) => n.status()));
      const leading = statuses.filter((s) => s.leader);
      assert.ok(leading.length <= 1, 'never two leaders');
      return leading.length === 1 && leading[0]!.node;
    });
    // The log line may arrive through the pipe after the HTTP answer that showed the leader.
    const electedAt = await waitUntil('the election in the new leader’s log', 5000, async () =>
      byName(newLeader).loggedAt(/^elected leader/, t0),
    );
    const failoverMs = electedAt - t0;
    console.log(`# leader ${oldName} SIGKILLed: ${newLeader} leads after ${failoverMs} ms (TTL ${MEMBER_TTL_SECONDS} s)`);
    assert.ok(failoverMs <= MEMBER_TTL_SECONDS * 1000 + 2000, `failover within a few seconds (${failoverMs} ms)`);
    await waitUntil(`every node naming ${newLeader} and none listing ${oldName}`, 10_000, async () => {
      const views = await Promise.all(others.map((n) => n.cluster()));
      return views.every((v) => v.leader === newLeader && !v.nodes.some((n) => n.name === oldName));
    });

    old.start();
    await old.waitReady();
    await waitUntil(`${oldName} registered again`, 10_000, async () => (await byName(newLeader).cluster()).nodes.length === 3);
    for (let i = 0; i < 8; i++) {
      const [restarted, current] = await Promise.all([old.status(), byName(newLeader).status()]);
      assert.equal(restarted.leader, false, `${oldName} must not lead while ${newLeader} does`);
      assert.equal(current.leader, true);
      assert.equal((await old.cluster()).leader, newLeader);
      await sleep(250);
    }
  });
});
