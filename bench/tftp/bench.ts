/**
 * TFTP benchmark: pxeha (`pxeha serve`, TFTP wired into the node) against `in.tftpd` from
 * tftpd-hpa serving the same directory, inside one network namespace created here, over its
 * loopback:
 *
 *   bench ns (lo 127.0.0.1): pxeha :6969   in.tftpd -L -s DIR -a 127.0.0.1:6970 (started and
 *                            killed by PID here)   curl and test/helpers/tftp-client.ts as clients
 *
 * Loads, each run on both servers in turn for N rounds (alternating which goes first), medians
 * reported with the ratio pxeha / tftpd-hpa:
 * - lock-step, same blksize: `curl --tftp-blksize B` downloads one S MiB file to /dev/null;
 *   MiB/s is curl's size_download over its time_total. Same client, same file, same blksize.
 * - windowsize: test/helpers/tftp-client.ts (curl, atftp and tftp-hpa 5.2 cannot ask for
 *   windowsize) asks both servers for blksize B and windowsize W. pxeha grants it; tftpd-hpa
 *   5.2 does not know the option and stays lock-step. MiB/s is bytes over the client's own
 *   time (RRQ to last ACK, node start-up excluded), every download checked by SHA-256. The goal
 *   ratio is pxeha with windowsize over tftpd-hpa with curl at the same blksize.
 * - round trip: loopback has next to no RTT, so a window saves little there (the bound is CPU
 *   per packet, not waiting). With --rtt-ms R the client holds each ACK R ms (no netem on this
 *   machine), as a LAN or WAN would: pxeha with windowsize W vs tftpd-hpa, same client.
 * - memory: C transfers at once of an M MiB file from pxeha (one client process, windowsize W,
 *   then windowsize 1: lock step, pxeha's native fast path when built), pxeha's resident set size
 *   sampled every 50 ms: idle, peak, and peak minus idle per transfer.
 * - churn: N lock-step transfers of a 64 KiB file, C at a time, RSS after each batch: whether
 *   transfer sockets and the fast path's buffers are released (RSS flat after the first batches).
 *
 * It prints figures and whether the goals (>= 1.0x lock-step, >= 4x with windowsize) are met;
 * the exit status does not depend on speed.
 *
 * Usage: npm run bench:tftp -- [--rounds 3] [--size-mib 32] [--blksize 1468] [--windowsize 16]
 *        [--concurrent 200] [--concurrent-size-mib 4] [--rtt-ms 1] [--rtt-size-mib 2] [--churn 2000] [--cpu-prof DIR]
 */
import { appendFileSync, chmodSync, closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { cpuSeconds, fmt, integerOption, median, say } from '../lib/common.js';
import { REPO_ROOT, Sandbox, type Netns, type NetnsProcess } from '../../test/helpers/netns.js';

const PXEHA_PORT = 6969;
const TFTPD_PORT = 6970;
const HTTP_PORT = 8090;
const CLIENT = path.join(REPO_ROOT, 'test', 'helpers', 'tftp-client.ts');
const MiB = 1024 * 1024;

type ServerKind = 'pxeha' | 'tftpd-hpa';
const SERVERS: readonly ServerKind[] = ['pxeha', 'tftpd-hpa'];

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    'size-mib': { type: 'string', default: '32' },
    blksize: { type: 'string', default: '1468' },
    windowsize: { type: 'string', default: '16' },
    concurrent: { type: 'string', default: '200' },
    'rtt-ms': { type: 'string', default: '1' },
    'rtt-size-mib': { type: 'string', default: '2' },
    'concurrent-size-mib': { type: 'string', default: '4' },
    churn: { type: 'string', default: '2000' },
    'cpu-prof': { type: 'string' },
  },
  strict: true,
});

const count = (name: string, min: number, max: number): number => integerOption(args, name, min, max);
const rounds = count('rounds', 1, 20);
const sizeMiB = count('size-mib', 1, 1024);
const blksize = count('blksize', 8, 65464);
const windowsize = count('windowsize', 1, 64);
const concurrent = count('concurrent', 0, 1000);
const concurrentSizeMiB = count('concurrent-size-mib', 1, 64);
const rttMs = count('rtt-ms', 0, 100);
const rttSizeMiB = count('rtt-size-mib', 1, 64);
const churn = count('churn', 0, 100_000);

/** A file of random MiBs (no two alike), world-readable: in.tftpd serves as user nobody. */
function writeRandomFile(file: string, mib: number): string {
  const hash = createHash('sha256');
  const block = randomBytes(MiB);
  const fd = openSync(file, 'w', 0o644);
  try {
    for (let i = 0; i < mib; i++) {
      block.writeUInt32BE(i, 0);
      writeSync(fd, block);
      hash.update(block);
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

interface RunningServer {
  kind: ServerKind;
  proc: NetnsProcess;
  port: number;
}

async function waitForTftp(ns: Netns, port: number, proc: NetnsProcess): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (proc.status) throw new Error(`${proc.label} exited\n${proc.describe()}`);
    const r = await ns.exec(['curl', '-s', '-o', '/dev/null', '--max-time', '2', `tftp://127.0.0.1:${port}/probe.bin`], { allowFailure: true });
    if (r.code === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${proc.label}: no TFTP answer on port ${port} within 10 s\n${proc.describe()}`);
}

async function startPxeha(ns: Netns, work: string, root: string): Promise<RunningServer> {
  const nodeFile = path.join(work, 'pxeha-node.yaml');
  // JSON is YAML. The node's own config, TFTP on the loopback of the namespace.
  writeFileSync(
    nodeFile,
    JSON.stringify({
      name: 'bench',
      dataDir: path.join(work, 'pxeha-data'),
      store: { kind: 'embedded' },
      dhcp: { enabled: false, interfaces: ['lo'] },
      http: { address: '127.0.0.1', port: HTTP_PORT },
      tftp: { address: '127.0.0.1', port: PXEHA_PORT },
      artifactsDir: root,
      log: { level: 'warn' },
    }),
  );
  const profiling = args['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(args['cpu-prof'])}`] : [];
  const proc = ns.spawn([process.execPath, ...profiling, path.join(REPO_ROOT, 'bin', 'pxeha.js'), 'serve', '--config', nodeFile], {
    label: 'pxeha serve',
  });
  await waitForTftp(ns, PXEHA_PORT, proc);
  return { kind: 'pxeha', proc, port: PXEHA_PORT };
}

async function startTftpd(ns: Netns, root: string): Promise<RunningServer> {
  // -4: IPv4 only; -L: listen in the foreground (one forked child per transfer); -s: chroot to the root;
  // the default user is nobody. No -B: it grants blksize up to 65464 like pxeha.
  const proc = ns.spawn(['in.tftpd', '-4', '-L', '-s', '-a', `127.0.0.1:${TFTPD_PORT}`, root], { label: 'in.tftpd' });
  await waitForTftp(ns, TFTPD_PORT, proc);
  return { kind: 'tftpd-hpa', proc, port: TFTPD_PORT };
}

interface Measured {
  mibPerSecond: number;
  detail: string;
  problem?: string;
}

async function curlLockStep(ns: Netns, port: number, bytes: number): Promise<Measured> {
  const r = await ns.exec(
    ['curl', '-s', '-o', '/dev/null', '--max-time', '120', '--tftp-blksize', String(blksize), '-w', '%{size_download} %{time_total}', `tftp://127.0.0.1:${port}/big.bin`],
    { allowFailure: true, timeoutMs: 130_000 },
  );
  const [size, seconds] = r.stdout.trim().split(' ').map(Number);
  const problem = r.code !== 0 ? `curl exit ${r.code}: ${r.stderr.trim()}` : size !== bytes ? `got ${size} bytes of ${bytes}` : undefined;
  return { mibPerSecond: (size ?? 0) / MiB / (seconds || Infinity), detail: `curl ${fmt(seconds, 3)} s`, ...(problem ? { problem } : {}) };
}

async function helperClient(ns: Netns, options: Record<string, unknown>): Promise<Record<string, unknown>> {
  const r = await ns.exec([process.execPath, '--import', 'tsx', CLIENT, JSON.stringify({ host: '127.0.0.1', ...options })], {
    allowFailure: true,
    timeoutMs: 300_000,
  });
  try {
    return JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '') as Record<string, unknown>;
  } catch {
    return { error: `client exit ${r.code}: ${r.stderr.trim().slice(0, 300)}` };
  }
}

async function windowed(ns: Netns, port: number, bytes: number, sha256: string, w: number, file = 'big.bin', ackDelayMs = 0): Promise<Measured> {
  const r = await helperClient(ns, { port, file, blksize, windowsize: w, tsize: true, ackDelayMs, timeoutMs: 1000 + 4 * ackDelayMs });
  const got = Number(r['bytes']);
  const ms = Number(r['ms']);
  const granted = (r['oack'] as Record<string, string> | undefined)?.['windowsize'] ?? '1 (not acknowledged)';
  const problem = r['error'] !== undefined ? String(r['error']) : got !== bytes || r['sha256'] !== sha256 ? `bad copy: ${got} bytes, sha256 ${String(r['sha256'])}` : undefined;
  return {
    mibPerSecond: got / MiB / (ms / 1000),
    detail: `client ${fmt(ms / 1000, 3)} s, windowsize granted ${granted}, re-ACKs ${String(r['reAcks'])}`,
    ...(problem ? { problem } : {}),
  };
}

function rssKiB(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

async function main(): Promise<void> {
  const sandbox = new Sandbox();
  // run.sh-style cleanup: whatever is listed here is removed should this process die.
  const stateFile = process.env['PXEHA_BENCH_STATE'];
  const work = mkdtempSync(path.join(os.tmpdir(), 'pxeha-bench-tftp-'));
  chmodSync(work, 0o755); // in.tftpd serves as nobody
  try {
    const ns = await sandbox.netns('btftp');
    if (stateFile) appendFileSync(stateFile, `${ns.name}\n`);
    // in.tftpd resolves its -a address with AI_ADDRCONFIG, which fails when the namespace has no
    // IPv4 address but 127.0.0.1 (exit 66, "cannot resolve local bind address"): give lo one.
    await ns.ip(['addr', 'add', '10.98.0.1/32', 'dev', 'lo']);
    const root = path.join(work, 'root');
    mkdirSync(root, { mode: 0o755 });
    const bigBytes = sizeMiB * MiB;
    const bigSha = writeRandomFile(path.join(root, 'big.bin'), sizeMiB);
    const concurrentSha = writeRandomFile(path.join(root, 'concurrent.bin'), concurrentSizeMiB);
    const rttSha = writeRandomFile(path.join(root, 'rtt.bin'), rttSizeMiB);
    writeFileSync(path.join(root, 'probe.bin'), 'probe\n', { mode: 0o644 });
    const small = randomBytes(64 * 1024);
    writeFileSync(path.join(root, 'small.bin'), small, { mode: 0o644 });
    const smallSha256 = createHash('sha256').update(small).digest('hex');
    if (args['cpu-prof']) mkdirSync(path.resolve(args['cpu-prof']), { recursive: true });

    const running: Record<ServerKind, RunningServer> = { pxeha: await startPxeha(ns, work, root), 'tftpd-hpa': await startTftpd(ns, root) };
    say(`# TFTP bench: ${sizeMiB} MiB file, blksize ${blksize}, windowsize ${windowsize}, ${rounds} rounds, loopback of netns ${ns.name}, ${os.cpus().length} cores`);
    say(`# pxeha pid ${running.pxeha.proc.pid}, in.tftpd pid ${running['tftpd-hpa'].proc.pid}`);

    // Warm-up, not measured: one transfer from each, so pxeha's JIT has compiled its packet path.
    for (const s of Object.values(running)) await curlLockStep(ns, s.port, bigBytes);

    type Load = 'lockstep-curl' | 'window-client';
    const results: { server: ServerKind; load: Load; round: number; m: Measured; cpu: number | undefined }[] = [];
    for (let round = 1; round <= rounds; round++) {
      const order = round % 2 === 1 ? SERVERS : [...SERVERS].reverse();
      for (const load of ['lockstep-curl', 'window-client'] as const) {
        for (const kind of order) {
          const s = running[kind];
          const cpuBefore = kind === 'pxeha' ? cpuSeconds(s.proc.pid) : undefined;
          const m = load === 'lockstep-curl' ? await curlLockStep(ns, s.port, bigBytes) : await windowed(ns, s.port, bigBytes, bigSha, windowsize);
          const cpuAfter = kind === 'pxeha' ? cpuSeconds(s.proc.pid) : undefined;
          const cpu = cpuBefore !== undefined && cpuAfter !== undefined ? cpuAfter - cpuBefore : undefined;
          results.push({ server: kind, load, round, m, cpu });
          say(
            `${load.padEnd(14)} ${kind.padEnd(10)} round ${round}  ${fmt(m.mibPerSecond, 1).padStart(7)} MiB/s  ${m.detail}` +
              (cpu !== undefined ? `, server cpu ${fmt(cpu, 2)} s` : '') +
              (m.problem ? `  PROBLEM: ${m.problem}` : ''),
          );
        }
      }
    }
    const med = (server: ServerKind, load: Load): number =>
      median(results.filter((r) => r.server === server && r.load === load && !r.m.problem).map((r) => r.m.mibPerSecond));
    say();
    say('## medians (MiB/s)');
    const lockPx = med('pxeha', 'lockstep-curl');
    const lockHpa = med('tftpd-hpa', 'lockstep-curl');
    const winPx = med('pxeha', 'window-client');
    const winHpa = med('tftpd-hpa', 'window-client');
    const lockRatio = lockPx / lockHpa;
    const winRatio = winPx / lockHpa;
    say(`lock-step, curl --tftp-blksize ${blksize}:      pxeha ${fmt(lockPx, 1)}   tftpd-hpa ${fmt(lockHpa, 1)}   ratio ${fmt(lockRatio, 2)} (goal >= 1.0: ${lockRatio >= 1 ? 'met' : 'NOT met'})`);
    // The two servers of one round ran within a second of each other, so their ratio is the figure
    // least moved by load from other jobs (a ratio of medians can pair a quiet minute with a busy one).
    const roundRatios = Array.from({ length: rounds }, (_, i) => {
      const px = results.find((r) => r.round === i + 1 && r.server === 'pxeha' && r.load === 'lockstep-curl' && !r.m.problem);
      const hpa = results.find((r) => r.round === i + 1 && r.server === 'tftpd-hpa' && r.load === 'lockstep-curl' && !r.m.problem);
      return px && hpa ? px.m.mibPerSecond / hpa.m.mibPerSecond : undefined;
    }).filter((r): r is number => r !== undefined);
    say(`lock-step ratio per round: ${roundRatios.map((r) => fmt(r, 2)).join(' ')}; median ${fmt(median(roundRatios), 2)}`);
    say(`windowsize ${String(windowsize).padEnd(2)}, tftp-client.ts blksize ${blksize}: pxeha ${fmt(winPx, 1)}   tftpd-hpa ${fmt(winHpa, 1)} (lock-step: windowsize not granted)`);
    say(`pxeha windowsize ${windowsize} (tftp-client.ts) / tftpd-hpa lock-step (curl): ratio ${fmt(winRatio, 2)} (goal >= 4: ${winRatio >= 4 ? 'met' : 'NOT met'})`);
    say(`pxeha windowsize ${windowsize} / tftpd-hpa, both with tftp-client.ts:        ratio ${fmt(winPx / winHpa, 2)}`);

    if (rttMs > 0) {
      say();
      say(`## with a ${rttMs} ms round trip (tftp-client.ts holds each ACK ${rttMs} ms; this machine has no netem), ${rttSizeMiB} MiB file, blksize ${blksize}`);
      const rtt: Record<ServerKind, Measured> = {
        pxeha: await windowed(ns, PXEHA_PORT, rttSizeMiB * MiB, rttSha, windowsize, 'rtt.bin', rttMs),
        'tftpd-hpa': await windowed(ns, TFTPD_PORT, rttSizeMiB * MiB, rttSha, windowsize, 'rtt.bin', rttMs),
      };
      const lockPxRtt = await windowed(ns, PXEHA_PORT, rttSizeMiB * MiB, rttSha, 1, 'rtt.bin', rttMs);
      for (const [kind, m] of Object.entries(rtt)) say(`${kind.padEnd(10)} ${fmt(m.mibPerSecond, 2).padStart(7)} MiB/s  ${m.detail}${m.problem ? `  PROBLEM: ${m.problem}` : ''}`);
      say(`pxeha lock-step ${fmt(lockPxRtt.mibPerSecond, 2)} MiB/s (windowsize 1, same client and RTT)`);
      const r = rtt.pxeha.mibPerSecond / rtt['tftpd-hpa'].mibPerSecond;
      say(`pxeha windowsize ${windowsize} / tftpd-hpa lock-step at ${rttMs} ms RTT: ratio ${fmt(r, 2)} (goal >= 4: ${r >= 4 ? 'met' : 'NOT met'})`);
    }

    for (const w of concurrent > 0 ? [windowsize, 1] : []) {
      say();
      say(`## memory: ${concurrent} transfers at once of a ${concurrentSizeMiB} MiB file from pxeha (tftp-client.ts, blksize ${blksize}, windowsize ${w})`);
      const pid = running.pxeha.proc.pid;
      const idle = rssKiB(pid) ?? 0;
      let peak = idle;
      const sampler = setInterval(() => (peak = Math.max(peak, rssKiB(pid) ?? 0)), 50);
      const r = await helperClient(ns, { port: PXEHA_PORT, file: 'concurrent.bin', blksize, windowsize: w, parallel: concurrent, sha256: concurrentSha, timeoutMs: 2000, maxRetries: 8 });
      clearInterval(sampler);
      const seconds = Number(r['ms']) / 1000;
      say(
        `transfers ${String(r['transfers'])}, ok ${String(r['ok'])}, corrupt ${String(r['corrupt'])}, ${fmt(Number(r['bytes']) / MiB / seconds, 1)} MiB/s total in ${fmt(seconds, 2)} s, re-ACKs ${String(r['reAcks'])}`,
      );
      say(`pxeha RSS idle ${fmt(idle / 1024, 1)} MiB, peak ${fmt(peak / 1024, 1)} MiB, (peak - idle) / transfer ${fmt((peak - idle) / concurrent, 0)} KiB`);
      const failures = r['failures'] as string[] | undefined;
      if (r['error'] !== undefined || (failures && failures.length > 0)) say(`PROBLEMS: ${String(r['error'] ?? '')} ${JSON.stringify(failures ?? [])}`);
    }

    if (churn > 0) {
      const batch = Math.max(1, Math.min(concurrent || 200, churn));
      say();
      say(`## churn: ${churn} lock-step transfers of a 64 KiB file, ${batch} at a time (tftp-client.ts, blksize ${blksize}, windowsize 1)`);
      const pid = running.pxeha.proc.pid;
      const rss: number[] = [rssKiB(pid) ?? 0];
      let ok = 0;
      const problems: string[] = [];
      for (let done = 0; done < churn; done += batch) {
        const n = Math.min(batch, churn - done);
        const r = await helperClient(ns, { port: PXEHA_PORT, file: 'small.bin', blksize, windowsize: 1, parallel: n, sha256: smallSha256, timeoutMs: 2000, maxRetries: 8 });
        ok += Number(r['ok'] ?? 0);
        if (r['error'] !== undefined) problems.push(String(r['error']));
        rss.push(rssKiB(pid) ?? 0);
      }
      say(`ok ${ok} of ${churn}; pxeha RSS (MiB) before and after each batch: ${rss.map((k) => fmt(k / 1024, 1)).join(' ')}`);
      if (problems.length > 0) say(`PROBLEMS: ${JSON.stringify(problems.slice(0, 5))}`);
    }

    for (const s of Object.values(running)) {
      await s.proc.stop(5000);
      const errors = s.proc.stderr().trim();
      if (errors) say(`## ${s.kind} stderr\n${errors.slice(-2000)}`);
    }
    if (args['cpu-prof']) say(`# CPU profiles of pxeha in ${path.resolve(args['cpu-prof'])}`);
  } finally {
    await sandbox.cleanup();
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
