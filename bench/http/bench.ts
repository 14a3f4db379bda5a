/**
 * HTTP artifact serving benchmark: pxeha (`pxeha serve`, its /artifacts route) against nginx
 * serving the same directory, inside one network namespace created here, over its loopback:
 *
 *   bench ns (lo 127.0.0.1): pxeha :8080 /artifacts/*   nginx :8081 /artifacts/ (alias of the same dir)
 *                            curl and wrk as the clients
 *
 * Two loads, each run on both servers in turn for N rounds, alternating which goes first, and
 * reported as medians, with the ratio pxeha/nginx as the median of each round's ratio:
 * - large: one 100 MiB file downloaded by curl to /dev/null, S times one after the other (a new
 *   connection each, as iPXE fetches a kernel) and P at once. Sequential MiB/s is bytes over
 *   the sum of curl's time_total; parallel MiB/s is bytes over the wall time of the batch,
 *   measured inside the namespace (so it includes curl's start-up, the same for both).
 * - small: `wrk -tT -cC -dDs` on a 1 KiB file (keep-alive), requests/s; a warm-up run first.
 * Plus, for pxeha only, its boot script (/boot.ipxe of a known machine: a store write per
 * request) so the cost of a boot storm is visible beside the static figures.
 *
 * "cpu" is the server's CPU seconds per wall second during the measured run (1.00 = one core;
 * nginx: master and workers). The machine's cores are shared by server and clients alike.
 * It prints figures, and whether the goals (large >= 0.8x, small >= 0.5x) are met; the exit
 * status does not depend on speed.
 *
 * Usage: bash bench/http/run.sh [--rounds 3] [--size-mib 100] [--sequential 5] [--parallel 4]
 *        [--wrk-threads 2] [--wrk-connections 64] [--wrk-seconds 10] [--nginx-workers 1]
 *        [--script-seconds 5] [--cpu-prof DIR] [--only pxeha|nginx] [--json FILE]
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, chmodSync, closeSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { cpuSeconds, fmt, integerOption, median, say } from '../lib/common.js';
import { REPO_ROOT, Sandbox, type Netns, type NetnsProcess } from '../../test/helpers/netns.js';

const PXEHA_PORT = 8080;
const NGINX_PORT = 8081;
const KNOWN_MAC = '52:54:00:be:00:01';

type ServerKind = 'pxeha' | 'nginx';
type Load = 'large-sequential' | 'large-parallel' | 'small';

interface RunResult {
  server: ServerKind;
  load: Load;
  round: number;
  /** MiB/s for the large loads, requests/s for small. */
  value: number;
  unit: 'MiB/s' | 'req/s';
  cpu: number | undefined;
  detail: string;
  problems: string[];
}

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    'size-mib': { type: 'string', default: '100' },
    sequential: { type: 'string', default: '5' },
    parallel: { type: 'string', default: '4' },
    'wrk-threads': { type: 'string', default: '2' },
    'wrk-connections': { type: 'string', default: '64' },
    'wrk-seconds': { type: 'string', default: '10' },
    'warmup-seconds': { type: 'string', default: '2' },
    'nginx-workers': { type: 'string', default: '1' },
    'script-seconds': { type: 'string', default: '5' },
    'cpu-prof': { type: 'string' },
    only: { type: 'string' },
    json: { type: 'string' },
  },
  strict: true,
});

const count = (name: string, min: number, max: number): number => integerOption(args, name, min, max);
const rounds = count('rounds', 1, 20);
const sizeMiB = count('size-mib', 1, 4096);
const sequential = count('sequential', 0, 100);
const parallel = count('parallel', 0, 64);
const wrkThreads = count('wrk-threads', 1, 64);
const wrkConnections = count('wrk-connections', 1, 10_000);
const wrkSeconds = count('wrk-seconds', 0, 120);
const warmupSeconds = count('warmup-seconds', 0, 60);
const nginxWorkersText = args['nginx-workers'] ?? '1';
if (nginxWorkersText !== 'auto' && !/^[1-9][0-9]?$/.test(nginxWorkersText)) throw new Error(`--nginx-workers wants 1..99 or auto`);
const scriptSeconds = count('script-seconds', 0, 120);
const servers: ServerKind[] = args.only === undefined ? ['pxeha', 'nginx'] : [args.only as ServerKind];
if (!servers.every((s) => s === 'pxeha' || s === 'nginx')) throw new Error(`--only wants pxeha or nginx, got ${args.only}`);

const MiB = 1024 * 1024;

/** The served directory: big.bin (random, so nothing along the way can shrink it) and small.bin. */
function writeArtifacts(dir: string): { big: string; small: string; bigBytes: number } {
  mkdirSync(dir, { recursive: true });
  const block = randomBytes(MiB);
  const fd = openSync(path.join(dir, 'big.bin'), 'w');
  try {
    for (let i = 0; i < sizeMiB; i++) {
      block.writeUInt32BE(i, 0); // no two MiB alike
      writeSync(fd, block);
    }
  } finally {
    closeSync(fd);
  }
  writeFileSync(path.join(dir, 'small.bin'), randomBytes(1024));
  return { big: 'big.bin', small: 'small.bin', bigBytes: sizeMiB * MiB };
}

interface RunningServer {
  kind: ServerKind;
  proc: NetnsProcess;
  /** Base URL of the artifacts, ending in a slash. */
  artifactsUrl: string;
  /** PID whose CPU time (with its children) is the server's. */
  pid: number;
}

async function waitForHttp(ns: Netns, url: string, proc: NetnsProcess): Promise<void> {
  let last = '';
  for (let i = 0; i < 100; i++) {
    if (proc.status) throw new Error(`${proc.label} exited\n${proc.describe()}`);
    const r = await ns.exec(['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '2', url], { allowFailure: true });
    last = r.stdout.trim();
    if (last === '200') return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${url} did not answer 200 within 10 s (last: ${last})\n${proc.describe()}`);
}

async function startPxeha(ns: Netns, work: string, www: string): Promise<RunningServer> {
  const dataDir = path.join(work, 'pxeha-data');
  const nodeFile = path.join(work, 'pxeha-node.yaml');
  const applyFile = path.join(work, 'pxeha-apply.yaml');
  // JSON is YAML. Log level info is the shipped default; nothing on these paths logs at info.
  writeFileSync(
    nodeFile,
    JSON.stringify({
      name: 'bench',
      dataDir,
      store: { kind: 'embedded' },
      dhcp: { enabled: false, interfaces: ['lo'] },
      http: { address: '127.0.0.1', port: PXEHA_PORT },
      artifactsDir: www,
      log: { level: 'info' },
    }),
  );
  writeFileSync(
    applyFile,
    JSON.stringify({
      profiles: [{ name: 'install', once: true, boot: { kind: 'kernel', kernel: 'big.bin', initrds: ['small.bin'], args: 'hostname={{hostname}}' } }],
      machines: [{ name: 'bench1', mac: KNOWN_MAC, profile: 'install', hostname: 'bench1' }],
    }),
  );
  execFileSync(process.execPath, [path.join(REPO_ROOT, 'bin', 'pxeha.js'), 'apply', '-f', applyFile, '--config', nodeFile], { stdio: 'pipe' });
  const profiling = args['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(args['cpu-prof'])}`] : [];
  const proc = ns.spawn([process.execPath, ...profiling, path.join(REPO_ROOT, 'bin', 'pxeha.js'), 'serve', '--config', nodeFile], { label: 'pxeha serve' });
  await proc.waitForLine((l) => l.includes('"msg":"http listening"'), { timeoutMs: 30_000 });
  const artifactsUrl = `http://127.0.0.1:${PXEHA_PORT}/artifacts/`;
  await waitForHttp(ns, `${artifactsUrl}small.bin`, proc);
  return { kind: 'pxeha', proc, artifactsUrl, pid: proc.pid };
}

/** nginx in the foreground with a minimal configuration; every path it writes is under `work`. */
async function startNginx(ns: Netns, work: string, www: string): Promise<RunningServer> {
  const prefix = path.join(work, 'nginx');
  mkdirSync(path.join(prefix, 'temp'), { recursive: true });
  const conf = path.join(prefix, 'nginx.conf');
  const temp = (name: string) => `${name}_temp_path ${path.join(prefix, 'temp', name)};`;
  writeFileSync(
    conf,
    [
      'daemon off;',
      `worker_processes ${nginxWorkersText};`,
      `pid ${path.join(prefix, 'nginx.pid')};`,
      `error_log ${path.join(prefix, 'error.log')} warn;`,
      'events { worker_connections 4096; }',
      'http {',
      '  access_log off;',
      '  sendfile on;',
      '  tcp_nopush on;',
      // Node keeps a connection for any number of requests; let nginx do the same under wrk.
      '  keepalive_requests 1000000;',
      '  keepalive_timeout 75s;',
      '  default_type application/octet-stream;',
      `  ${temp('client_body')} ${temp('proxy')} ${temp('fastcgi')} ${temp('uwsgi')} ${temp('scgi')}`,
      `  server { listen 127.0.0.1:${NGINX_PORT}; location /artifacts/ { alias ${www}/; } }`,
      '}',
      '',
    ].join('\n'),
  );
  const proc = ns.spawn(['nginx', '-p', prefix, '-e', path.join(prefix, 'error.log'), '-c', conf], { label: 'nginx' });
  const artifactsUrl = `http://127.0.0.1:${NGINX_PORT}/artifacts/`;
  await waitForHttp(ns, `${artifactsUrl}small.bin`, proc);
  return { kind: 'nginx', proc, artifactsUrl, pid: proc.pid };
}

/** Runs fn while measuring the server's CPU seconds per wall second. */
async function withCpu<T>(server: RunningServer, fn: () => Promise<T>): Promise<{ value: T; cpu: number | undefined }> {
  const c0 = cpuSeconds(server.pid);
  const t0 = process.hrtime.bigint();
  const value = await fn();
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const c1 = cpuSeconds(server.pid);
  return { value, cpu: c0 !== undefined && c1 !== undefined && wall > 0 ? (c1 - c0) / wall : undefined };
}

/** One untimed download first: pxeha's JIT warms up and the file is in the page cache for both. */
async function warmUpLarge(ns: Netns, server: RunningServer): Promise<void> {
  await ns.exec(['curl', '-sS', '--max-time', '120', '-o', '/dev/null', `${server.artifactsUrl}big.bin`], { timeoutMs: 130_000 });
}

async function largeSequential(ns: Netns, server: RunningServer, round: number, bigBytes: number): Promise<RunResult> {
  const url = `${server.artifactsUrl}big.bin`;
  const problems: string[] = [];
  await warmUpLarge(ns, server);
  const { value: times, cpu } = await withCpu(server, async () => {
    const out: number[] = [];
    for (let i = 0; i < sequential; i++) {
      const r = await ns.exec(['curl', '-sS', '--max-time', '120', '-o', '/dev/null', '-w', '%{http_code} %{size_download} %{time_total}', url], {
        allowFailure: true,
        timeoutMs: 130_000,
      });
      const [code, size, total] = r.stdout.trim().split(' ');
      if (r.code !== 0 || code !== '200' || Number(size) !== bigBytes) problems.push(`download ${i + 1}: exit ${r.code}, HTTP ${code}, ${size} bytes ${r.stderr.trim()}`);
      out.push(Number(total));
    }
    return out;
  });
  const seconds = times.reduce((a, b) => a + b, 0);
  return {
    server: server.kind,
    load: 'large-sequential',
    round,
    value: (sequential * bigBytes) / MiB / seconds,
    unit: 'MiB/s',
    cpu,
    detail: `${sequential} x ${sizeMiB} MiB, each ${times.map((t) => fmt(t, 3)).join('/')} s`,
    problems,
  };
}

async function largeParallel(ns: Netns, server: RunningServer, round: number, bigBytes: number): Promise<RunResult> {
  const url = `${server.artifactsUrl}big.bin`;
  await warmUpLarge(ns, server);
  // One shell in the namespace starts the downloads together and times the batch itself.
  const script = [
    'set -u',
    'start=$(date +%s%N)',
    `for i in $(seq ${parallel}); do curl -sS --max-time 120 -o /dev/null -w '%{http_code} %{size_download} %{time_total}\\n' "$1" & done`,
    'wait',
    'end=$(date +%s%N)',
    'echo "wall $(( (end - start) / 1000 ))"',
  ].join('\n');
  const { value: r, cpu } = await withCpu(server, () => ns.exec(['sh', '-c', script, 'sh', url], { allowFailure: true, timeoutMs: 130_000 }));
  const lines = r.stdout.trim().split('\n');
  const wallMicros = Number(lines.find((l) => l.startsWith('wall '))?.slice(5));
  const downloads = lines.filter((l) => !l.startsWith('wall '));
  const problems = downloads
    .filter((l) => {
      const [code, size] = l.split(' ');
      return code !== '200' || Number(size) !== bigBytes;
    })
    .map((l) => `download: ${l}`);
  if (downloads.length !== parallel) problems.push(`${downloads.length} of ${parallel} downloads reported: ${r.stderr.trim()}`);
  return {
    server: server.kind,
    load: 'large-parallel',
    round,
    value: (parallel * bigBytes) / MiB / (wallMicros / 1e6),
    unit: 'MiB/s',
    cpu,
    detail: `${parallel} x ${sizeMiB} MiB at once in ${fmt(wallMicros / 1e6, 3)} s; each ${downloads.map((l) => fmt(Number(l.split(' ')[2]), 3)).join('/')} s`,
    problems,
  };
}

interface WrkFigures {
  requestsPerSecond: number;
  latency: string;
  non2xx: number;
  socketErrors: string | undefined;
  raw: string;
}

function parseWrk(out: string): WrkFigures {
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const latency = /Latency\s+(\S+)\s+(\S+)\s+(\S+)/.exec(out);
  return {
    requestsPerSecond: rps,
    latency: latency ? `avg ${latency[1]} stdev ${latency[2]} max ${latency[3]}` : '?',
    non2xx: Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0),
    socketErrors: /Socket errors:[^\n]*/.exec(out)?.[0],
    raw: out,
  };
}

function wrkArgv(url: string, secondsToRun: number, connections = wrkConnections, threads = wrkThreads): string[] {
  return ['wrk', `-t${threads}`, `-c${connections}`, `-d${secondsToRun}s`, '--latency', url];
}

async function runWrk(ns: Netns, argv: string[], seconds: number): Promise<WrkFigures> {
  const r = await ns.exec(argv, { allowFailure: true, timeoutMs: (seconds + 30) * 1000 });
  if (r.code !== 0) throw new Error(`wrk failed: ${r.stderr}${r.stdout}`);
  return parseWrk(r.stdout);
}

async function small(ns: Netns, server: RunningServer, round: number): Promise<RunResult> {
  const url = `${server.artifactsUrl}small.bin`;
  if (warmupSeconds > 0) await runWrk(ns, wrkArgv(url, warmupSeconds), warmupSeconds);
  const { value: w, cpu } = await withCpu(server, () => runWrk(ns, wrkArgv(url, wrkSeconds), wrkSeconds));
  const problems: string[] = [];
  if (w.non2xx > 0) problems.push(`${w.non2xx} non-2xx responses`);
  if (w.socketErrors) problems.push(w.socketErrors);
  if (!Number.isFinite(w.requestsPerSecond)) problems.push(`no Requests/sec in wrk output:\n${w.raw}`);
  return { server: server.kind, load: 'small', round, value: w.requestsPerSecond, unit: 'req/s', cpu, detail: `latency ${w.latency}`, problems };
}

function row(r: RunResult): string {
  return [
    r.server.padEnd(6),
    r.load.padEnd(17),
    String(r.round).padStart(5),
    `${fmt(r.value, 1)} ${r.unit}`.padStart(16),
    fmt(r.cpu, 2).padStart(5),
    `  ${r.detail}`,
    r.problems.length > 0 ? `  PROBLEMS: ${r.problems.join('; ')}` : '',
  ].join(' ');
}

async function main(): Promise<void> {
  const sandbox = new Sandbox();
  // run.sh removes whatever is listed here should this process die without cleaning up.
  const stateFile = process.env['PXEHA_BENCH_STATE'];
  const results: RunResult[] = [];
  try {
    const ns = await sandbox.netns('bhttp');
    if (stateFile) appendFileSync(stateFile, `${ns.name}\n`);
    // Removed with the sandbox, on a signal too (the 100 MiB file must not be left behind).
    const work = ns.tempDir('pxeha-bench-http-');
    // nginx's workers run as its unprivileged user (www-data): they must reach the files.
    chmodSync(work, 0o755);
    const www = path.join(work, 'www');
    const { bigBytes } = writeArtifacts(www);
    if (args['cpu-prof']) mkdirSync(path.resolve(args['cpu-prof']), { recursive: true });

    const running: Partial<Record<ServerKind, RunningServer>> = {};
    if (servers.includes('pxeha')) running.pxeha = await startPxeha(ns, work, www);
    if (servers.includes('nginx')) running.nginx = await startNginx(ns, work, www);

    const curlVersion = execFileSync('curl', ['--version'], { encoding: 'utf8' }).split('\n')[0]?.split(' ').slice(0, 2).join(' ');
    // `wrk -v` exits 1 after printing its version; nginx -v prints to stderr.
    const wrkVersion = (spawnSync('wrk', ['-v'], { encoding: 'utf8' }).stdout.split('\n')[0] ?? '').split(' [')[0];
    const nginxVersion = spawnSync('nginx', ['-v'], { encoding: 'utf8' }).stderr.trim() || 'nginx';
    say(`# HTTP artifact benchmark: pxeha (node ${process.version}, Fastify + @fastify/send) vs ${nginxVersion.replace('nginx version: ', '')}; ${curlVersion}, ${wrkVersion}`);
    say(`# ${os.cpus().length} CPU(s) ${os.cpus()[0]?.model ?? ''}, ${os.release()}; servers and clients share them, on the loopback of one netns`);
    say(`# nginx: worker_processes ${nginxWorkersText}, sendfile on, tcp_nopush on, access_log off, keepalive_requests 1000000; pxeha: log level info, embedded store`);
    say(`# large: ${sizeMiB} MiB file, ${sequential} sequential + ${parallel} parallel curl -o /dev/null (a new connection each), after one untimed download`);
    say(`# small: 1 KiB file, ${wrkArgv('URL', wrkSeconds).join(' ')} after a ${warmupSeconds}s warm-up; ${rounds} round(s), servers alternating first`);
    say(`# cpu = server CPU seconds per wall second during the measured run (1.00 = one core)`);
    say();
    say(`${'server'.padEnd(6)} ${'load'.padEnd(17)} ${'round'.padStart(5)} ${'figure'.padStart(16)} ${'cpu'.padStart(5)}`);
    for (let round = 1; round <= rounds; round++) {
      const order = round % 2 === 1 ? servers : [...servers].reverse();
      const loads: ((s: RunningServer) => Promise<RunResult>)[] = [];
      if (sequential > 0) loads.push((s) => largeSequential(ns, s, round, bigBytes));
      if (parallel > 0) loads.push((s) => largeParallel(ns, s, round, bigBytes));
      if (wrkSeconds > 0) loads.push((s) => small(ns, s, round));
      for (const load of loads) {
        for (const kind of order) {
          const server = running[kind];
          if (!server) continue;
          const r = await load(server);
          results.push(r);
          say(row(r));
        }
      }
    }
    say();

    say('## medians');
    const goals: Record<Load, number> = { 'large-sequential': 0.8, 'large-parallel': 0.8, small: 0.5 };
    for (const load of ['large-sequential', 'large-parallel', 'small'] as const) {
      const med: Partial<Record<ServerKind, number>> = {};
      for (const kind of servers) {
        const mine = results.filter((r) => r.load === load && r.server === kind);
        if (mine.length > 0) med[kind] = median(mine.map((r) => r.value));
      }
      if (Object.keys(med).length === 0) continue;
      const unit = load === 'small' ? 'req/s' : 'MiB/s';
      // The ratio is the median of each round's pxeha/nginx: the two ran back to back, so it
      // is the figure least disturbed by whatever else the shared machine is doing.
      const perRound: number[] = [];
      for (let round = 1; round <= rounds; round++) {
        const at = (kind: ServerKind) => results.find((r) => r.load === load && r.round === round && r.server === kind)?.value;
        const p = at('pxeha');
        const n = at('nginx');
        if (p !== undefined && n) perRound.push(p / n);
      }
      const ratio = perRound.length > 0 ? median(perRound) : undefined;
      say(
        `${load.padEnd(17)} pxeha ${fmt(med.pxeha, 1).padStart(10)} ${unit}   nginx ${fmt(med.nginx, 1).padStart(10)} ${unit}` +
          (ratio !== undefined
            ? `   ratio ${fmt(ratio, 2)} (per round ${perRound.map((x) => fmt(x, 2)).join('/')}; goal >= ${goals[load]}: ${ratio >= goals[load] ? 'met' : 'NOT met'})`
            : ''),
      );
    }

    const pxeha = running.pxeha;
    if (pxeha && scriptSeconds > 0) {
      // Not comparable with nginx (it has no such route): every request commits a status write.
      const url = `http://127.0.0.1:${PXEHA_PORT}/boot.ipxe?mac=${KNOWN_MAC}&uuid=&arch=x86_64`;
      await runWrk(ns, wrkArgv(url, 1, 8, 1), 1);
      const { value: w, cpu } = await withCpu(pxeha, () => runWrk(ns, wrkArgv(url, scriptSeconds, 8, 1), scriptSeconds));
      say(`boot script       pxeha ${fmt(w.requestsPerSecond, 1).padStart(10)} req/s (/boot.ipxe of a known machine, wrk -t1 -c8 -d${scriptSeconds}s, cpu ${fmt(cpu, 2)}, latency ${w.latency}${w.non2xx > 0 ? `, ${w.non2xx} non-2xx` : ''})`);
    }
    say();

    const problems = results.flatMap((r) => r.problems.map((p) => `${r.server} ${r.load} round ${r.round}: ${p}`));
    if (problems.length > 0) {
      say('## problems');
      for (const p of problems.slice(0, 50)) say(p.slice(0, 400));
    }
    for (const kind of servers) {
      const s = running[kind];
      if (!s) continue;
      await s.proc.stop(5000);
      const errors = s.proc.stderr().trim();
      if (errors) say(`## ${kind} stderr\n${errors.slice(-2000)}`);
    }
    if (args['cpu-prof']) say(`# CPU profiles of pxeha in ${path.resolve(args['cpu-prof'])} (summary: node --import tsx bench/lib/profile-summary.ts FILE)`);
    if (args.json) writeFileSync(args.json, JSON.stringify(results, null, 2));
  } finally {
    await sandbox.cleanup();
  }
}

await main();
