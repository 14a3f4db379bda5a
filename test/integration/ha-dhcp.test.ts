/**
 * HA DHCP acceptance (issue 6): three `pxeha serve` processes on a real 3-member etcd, each in
 * its own server namespace on one bridged segment with the clients (test/helpers/ha-lab.ts).
 *
 * - perfdhcp load through a relay fan-out (every node sees every message, as behind a relay
 *   with one helper address per node): thousands of clients, no NAK, no address ACKed to two
 *   clients on the wire, and over etcd's whole lease history no binding ever moved between
 *   clients while valid, no client holds two bindings, every ACK is bound in the store.
 * - udhcpc clients designated to a node get leases from another node while it is killed with
 *   SIGKILL (each node in turn): once its membership lease lapses its buckets go to the others.
 * - a node whose store traffic is paused (its etcd proxy stops moving bytes) reports itself
 *   degraded and allocates nothing; fresh clients are served by the others; a client whose
 *   lease it granted renews through it (ACKed from its view, queued) and that renewal is
 *   written to etcd once it is back, while a queued renewal of a binding another node rewrote
 *   meanwhile is dropped (conflict); every node then sees three members and no binding is
 *   duplicated.
 * - a client's renewal after the node that granted its lease was killed is ACKed by another
 *   node (busybox udhcpc: SIGUSR1 renews unicast to the dead server, then rebinds by broadcast).
 * - five nodes on the same 3-member etcd under perfdhcp load: every node takes its share of the
 *   clients, no NAK, no address bound twice, no node loses its membership lease meanwhile.
 *
 * Bounded: the load is capped in count and time, every client run has a retry limit, and the
 * sandbox removes every namespace and process (by PID) after the suite, on failure too.
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { bucketOfMac, DEFAULT_WEIGHT, ownerOf } from '../../src/dhcp/designation.js';
import { leaseKey } from '../../src/dhcp/lease-record.js';
import { udhcpcOnce, Udhcpc, writeEventScript, type ClientEvent } from '../helpers/dhcp-client.js';
import { apiGet, metricValue } from '../helpers/dhcp-client-pxeha.js';
import { HaLab, serverIp, startRelayFanout } from '../helpers/ha-lab.js';
import { createSandbox, type Netns, type NetnsProcess } from '../helpers/netns.js';
import {
  addressesAckedToSeveralClients,
  captureReplies,
  countByType,
  runPerfdhcp,
  type CapturedDhcp,
  type PerfdhcpLoad,
} from '../helpers/perfdhcp.js';
import { etcdAvailable } from '../helpers/etcd-cluster.js';

const NODES = 3;
const LOAD_ADDRESS = '10.99.0.50';
const FANOUT_ADDRESS = '10.99.0.51';
const skip = etcdAvailable() ? false : 'etcd is not installed (scripts/install-deps.sh installs etcd-server)';

/**
 * 2400 exchanges at 150/s among 1 000 000 possible clients: about 2400 distinct clients, each
 * DISCOVER and REQUEST delivered to all three nodes. Far below what one node sustains, so a
 * shortfall is a fault, not saturation.
 */
const LOAD: PerfdhcpLoad = {
  server: FANOUT_ADDRESS,
  localAddress: LOAD_ADDRESS,
  rate: 150,
  exchanges: 2400,
  periodSeconds: 16,
  clients: 1_000_000,
  seed: 6,
  baseMac: '02:20:00:00:00:00',
  exitWaitSeconds: 2,
};
const MIN_COMPLETED = 0.9;

describe('HA DHCP: three nodes, one pool, one segment', { skip }, () => {
  const sandbox = createSandbox({ after });
  let ha: HaLab;
  let fanout: NetnsProcess | undefined;
  let script: string;
  let macSeq = 0;
  /** ACKed bindings (last ACK per client) that the store no longer holds as bound. */
  let lost: string[] | undefined;
  /** A MAC no client has used yet in this run. */
  const freshMac = () => `02:30:00:00:${(++macSeq >> 8).toString(16).padStart(2, '0')}:${(macSeq & 0xff).toString(16).padStart(2, '0')}`;
  /** A fresh MAC whose RFC 3074 bucket node `i` owns while all nodes are members (src/dhcp/designation.ts). */
  const designatedMac = (i: number): string => {
    const members = ha.nodes.map((n) => ({ name: n.name, weight: DEFAULT_WEIGHT }));
    for (let k = 0; k < 10_000; k++) {
      const mac = freshMac();
      if (ownerOf(bucketOfMac(mac), members) === ha.nodes[i]!.name) return mac;
    }
    throw new Error(`no MAC designated to node${i + 1}`);
  };

  before(async () => {
    // c0: perfdhcp (static address); c1, c2: one-shot clients; c3, c4: the partition-merge clients.
    ha = await HaLab.start(sandbox, { nodes: NODES, clients: 5, clientAddresses: [`${LOAD_ADDRESS}/16`] });
    ({ script } = writeEventScript(sandbox.tempDir('pxt-ha-cli-')));
  });

  after(async () => {
    if (process.env['PXT_DUMP'] === '1' && ha) console.error(ha.describe());
    await fanout?.stop(1000);
    await ha?.cleanup();
  });

  it('perfdhcp: thousands of clients against three nodes, no NAK, no address bound twice', async (t) => {
    const load = ha.clients[0]!;
    await load.ip(['addr', 'add', `${FANOUT_ADDRESS}/16`, 'dev', 'eth0']);
    fanout = await startRelayFanout(load, FANOUT_ADDRESS, ha.nodes.map((n) => n.ip));
    const capture = await captureReplies(load, 'eth0', `udp and dst port 67 and dst host ${LOAD_ADDRESS}`);
    const started = Date.now();
    const run = await runPerfdhcp(load, LOAD, 40_000);
    const wire = await capture.stop();
    await fanout.stop(1000);
    fanout = undefined;
    const { discoverOffer: dO, requestAck: rA } = run.report;
    const types = countByType(wire.messages);
    const summary = `${run.argv.join(' ')}\n${run.output}\nreplies on the wire: ${JSON.stringify(types)}`;
    const ackers = countBy(wire.messages.filter((m) => m.typeName === 'ACK'), (m) => m.src);
    t.diagnostic(
      `${rA.received}/${dO.sent} exchanges in ${Date.now() - started} ms (${run.report.rate} /s); wire ${JSON.stringify(types)}; ACKs by node ${JSON.stringify(ackers)}`,
    );
    assert.equal(wire.kernelDrops, 0, 'tcpdump lost packets: the capture is incomplete');
    assert.ok(dO.sent >= LOAD.exchanges! * 0.9, `perfdhcp sent ${dO.sent} DISCOVERs\n${summary}`);
    assert.equal(types['NAK'] ?? 0, 0, `no NAK\n${summary}`);
    assert.ok(rA.received >= dO.sent * MIN_COMPLETED, `${rA.received}/${dO.sent} exchanges completed\n${summary}`);
    assert.deepEqual(addressesAckedToSeveralClients(wire.messages), [], 'no address ACKed to two clients on the wire');
    const acksPerXid = countBy(wire.messages.filter((m) => m.typeName === 'ACK'), (m) => `${m.mac}/${m.xid}`);
    assert.deepEqual(Object.entries(acksPerXid).filter(([, n]) => n > 1), [], 'one ACK per REQUEST, from one node');

    const { violations, leases } = await ha.duplicateBindings();
    assert.deepEqual(violations, [], 'store-wide: no address bound to two clients, no client with two bindings');
    const bound = new Map(leases.filter((l) => l.state === 'bound').map((l) => [l.ip, l]));
    // A client perfdhcp picked twice holds the address of its last exchange (in capture order).
    const lastAck = new Map<string, CapturedDhcp>();
    for (const m of wire.messages) if (m.typeName === 'ACK') lastAck.set(m.mac, m);
    const moved = wire.messages.filter((m) => m.typeName === 'ACK' && lastAck.get(m.mac)?.yiaddr !== m.yiaddr).length;
    assert.ok(lastAck.size >= 2000, `thousands of distinct clients got a lease (${lastAck.size})`);
    for (const ack of lastAck.values()) {
      const lease = bound.get(ack.yiaddr);
      assert.equal(lease?.mac ?? ack.mac, ack.mac, `${ack.yiaddr} is bound to the MAC it was ACKed to`);
    }
    lost = [...lastAck.values()].filter((ack) => !bound.has(ack.yiaddr)).map((ack) => {
      const records = leases.filter((l) => l.mac === ack.mac || l.ip === ack.yiaddr);
      const seen = wire.messages.filter((m) => m.mac === ack.mac && m.xid === ack.xid).map((m) => `${m.typeName} ${m.yiaddr} from ${m.src}`);
      return `${ack.mac} ACKed ${ack.yiaddr} by ${ack.src}; wire: ${seen.join(', ')}; etcd now: ${JSON.stringify(records)}`;
    });
    t.diagnostic(
      `${bound.size} bindings in etcd for ${lastAck.size} clients ACKed; ${moved} earlier ACKs of repeat clients named another address; ${lost.length} ACKed bindings no longer bound`,
    );
  });

  // Seen before designation (every node answered every DISCOVER): node A ACKed, node B answered
  // the same DISCOVER late and wrote state 'offered' over A's binding. Designation makes one node
  // answer, but a DISCOVER whose secs passes takeoverSecs is still answered by several.
  it('keeps every ACKed binding bound in etcd (a late OFFER from another node must not turn it back into an offer)', () => {
    assert.ok(lost !== undefined, 'the perfdhcp test ran');
    assert.deepEqual(lost.slice(0, 5), [], `${lost.length} ACKed bindings are not bound in etcd`);
  });

  it('udhcpc clients in the bucket of a node killed with SIGKILL get leases from another node, one node at a time', async (t) => {
    const clients = ha.clients.slice(1, 3);
    for (let victim = 0; victim < NODES; victim++) {
      await ha.kill(victim);
      const killedAt = Date.now();
      const got: string[] = [];
      for (const ns of clients) {
        // A new client in the dead node's bucket: answered once its membership lease lapses.
        const mac = designatedMac(victim);
        await ns.setMac('eth0', mac);
        // Up to 10 DISCOVERs a second apart: enough for a node to take over a dead node's
        // clients once its membership lease lapses (2 s), bounded all the same.
        const { result, events } = await udhcpcOnce(ns, script, { args: ['-t', '10'] });
        const bound = events.find((e) => e.event === 'bound');
        assert.ok(bound, `${mac} got a lease while node${victim + 1} is down\n${result.stdout}${result.stderr}`);
        assert.notEqual(bound.env['serverid'], serverIp(victim), 'the dead node did not answer');
        got.push(`${mac} ${bound.env['ip']} from ${bound.env['serverid']} after ${Date.now() - killedAt} ms`);
        await ns.exec(['ip', '-4', 'addr', 'flush', 'dev', 'eth0']);
      }
      t.diagnostic(`node${victim + 1} killed: ${got.join('; ')}`);
      await ha.restart(victim);
      await ha.waitMembers(NODES);
    }
    const { violations } = await ha.duplicateBindings();
    assert.deepEqual(violations, []);
  });

  it('a node cut off from etcd allocates nothing; the others go on; its degraded renewals are merged when it returns; no binding is duplicated', async (t) => {
    const victim = NODES - 1;
    const node = ha.nodes[victim]!;
    const others = ha.nodes.filter((n) => n !== node);
    // Two clients designated to the victim, bound by it before the cut. While it is cut off both
    // renew through it (unicast to their server): it ACKs from its view and queues the renewals.
    // "kept" is recorded when it returns; "rewritten" renews through another node meanwhile
    // too, so the queued renewal finds the record changed and is dropped (compare-and-set).
    const held: Array<{ label: string; mac: string; client: Udhcpc; bound: ClientEvent }> = [];
    try {
      for (const [k, label] of ['kept', 'rewritten'].entries()) {
        const ns = ha.clients[3 + k]!;
        const mac = designatedMac(victim);
        await ns.setMac('eth0', mac);
        const client = new Udhcpc(ns, script, { label: `udhcpc (${label})` });
        const bound = await client.waitEvent(['bound'], 0, 15_000);
        held.push({ label, mac, client, bound });
        assert.equal(bound.env['serverid'], node.ip, `${mac} (${label}) was bound by its designated node${victim + 1}`);
      }
      const [kept, rewritten] = held as [(typeof held)[0], (typeof held)[0]];
      const keyOf = (h: (typeof held)[0]) => leaseKey('lab', h.bound.env['ip']!);

      await ha.pauseStore(victim);
      const cutAt = Date.now();
      let revisionAtResume = 0;
      let rewrittenBy = '';
      try {
        // It reports itself degraded once its membership lease cannot have been renewed (TTL 2 s).
        let state = '';
        for (let i = 0; i < 100 && state !== 'degraded'; i++) {
          state = (await node.status().catch(() => ({ state: 'unreachable' }))).state;
          if (state !== 'degraded') await sleep(100);
        }
        // Timed from its own log: a status call on a cut-off node waits for its bounded store read.
        const loggedAt = node.logs({ currentRunOnly: true }).find((l) => /node degraded/.test(l.msg) && Date.parse(String(l['time'])) >= cutAt)?.['time'];
        t.diagnostic(`node${victim + 1} reports ${state} ${Date.now() - cutAt} ms after the cut (logged after ${loggedAt ? Date.parse(String(loggedAt)) - cutAt : '?'} ms)`);
        assert.equal(state, 'degraded', `node${victim + 1} reports itself degraded`);
        const got: string[] = [];
        for (const ns of ha.clients.slice(1, 3)) {
          const mac = freshMac();
          await ns.setMac('eth0', mac);
          const { result, events } = await udhcpcOnce(ns, script, { args: ['-t', '10'] });
          const bound = events.find((e) => e.event === 'bound');
          assert.ok(bound, `${mac} got a lease while node${victim + 1} is cut off\n${result.stdout}${result.stderr}`);
          assert.notEqual(bound.env['serverid'], node.ip, 'the cut-off node allocated no new address');
          got.push(`${mac} ${bound.env['ip']} from ${bound.env['serverid']}`);
          await ns.exec(['ip', '-4', 'addr', 'flush', 'dev', 'eth0']);
        }
        t.diagnostic(`while cut off: ${got.join('; ')}`);

        // Both renew through the cut-off node: ACKed from its view for the time the binding has left.
        for (const h of held) {
          const seen = h.client.events().length;
          h.client.renew();
          const renewed = await h.client.waitEvent(['renew', 'bound', 'deconfig', 'leasefail'], seen, 15_000);
          assert.equal(renewed.event, 'renew', `${h.label}: renewed (${JSON.stringify(renewed)})`);
          assert.equal(renewed.env['ip'], h.bound.env['ip'], `${h.label}: the same address`);
          assert.equal(renewed.env['serverid'], node.ip, `${h.label}: ACKed by the cut-off node`);
          assert.ok(Number(renewed.env['lease']) < Number(h.bound.env['lease']), `${h.label}: for the time the binding has left (${renewed.env['lease']} s)`);
        }
        const queued = await node.status().then((s) => (s['dhcp'] as { queuedRenewals?: number } | undefined)?.queuedRenewals);
        assert.equal(queued, 2, 'both renewals queued on the cut-off node');

        // Meanwhile another node renews "rewritten": once the others see the cut-off node gone,
        // its bucket's runner-up answers a REBINDING-style REQUEST (ciaddr set, no server id).
        await waitFor('the others see the cut-off node gone', 15_000, async () => {
          const views = await Promise.all(others.map((n) => n.api<{ nodes?: Array<{ name: string }> }>('/api/v1/cluster')));
          return views.every((v) => !v.nodes?.some((m) => m.name === node.name));
        });
        await sendRenewal(ha.clients[0]!, LOAD_ADDRESS, others.map((n) => n.ip), rewritten.mac, rewritten.bound.env['ip']!);
        rewrittenBy = await waitFor(`${rewritten.mac}'s binding rewritten by another node`, 10_000, async () => {
          const record = (await ha.leases()).find((l) => l.ip === rewritten.bound.env['ip']);
          return record && record.node !== node.name && record.state === 'bound' && record.mac === rewritten.mac ? record.node : undefined;
        });
        t.diagnostic(`${rewritten.mac} ${rewritten.bound.env['ip']} renewed by ${rewrittenBy} while node${victim + 1} is cut off`);
        revisionAtResume = await storeRevision(ha);
      } finally {
        await ha.resumeStore(victim);
      }
      await ha.waitMembers(NODES, 20_000);
      // Back in touch: the queue is written (compare-and-set each) and emptied.
      await waitFor('the queued renewals flushed', 15_000, async () => {
        const s = await node.status();
        return s.state === 'ok' && (s['dhcp'] as { queuedRenewals?: number } | undefined)?.queuedRenewals === 0;
      });
      const metrics = await apiGet(node.dataDir, '/metrics');
      const written = metricValue(metrics, 'pxeha_dhcp_degraded_renewals_total', { result: 'written' });
      const conflicts = metricValue(metrics, 'pxeha_dhcp_degraded_renewals_total', { result: 'conflict' });
      t.diagnostic(`node${victim + 1} back: degraded renewals written ${written}, conflicts ${conflicts}`);
      const explain = async (): Promise<string> => {
        const { history: h } = await ha.leaseHistory();
        const versions = (k: string) => (h.byKey.get(k) ?? []).map((v) => `${v.revision}: ${JSON.stringify(v.record)}`).join('\n  ');
        const lines = node.logs({ currentRunOnly: true }).filter((l) => /degraded|renewal|store|member/.test(l.msg)).map((l) => JSON.stringify(l));
        return `resumed at ${revisionAtResume}\nkept ${keyOf(kept)}:\n  ${versions(keyOf(kept))}\nrewritten ${keyOf(rewritten)}:\n  ${versions(keyOf(rewritten))}\nnode${victim + 1}:\n${lines.join('\n')}`;
      };
      if (written !== 1 || conflicts !== 1) assert.fail(`degraded renewals written ${written}, conflicts ${conflicts}; want 1 and 1\n${await explain()}`);
      // The node logs the conflict before it counts it, but its stdout reaches this process
      // through a pipe that the metrics' HTTP answer can overtake: wait for the line, bounded.
      await waitFor('the conflict is logged with its key', 5_000, async () =>
        node.logs({ currentRunOnly: true }).some((l) => /renewal not recorded/.test(l.msg) && l['key'] === keyOf(rewritten)),
      );

      const { violations, leases } = await ha.duplicateBindings();
      assert.deepEqual(violations, [], 'no duplicate binding after the partition');
      const { history } = await ha.leaseHistory();
      const keptVersions = history.byKey.get(keyOf(kept)) ?? [];
      const merged = keptVersions.filter((v) => v.revision > revisionAtResume);
      t.diagnostic(`${kept.mac} ${kept.bound.env['ip']}: versions at ${keptVersions.map((v) => `${v.revision} (${v.record?.node} ${v.record?.state})`).join(', ')}; resumed at ${revisionAtResume}`);
      assert.equal(merged.length, 1, `the renewal made while cut off is recorded once, after the node returned`);
      const before = keptVersions.filter((v) => v.revision <= revisionAtResume).at(-1)?.record;
      const after = merged[0]!.record;
      assert.ok(after && before, 'a binding before and after');
      assert.equal(after.node, node.name, 'written by the node that ACKed the renewal');
      assert.equal(after.state, 'bound');
      assert.equal(after.mac, kept.mac);
      assert.equal(after.expiresAtMs, before.expiresAtMs, 'for the time the client was told (no later end than the store held)');
      const rewrittenVersions = history.byKey.get(keyOf(rewritten)) ?? [];
      assert.deepEqual(
        rewrittenVersions.filter((v) => v.revision > revisionAtResume).map((v) => v.record?.node),
        [],
        'the conflicting queued renewal wrote nothing',
      );
      const final = leases.find((l) => l.ip === rewritten.bound.env['ip']);
      assert.equal(final?.node, rewrittenBy, "the other node's renewal stands");
      assert.equal(final?.mac, rewritten.mac);
    } finally {
      for (const h of held) await h.client.stop();
    }
  });

  it("a renewal after the granting node was killed is ACKed by another node", async (t) => {
    const ns = ha.clients[1]!;
    await ns.setMac('eth0', freshMac());
    const client = new Udhcpc(ns, script, { label: 'udhcpc (renewal)' });
    try {
      const bound: ClientEvent = await client.waitEvent(['bound'], 0, 15_000);
      const granter = ha.nodes.findIndex((n) => n.ip === bound.env['serverid']);
      assert.ok(granter >= 0, `lease granted by a lab node (${bound.env['serverid']})`);
      await ha.kill(granter);
      const killedAt = Date.now();
      const seen = client.events().length;
      client.renew();
      // udhcpc: unicast REQUESTs to the dead server first, then broadcast (REBINDING).
      const renewed = await client.waitEvent(['renew', 'bound', 'deconfig', 'leasefail'], seen, 30_000);
      t.diagnostic(`renewal: ${renewed.event} ${renewed.env['ip']} from ${renewed.env['serverid']} ${Date.now() - killedAt} ms after the kill`);
      assert.equal(renewed.event, 'renew', `renewed, not restarted (${JSON.stringify(renewed)})`);
      assert.equal(renewed.env['ip'], bound.env['ip'], 'the same address');
      assert.notEqual(renewed.env['serverid'], serverIp(granter), 'ACKed by a surviving node');
      await ha.restart(granter);
    } finally {
      await client.stop();
    }
  });
});

/**
 * Five nodes (the issue: "any number of nodes, test with 3 and 5") on the same 3-member etcd:
 * one load run, shorter than the three-node one (it adds a lab start of five nodes), through the
 * same relay fan-out, so every node sees every message and only the designated one answers.
 */
const NODES_5 = 5;
// 70/s: each message reaches all five nodes and three etcd members share the same two cores
// (at 120/s here every node fell behind: 264 ms average delay, 16 % of DISCOVERs dropped).
// Five nodes and three etcd members share two cores: a reply may take over perfdhcp's default 1 s
// drop time without anything being wrong, so late replies still count (the invariants do not change).
const LOAD_5: PerfdhcpLoad = { ...LOAD, rate: 70, exchanges: 840, periodSeconds: 12, seed: 7, baseMac: '02:21:00:00:00:00', dropTimeSeconds: 3 };

describe('HA DHCP: five nodes, one pool, one segment', { skip }, () => {
  const sandbox = createSandbox({ after });
  let ha: HaLab;
  let fanout: NetnsProcess | undefined;

  before(async () => {
    ha = await HaLab.start(sandbox, { nodes: NODES_5, clients: 1, clientAddresses: [`${LOAD_ADDRESS}/16`] });
  });

  after(async () => {
    if (process.env['PXT_DUMP'] === '1' && ha) console.error(ha.describe());
    await fanout?.stop(1000);
    await ha?.cleanup();
  });

  it('perfdhcp against five nodes: the load spreads over all five, no NAK, no address bound twice, no node drops out', async (t) => {
    // Every node sees the same five members and the same split of the 256 buckets.
    const shares = await Promise.all(ha.nodes.map((n) => n.status().then((s) => (s['dhcp'] as { bucketsByNode?: Record<string, number> }).bucketsByNode)));
    for (const s of shares) assert.deepEqual(s, shares[0], 'every node computes the same bucket split');
    assert.equal(Object.keys(shares[0] ?? {}).length, NODES_5, `five members own buckets: ${JSON.stringify(shares[0])}`);

    const load = ha.clients[0]!;
    await load.ip(['addr', 'add', `${FANOUT_ADDRESS}/16`, 'dev', 'eth0']);
    fanout = await startRelayFanout(load, FANOUT_ADDRESS, ha.nodes.map((n) => n.ip));
    const capture = await captureReplies(load, 'eth0', `udp and dst port 67 and dst host ${LOAD_ADDRESS}`);
    const started = Date.now();
    const run = await runPerfdhcp(load, LOAD_5, 40_000);
    const wire = await capture.stop();
    await fanout.stop(1000);
    fanout = undefined;
    const { discoverOffer: dO, requestAck: rA } = run.report;
    const types = countByType(wire.messages);
    const summary = `${run.argv.join(' ')}\n${run.output}\nreplies on the wire: ${JSON.stringify(types)}`;
    const acks = wire.messages.filter((m) => m.typeName === 'ACK');
    const ackers = countBy(acks, (m) => m.src);
    const byName = Object.fromEntries(ha.nodes.map((n) => [n.name, ackers[n.ip] ?? 0]));
    t.diagnostic(
      `${rA.received}/${dO.sent} exchanges in ${Date.now() - started} ms (${run.report.rate} /s); wire ${JSON.stringify(types)}; ACKs by node ${JSON.stringify(byName)}; buckets by node ${JSON.stringify(shares[0])}`,
    );
    assert.equal(wire.kernelDrops, 0, 'tcpdump lost packets: the capture is incomplete');
    assert.ok(dO.sent >= LOAD_5.exchanges! * 0.9, `perfdhcp sent ${dO.sent} DISCOVERs\n${summary}`);
    assert.equal(types['NAK'] ?? 0, 0, `no NAK\n${summary}`);
    assert.ok(rA.received >= dO.sent * MIN_COMPLETED, `${rA.received}/${dO.sent} exchanges completed\n${summary}`);
    assert.deepEqual(addressesAckedToSeveralClients(wire.messages), [], 'no address ACKed to two clients on the wire');
    const acksPerXid = countBy(acks, (m) => `${m.mac}/${m.xid}`);
    assert.deepEqual(Object.entries(acksPerXid).filter(([, n]) => n > 1), [], 'one ACK per REQUEST, from one node');
    // About a fifth each (the bucket split above, ±6 buckets of 51); 10 % leaves room for it.
    for (const n of ha.nodes) {
      assert.ok(byName[n.name]! >= acks.length * 0.1, `${n.name} ACKed its share: ${JSON.stringify(byName)} of ${acks.length}`);
    }

    const { violations, leases } = await ha.duplicateBindings();
    assert.deepEqual(violations, [], 'store-wide: no address bound to two clients, no client with two bindings');
    const bound = new Map(leases.filter((l) => l.state === 'bound').map((l) => [l.ip, l]));
    const lastAck = new Map<string, CapturedDhcp>();
    for (const m of acks) lastAck.set(m.mac, m);
    assert.ok(lastAck.size >= 700, `hundreds of distinct clients got a lease (${lastAck.size})`);
    const notBound = [...lastAck.values()].filter((ack) => bound.get(ack.yiaddr)?.mac !== ack.mac);
    assert.deepEqual(notBound.slice(0, 5).map((a) => `${a.mac} ${a.yiaddr} by ${a.src}`), [], `${notBound.length} ACKed bindings are not bound to their client in etcd`);

    // With a 2 s membership lease under this load, no live node lost it: nobody degraded or left.
    const dropped = ha.nodes.flatMap((n) =>
      n.logs().filter((l) => /node degraded|^member left/.test(l.msg)).map((l) => `${n.name}: ${l.msg} ${JSON.stringify(l)}`),
    );
    assert.deepEqual(dropped, [], 'no node lost its membership lease under load');
  });
});

/** Polls `check` until it returns something truthy (which is returned), failing after `timeoutMs`. */
async function waitFor<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined | false>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value) return value;
    } catch (err) {
      last = err;
    }
    await sleep(100);
  }
  throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (last error: ${(last as Error).message})` : ''}`);
}

/** etcd's current revision (the header of a read), from the first member's namespace. */
async function storeRevision(ha: HaLab): Promise<number> {
  const { stdout } = await ha.etcdctl(0, ['get', '/pxeha/none', '-w', 'json']);
  return Number((JSON.parse(stdout) as { header: { revision: number | string } }).header.revision);
}

/**
 * A renewal as a REBINDING client sends it (REQUEST, ciaddr = its address, no server id, no
 * requested address), for `mac`, unicast from `fromIp` in `ns` to port 67 of each target, as a
 * relay with one helper address per node would deliver a broadcast. The ACK goes to ciaddr:68.
 */
async function sendRenewal(ns: Netns, fromIp: string, targets: readonly string[], mac: string, ciaddr: string): Promise<void> {
  const source = `
import dgram from 'node:dgram';
const b = Buffer.alloc(300);
b[0] = 1; b[1] = 1; b[2] = 6; b.writeUInt32BE(${(Math.random() * 0xffffffff) >>> 0}, 4);
Buffer.from(${JSON.stringify(ciaddr)}.split('.').map(Number)).copy(b, 12);
Buffer.from(${JSON.stringify(mac.replace(/:/g, ''))}, 'hex').copy(b, 28);
b.writeUInt32BE(0x63825363, 236);
let o = 240;
b[o++] = 53; b[o++] = 1; b[o++] = 3;
b[o++] = 61; b[o++] = 7; b[o++] = 1; Buffer.from(${JSON.stringify(mac.replace(/:/g, ''))}, 'hex').copy(b, o); o += 6;
b[o] = 255;
const sock = dgram.createSocket('udp4');
sock.bind(0, ${JSON.stringify(fromIp)}, async () => {
  for (const t of ${JSON.stringify(targets)}) await new Promise((r) => sock.send(b, 67, t, r));
  console.log('sent');
  sock.close();
});
`;
  const proc = ns.spawnNodeScript(source, { tsx: false, label: `renewal of ${mac}` });
  await proc.waitForLine(/^sent$/, { timeoutMs: 10_000 });
  await proc.exited;
}

function countBy<T>(items: readonly T[], key: (item: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const item of items) out[key(item)] = (out[key(item)] ?? 0) + 1;
  return out;
}
