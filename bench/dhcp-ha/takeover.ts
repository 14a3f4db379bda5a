/**
 * Takeover time after `kill -9` of a DHCP server (issue 6, bench/dhcp-ha): how long a NEW
 * client (a MAC never seen before) waits for an ACK when the server it would have been
 * answered by dies, over many trials; p50 and p99 are printed.
 *
 * pxeha: three nodes on a 3-member etcd in namespaces on one segment (test/helpers/ha-lab.ts),
 * a light perfdhcp background load through a relay fan-out to all three during every trial.
 * Each trial kills one node (round robin) with SIGKILL and at once starts a fresh client, then
 * restarts the node and waits until every node sees three members again. When src/dhcp exports
 * a designation function (RFC 3074 bucket → node), the fresh MAC is one the killed node was
 * designated for; until then it is any fresh MAC (and with every node answering every client,
 * the figure is how fast the survivors answer).
 *
 * The probe is a DHCP client of our own (a Node script in a client namespace with a static
 * address, so it can send broadcasts with a UDP socket): DISCOVER broadcast every 100 ms with
 * the broadcast flag and `secs` counting the seconds since its first DISCOVER (as RFC 2131
 * clients do), REQUEST on the first OFFER, done at the ACK. 100 ms is the measurement's
 * resolution; udhcpc's 1 s retry would hide sub-second takeovers.
 *
 * Kea: a hot-standby pair of Debian's kea-dhcp4 2.2 with its HA hook (libdhcp_ha.so, in
 * kea-common), one fresh pair per trial, the same background load through the same fan-out,
 * kill -9 of the primary, the same probe until the standby ACKs. Kea's timers are its defaults
 * (heartbeat 10 s, max-response-delay 60 s), max-unacked-clients aside (see main()); each
 * trial therefore takes about a minute, so few trials are run (--kea-trials, default 2).
 *
 * Before the trials, each set-up also gets one bounded perfdhcp run at --throughput-rate for
 * --throughput-seconds through the same fan-out (leases/s and drops; 0 skips it).
 *
 * Usage: npm run bench:dhcp-ha -- [--trials 20] [--load-rate 50] [--nodes 3] [--kea-trials 2]
 *                                 [--kea-deadline-seconds 90] [--throughput-rate 600]
 *                                 [--throughput-seconds 6] [--throughput-only]
 *                                 [--cpu-prof DIR]
 * --throughput-only runs the throughput phase of both set-ups and no takeover trial; --cpu-prof
 * has the pxeha lab's Node processes write V8 CPU profiles into DIR (the nodes are stopped
 * gracefully after the throughput phase so that theirs are written).
 * Bounded: every trial has a deadline, the whole run a trial cap; all namespaces and processes
 * are removed at the end, on failure and on Ctrl-C (Sandbox).
 */
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { apiGet } from '../../test/helpers/dhcp-client-pxeha.js';
import { HaLab, startRelayFanout } from '../../test/helpers/ha-lab.js';
import { Sandbox, type Netns, type NetnsProcess } from '../../test/helpers/netns.js';
import { parsePerfdhcpReport, perfdhcpArgv, runPerfdhcp } from '../../test/helpers/perfdhcp.js';
import { cpuSeconds, fmt, integerOption, say } from '../lib/common.js';

const LOAD_ADDRESS = '10.99.0.50';
const FANOUT_ADDRESS = '10.99.0.51';
const PROBE_ADDRESS = '10.99.0.60';
const TRIAL_DEADLINE_MS = 20_000;

/**
 * The probe client: commands `probe <mac> <deadlineMs>` on stdin, one result line each:
 * `ack|timeout <mac> <ip> <server> <elapsedMs> <servers that NAKed, or ->`.
 */
const PROBE_SOURCE = `
import dgram from 'node:dgram';
import readline from 'node:readline';
const sock = dgram.createSocket({ type: 'udp4', reuseAddr: true });
await new Promise((r) => sock.bind(68, '0.0.0.0', r));
sock.setBroadcast(true);
let current;
function ip(b, o) { return b[o] + '.' + b[o + 1] + '.' + b[o + 2] + '.' + b[o + 3]; }
function packet(type, mac, xid, secs, extra) {
  const b = Buffer.alloc(300);
  b[0] = 1; b[1] = 1; b[2] = 6; b.writeUInt32BE(xid, 4); b.writeUInt16BE(Math.min(secs, 65535), 8);
  b.writeUInt16BE(0x8000, 10); // broadcast flag: the reply comes to 255.255.255.255:68
  Buffer.from(mac.replace(/:/g, ''), 'hex').copy(b, 28);
  b.writeUInt32BE(0x63825363, 236);
  let o = 240;
  const opt = (code, value) => { b[o++] = code; b[o++] = value.length; value.copy(b, o); o += value.length; };
  opt(53, Buffer.from([type]));
  for (const [code, value] of extra) opt(code, value);
  b[o] = 255;
  return b;
}
const ipBytes = (s) => Buffer.from(s.split('.').map(Number));
sock.on('message', (msg) => {
  const c = current;
  if (!c || msg.length < 240 || msg[0] !== 2 || msg.readUInt32BE(4) !== c.xid) return;
  let type, server;
  for (let o = 240; o < msg.length && msg[o] !== 255; ) {
    if (msg[o] === 0) { o++; continue; }
    const code = msg[o], len = msg[o + 1], v = msg.subarray(o + 2, o + 2 + len);
    if (code === 53) type = v[0];
    if (code === 54) server = ip(v, 0);
    o += 2 + len;
  }
  const yiaddr = ip(msg, 16);
  if (type === 2 && c.state === 'discover') {
    c.state = 'request'; c.offer = { yiaddr, server };
    c.send();
  } else if (type === 5 && c.state === 'request') {
    c.finish('ack ' + c.mac + ' ' + yiaddr + ' ' + server + ' ' + (Date.now() - c.start) + ' ' + (c.naks.join(',') || '-'));
  } else if (type === 6 && c.state === 'request') {
    // As RFC 2131 §4.4 asks of a client: back to INIT. Counted, and reported with the result.
    c.naks.push(server);
    c.state = 'discover';
    c.requestAt = undefined;
    c.send();
  }
});
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const [cmd, mac, deadline] = line.trim().split(' ');
  if (cmd !== 'probe') return;
  const c = { mac, xid: (Math.random() * 0xffffffff) >>> 0, start: Date.now(), state: 'discover', naks: [] };
  c.send = () => {
    const secs = Math.floor((Date.now() - c.start) / 1000);
    const p = c.state === 'discover'
      ? packet(1, mac, c.xid, secs, [])
      : packet(3, mac, c.xid, secs, [[50, ipBytes(c.offer.yiaddr)], [54, ipBytes(c.offer.server)]]);
    sock.send(p, 67, '255.255.255.255', (err) => { if (err) console.log('send error ' + err.message); });
  };
  c.finish = (result) => { clearInterval(c.timer); clearTimeout(c.deadline); current = undefined; console.log(result); };
  // Retransmit every 100 ms; a REQUEST unanswered for 1 s goes back to DISCOVER (its server may be the dead one).
  c.timer = setInterval(() => {
    if (c.state === 'request' && Date.now() - (c.requestAt ??= Date.now()) > 1000) { c.state = 'discover'; c.requestAt = undefined; }
    c.send();
  }, 100);
  c.deadline = setTimeout(() => c.finish('timeout ' + mac + ' - - ' + (Date.now() - c.start) + ' ' + (c.naks.join(',') || '-')), Number(deadline));
  current = c;
  c.send();
});
console.log('probe ready');
`;

interface ProbeResult {
  kind: 'ack' | 'timeout';
  mac: string;
  ip: string;
  server: string;
  elapsedMs: number;
  /** Servers that NAKed a REQUEST of this probe on the way. */
  naks: string[];
}

class Probe {
  readonly proc: NetnsProcess;
  private constructor(proc: NetnsProcess) {
    this.proc = proc;
  }

  static async start(ns: Netns): Promise<Probe> {
    // A route for 255.255.255.255 (the namespace has only the segment's): without one the
    // kernel refuses the limited broadcast (ENETUNREACH). Inside our namespace only.
    await ns.ip(['route', 'add', 'default', 'dev', 'eth0']);
    const proc = ns.spawnNodeScript(PROBE_SOURCE, { tsx: false, label: 'dhcp probe' });
    await proc.waitForLine(/^probe ready$/, { timeoutMs: 10_000 });
    return new Probe(proc);
  }

  async run(mac: string, deadlineMs: number): Promise<ProbeResult> {
    const from = this.proc.lines().length;
    this.proc.write(`probe ${mac} ${deadlineMs}\n`);
    const line = await this.proc.waitForLine(/^(ack|timeout) /, { from, timeoutMs: deadlineMs + 5000 });
    const [kind, m, ip, server, elapsed, naks] = line.split(' ');
    return { kind: kind as ProbeResult['kind'], mac: m!, ip: ip!, server: server!, elapsedMs: Number(elapsed), naks: naks === '-' || !naks ? [] : naks.split(',') };
  }
}

function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

/**
 * The node a MAC is designated to among `nodes` (equal weights), from src/dhcp/designation.ts
 * (RFC 3074 bucket hash, weighted rendezvous over the members) when it is there; undefined
 * otherwise. Loaded dynamically so this bench runs on code without it.
 */
async function loadDesignation(): Promise<((mac: string, nodes: readonly string[]) => string | undefined) | undefined> {
  const modulePath = '../../src/dhcp/designation.js';
  try {
    const m = (await import(modulePath)) as {
      bucketOfMac?: (mac: string) => number;
      ownerOf?: (bucket: number, members: ReadonlyArray<{ name: string; weight: number }>) => string | undefined;
      DEFAULT_WEIGHT?: number;
    };
    const { bucketOfMac, ownerOf } = m;
    if (typeof bucketOfMac !== 'function' || typeof ownerOf !== 'function') return undefined;
    const weight = m.DEFAULT_WEIGHT ?? 100;
    return (mac, nodes) => ownerOf(bucketOfMac(mac), nodes.map((name) => ({ name, weight })));
  } catch {
    return undefined;
  }
}


interface Throughput {
  /** Completed 4-way exchanges per second, as perfdhcp reports it. */
  leasesPerSecond: number;
  sent: number;
  completed: number;
  drops: number;
}

/**
 * One bounded perfdhcp run through the fan-out (every server sees every message). With
 * `cpu`, the CPU seconds each listed process spent during the run are printed after it.
 */
async function measureThroughput(
  load: Netns,
  rate: number,
  seconds: number,
  baseMac: string,
  cpu: ReadonlyArray<{ label: string; pid: number | undefined }> = [],
  namespaces: ReadonlyArray<{ label: string; ns: Netns }> = [],
): Promise<Throughput> {
  const before = cpu.map((p) => (p.pid !== undefined ? cpuSeconds(p.pid) : undefined));
  const udpBefore = await Promise.all(namespaces.map((n) => udpCounters(n.ns)));
  const machineBefore = machineCpu();
  const run = await runPerfdhcp(load, {
    server: FANOUT_ADDRESS,
    localAddress: LOAD_ADDRESS,
    rate,
    periodSeconds: seconds,
    exchanges: rate * seconds,
    clients: 1_000_000,
    seed: 99,
    baseMac,
    exitWaitSeconds: 2,
  });
  if (cpu.length > 0) {
    const spent = cpu.map((p, i) => {
      const b = before[i];
      const a = p.pid !== undefined ? cpuSeconds(p.pid) : undefined;
      return `${p.label} ${a !== undefined && b !== undefined ? fmt(a - b, 2) : '-'}`;
    });
    const machineAfter = machineCpu();
    const busy = machineAfter.busy - machineBefore.busy;
    const total = busy + machineAfter.idle - machineBefore.idle;
    say(`  cpu seconds during the run: ${spent.join(', ')}; whole machine ${fmt(busy, 1)} busy of ${fmt(total, 1)} (${fmt((100 * busy) / total)}%)`);
  }
  if (namespaces.length > 0) {
    const udpAfter = await Promise.all(namespaces.map((n) => udpCounters(n.ns)));
    const delta = namespaces.map((n, i) => {
      const d = (k: string) => (udpAfter[i]!.get(k) ?? 0) - (udpBefore[i]!.get(k) ?? 0);
      return `${n.label} in ${d('InDatagrams')} rcvbuf-errors ${d('RcvbufErrors')} sndbuf-errors ${d('SndbufErrors')}`;
    });
    say(`  UDP during the run: ${delta.join('; ')}`);
  }
  const { discoverOffer: dO, requestAck: rA } = run.report;
  return { leasesPerSecond: run.report.rate, sent: dO.sent, completed: rA.received, drops: dO.drops + rA.drops };
}

/** Busy and idle CPU seconds of the whole machine since boot (/proc/stat). */
function machineCpu(): { busy: number; idle: number } {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  const all = fields.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: (all - idle) / 100, idle: idle / 100 };
}

/** The kernel's UDP counters of a namespace (/proc/net/snmp). */
async function udpCounters(ns: Netns): Promise<Map<string, number>> {
  const { stdout } = await ns.exec(['cat', '/proc/net/snmp']);
  const [names, values] = stdout.split('\n').filter((l) => l.startsWith('Udp:'));
  const out = new Map<string, number>();
  if (!names || !values) return out;
  const n = names.split(/\s+/).slice(1);
  const v = values.split(/\s+/).slice(1);
  n.forEach((k, i) => out.set(k, Number(v[i])));
  return out;
}

/**
 * A node's Prometheus text in one line: replies and drops by kind, the mean and median of its
 * decisions and store transactions (the median from the histogram's buckets).
 */
function summarizeMetrics(text: string | undefined): string {
  if (typeof text !== 'string') return 'no metrics';
  const samples = text.split('\n').filter((l) => l.startsWith('pxeha_'));
  const sum = (re: RegExp): Map<string, number> => {
    const out = new Map<string, number>();
    for (const l of samples) {
      const m = re.exec(l);
      if (m) out.set(m[1]!, (out.get(m[1]!) ?? 0) + Number(l.slice(l.lastIndexOf(' ') + 1)));
    }
    return out;
  };
  const list = (m: Map<string, number>) => [...m].filter(([, v]) => v > 0).map(([k, v]) => `${k} ${v}`).join(' ') || '-';
  const histogram = (name: string, label: string): string => {
    const lines = samples.filter((l) => l.startsWith(name) && l.includes(label));
    const value = (suffix: string) => Number(lines.find((l) => l.startsWith(`${name}_${suffix}`))?.split(' ').pop() ?? NaN);
    const count = value('count');
    if (!(count > 0)) return '-';
    const buckets = lines
      .filter((l) => l.startsWith(`${name}_bucket`))
      .map((l) => ({ le: Number(/le="([^"]+)"/.exec(l)?.[1]), n: Number(l.split(' ').pop()) }))
      .sort((a, b) => a.le - b.le);
    const p50 = buckets.find((b) => b.n >= count / 2)?.le;
    return `n ${count} mean ${fmt((value('sum') / count) * 1000, 1)} ms p50 ≤ ${fmt((p50 ?? NaN) * 1000, 1)} ms`;
  };
  return [
    `replies ${list(sum(/^pxeha_dhcp_replies_total\{type="([^"]+)"/))}`,
    `drops ${list(sum(/^pxeha_dhcp_dropped_total\{reason="([^"]+)"/))}`,
    `decision ${histogram('pxeha_dhcp_decision_seconds', '')}`,
    `txn ${histogram('pxeha_store_op_seconds', 'op="txn"')}`,
  ].join('; ');
}

function describeThroughput(t: Throughput | undefined): string {
  return t ? `${fmt(t.leasesPerSecond, 1)} leases/s (${t.completed}/${t.sent} exchanges completed, ${t.drops} drops)` : 'not measured';
}

async function benchPxeha(
  trials: number,
  loadRate: number,
  nodeCount: number,
  throughput: { rate: number; seconds: number },
  cpuProfDir?: string,
): Promise<{ times: number[]; failures: string[]; naks: string[]; designated: boolean; loadSummary: string; throughput?: Throughput }> {
  const sandbox = new Sandbox();
  // --cpu-prof: the nodes (and the lab's other Node processes) write V8 CPU profiles on exit.
  const savedNodeOptions = process.env['NODE_OPTIONS'];
  if (cpuProfDir) {
    const preload = new URL('./cpu-prof-preload.mjs', import.meta.url).href;
    process.env['NODE_OPTIONS'] = `${savedNodeOptions ?? ''} --import=${preload}`.trim();
    process.env['PXT_CPU_PROF_DIR'] = cpuProfDir;
  }
  let ha: HaLab;
  try {
    ha = await HaLab.start(sandbox, {
      nodes: nodeCount,
      clients: 2,
      clientAddresses: [`${LOAD_ADDRESS}/16`, `${PROBE_ADDRESS}/16`],
    });
  } finally {
    if (cpuProfDir) {
      delete process.env['PXT_CPU_PROF_DIR'];
      if (savedNodeOptions === undefined) delete process.env['NODE_OPTIONS'];
      else process.env['NODE_OPTIONS'] = savedNodeOptions;
    }
  }
  const times: number[] = [];
  const failures: string[] = [];
  const naks: string[] = [];
  let measured: Throughput | undefined;
  let loadCompleted = 0;
  let loadSent = 0;
  const designate = await loadDesignation();
  try {
    const load = ha.clients[0]!;
    await load.ip(['addr', 'add', `${FANOUT_ADDRESS}/16`, 'dev', 'eth0']);
    const fanout = await startRelayFanout(load, FANOUT_ADDRESS, ha.nodes.map((n) => n.ip));
    if (throughput.rate > 0) {
      const cpu = [
        ...ha.nodes.map((n) => ({ label: n.name, pid: n.pid })),
        ...ha.nodes.map((n) => ({ label: `${n.name} proxy`, pid: n.proxy?.pid })),
        ...ha.etcd.map((p, m) => ({ label: `etcd m${m}`, pid: p.pid })),
        { label: 'fan-out', pid: fanout.pid },
      ];
      const namespaces = [...ha.nodes.map((n) => ({ label: n.name, ns: n.ns })), { label: 'load', ns: load }];
      measured = await measureThroughput(load, throughput.rate, throughput.seconds, '02:80:00:00:00:00', cpu, namespaces);
      say(`  throughput: ${describeThroughput(measured)}`);
      for (const n of ha.nodes) say(`  ${n.name}: ${summarizeMetrics(await apiGet(n.dataDir, '/metrics').catch(() => undefined))}`);
      // A graceful stop, so that --cpu-prof profiles are written (a SIGKILL writes none).
      if (cpuProfDir) await Promise.all(ha.nodes.map((n) => n.stop()));
    }
    if (trials === 0) return { times, failures, naks, designated: designate !== undefined, ...(measured ? { throughput: measured } : {}), loadSummary: 'no trials' };
    const probe = await Probe.start(ha.clients[1]!);
    const names = ha.nodes.map((n) => n.name);
    let macSeq = 0;
    const freshMac = () => {
      macSeq++;
      return `02:40:00:${((macSeq >> 16) & 0xff).toString(16).padStart(2, '0')}:${((macSeq >> 8) & 0xff).toString(16).padStart(2, '0')}:${(macSeq & 0xff).toString(16).padStart(2, '0')}`;
    };
    for (let trial = 0; trial < trials; trial++) {
      const victim = trial % nodeCount;
      // A fresh MAC the victim is designated for, when designation is known (bounded search).
      let mac = freshMac();
      if (designate) for (let k = 0; k < 1000 && designate(mac, names) !== names[victim]; k++) mac = freshMac();
      // Background load for the whole trial, bounded by its period.
      const perf = loadRate > 0
        ? load.spawn(
            perfdhcpArgv({ server: FANOUT_ADDRESS, localAddress: LOAD_ADDRESS, rate: loadRate, periodSeconds: 6, clients: 1_000_000, seed: trial + 1, baseMac: `02:50:${trial.toString(16).padStart(2, '0')}:00:00:00` }),
            { label: `perfdhcp trial ${trial}` },
          )
        : undefined;
      await sleep(1000);
      const killedAt = Date.now();
      await ha.kill(victim);
      const killMs = Date.now() - killedAt;
      const r = await probe.run(mac, TRIAL_DEADLINE_MS);
      const takeover = r.elapsedMs + killMs;
      if (r.kind === 'ack' && r.server !== ha.nodes[victim]!.ip) times.push(takeover);
      else failures.push(`trial ${trial}: ${r.kind} from ${r.server} after ${takeover} ms`);
      if (r.naks.length > 0) naks.push(`trial ${trial + 1}: NAK from ${r.naks.join(',')}`);
      say(`  trial ${String(trial + 1).padStart(2)}: killed node${victim + 1}, ${mac} ${r.kind} ${r.ip} from ${r.server} after ${takeover} ms${r.naks.length ? ` (NAKed by ${r.naks.join(',')} first)` : ''}`);
      if (perf) {
        await perf.exited;
        try {
          const rep = parsePerfdhcpReport(perf.stdout() + perf.stderr());
          loadSent += rep.discoverOffer.sent;
          loadCompleted += rep.requestAck.received;
        } catch {
          // A run without a report counts nothing.
        }
      }
      await ha.restart(victim);
      await ha.waitMembers(nodeCount, 30_000);
    }
  } finally {
    await ha.cleanup();
  }
  return {
    times,
    failures,
    designated: designate !== undefined,
    naks,
    ...(measured ? { throughput: measured } : {}),
    loadSummary: loadRate > 0 ? `${loadCompleted}/${loadSent} background exchanges completed` : 'no background load',
  };
}


// ---------------------------------------------------------------------------------------------
// Kea hot-standby HA pair

const KEA_HOOKS = '/usr/lib/x86_64-linux-gnu/kea/hooks';

/**
 * kea-dhcp4 of a hot-standby pair (Kea 2.2 HA hook with its lease_cmds dependency), HA traffic
 * on a listener of the DHCP server itself (multi-threading with `http-dedicated-listener`, so
 * no kea-ctrl-agent is needed). Timers are Kea's defaults unless `ha` overrides them
 * (heartbeat-delay 10 s, max-response-delay 60 s, max-ack-delay 10 s, max-unacked-clients 10).
 */
function keaHaConfig(self: 'server1' | 'server2', leaseFile: string, ha: Record<string, unknown>): object {
  return {
    Dhcp4: {
      'interfaces-config': { interfaces: ['eth0'] },
      'lease-database': { type: 'memfile', persist: true, name: leaseFile, 'lfc-interval': 0 },
      'valid-lifetime': 3600,
      'multi-threading': { 'enable-multi-threading': true, 'thread-pool-size': 2, 'packet-queue-size': 64 },
      'hooks-libraries': [
        { library: `${KEA_HOOKS}/libdhcp_lease_cmds.so` },
        {
          library: `${KEA_HOOKS}/libdhcp_ha.so`,
          parameters: {
            'high-availability': [
              {
                'this-server-name': self,
                mode: 'hot-standby',
                'multi-threading': { 'enable-multi-threading': true, 'http-dedicated-listener': true, 'http-listener-threads': 1, 'http-client-threads': 1 },
                peers: [
                  { name: 'server1', url: 'http://10.99.0.1:8000/', role: 'primary', 'auto-failover': true },
                  { name: 'server2', url: 'http://10.99.0.2:8000/', role: 'standby', 'auto-failover': true },
                ],
                ...ha,
              },
            ],
          },
        },
      ],
      subnet4: [{ id: 1, subnet: '10.99.0.0/16', pools: [{ pool: '10.99.1.0 - 10.99.254.255' }] }],
      loggers: [{ name: 'kea-dhcp4', output_options: [{ output: 'stdout' }], severity: 'INFO' }],
    },
  };
}

async function startKea(ns: Netns, self: 'server1' | 'server2', ha: Record<string, unknown>): Promise<NetnsProcess> {
  const dir = ns.tempDir(`pxt-kea-ha-${self}-`);
  const configFile = path.join(dir, 'kea-dhcp4.json');
  await writeFile(configFile, JSON.stringify(keaHaConfig(self, path.join(dir, 'leases4.csv'), ha), null, 2));
  const check = await ns.exec(['kea-dhcp4', '-t', configFile], { allowFailure: true, timeoutMs: 30_000 });
  if (check.code !== 0) throw new Error(`kea-dhcp4 -t refused ${configFile}:\n${check.stdout}${check.stderr}`);
  // Pid and lock files go to the temporary directory, not /run/kea.
  const env = { ...process.env, KEA_PIDFILE_DIR: dir, KEA_LOCKFILE_DIR: dir };
  const proc = ns.spawn(['kea-dhcp4', '-c', configFile], { label: `kea-dhcp4 ${self}`, env });
  await proc.waitForLine(/DHCP4_STARTED/, { timeoutMs: 30_000 });
  return proc;
}

/** Waits for an HA_STATE_TRANSITION of `proc` into `state` (e.g. HOT-STANDBY, PARTNER-DOWN). */
function waitHaState(proc: NetnsProcess, state: string, timeoutMs: number, from = 0): Promise<string> {
  return proc.waitForLine((l) => /HA_STATE_TRANSITION/.test(l) && new RegExp(`to ${state} state`).test(l), { timeoutMs, from });
}

/**
 * One fresh pair per trial (a killed primary would otherwise have to resynchronise first):
 * both up and in HOT-STANDBY, the same background load through the fan-out to both, kill -9
 * of the primary (the active server), then a fresh client until the standby ACKs it.
 */
async function benchKea(
  trials: number,
  loadRate: number,
  ha: Record<string, unknown>,
  deadlineMs: number,
  throughput: { rate: number; seconds: number },
): Promise<{ times: number[]; failures: string[]; throughput?: Throughput }> {
  let measured: Throughput | undefined;
  const times: number[] = [];
  const failures: string[] = [];
  for (let trial = 0; trial < Math.max(trials, throughput.rate > 0 ? 1 : 0); trial++) {
    const sandbox = new Sandbox();
    try {
      const lab = await sandbox.lab({
        serverAddresses: ['10.99.0.1/16', '10.99.0.2/16'],
        clients: 2,
        clientAddresses: [`${LOAD_ADDRESS}/16`, `${PROBE_ADDRESS}/16`],
      });
      const [primary, standby] = [await startKea(lab.servers[0]!, 'server1', ha), await startKea(lab.servers[1]!, 'server2', ha)];
      await Promise.all([waitHaState(primary, 'HOT-STANDBY', 60_000), waitHaState(standby, 'HOT-STANDBY', 60_000)]);
      const load = lab.clients[0]!;
      await load.ip(['addr', 'add', `${FANOUT_ADDRESS}/16`, 'dev', 'eth0']);
      const fanout = await startRelayFanout(load, FANOUT_ADDRESS, lab.serverIps);
      if (trial === 0 && throughput.rate > 0) {
        const cpu = [
          { label: 'kea primary', pid: primary.pid },
          { label: 'kea standby', pid: standby.pid },
          { label: 'fan-out', pid: fanout.pid },
        ];
        const namespaces = [
          { label: 'primary', ns: lab.servers[0]! },
          { label: 'standby', ns: lab.servers[1]! },
          { label: 'load', ns: load },
        ];
        measured = await measureThroughput(load, throughput.rate, throughput.seconds, '02:90:00:00:00:00', cpu, namespaces);
        say(`  throughput: ${describeThroughput(measured)}`);
      }
      if (trials === 0) break; // throughput only
      const probe = await Probe.start(lab.clients[1]!);
      const periodSeconds = Math.ceil(deadlineMs / 1000) + 2;
      const perf = loadRate > 0
        ? load.spawn(
            perfdhcpArgv({ server: FANOUT_ADDRESS, localAddress: LOAD_ADDRESS, rate: loadRate, periodSeconds, clients: 1_000_000, seed: trial + 1, baseMac: `02:60:${trial.toString(16).padStart(2, '0')}:00:00:00` }),
            { label: `perfdhcp kea trial ${trial}` },
          )
        : undefined;
      await sleep(1000);
      const killedAt = Date.now();
      process.kill(primary.pid, 'SIGKILL');
      await primary.exited;
      const killMs = Date.now() - killedAt;
      const r = await probe.run(`02:70:00:00:00:${(trial + 1).toString(16).padStart(2, '0')}`, deadlineMs);
      const takeover = r.elapsedMs + killMs;
      if (r.kind === 'ack' && r.server === lab.serverIps[1]) times.push(takeover);
      else failures.push(`trial ${trial}: ${r.kind} from ${r.server} after ${takeover} ms`);
      say(`  kea trial ${trial + 1}: killed the primary, ${r.mac} ${r.kind} ${r.ip} from ${r.server} after ${takeover} ms${r.naks.length ? ` (NAKed by ${r.naks.join(',')} first)` : ''}`);
      if (perf) await perf.stop(1000);
    } finally {
      await sandbox.cleanup();
    }
  }
  return { times, failures, ...(measured ? { throughput: measured } : {}) };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      trials: { type: 'string', default: '20' },
      'load-rate': { type: 'string', default: '50' },
      nodes: { type: 'string', default: '3' },
      'kea-trials': { type: 'string', default: '2' },
      'kea-deadline-seconds': { type: 'string', default: '90' },
      'throughput-rate': { type: 'string', default: '600' },
      'throughput-seconds': { type: 'string', default: '6' },
      'throughput-only': { type: 'boolean', default: false },
      'cpu-prof': { type: 'string' },
    },
  });
  const throughputOnly = values['throughput-only'] === true;
  const trials = throughputOnly ? 0 : integerOption(values, 'trials', 0, 200);
  const loadRate = integerOption(values, 'load-rate', 0, 2000);
  const nodes = integerOption(values, 'nodes', 3, 5);
  const keaTrials = throughputOnly ? 0 : integerOption(values, 'kea-trials', 0, 20);
  const keaDeadlineMs = integerOption(values, 'kea-deadline-seconds', 5, 300) * 1000;
  const throughput = { rate: integerOption(values, 'throughput-rate', 0, 20_000), seconds: integerOption(values, 'throughput-seconds', 1, 60) };
  say(`# DHCP takeover after kill -9: ${trials} trials, background load ${loadRate}/s`);
  say(`## pxeha: ${nodes} nodes on a 3-member etcd`);
  const started = Date.now();
  const px =
    trials > 0 || throughputOnly
      ? await benchPxeha(trials, loadRate, nodes, throughput, values['cpu-prof'] !== undefined ? path.resolve(values['cpu-prof']) : undefined)
      : { times: [], failures: [], naks: [], designated: false, loadSummary: 'skipped', throughput: undefined };
  if (px.naks.length > 0) say(`pxeha: the probe was NAKed on the way in ${px.naks.length} trials: ${px.naks.join('; ')}`);
  say(`pxeha: ${px.designated ? 'fresh MACs designated to the killed node' : 'any fresh MAC (no designation function in src/dhcp yet)'}; ${px.loadSummary}`);
  say(`pxeha takeover: p50 ${fmt(percentile(px.times, 50))} ms, p99 ${fmt(percentile(px.times, 99))} ms, max ${fmt(Math.max(...px.times))} ms over ${px.times.length} trials; ${px.failures.length} failed${px.failures.length ? `: ${px.failures.join('; ')}` : ''}`);
  say(`(${((Date.now() - started) / 1000).toFixed(0)} s)`);
  if (keaTrials === 0 && !throughputOnly) return;
  // Kea's defaults, except max-unacked-clients 0: with the default 10 the standby also waits
  // for more than 10 distinct clients whose secs exceed max-ack-delay, which perfdhcp (secs 0)
  // never sends, and would not take over at all within the deadline.
  const keaHa = { 'max-unacked-clients': 0 };
  say(`## Kea 2.2 hot-standby pair (HA hook, defaults but ${JSON.stringify(keaHa)}): ${keaTrials} trials, deadline ${keaDeadlineMs / 1000} s`);
  const kea = await benchKea(keaTrials, loadRate, keaHa, keaDeadlineMs, throughput);
  const kp50 = percentile(kea.times, 50);
  const kp99 = percentile(kea.times, 99);
  say(`kea takeover: p50 ${fmt(kp50)} ms, p99 ${fmt(kp99)} ms over ${kea.times.length} trials; ${kea.failures.length} failed${kea.failures.length ? `: ${kea.failures.join('; ')}` : ''}`);
  const pp50 = percentile(px.times, 50);
  const pp99 = percentile(px.times, 99);
  say(`takeover ratio kea/pxeha: p50 ${fmt(kp50 / pp50, 1)}x, p99 ${fmt(kp99 / pp99, 1)}x`);
  if (throughput.rate > 0) {
    say(`throughput at ${throughput.rate}/s offered for ${throughput.seconds} s: pxeha ${describeThroughput(px.throughput)}; kea ${describeThroughput(kea.throughput)}`);
    if (px.throughput && kea.throughput) say(`throughput ratio pxeha/kea: ${fmt(px.throughput.leasesPerSecond / kea.throughput.leasesPerSecond, 2)}`);
  }
}

await main();
