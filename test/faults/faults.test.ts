/**
 * Proof under fire (issue 8): a 3-node pxeha cluster on a 3-member etcd, one bridge, in
 * namespaces this suite creates (test/helpers/faults-lab.ts), with QEMU PXE machines (BIOS;
 * one UEFI machine, OVMF's own PXE client, boots during the partition),
 * perfdhcp load, renewing DHCP clients that record every ACK and NAK, and HTTP/TFTP clients
 * fetching artifacts. Each scenario runs under load; the last tests check the invariants over
 * etcd's whole lease history and over the clients' own records, and prove the checks catch a
 * deliberately broken allocator.
 *
 *  1. kill -9 of a node while a machine it serves is at DHCP, TFTP, script and kernel stage
 *  2. a node's store traffic paused (silent network) for a while, then healed; a UEFI machine
 *     of that node's bucket boots meanwhile
 *  3. an etcd member killed, then the etcd leader too: quorum lost for 10 s, then restored
 *  4. a node's wall clock jumped +10 min, back, −10 min, back (libfaketime, that process only)
 *  5. rolling restart of every node under continuous perfdhcp load
 *  6. rebalance (manual mode): a returning node gets its share back by `pxeha cluster
 *     rebalance` while machines are booting
 *
 * Forms: SHORT (default; in scripts/test.sh's path) and LONG (PXEHA_FAULTS=long npm run
 * test:faults: a 30 s partition, more clients, more load, bigger initrd). Timings are figures,
 * printed at the end and written to test-artifacts/faults/figures-<form>.json, never asserted.
 *
 * "No artifact served that does not match its published hash": the fetch clients fetch files
 * placed on the nodes and a file of a published image (pushed on node1, replicated, served from
 * each node's chunk store at its pinned path `images/<name>/<version id>/<file>`), and every
 * download's SHA-256 is checked against the placed file's, or the bytes published as that
 * version (a version id names its manifest, so those bytes are the only right answer).
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it, type TestContext } from 'node:test';
import { bucketOfMac, DEFAULT_WEIGHT, ownerOf } from '../../src/dhcp/designation.js';
import { writeEventScript, udhcpcOnce } from '../helpers/dhcp-client.js';
import { etcdAvailable } from '../helpers/etcd-cluster.js';
import {
  availabilityGap,
  bootMachine,
  clientViolations,
  fetchesOf,
  fetchRecords,
  FANOUT_ADDRESS,
  FORM,
  formatFigures,
  LIBFAKETIME,
  LOAD_ADDRESS,
  macRankedFor,
  newFigures,
  NODE_NAMES,
  placedArtifacts,
  RenewingClients,
  startFaultsLab,
  publishFaultsImage,
  startFetchLoop,
  type BootResult,
  type PublishedImageFile,
} from '../helpers/faults-lab.js';
import { HaLab, serverIp, startRelayFanout } from '../helpers/ha-lab.js';
import { createSandbox, REPO_ROOT, type NetnsProcess } from '../helpers/netns.js';
import { addressesAckedToSeveralClients, captureReplies, runPerfdhcp, type CapturedDhcp, type PerfdhcpLoad } from '../helpers/perfdhcp.js';
import { existsSync } from 'node:fs';

const LONG = FORM === 'long';
const P = {
  /** Renewing clients (each renews every renewMs through all nodes). */
  renewers: LONG ? 60 : 18,
  renewMs: LONG ? 2000 : 1000,
  /** perfdhcp exchanges per second during each fault. */
  rate: LONG ? 120 : 40,
  partitionSeconds: LONG ? 30 : 10,
  quorumLossSeconds: 10,
  clockPhaseSeconds: LONG ? 15 : 4,
  initrdMiB: LONG ? 48 : 16,
  bootTimeoutMs: 180_000,
};
const skip = !etcdAvailable()
  ? 'etcd is not installed (scripts/install-deps.sh installs etcd-server)'
  : !existsSync(LIBFAKETIME)
    ? 'libfaketime is not installed (scripts/install-deps.sh installs faketime)'
    : false;

/** The machines of scenario 1 (MACs ranked for their victim) and the TFTP one's reservation. */
const STAGES = [
  { stage: 'dhcp', victim: 'node1', runnerUp: 'node2', base: 0x0a00 },
  { stage: 'tftp', victim: 'node2', runnerUp: 'node3', base: 0x0b00 },
  { stage: 'script', victim: 'node3', runnerUp: 'node1', base: 0x0c00 },
  { stage: 'kernel', victim: 'node1', runnerUp: 'node3', base: 0x0d00 },
].map((s) => ({ ...s, mac: macRankedFor(s.victim, s.runnerUp, s.base) }));
const TFTP_MACHINE = { mac: STAGES[1]!.mac, address: '10.99.0.31' };

describe(`fault suite (${FORM} form): 3 pxeha nodes, 3 etcd members, QEMU, perfdhcp, renewing and fetching clients`, { skip, timeout: LONG ? 3_600_000 : 900_000 }, () => {
  const sandbox = createSandbox({ after });
  const artifacts = placedArtifacts(P.initrdMiB);
  const figures = newFigures();
  const boots: BootResult[] = [];
  const wireAcks: CapturedDhcp[] = [];
  let ha: HaLab;
  let renewers: RenewingClients;
  let fetcher: NetnsProcess;
  let imageFile: PublishedImageFile;
  let fanout: NetnsProcess | undefined;
  let macSeq = 0;
  let loadSeq = 0;
  /** When each load-and-fault phase ran (for failure reports). */
  const scenarioLog: Array<{ label: string; from: number; to: number }> = [];

  const nodeIndex = (name: string): number => NODE_NAMES.indexOf(name);
  /** A fresh renewing-client MAC whose bucket `owner` owns among all three nodes. */
  const freshMacFor = (owner?: string): string => {
    const members = NODE_NAMES.map((name) => ({ name, weight: DEFAULT_WEIGHT }));
    for (let k = 0; k < 10_000; k++) {
      const n = ++macSeq;
      const mac = `02:40:00:00:${(n >> 8).toString(16).padStart(2, '0')}:${(n & 0xff).toString(16).padStart(2, '0')}`;
      if (!owner || ownerOf(bucketOfMac(mac), members) === owner) return mac;
    }
    throw new Error(`no MAC for ${owner}`);
  };

  /**
   * Runs `fault` while perfdhcp loads the cluster (bounded: `seconds` at P.rate) and the
   * renewing clients renew; records leases/s and the renewal gap under `label`.
   */
  async function underLoad<T>(t: TestContext, label: string, seconds: number, fault: () => Promise<T>): Promise<T> {
    const load: PerfdhcpLoad = {
      server: FANOUT_ADDRESS,
      localAddress: LOAD_ADDRESS,
      rate: P.rate,
      periodSeconds: seconds,
      exchanges: Math.ceil(P.rate * seconds),
      clients: 1_000_000,
      seed: 80 + loadSeq,
      baseMac: `02:50:${(loadSeq++).toString(16).padStart(2, '0')}:00:00:00`,
      exitWaitSeconds: 2,
    };
    const capture = await captureReplies(ha.clients[0]!, 'eth0', `udp and dst port 67 and dst host ${LOAD_ADDRESS}`);
    const started = Date.now();
    const [run, result] = await Promise.all([runPerfdhcp(ha.clients[0]!, load, (seconds + 60) * 1000), fault()]);
    const wire = await capture.stop();
    const ended = Date.now();
    scenarioLog.push({ label, from: started, to: ended });
    wireAcks.push(...wire.messages.filter((m) => m.typeName === 'ACK'));
    const naks = wire.messages.filter((m) => m.typeName === 'NAK').length;
    const { discoverOffer: dO, requestAck: rA } = run.report;
    figures.leasesPerSecond[label] = { rate: rA.received / Math.max(1, seconds), sent: dO.sent, completed: rA.received, seconds };
    figures.availabilityGapMs[label] = availabilityGap(renewers.events(), started, ended);
    t.diagnostic(`${label}: perfdhcp ${rA.received}/${dO.sent} exchanges (${(rA.received / seconds).toFixed(1)}/s), ${naks} NAKs on the wire; renewals ${JSON.stringify(figures.availabilityGapMs[label])}`);
    // perfdhcp cannot tell a NAK from a drop; its NAKs would be of fresh clients (never of a valid lease).
    if (naks > 0) figures.notes.push(`${label}: ${naks} NAKs to perfdhcp clients (fresh REQUESTs; counted, not a renewal)`);
    return result;
  }

  /** Adds a fresh client designated to `victim` now; `done()` waits for its ACK: the time from `sinceMs` to it. */
  function startTakeover(victim: string, sinceMs: number): { done: () => Promise<{ ms: number; by: string }> } {
    const mac = freshMacFor(victim);
    renewers.add(mac);
    return {
      done: async () => {
        const ack = await renewers.waitAck(mac, sinceMs, 20_000);
        return { ms: ack.t - sinceMs, by: ack.server };
      },
    };
  }
  const takeover = (victim: string, sinceMs: number) => startTakeover(victim, sinceMs).done();

  before(async () => {
    ha = await startFaultsLab(sandbox, { tftpMachines: [TFTP_MACHINE], artifacts });
    const load = ha.clients[0]!;
    await load.ip(['addr', 'add', `${FANOUT_ADDRESS}/16`, 'dev', 'eth0']);
    fanout = await startRelayFanout(load, FANOUT_ADDRESS, ha.nodes.map((n) => n.ip));
    renewers = await RenewingClients.start(ha.clients[1]!, ha.nodes.map((n) => n.ip), { renewMs: P.renewMs });
    for (let i = 0; i < P.renewers; i++) renewers.add(freshMacFor());
    await renewers.waitAllBound();
    imageFile = await publishFaultsImage(ha);
    artifacts.sha256[imageFile.path] = imageFile.sha256;
    // Bounded: at most 2000 rounds, 1 s apart; stopped (by PID) when the scenarios are done.
    fetcher = startFetchLoop(ha.clients[2]!, sandbox.tempDir('pxt-fetch-'), ['faults/blob.bin', 'undionly.kpxe', 'faults/stage2.ipxe', imageFile.path], 2000, 1);
  });

  after(async () => {
    if (process.env['PXT_DUMP'] === '1' && ha) console.error(ha.describe());
    await renewers?.stop();
    await fanout?.stop(1000);
    await ha?.cleanup();
  });

  for (const s of STAGES) {
    it(`1/${s.stage}: kill -9 of ${s.victim} while its machine is at ${s.stage} stage: the machine boots through the others`, async (t) => {
      const victim = nodeIndex(s.victim);
      const victimIp = serverIp(victim);
      let kill: { at: number; probe: ReturnType<typeof startTakeover> } | undefined;
      const killWhen: Record<string, (text: string) => boolean> = {
        // Its DHCP exchange has begun (the ACK may or may not have come from the victim).
        dhcp: (text) => /Configuring \(net0/.test(text),
        // The ROM is loading undionly.kpxe by TFTP from the victim.
        tftp: (text) => new RegExp(`tftp://${victimIp.replace(/\./g, '\\.')}/undionly\\.kpxe`).test(text),
        // The victim served the script; the kernel is next.
        script: (text) => /boot\.ipxe[^\n]*\.\.\. ok/.test(text) || /\[script\]/.test(text),
        // The initrd download from the victim is under way.
        kernel: (text) => new RegExp(`${victimIp.replace(/\./g, '\\.')}:8080/artifacts/faults/initrd\\.bin`).test(text),
      };
      const result = await underLoad(t, `kill -9 at ${s.stage}`, 15, () =>
        bootMachine(ha, `faults-${s.stage}`, s.mac, s.stage, P.bootTimeoutMs, async (text) => {
          if (!killWhen[s.stage]!(text)) return false;
          await ha.kill(victim);
          const at = Date.now();
          // At once: a fresh client of the victim's bucket, to time the takeover.
          kill = { at, probe: startTakeover(s.victim, at) };
          return true;
        }),
      );
      boots.push(result);
      figures.boots.push({ stage: s.stage, booted: result.booted, killedAfterMs: result.killedAfterMs, doneAfterMs: result.doneAfterMs, reboots: result.reboots, lastNode: result.lastNode });
      const describeFail = () => `${result.console.slice(-5000)}\nfetches: ${fetchesOf(result.console).join(', ')}`;
      assert.ok(kill, `the moment to kill ${s.victim} (${s.stage}) never came\n${describeFail()}`);
      // The victim's clients are the others' now: a fresh client designated to it is ACKed by another node.
      const taken = await kill.probe.done();
      figures.takeoverMs.push({ victim: s.victim, ...taken });
      t.diagnostic(`${s.stage}: killed ${s.victim} ${result.killedAfterMs} ms after QEMU start; callback ${result.doneAfterMs} ms via ${result.lastNode}; ${result.reboots} firmware retries; fresh client of ${s.victim} ACKed by ${taken.by} ${taken.ms} ms after the kill; fetches ${fetchesOf(result.console).join(', ')}`);
      assert.ok(result.booted, `the machine booted after ${s.victim} was killed at ${s.stage}\n${describeFail()}`);
      assert.notEqual(result.lastNode, s.victim, 'its callback reached a live node');
      assert.notEqual(taken.by, victimIp, `the dead node's fresh client was served by another node`);
      await ha.restart(victim);
      await ha.waitMembers(3);
    });
  }

  it(`2: a node partitioned from etcd for ${P.partitionSeconds} s (store proxy paused), then healed`, async (t) => {
    const victim = 1;
    const node = ha.nodes[victim]!;
    // A UEFI machine (OVMF's own PXE client, then iPXE) of the cut-off node's bucket boots meanwhile.
    const uefiMac = macRankedFor(node.name, 'node3', 0x0f00);
    let uefiBoot: Promise<BootResult> | undefined;
    await underLoad(t, `etcd partition of node2 (${P.partitionSeconds} s)`, P.partitionSeconds + 6, async () => {
      await ha.pauseStore(victim);
      const cutAt = Date.now();
      uefiBoot = bootMachine(ha, 'faults-uefi-partition', uefiMac, 'uefi during partition', P.bootTimeoutMs, undefined, 'uefi');
      try {
        const taken = await takeover(node.name, cutAt);
        t.diagnostic(`fresh client of the cut-off ${node.name} ACKed by ${taken.by} ${taken.ms} ms after the cut`);
        assert.notEqual(taken.by, node.ip, 'the cut-off node allocated nothing new');
        figures.notes.push(`partition: fresh client of the cut-off node ACKed by ${taken.by} after ${taken.ms} ms`);
        const rest = P.partitionSeconds * 1000 - (Date.now() - cutAt);
        if (rest > 0) await sleep(rest);
      } finally {
        await ha.resumeStore(victim);
      }
    });
    const uefi = await uefiBoot!;
    boots.push(uefi);
    figures.boots.push({ stage: 'UEFI during partition', booted: uefi.booted, doneAfterMs: uefi.doneAfterMs, reboots: uefi.reboots, lastNode: uefi.lastNode });
    t.diagnostic(`UEFI machine of the cut-off node: callback ${uefi.doneAfterMs} ms after QEMU start via ${uefi.lastNode}; fetches ${fetchesOf(uefi.console).join(', ')}`);
    assert.ok(uefi.booted, `the UEFI machine booted through the partition\n${uefi.console.slice(-4000)}`);
    await ha.waitMembers(3, 30_000);
    await waitFor('the healed node is ok with no queued renewal', 30_000, async () => {
      const s = await node.status();
      return s.state === 'ok' && (s['dhcp'] as { queuedRenewals?: number } | undefined)?.queuedRenewals === 0;
    });
  });

  it(`3: an etcd member killed, then the etcd leader: quorum lost for ${P.quorumLossSeconds} s, then restored`, async (t) => {
    await underLoad(t, 'etcd member then leader killed, quorum lost', P.quorumLossSeconds + 14, async () => {
      const leader = await ha.etcdLeader();
      assert.ok(leader !== undefined, 'etcd has a leader');
      const follower = [0, 1, 2].find((m) => m !== leader)!;
      await ha.killEtcd(follower);
      t.diagnostic(`killed etcd follower m${follower}; leader m${leader}`);
      await sleep(3000);
      await ha.killEtcd(leader);
      const lostAt = Date.now();
      t.diagnostic(`killed etcd leader m${leader}: quorum lost`);
      await sleep(P.quorumLossSeconds * 1000);
      // Without quorum the restarted members wait for each other: start both, then wait.
      await ha.restartEtcd(leader, { waitHealthy: false });
      await ha.restartEtcd(follower, { waitHealthy: false });
      const restoredAt = Date.now();
      let newLeader: number | undefined;
      await waitFor('etcd elects a leader again', 30_000, async () => (newLeader = await ha.etcdLeader()) !== undefined);
      figures.notes.push(`quorum lost ${restoredAt - lostAt} ms; etcd leader m${newLeader} ${Date.now() - restoredAt} ms after the restarts`);
    });
    await ha.waitMembers(3, 60_000);
    for (const n of ha.nodes) {
      await waitFor(`${n.name} is ok again with no queued renewal`, 60_000, async () => {
        const s = await n.status();
        return s.state === 'ok' && (s['dhcp'] as { queuedRenewals?: number } | undefined)?.queuedRenewals === 0;
      });
    }
  });

  it('4: a node\'s wall clock jumps +10 min, back, -10 min, back (libfaketime in that process only)', async (t) => {
    const victim = 2;
    const node = ha.nodes[victim]!;
    const stampFile = path.join(node.workDir, 'faketime');
    writeFileSync(stampFile, '+0\n');
    node.env = {
      LD_PRELOAD: LIBFAKETIME,
      FAKETIME_TIMESTAMP_FILE: stampFile,
      // Re-read the offset at most once a second (FAKETIME_NO_CACHE would read it on every call).
      FAKETIME_CACHE_DURATION: '1',
      // A wall-clock step (as NTP's): timers run on the monotonic clock, which stays true.
      FAKETIME_DONT_FAKE_MONOTONIC: '1',
    };
    await ha.restart(victim);
    await ha.waitMembers(3);
    /** The victim's Date.now() minus ours, from the clock it writes into its membership record. */
    const offsetSeen = async (): Promise<number> => {
      const { stdout } = await ha.etcdctl(0, ['get', `/pxeha/nodes/${node.name}`, '--print-value-only']);
      return (JSON.parse(stdout) as { clockMs: number }).clockMs - Date.now();
    };
    const phases: Array<[string, number]> = [['+600', 600_000], ['+0', 0], ['-600', -600_000], ['+0', 0]];
    const seen: string[] = [];
    try {
      await underLoad(t, 'clock of node3 jumped ±10 min', phases.length * (P.clockPhaseSeconds + 3) + 4, async () => {
        for (const [stamp, want] of phases) {
          writeFileSync(stampFile, `${stamp}\n`);
          const changedAt = Date.now();
          // Its record is rewritten every second (publishIntervalMs): the jump shows within a few.
          const got = await waitFor(`${node.name}'s Date.now() shifted by ${want} ms`, 15_000, async () => {
            const o = await offsetSeen();
            return Math.abs(o - want) < 5000 ? o : undefined;
          });
          seen.push(`${stamp}: ${Math.round(got / 1000)} s after ${Date.now() - changedAt} ms`);
          await takeover(node.name, Date.now());
          await sleep(P.clockPhaseSeconds * 1000);
        }
      });
      t.diagnostic(`node3's clock as the store saw it: ${seen.join('; ')}`);
      figures.notes.push(`clock jumps seen in node3's membership record: ${seen.join('; ')}`);
      for (const n of ha.nodes) assert.equal((await n.status()).state, 'ok', `${n.name} ok after the clock jumps`);
    } finally {
      node.env = undefined;
      await ha.restart(victim);
      await ha.waitMembers(3);
    }
  });

  it('5: rolling restart of every node, one at a time, under continuous perfdhcp load', async (t) => {
    const took: string[] = [];
    await underLoad(t, 'rolling restart', LONG ? 60 : 24, async () => {
      for (let i = 0; i < ha.nodes.length; i++) {
        const started = Date.now();
        await ha.nodes[i]!.stop();
        await ha.nodes[i]!.start();
        await ha.waitMembers(3, 30_000);
        took.push(`${ha.nodes[i]!.name} ${Date.now() - started} ms`);
      }
    });
    t.diagnostic(`restarts (stop, start, 3 members seen): ${took.join(', ')}`);
    figures.notes.push(`rolling restart, per node stop→serving→3 members: ${took.join(', ')}`);
  });

  it('6: a returning node gets its share back by `pxeha cluster rebalance` (manual mode) without breaking boots in flight', async (t) => {
    // Not the leader: a leader that dies before any placement record exists is the documented gap.
    const leaders = await Promise.all(ha.nodes.map((n) => n.status().then((s) => s.leader)));
    const victim = [2, 1, 0].find((i) => !leaders[i])!;
    const node = ha.nodes[victim]!;
    const other = ha.nodes.find((n, i) => i !== victim)!.name;
    const applyRebalance = async (mode: 'auto' | 'manual') => {
      const doc = { ...(ha.options.cluster as Record<string, unknown>), dhcp: { offerHoldSeconds: 30, rebalance: mode } };
      const file = path.join(ha.nodes[0]!.workDir, `cluster-${mode}.yaml`);
      writeFileSync(file, JSON.stringify(doc, null, 2));
      await cli(['apply', '-f', file]);
    };
    const placement = () => ha.nodes[0]!.api<{ nodes: Array<{ name: string; placed: boolean; buckets: number }> }>('/api/v1/cluster/placement');
    await applyRebalance('manual');
    try {
      await ha.kill(victim);
      await waitFor(`${node.name} unplaced by the leader`, 20_000, async () => (await placement()).nodes.every((n) => n.name !== node.name || !n.placed));
      await node.start();
      await ha.waitMembers(3);
      const before = await placement();
      const share = before.nodes.find((n) => n.name === node.name);
      assert.equal(share?.buckets ?? 0, 0, `a returning node takes no share before rebalance: ${JSON.stringify(before.nodes)}`);
      // A machine whose bucket is the returning node's: served by its runner-up now; rebalanced mid-boot.
      const mac = macRankedFor(node.name, other, 0x0e00);
      let rebalancedAt = 0;
      const result = await underLoad(t, 'rebalance with boots in flight', 15, () =>
        bootMachine(ha, 'faults-rebalance', mac, 'rebalance', P.bootTimeoutMs, async (text) => {
          if (!/boot\.ipxe[^\n]*\.\.\. ok|\[script\]/.test(text)) return false;
          await cli(['cluster', 'rebalance']);
          rebalancedAt = Date.now();
          return true;
        }),
      );
      boots.push(result);
      figures.boots.push({ stage: 'rebalance mid-boot', booted: result.booted, killedAfterMs: result.killedAfterMs, doneAfterMs: result.doneAfterMs, reboots: result.reboots, lastNode: result.lastNode });
      assert.ok(rebalancedAt > 0, `rebalanced while the machine booted\n${result.console.slice(-4000)}`);
      assert.ok(result.booted, `the machine in flight booted through the rebalance\n${result.console.slice(-4000)}`);
      const after = await placement();
      t.diagnostic(`before rebalance ${JSON.stringify(before.nodes)}; after ${JSON.stringify(after.nodes)}; machine via ${result.lastNode}`);
      assert.ok((after.nodes.find((n) => n.name === node.name)?.buckets ?? 0) > 40, `the returning node has its share back: ${JSON.stringify(after.nodes)}`);
      // Its share serves again: a fresh client of its bucket is ACKed by it.
      const taken = await takeover(node.name, Date.now());
      assert.equal(taken.by, node.ip, 'a fresh client of the returning node is served by it after the rebalance');
    } finally {
      await applyRebalance('auto');
    }
  });

  it('invariants: no address bound to two clients (whole history), no committed lease lost, no NAK of a valid lease, every machine booted, every artifact intact', async (t) => {
    await renewers.stop();
    await fetcher.stop(1000);
    const nowMs = Date.now();
    const all = await ha.duplicateBindings(nowMs);
    const { leases } = all;
    // Every invariant is asserted, one client one binding included: a lease commit sent just
    // before a partition and delivered after it once left a client two bindings; lease writes are
    // now fenced by the node's membership session (src/dhcp/lease-book.ts setFence).
    const violations = all.violations;
    const clients = clientViolations(renewers.events(), leases, nowMs);
    // perfdhcp clients (their last ACK on the wire): still bound to them in etcd.
    const lastAck = new Map<string, CapturedDhcp>();
    for (const m of wireAcks) lastAck.set(m.mac, m);
    const bound = new Map(leases.filter((l) => l.state === 'bound').map((l) => [l.ip, l]));
    const perfLost = [...lastAck.values()].filter((a) => bound.get(a.yiaddr)?.mac !== a.mac).map((a) => `${a.mac} ACKed ${a.yiaddr} by ${a.src}, store: ${JSON.stringify(bound.get(a.yiaddr) ?? null)}`);
    const fetches = fetchRecords(fetcher);
    const mismatched = fetches.filter((f) => f.ok && f.sha !== artifacts.sha256[f.file]);
    figures.fetches = { ok: fetches.filter((f) => f.ok).length, failedTries: fetches.filter((f) => !f.ok).length, hashMismatches: mismatched.length };
    assert.ok(fetches.some((f) => f.ok && f.file === imageFile.path), 'the published image file was fetched');
    const printed = formatFigures(figures);
    const dir = path.join(REPO_ROOT, 'test-artifacts', 'faults');
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, `figures-${FORM}.json`), `${JSON.stringify(figures, null, 2)}\n`);
    t.diagnostic(printed);
    console.log(printed);
    t.diagnostic(`${leases.length} lease records; ${renewers.events().length} renewing-client events; ${lastAck.size} perfdhcp clients ACKed; ${fetches.length} fetch tries`);
    if (violations.length > 0) {
      // Explain: every version of the addresses named, and the named clients' own records.
      const { history } = await ha.leaseHistory();
      const ips = new Set(violations.flatMap((v) => v.match(/10\.99\.\d+\.\d+/g) ?? []));
      const macs = new Set(violations.flatMap((v) => v.match(/(?<![0-9a-f:])([0-9a-f]{2}:){5}[0-9a-f]{2}/g) ?? []));
      const versions = [...ips].map((ip) => `lab/${ip}:\n  ${(history.byKey.get(`/pxeha/leases/lab/${ip}`) ?? []).map((v) => `${v.revision}: ${JSON.stringify(v.record)}`).join('\n  ')}`);
      const own = renewers.events().filter((e) => macs.has(e.mac)).map((e) => JSON.stringify(e));
      const scenarioTimes = JSON.stringify(figures.notes);
      assert.fail(`store invariant violated: ${violations.join('; ')}\n${versions.join('\n')}\nclient records:\n${own.join('\n')}\nscenario boundaries: ${JSON.stringify(scenarioLog)}\n${scenarioTimes}`);
    }
    assert.deepEqual(clients, [], "clients' records: no NAK of a valid lease, every valid ACKed binding still in the store");
    assert.deepEqual(addressesAckedToSeveralClients(wireAcks), [], 'wire: no address ACKed to two perfdhcp clients');
    assert.deepEqual(perfLost.slice(0, 5), [], `${perfLost.length} perfdhcp ACKed bindings lost`);
    assert.deepEqual(boots.filter((b) => !b.booted).map((b) => b.stage), [], 'every QEMU machine booted');
    assert.deepEqual(mismatched.slice(0, 5), [], 'every artifact fetched matches the SHA-256 of the file the lab placed');
    assert.ok(figures.fetches.ok > 0, 'fetch clients fetched');
  });

  it('the invariant check catches a broken allocator (test-only variant that reuses bound addresses)', async (t) => {
    const victim = 0;
    const node = ha.nodes[victim]!;
    const ns = ha.clients[3]!;
    const { script } = writeEventScript(sandbox.tempDir('pxt-broken-'));
    const lease = async (mac: string, requestIp?: string): Promise<{ ip: string; server: string }> => {
      await ns.setMac('eth0', mac);
      const { result, events } = await udhcpcOnce(ns, script, { args: ['-t', '10', ...(requestIp ? ['-r', requestIp] : [])] });
      await ns.exec(['ip', '-4', 'addr', 'flush', 'dev', 'eth0']);
      const b = events.find((e) => e.event === 'bound');
      assert.ok(b, `${mac} got a lease\n${result.stdout}${result.stderr}`);
      return { ip: b.env['ip']!, server: b.env['serverid']! };
    };
    const holder = await lease(macRankedFor(node.name, undefined, 0x1000));
    // Control: the real allocator refuses the holder's address to another client.
    const control = await lease(macRankedFor(node.name, undefined, 0x1000, 1), holder.ip);
    assert.notEqual(control.ip, holder.ip, 'the real allocator does not hand out a bound address');
    // What the checker says before (the suite's own verdict is the test above): only new reports count here.
    const baseline = new Set((await ha.duplicateBindings()).violations);
    assert.ok(![...baseline].some((v) => v.includes(holder.ip)), 'nothing reported for the address before the broken variant runs');

    node.env = { PXEHA_TEST_HOOKS: '1', PXEHA_TEST_BROKEN_ALLOCATOR: 'reuse-bound' };
    try {
      await ha.restart(victim);
      await ha.waitMembers(3);
      const thief = await lease(macRankedFor(node.name, undefined, 0x1000, 2), holder.ip);
      t.diagnostic(`broken ${node.name} gave ${thief.ip} (bound to another client) via ${thief.server}`);
      const violations = (await ha.duplicateBindings()).violations.filter((v) => !baseline.has(v));
      t.diagnostic(`the checker reports: ${violations.join('; ')}`);
      assert.equal(thief.ip, holder.ip, 'the broken variant handed out the bound address');
      assert.ok(
        violations.some((v) => v.includes(holder.ip)),
        `the store invariant check reports the address bound to two clients: ${JSON.stringify(violations)}`,
      );
    } finally {
      node.env = undefined;
      await ha.restart(victim);
    }
  });

  /** `pxeha <args> --config <node1's node.yaml>` in node1's namespace. */
  async function cli(args: string[]): Promise<string> {
    const n = ha.nodes[0]!;
    const r = await n.ns.exec([process.execPath, path.join(REPO_ROOT, 'bin', 'pxeha.js'), ...args, '--config', n.nodeFile], { timeoutMs: 30_000, allowFailure: true });
    if (r.code !== 0) throw new Error(`pxeha ${args.join(' ')} failed:\n${r.stdout}${r.stderr}`);
    return r.stdout;
  }
});

/** Polls `check` until it returns something truthy (which is returned), failing after `timeoutMs`. */
async function waitFor<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined | false>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      last = err;
    }
    await sleep(200);
  }
  throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (last error: ${(last as Error).message})` : ''}`);
}
