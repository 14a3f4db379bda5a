/**
 * DHCPv4 benchmark: the same perfdhcp load against pxeha and against ISC Kea (kea-dhcp4,
 * memfile lease database persisted to a CSV file), inside network namespaces created here:
 *
 *   load ns: eth0 10.96.0.2/12 (perfdhcp, tcpdump) ──veth── server ns: eth0 10.96.0.1/12
 *                                                           (pxeha or kea-dhcp4, one at a time)
 *
 * Both servers get the same subnet and pool (10.96.0.0/12, about a million addresses, so no
 * run exhausts it), a fresh lease database for every run, and a short warm-up load before each
 * measured one (pxeha's JIT; Kea's is a no-op). Rounds alternate which server goes first.
 *
 * Two loads:
 * - saturation: DORA at a rate above what either server sustains (-r high) for N seconds;
 *   leases/s is completed 4-way exchanges per second (perfdhcp's "Rate"), median of the rounds;
 * - ladder: a few fixed rates, each for a few seconds, showing where drops start.
 *
 * NAKs are counted on the wire (perfdhcp v4 ignores them; see test/helpers/perfdhcp.ts).
 * "rcvbuf" is the server namespace's UDP RcvbufErrors: requests the kernel dropped because the
 * server did not read its socket fast enough. "cpu" is the server process's CPU time over the
 * measured run. It prints figures only: there is no pass or fail on speed.
 *
 * Usage: bash bench/dhcp/run.sh [--seconds 8] [--rate 20000] [--clients 1000000] [--rounds 3]
 *        [--ladder 1000,2000,4000,8000] [--ladder-seconds 4] [--no-capture] [--json FILE]
 *        [--kea-threads N] [--only pxeha|kea] [--warmup-seconds 2] [--cpu-prof DIR]
 */
import { execFileSync } from 'node:child_process';
import { appendFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { cpuSeconds, fmt, median, say } from '../lib/common.js';
import { KeaServer } from '../../test/helpers/kea.js';
import { Sandbox, type Netns, type NetnsProcess } from '../../test/helpers/netns.js';
import { captureReplies, countByType, perfdhcpArgv, runPerfdhcp, type PerfdhcpLoad, type PerfdhcpRun } from '../../test/helpers/perfdhcp.js';
import { PxehaServer } from '../../test/helpers/perfdhcp-pxeha.js';

const SERVER = '10.96.0.1';
const LOAD_ADDRESS = '10.96.0.2';
const PREFIX = 12;
const SUBNET = '10.96.0.0/12';
const POOL = { start: '10.97.0.0', end: '10.111.255.254' };

type ServerKind = 'pxeha' | 'kea';

interface RunResult {
  server: ServerKind;
  phase: 'saturation' | 'ladder';
  round: number;
  rate: number | undefined;
  seconds: number;
  argv: string[];
  /**
   * Completed 4-way exchanges (ACKs received) per second of load. Not perfdhcp's "Rate",
   * which divides by the whole run including the -W wait for the last replies.
   */
  leasesPerSecond: number;
  discovers: number;
  offers: number;
  requests: number;
  acks: number;
  /** DISCOVERs without OFFER + REQUESTs without ACK (perfdhcp drops). */
  drops: number;
  dropPercent: number;
  naks: number | undefined;
  rcvbufErrors: number;
  /** perfdhcp's average round trip of the answered DISCOVERs and REQUESTs, ms. */
  offerDelayMs: number | undefined;
  ackDelayMs: number | undefined;
  /** Server CPU seconds per wall second over the measured run (1.0 = one core). */
  cpu: number | undefined;
  problems: string[];
}

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '8' },
    rate: { type: 'string', default: '20000' },
    clients: { type: 'string', default: '1000000' },
    rounds: { type: 'string', default: '3' },
    ladder: { type: 'string', default: '1000,2000,4000,8000' },
    'ladder-seconds': { type: 'string', default: '4' },
    'warmup-seconds': { type: 'string', default: '2' },
    'no-capture': { type: 'boolean', default: false },
    'kea-threads': { type: 'string' },
    only: { type: 'string' },
    json: { type: 'string' },
    'cpu-prof': { type: 'string' },
  },
  strict: true,
});

const positive = (name: string, text: string | undefined, integer = true): number => {
  const n = Number(text);
  if (!Number.isFinite(n) || n < 0 || (integer && !Number.isInteger(n))) throw new Error(`--${name} wants a non-negative number, got ${text}`);
  return n;
};
const seconds = positive('seconds', args.seconds, false);
const saturationRate = positive('rate', args.rate);
const clients = positive('clients', args.clients);
const rounds = positive('rounds', args.rounds);
const ladder = (args.ladder ?? '')
  .split(',')
  .filter((s) => s.trim() !== '')
  .map((s) => positive('ladder', s.trim()));
const ladderSeconds = positive('ladder-seconds', args['ladder-seconds'], false);
const warmupSeconds = positive('warmup-seconds', args['warmup-seconds'], false);
const capture = !args['no-capture'];
const keaThreads = args['kea-threads'] !== undefined ? positive('kea-threads', args['kea-threads']) : undefined;
const servers: ServerKind[] = args.only === undefined ? ['pxeha', 'kea'] : [args.only as ServerKind];
if (!servers.every((s) => s === 'pxeha' || s === 'kea')) throw new Error(`--only wants pxeha or kea, got ${args.only}`);
if (seconds <= 0 || seconds > 120 || ladderSeconds > 120) throw new Error('durations must be in (0, 120] seconds');

async function udpRcvbufErrors(ns: Netns): Promise<number> {
  const { stdout } = await ns.exec(['cat', '/proc/net/snmp']);
  const [names, values] = stdout.split('\n').filter((l) => l.startsWith('Udp:'));
  const i = names?.split(/\s+/).indexOf('RcvbufErrors') ?? -1;
  return i > 0 ? Number(values?.split(/\s+/)[i]) : 0;
}

interface Running {
  proc: NetnsProcess;
  problems(): string[];
  stop(): Promise<unknown>;
  remove(): Promise<void>;
}

async function startServer(kind: ServerKind, ns: Netns): Promise<Running> {
  if (kind === 'pxeha') {
    return PxehaServer.start(ns, {
      name: 'bench1',
      cluster: { subnets: [{ name: 'bench', subnet: SUBNET, pools: [POOL], leaseSeconds: 3600 }] },
      ...(args['cpu-prof'] ? { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${path.resolve(args['cpu-prof'])}`] } : {}),
    });
  }
  return KeaServer.start(ns, {
    subnets: [{ id: 1, subnet: SUBNET, pools: [POOL] }],
    validLifetimeSeconds: 3600,
    ...(keaThreads !== undefined ? { threads: keaThreads } : {}),
  });
}

let macBase = 0;
/** A fresh client range for every perfdhcp run, so no run sees another's clients. */
function nextBaseMac(): string {
  macBase++;
  return `02:${(macBase >> 8).toString(16).padStart(2, '0')}:${(macBase & 0xff).toString(16).padStart(2, '0')}:00:00:00`;
}

async function measure(
  kind: ServerKind,
  server: Netns,
  load: Netns,
  phase: RunResult['phase'],
  round: number,
  rate: number,
  runSeconds: number,
): Promise<RunResult> {
  const running = await startServer(kind, server);
  try {
    if (warmupSeconds > 0) {
      await runPerfdhcp(load, {
        server: SERVER,
        localAddress: LOAD_ADDRESS,
        rate: 1000,
        periodSeconds: warmupSeconds,
        clients,
        baseMac: nextBaseMac(),
        exitWaitSeconds: 1,
        threadMode: 'single',
      });
    }
    const spec: PerfdhcpLoad = {
      server: SERVER,
      localAddress: LOAD_ADDRESS,
      rate,
      periodSeconds: runSeconds,
      clients,
      baseMac: nextBaseMac(),
      exitWaitSeconds: 2,
      // One thread: on a 2-core machine perfdhcp's receiver thread competes with the server
      // for the second core, and Kea measured 30-50% lower with it.
      threadMode: 'single',
    };
    const pcap = capture ? await captureReplies(load, 'eth0') : undefined;
    const rcvbufBefore = await udpRcvbufErrors(server);
    const cpuBefore = cpuSeconds(running.proc.pid);
    const started = process.hrtime.bigint();
    const run: PerfdhcpRun = await runPerfdhcp(load, spec);
    const wallSeconds = Number(process.hrtime.bigint() - started) / 1e9;
    const cpuAfter = cpuSeconds(running.proc.pid);
    const rcvbufAfter = await udpRcvbufErrors(server);
    const wire = pcap ? await pcap.stop() : undefined;
    const { discoverOffer: dO, requestAck: rA } = run.report;
    const drops = dO.drops + rA.drops;
    return {
      server: kind,
      phase,
      round,
      rate,
      seconds: runSeconds,
      argv: run.argv,
      leasesPerSecond: rA.received / runSeconds,
      discovers: dO.sent,
      offers: dO.received,
      requests: rA.sent,
      acks: rA.received,
      drops,
      dropPercent: dO.sent > 0 ? (100 * drops) / (dO.sent + rA.sent) : 0,
      naks: wire ? (countByType(wire.messages)['NAK'] ?? 0) : undefined,
      rcvbufErrors: rcvbufAfter - rcvbufBefore,
      offerDelayMs: dO.avgDelayMs,
      ackDelayMs: rA.avgDelayMs,
      cpu: cpuBefore !== undefined && cpuAfter !== undefined ? (cpuAfter - cpuBefore) / wallSeconds : undefined,
      problems: [...running.problems(), ...(wire && wire.kernelDrops > 0 ? [`tcpdump dropped ${wire.kernelDrops} packets`] : [])],
    };
  } finally {
    await running.stop();
    await running.remove();
  }
}

function row(r: RunResult): string {
  return [
    r.server.padEnd(6),
    String(r.round).padStart(5),
    fmt(r.rate).padStart(7),
    fmt(r.leasesPerSecond, 1).padStart(10),
    fmt(r.acks).padStart(8),
    `${fmt(r.drops)} (${fmt(r.dropPercent, 1)}%)`.padStart(16),
    fmt(r.naks).padStart(5),
    fmt(r.rcvbufErrors).padStart(8),
    `${fmt(r.offerDelayMs, 2)}/${fmt(r.ackDelayMs, 2)}`.padStart(13),
    fmt(r.cpu, 2).padStart(5),
    r.problems.length > 0 ? `  ${r.problems.length} problem(s)` : '',
  ].join(' ');
}

/** pxeha's figure over Kea's, for each round that has both. */
function roundRatios(runs: readonly RunResult[], figure: (r: RunResult) => number): number[] {
  const out: number[] = [];
  for (const round of new Set(runs.map((r) => r.round))) {
    const p = runs.find((r) => r.round === round && r.server === 'pxeha');
    const k = runs.find((r) => r.round === round && r.server === 'kea');
    if (p && k && figure(k) > 0) out.push(figure(p) / figure(k));
  }
  return out;
}

/** Median of a figure over the runs that have it. */
function medianOf(runs: readonly RunResult[], figure: (r: RunResult) => number | undefined): number | undefined {
  const xs = runs.map(figure).filter((x): x is number => x !== undefined);
  return xs.length > 0 ? median(xs) : undefined;
}

const HEADER = `${'server'.padEnd(6)} ${'round'.padStart(5)} ${'rate'.padStart(7)} ${'leases/s'.padStart(10)} ${'acks'.padStart(8)} ${'drops'.padStart(16)} ${'naks'.padStart(5)} ${'rcvbuf'.padStart(8)} ${'D-O/R-A ms'.padStart(13)} ${'cpu'.padStart(5)}`;

async function main(): Promise<void> {
  const sandbox = new Sandbox();
  // run.sh removes whatever is listed here should this process die without cleaning up.
  const stateFile = process.env['PXEHA_BENCH_STATE'];
  const results: RunResult[] = [];
  try {
    const server = await sandbox.netns('bsrv');
    const load = await sandbox.netns('bload');
    if (stateFile) appendFileSync(stateFile, `${server.name}\n${load.name}\n`);
    await sandbox.veth({ ns: server, ifname: 'eth0', address: `${SERVER}/${PREFIX}` }, { ns: load, ifname: 'eth0', address: `${LOAD_ADDRESS}/${PREFIX}` });

    const keaVersion = execFileSync('kea-dhcp4', ['-v'], { encoding: 'utf8' }).trim();
    const perfdhcpVersion = execFileSync('perfdhcp', ['-v'], { encoding: 'utf8' }).trim().replace(/^VERSION:\s*/, '');
    say(`# DHCPv4 benchmark: pxeha vs Kea ${keaVersion} (perfdhcp ${perfdhcpVersion}), node ${process.version}`);
    say(`# ${os.cpus().length} CPU(s) ${os.cpus()[0]?.model ?? ''}, ${os.release()}`);
    say(`# subnet ${SUBNET}, pool ${POOL.start}-${POOL.end}; fresh lease database per run; ${warmupSeconds}s warm-up at 1000/s before each run`);
    say(`# kea: memfile persist=true, ${keaThreads !== undefined ? `${keaThreads} threads` : 'single-threaded'}; pxeha: embedded store (SQLite WAL, every commit fdatasynced before its ACK, off the event loop)`);
    say(`# perfdhcp command (base MAC changes per run): ${perfdhcpArgv({ server: SERVER, localAddress: LOAD_ADDRESS, rate: saturationRate, periodSeconds: seconds, clients, exitWaitSeconds: 2, threadMode: 'single' }).join(' ')}`);
    say();

    if (rounds > 0) {
      say(`## saturation: DORA at ${saturationRate}/s offered for ${seconds}s, ${rounds} round(s)`);
      say(HEADER);
      for (let round = 1; round <= rounds; round++) {
        const order = round % 2 === 1 ? servers : [...servers].reverse();
        for (const kind of order) {
          const r = await measure(kind, server, load, 'saturation', round, saturationRate, seconds);
          results.push(r);
          say(row(r));
        }
      }
      say();
      const med: Partial<Record<ServerKind, number>> = {};
      for (const kind of servers) {
        const mine = results.filter((r) => r.phase === 'saturation' && r.server === kind);
        med[kind] = median(mine.map((r) => r.leasesPerSecond));
        const naks = mine.map((r) => r.naks).filter((n): n is number => n !== undefined);
        say(
          `median ${kind.padEnd(5)}: ${fmt(med[kind], 1)} leases/s, drops ${fmt(median(mine.map((r) => r.dropPercent)), 1)}%, ` +
            `latency D-O ${fmt(medianOf(mine, (r) => r.offerDelayMs), 2)} ms R-A ${fmt(medianOf(mine, (r) => r.ackDelayMs), 2)} ms, ` +
            `NAKs ${naks.length > 0 ? naks.join('/') : 'not counted'}, cpu ${fmt(median(mine.map((r) => r.cpu ?? 0)), 2)}`,
        );
      }
      if (med.pxeha !== undefined && med.kea !== undefined && med.kea > 0) say(`ratio pxeha/kea: ${(med.pxeha / med.kea).toFixed(2)} (of the medians)`);
      // The two servers of one round ran back to back: their ratio is the least disturbed by
      // whatever else the machine is doing.
      const perRound = roundRatios(results.filter((r) => r.phase === 'saturation'), (r) => r.leasesPerSecond);
      if (perRound.length > 0) say(`ratio pxeha/kea per round: ${perRound.map((x) => fmt(x, 2)).join(', ')}; median ${fmt(median(perRound), 2)}`);
      say();
    }

    if (ladder.length > 0) {
      say(`## ladder: DORA at fixed rates for ${ladderSeconds}s each`);
      say(HEADER);
      for (const rate of ladder) {
        for (const kind of servers) {
          const r = await measure(kind, server, load, 'ladder', 1, rate, ladderSeconds);
          results.push(r);
          say(row(r));
        }
      }
      say();
      if (servers.length === 2) {
        say(`${'rate'.padStart(7)} ${'pxeha leases/s'.padStart(15)} ${'kea leases/s'.padStart(13)} ${'ratio'.padStart(6)} ${'pxeha R-A ms'.padStart(13)} ${'kea R-A ms'.padStart(11)}`);
        for (const rate of ladder) {
          const at = (kind: ServerKind) => results.find((r) => r.phase === 'ladder' && r.server === kind && r.rate === rate);
          const p = at('pxeha');
          const k = at('kea');
          const ratio = p && k && k.leasesPerSecond > 0 ? p.leasesPerSecond / k.leasesPerSecond : undefined;
          say(
            `${String(rate).padStart(7)} ${fmt(p?.leasesPerSecond, 1).padStart(15)} ${fmt(k?.leasesPerSecond, 1).padStart(13)} ${fmt(ratio, 2).padStart(6)} ` +
              `${fmt(p?.ackDelayMs, 2).padStart(13)} ${fmt(k?.ackDelayMs, 2).padStart(11)}`,
          );
        }
        say();
      }
      for (const kind of servers) {
        const clean = results.filter((r) => r.phase === 'ladder' && r.server === kind && r.dropPercent < 1 && (r.naks ?? 0) === 0);
        const best = clean.reduce<RunResult | undefined>((b, r) => (!b || r.leasesPerSecond > b.leasesPerSecond ? r : b), undefined);
        say(`highest ladder rate ${kind.padEnd(5)} kept with < 1% drops: ${best ? `${best.rate}/s (${fmt(best.leasesPerSecond, 1)} leases/s)` : 'none'}`);
      }
      say();
    }

    const problems = results.flatMap((r) => r.problems.map((p) => `${r.server} ${r.phase} round ${r.round} rate ${r.rate}: ${p}`));
    if (problems.length > 0) {
      say('## problems reported by the servers');
      for (const p of problems.slice(0, 50)) say(p.slice(0, 400));
      if (problems.length > 50) say(`… and ${problems.length - 50} more`);
    }
    if (args['cpu-prof']) say(`# CPU profiles of pxeha in ${path.resolve(args['cpu-prof'])} (summary: node --import tsx bench/lib/profile-summary.ts FILE)`);
    if (args.json) writeFileSync(args.json, JSON.stringify(results, null, 2));
  } finally {
    await sandbox.cleanup();
  }
}

await main();
