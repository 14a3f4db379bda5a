/**
 * Boot-server placement in a cluster (issue 6, "next-server and boot failover"): three pxeha
 * nodes on a 3-member etcd in network namespaces (test/helpers/ha-lab.ts), `dhcp.rebalance:
 * manual`.
 *
 * - Each node publishes which of the configured files it holds; a node that lacks one of a
 *   profile's files is never named in that profile's scripts, and is again once it has it.
 * - A node that dies loses its share at once; back again it waits, placed nowhere, until
 *   `pxeha cluster rebalance`, which moves exactly its machines back to it.
 * - `pxeha cluster placement` shows which node serves which machines.
 */
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import type { PlacementStatus } from '../../src/cluster/placement.js';
import { bucketOfMac, rankFor } from '../../src/dhcp/designation.js';
import { defaultHaCluster, HaLab, type HaNode } from '../helpers/ha-lab.js';
import { REPO_ROOT, createSandbox } from '../helpers/netns.js';
import { until } from '../helpers/until.js';

const PXEHA = path.join(REPO_ROOT, 'bin', 'pxeha.js');
const NODES = ['node1', 'node2', 'node3'];
const FILES = { 'k/linux': 'kernel\n', 'k/initrd.gz': 'initrd\n' };
const MACHINES = Array.from({ length: 24 }, (_, i) => ({ name: `m${i}`, mac: `52:54:00:42:00:${i.toString(16).padStart(2, '0')}`, profile: 'k' }));

/** The first machine whose designated node (among all three) is `owner`. */
function machineOwnedBy(owner: string): (typeof MACHINES)[number] {
  const members = NODES.map((name) => ({ name, weight: 100 }));
  const m = MACHINES.find((x) => rankFor(bucketOfMac(x.mac), members)[0]!.name === owner);
  assert.ok(m, `a machine designated to ${owner}`);
  return m;
}

describe('boot-server placement: holdings, manual rebalance, placement status (3 nodes, etcd)', { timeout: 300_000 }, () => {
  const sandbox = createSandbox();
  let ha: HaLab;
  const node = (name: string): HaNode => ha.nodes[NODES.indexOf(name)]!;

  const cli = async (on: HaNode, args: string[]): Promise<string> => {
    const r = await on.ns.exec([process.execPath, PXEHA, ...args, '--config', on.nodeFile], { timeoutMs: 30_000, allowFailure: true });
    assert.equal(r.code, 0, `pxeha ${args.join(' ')} failed:\n${r.stdout}${r.stderr}`);
    return r.stdout;
  };
  const placement = async (on: HaNode): Promise<PlacementStatus> => JSON.parse(await cli(on, ['cluster', 'placement', '-o', 'json'])) as PlacementStatus;
  const script = async (on: HaNode, mac: string): Promise<string> => {
    const r = await on.ns.exec(['curl', '-sf', `http://${on.ip}:8080/boot.ipxe?mac=${mac}`], { timeoutMs: 10_000 });
    return r.stdout;
  };

  before(async () => {
    ha = await HaLab.start(sandbox, {
      nodes: 3,
      clients: 0,
      cluster: {
        ...defaultHaCluster(),
        dhcp: { rebalance: 'manual' },
        profiles: [{ name: 'k', boot: { kind: 'kernel', kernel: 'k/linux', initrds: ['k/initrd.gz'], args: 'console=ttyS0' } }],
        machines: MACHINES,
      },
      artifacts: () => FILES,
    });
  });

  after(async () => {
    await ha?.cleanup();
    await sandbox.cleanup();
  });

  it('shows every node placed with its share, and every machine with its boot server and fallbacks', async () => {
    const p = await placement(node('node1'));
    assert.equal(p.mode, 'manual');
    assert.deepEqual(p.nodes.map((n) => [n.name, n.placed]), NODES.map((n) => [n, true]));
    assert.equal(p.nodes.reduce((s, n) => s + n.buckets, 0), 256);
    assert.equal(p.machines.length, MACHINES.length);
    const members = NODES.map((name) => ({ name, weight: 100 }));
    for (const m of p.machines) {
      const ranked = rankFor(bucketOfMac(m.mac), members).map((x) => x.name);
      assert.equal(m.server, ranked[0], `${m.mac}: boot server is its designated node`);
      assert.deepEqual(m.fallbacks, ranked.slice(1));
      assert.equal(m.complete, true);
    }
    const table = await cli(node('node2'), ['cluster', 'placement']);
    assert.match(table, /rebalance: manual/);
    for (const n of NODES) assert.match(table, new RegExp(`│ ${n} `));
  });

  it('names a node in a script only while it holds every file of the profile', async () => {
    const m = machineOwnedBy('node3');
    const initial = await script(node('node1'), m.mac);
    assert.match(initial, /^kernel http:\/\/10\.99\.0\.3:8080\/artifacts\/k\/linux initrd=initrd\.gz console=ttyS0 \|\| kernel http:\/\/10\.99\.0\.\d:8080/m, initial);

    const lost = path.join(node('node3').workDir, 'artifacts', 'k', 'initrd.gz');
    rmSync(lost);
    const without = await until('node1 stops naming node3', async () => {
      const s = await script(node('node1'), m.mac);
      return s.includes('10.99.0.3') ? undefined : s;
    });
    assert.match(without, /^kernel http:\/\/10\.99\.0\.[12]:8080\/artifacts\/k\/linux initrd=initrd\.gz console=ttyS0 \|\| kernel http:\/\/10\.99\.0\.[12]:8080/m, without);
    assert.match(without, /^initrd http:\/\/10\.99\.0\.[12]:8080\/artifacts\/k\/initrd\.gz \|\| initrd http:\/\/10\.99\.0\.[12]:8080\/artifacts\/k\/initrd\.gz$/m);
    const p = await placement(node('node2'));
    assert.notEqual(p.machines.find((x) => x.mac === m.mac)?.server, 'node3');

    writeFileSync(lost, FILES['k/initrd.gz']);
    await until('node3 is named again', async () => ((await script(node('node2'), m.mac)).includes('kernel http://10.99.0.3:8080') ? true : undefined));
  });

  it('manual rebalance: a node that died gets its machines back only on `pxeha cluster rebalance`, exactly those', async () => {
    const before = await placement(node('node1'));
    const owned = before.machines.filter((m) => m.server === 'node2').map((m) => m.mac).sort();
    assert.ok(owned.length > 0, 'node2 serves some machines');

    await ha.kill(NODES.indexOf('node2'));
    await ha.waitMembers(2);
    // The leader drops the dead node from the placement record.
    await until('placement record without node2', async () => {
      const p = await placement(node('node1'));
      return p.record && !p.record.members.includes('node2') ? p : undefined;
    });
    await ha.restart(NODES.indexOf('node2'));
    await ha.waitMembers(3);
    const waiting = await placement(node('node3'));
    const n2 = waiting.nodes.find((n) => n.name === 'node2')!;
    assert.deepEqual([n2.placed, n2.buckets, n2.machines], [false, 0, 0], 'back, but not placed');
    for (const m of waiting.machines) assert.notEqual(m.server, 'node2');
    // Its DHCP share is empty too, as every node sees it.
    for (const n of ha.nodes) {
      const status = await n.status();
      const dhcp = status['dhcp'] as { bucketsByNode?: Record<string, number> };
      assert.equal(dhcp.bucketsByNode?.['node2'] ?? 0, 0, `${n.name} gives node2 no DHCP bucket`);
    }
    // Until the operator rebalances, node2 stays unplaced (the leader does not add it back).
    await sleep(1500);
    assert.equal((await placement(node('node1'))).nodes.find((n) => n.name === 'node2')!.placed, false);

    const out = await cli(node('node1'), ['cluster', 'rebalance']);
    assert.match(out, /placed: node1, node2, node3/);
    assert.match(out, new RegExp(`${owned.length} machine\\(s\\) move:`), out);
    for (const mac of owned) assert.match(out, new RegExp(`\\(${mac}\\): node[13] -> node2`));
    const afterwards = await until('every node sees node2 placed', async () => {
      const views = await Promise.all(ha.nodes.map((n) => placement(n)));
      return views.every((v) => v.nodes.find((n) => n.name === 'node2')?.placed) ? views[0] : undefined;
    });
    assert.deepEqual(afterwards!.machines.filter((m) => m.server === 'node2').map((m) => m.mac).sort(), owned);
    for (const n of ha.nodes) {
      const dhcp = (await n.status())['dhcp'] as { bucketsByNode?: Record<string, number> };
      assert.ok((dhcp.bucketsByNode?.['node2'] ?? 0) > 0, `${n.name} gives node2 its DHCP buckets again`);
    }
  });
});
