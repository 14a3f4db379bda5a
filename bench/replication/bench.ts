/**
 * Replication benchmark (issue 7): pxeha's image replication against rsync moving the same
 * bytes between the same namespaces, in the same run.
 *
 *   HA lab (test/helpers/ha-lab.ts): node1 10.99.0.1, node2 10.99.0.2, node3 10.99.0.3, one
 *   bridge, veth pairs, a 3-member etcd on the three servers. rsync: `rsync --daemon` in node1's
 *   namespace on 10.99.0.1:8873 serving node1's source directories (started and killed by PID
 *   here); the two clients run in node2's and node3's namespaces at once. TCP over the veths
 *   for both, never a local copy.
 *
 * Full copy, per round (a new S MiB file each round, generated from a seed):
 * - rsync: `rsync -a --stats rsync://10.99.0.1:8873/full/ <fresh dir>` on node2 and node3 at
 *   once; wall time until both have finished. Again with `--fsync` (rsync 3.2.4+), because
 *   pxeha fsyncs every chunk (and its directory) before it counts as held: that row is the
 *   like-for-like durability.
 * - pxeha: `pxeha images push` on node1 (timed on its own: it chunks, hashes and stores);
 *   replication time is from the version's record (publishedAtMs, same host clock) until
 *   node1's matrix shows node2 and node3 holding it whole (polled every 50 ms).
 * Delta: a D MiB file, replicated by both; then 1% of it is overwritten in 3 places (as in
 * src/images/chunker.test.ts) and both move the new version:
 * - rsync: "Total bytes sent" + "Total bytes received" of each client's --stats (its block
 *   checksums up, literal data and tokens down), "Literal data" shown too.
 * - pxeha: pxeha_image_bytes_fetched_total of each peer (chunk payload), plus an estimate of
 *   HTTP framing (per chunk request and response headers, measured on one request; an upper
 *   bound since chunks come ~16 per request, each with a 4-byte length: chunk-batch.ts).
 * Both also as the eth0 byte counters (rx + tx) of each receiving namespace over the transfer
 * window: all traffic, etcd's heartbeats and membership records included for both.
 *
 * Goals (printed, exit status does not depend on them): full copy >= 0.8x rsync's speed;
 * delta <= 2x rsync's bytes.
 *
 * Usage: npm run bench:replication -- [--size-mib 1024] [--delta-size-mib 256] [--rounds 1]
 *                                     [--parallel 4]
 * Bounded: every wait has a deadline; namespaces, processes and files are removed at the end,
 * on failure and on Ctrl-C (Sandbox; run.sh removes recorded namespaces if this process dies).
 */
import { appendFileSync, createWriteStream, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { ImagesStatus } from '../../src/images/status.js';
import { seededBytes } from '../../src/images/test-support.js';
import { apiGet } from '../../test/helpers/dhcp-client-pxeha.js';
import { HaLab, type HaNode } from '../../test/helpers/ha-lab.js';
import { REPO_ROOT, Sandbox, type Netns } from '../../test/helpers/netns.js';
import { until } from '../../test/helpers/until.js';
import { fmt, integerOption, median, say } from '../lib/common.js';

const PXEHA = path.join(REPO_ROOT, 'bin', 'pxeha.js');
const RSYNC_PORT = 8873;
const MiB = 1024 * 1024;

const { values: args } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '1024' },
    'delta-size-mib': { type: 'string', default: '256' },
    rounds: { type: 'string', default: '1' },
    parallel: { type: 'string', default: '4' },
    'cpu-prof': { type: 'string' },
  },
  strict: true,
});
const sizeMiB = integerOption(args, 'size-mib', 16, 4096);
const deltaSizeMiB = integerOption(args, 'delta-size-mib', 16, 1024);
const rounds = integerOption(args, 'rounds', 1, 5);
const parallel = integerOption(args, 'parallel', 1, 64);

async function writeSeeded(file: string, bytes: number, seed: number): Promise<void> {
  const out = createWriteStream(file);
  const piece = 64 * MiB;
  for (let o = 0, i = 0; o < bytes; o += piece, i++) {
    if (!out.write(seededBytes(seed * 1000 + i, Math.min(piece, bytes - o)))) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
}

async function metric(n: HaNode, name: string): Promise<number> {
  let sum = 0;
  for (const line of (await apiGet(n.dataDir, '/metrics')).split('\n')) {
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+]+)$`).exec(line);
    if (m) sum += Number(m[1]);
  }
  return sum;
}

/** rx + tx bytes of eth0 in a namespace (sysfs as `ip netns exec` mounts it for the namespace). */
async function eth0Bytes(ns: Netns): Promise<number> {
  const r = await ns.exec(['cat', '/sys/class/net/eth0/statistics/rx_bytes', '/sys/class/net/eth0/statistics/tx_bytes'], { timeoutMs: 5000 });
  return r.stdout.trim().split('\n').map(Number).reduce((a, b) => a + b, 0);
}

const CLK_TCK = 100; // getconf CLK_TCK on Linux x86-64 and arm64

/** utime, stime, cutime, cstime (seconds) from a /proc/<pid>/stat line. */
function statTimes(line: string): { user: number; sys: number; childUser: number; childSys: number } {
  const f = line.slice(line.lastIndexOf(')') + 2).split(' ').map(Number);
  return { user: f[11]! / CLK_TCK, sys: f[12]! / CLK_TCK, childUser: f[13]! / CLK_TCK, childSys: f[14]! / CLK_TCK };
}

/** CPU (user, sys) of a running process, threads included (children excluded). */
function processCpu(pid: number): { user: number; sys: number } {
  const t = statTimes(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  return { user: t.user, sys: t.sys };
}

interface RsyncStats {
  sent: number;
  received: number;
  literal: number;
  matched: number;
  /** CPU of the client (its own and its forked receiver's). */
  user: number;
  sys: number;
}

function parseRsyncStats(out: string): RsyncStats {
  const num = (label: string): number => {
    const m = new RegExp(`^${label}: ([\\d,]+)`, 'm').exec(out);
    if (!m) throw new Error(`rsync --stats: no "${label}" in\n${out}`);
    return Number(m[1]!.replace(/,/g, ''));
  };
  return { sent: num('Total bytes sent'), received: num('Total bytes received'), literal: num('Literal data'), matched: num('Matched data'), user: 0, sys: 0 };
}

async function main(): Promise<void> {
  const sandbox = new Sandbox();
  const stateFile = process.env['PXEHA_BENCH_STATE'];
  try {
    // --cpu-prof DIR: the nodes write V8 CPU profiles on a graceful stop (bench/dhcp-ha's preload).
    const cpuProfDir = args['cpu-prof'] ? path.resolve(args['cpu-prof']) : undefined;
    if (cpuProfDir) {
      mkdirSync(cpuProfDir, { recursive: true });
      process.env['NODE_OPTIONS'] = `${process.env['NODE_OPTIONS'] ?? ''} --import=${new URL('../dhcp-ha/cpu-prof-preload.mjs', import.meta.url).href}`.trim();
      process.env['PXT_CPU_PROF_DIR'] = cpuProfDir;
    }
    const ha = await HaLab.start(sandbox, { nodes: 3, clients: 0, node: { images: { parallelFetches: parallel } } });
    delete process.env['PXT_CPU_PROF_DIR'];
    if (stateFile) for (const ns of sandbox.namespaces) appendFileSync(stateFile, `${ns.name}\n`);
    const [n1, n2, n3] = ha.nodes as [HaNode, HaNode, HaNode];
    const peers = [n2, n3];
    const cli = async (args: string[]): Promise<string> => {
      const r = await n1.ns.exec([process.execPath, PXEHA, ...args, '--config', n1.nodeFile], { timeoutMs: 600_000, allowFailure: true });
      if (r.code !== 0) throw new Error(`pxeha ${args.join(' ')} failed:\n${r.stdout}${r.stderr}`);
      return r.stdout;
    };
    const push = async (dir: string, name: string): Promise<{ id: string; seconds: number; publishedAtMs: number }> => {
      const t0 = performance.now();
      const { id } = JSON.parse(await cli(['images', 'push', dir, '--name', name, '--channel', 'stable', '-o', 'json'])) as { id: string };
      const seconds = (performance.now() - t0) / 1000;
      const { stdout } = await ha.etcdctl(0, ['get', `/pxeha/images/${name}/versions/${id}`, '--print-value-only']);
      return { id, seconds, publishedAtMs: (JSON.parse(stdout) as { publishedAtMs: number }).publishedAtMs };
    };
    /** Wall-clock ms (Date.now) at which node1's matrix first shows each peer holding `id`. */
    const heldAt = async (id: string, timeoutMs: number): Promise<Record<string, number>> => {
      const at: Record<string, number> = {};
      await until(
        `node2 and node3 hold ${id.slice(0, 12)}`,
        async () => {
          const s = await n1.api<ImagesStatus>('/api/v1/images');
          const v = s.versions.find((x) => x.id === id);
          for (const [name, h] of Object.entries(v?.holders ?? {})) if (h.state === 'held') at[name] ??= Date.now();
          return at['node2'] !== undefined && at['node3'] !== undefined ? true : undefined;
        },
        timeoutMs,
        50,
      );
      return at;
    };

    // rsync daemon in node1's namespace, serving node1's source directories read-only.
    const srcFull = path.join(n1.workDir, 'src-full');
    const srcDelta = path.join(n1.workDir, 'src-delta');
    mkdirSync(srcFull, { recursive: true });
    mkdirSync(srcDelta, { recursive: true });
    const conf = path.join(n1.workDir, 'rsyncd.conf');
    writeFileSync(
      conf,
      ['use chroot = no', 'uid = root', 'gid = root', 'max connections = 8', `pid file = ${path.join(n1.workDir, 'rsyncd.pid')}`, `log file = ${path.join(n1.workDir, 'rsyncd.log')}`,
        '[full]', `path = ${srcFull}`, 'read only = yes', '[delta]', `path = ${srcDelta}`, 'read only = yes', ''].join('\n'),
    );
    // stdin from /dev/null: a daemon whose stdin is a socket (Node's pipes are socket pairs)
    // takes itself for an inetd child and serves that one "connection".
    const daemon = n1.ns.spawn(
      ['sh', '-c', `exec rsync --daemon --no-detach --config='${conf}' --address=${n1.ip} --port=${RSYNC_PORT} </dev/null`],
      { label: 'rsync daemon (node1)' },
    );
    let probe = '';
    await until(
      'rsync daemon answers',
      async () => {
        const r = await n2.ns.exec(['rsync', `rsync://${n1.ip}:${RSYNC_PORT}/`], { timeoutMs: 5000, allowFailure: true });
        probe = `${r.code} ${r.stdout}${r.stderr}`;
        return r.code === 0 ? true : undefined;
      },
      15_000,
      100,
    ).catch((err: Error) => {
      throw new Error(`${err.message}: ${probe}\n${daemon.describe()}\n${readFileSync(path.join(n1.workDir, 'rsyncd.log'), 'utf8').slice(-2000)}`);
    });
    const rsyncTo = async (n: HaNode, module: string, dest: string, extra: string[] = []): Promise<RsyncStats> => {
      // Through a shell that, once rsync has exited and been reaped, records its own children's
      // CPU (cutime, cstime) with a builtin read: the client's CPU, receiver process included.
      const statFile = path.join(n.workDir, 'rsync-client.stat');
      const script = `rsync "$@"; s=$?; read -r line < /proc/$$/stat; echo "$line" > '${statFile}'; exit $s`;
      const r = await n.ns.exec(['sh', '-c', script, 'sh', '-a', '--stats', ...extra, `rsync://${n1.ip}:${RSYNC_PORT}/${module}/`, `${dest}/`], { timeoutMs: 600_000, allowFailure: true });
      if (r.code !== 0) throw new Error(`rsync to ${n.name} failed (${r.code}):\n${r.stdout}${r.stderr}`);
      const t = statTimes(readFileSync(statFile, 'utf8'));
      return { ...parseRsyncStats(r.stdout), user: t.childUser, sys: t.childSys };
    };
    /** The daemon's reaped children (one per connection: the senders). */
    const daemonCpu = (): { user: number; sys: number } => {
      const t = statTimes(readFileSync(`/proc/${daemon.pid}/stat`, 'utf8'));
      return { user: t.childUser, sys: t.childSys };
    };
    const version = (await n2.ns.exec(['rsync', '--version'], { timeoutMs: 5000 })).stdout.split('\n')[0];
    say(`# replication bench: ${sizeMiB} MiB full copy × ${rounds} round(s), ${deltaSizeMiB} MiB delta; node1 → node2 + node3 over veth/bridge in netns; ${os.cpus().length} cores; ${version}; pxeha parallelFetches ${parallel}`);

    // ---- Full copy
    const bytes = sizeMiB * MiB;
    const rows: { round: number; rsync: number; rsyncFsync: number; pxeha: number; push: number }[] = [];
    for (let round = 1; round <= rounds; round++) {
      await writeSeeded(path.join(srcFull, 'rootfs.img'), bytes, 100 + round);
      const cpuText = (c: { user: number; sys: number }[]): string => c.map((x) => `${fmt(x.user, 1)}+${fmt(x.sys, 1)}`).join(', ');
      const timeRsync = async (extra: string[], tag: string): Promise<{ seconds: number; cpu: string }> => {
        const dests = peers.map((n) => path.join(n.workDir, `rsync-full-${round}-${tag}`));
        const d0 = daemonCpu();
        const t0 = performance.now();
        const stats = await Promise.all(peers.map((n, i) => rsyncTo(n, 'full', dests[i]!, extra)));
        const seconds = (performance.now() - t0) / 1000;
        const d1 = daemonCpu();
        for (const d of dests) if (readFileSync(path.join(d, 'rootfs.img')).length !== bytes) throw new Error(`rsync copy in ${d} is not whole`);
        return { seconds, cpu: cpuText([{ user: d1.user - d0.user, sys: d1.sys - d0.sys }, ...stats]) };
      };
      const plain = await timeRsync([], 'plain');
      const fsynced = await timeRsync(['--fsync'], 'fsync');
      const rsyncSeconds = plain.seconds;
      const rsyncFsyncSeconds = fsynced.seconds;
      const pushed = await push(srcFull, `full${round}`);
      const cpu0 = ha.nodes.map((n) => processCpu(n.pid!));
      const at = await heldAt(pushed.id, 600_000);
      const cpu = ha.nodes.map((n, i) => {
        const c = processCpu(n.pid!);
        return { user: c.user - cpu0[i]!.user, sys: c.sys - cpu0[i]!.sys };
      });
      const pxehaSeconds = (Math.max(at['node2']!, at['node3']!) - pushed.publishedAtMs) / 1000;
      rows.push({ round, rsync: rsyncSeconds, rsyncFsync: rsyncFsyncSeconds, pxeha: pxehaSeconds, push: pushed.seconds });
      const rate = (s: number): string => `${fmt(bytes / MiB / s, 1)} MiB/s per peer`;
      say(
        `round ${round}: rsync ${fmt(rsyncSeconds, 2)} s (${rate(rsyncSeconds)}), rsync --fsync ${fmt(rsyncFsyncSeconds, 2)} s (${rate(rsyncFsyncSeconds)}), ` +
          `pxeha ${fmt(pxehaSeconds, 2)} s (${rate(pxehaSeconds)}; node2 ${fmt((at['node2']! - pushed.publishedAtMs) / 1000, 2)} s, node3 ${fmt((at['node3']! - pushed.publishedAtMs) / 1000, 2)} s), pxeha push ${fmt(pushed.seconds, 2)} s`,
      );
      say(
        `  CPU s (user+sys) sender, receiver, receiver: rsync ${plain.cpu}; rsync --fsync ${fsynced.cpu}; pxeha ${cpuText(cpu)}`,
      );
    }
    const med = (k: 'rsync' | 'rsyncFsync' | 'pxeha' | 'push'): number => median(rows.map((r) => r[k]));
    const speed = med('rsync') / med('pxeha');
    const speedFsync = med('rsyncFsync') / med('pxeha');

    // ---- Delta
    const deltaBytes = deltaSizeMiB * MiB;
    const original = seededBytes(20160622, deltaBytes);
    const deltaFile = path.join(srcDelta, 'disk.img');
    writeFileSync(deltaFile, original);
    const deltaDests = peers.map((n) => path.join(n.workDir, 'rsync-delta'));
    await Promise.all(peers.map((n, i) => rsyncTo(n, 'delta', deltaDests[i]!)));
    const v1 = await push(srcDelta, 'delta');
    await heldAt(v1.id, 300_000);
    const places = [0.21, 0.5, 0.83].map((p) => Math.floor(deltaBytes * p));
    const editBytes = Math.floor((deltaBytes * 0.01) / places.length);
    const edited = Buffer.from(original);
    places.forEach((p, i) => seededBytes(1000 + i, editBytes).copy(edited, p));
    writeFileSync(deltaFile, edited);

    const wire0 = await Promise.all(peers.map((n) => eth0Bytes(n.ns)));
    const rsyncDelta = await Promise.all(peers.map((n, i) => rsyncTo(n, 'delta', deltaDests[i]!)));
    const wire1 = await Promise.all(peers.map((n) => eth0Bytes(n.ns)));
    for (const d of deltaDests) if (!readFileSync(path.join(d, 'disk.img')).equals(edited)) throw new Error(`rsync delta in ${d} differs from the source`);
    const fetched0 = await Promise.all(peers.map((n) => metric(n, 'pxeha_image_bytes_fetched_total')));
    const chunks0 = await Promise.all(peers.map((n) => metric(n, 'pxeha_image_chunks_fetched_total')));
    const wire2 = await Promise.all(peers.map((n) => eth0Bytes(n.ns)));
    const v2 = await push(srcDelta, 'delta');
    await heldAt(v2.id, 300_000);
    const wire3 = await Promise.all(peers.map((n) => eth0Bytes(n.ns)));
    const fetched = (await Promise.all(peers.map((n) => metric(n, 'pxeha_image_bytes_fetched_total')))).map((b, i) => b - fetched0[i]!);
    const chunkCount = (await Promise.all(peers.map((n) => metric(n, 'pxeha_image_chunks_fetched_total')))).map((c, i) => c - chunks0[i]!);
    // HTTP framing per chunk: one request and one response head, measured on one request with curl
    // (an upper bound: batches carry several chunks per request).
    const head = await n2.ns.exec(['curl', '-s', '-o', '/dev/null', '-w', '%{size_header} %{size_request}', '-H', 'Authorization: Bearer x', `http://${n1.ip}:8080/api/v1/chunks/${'a'.repeat(64)}`], { timeoutMs: 10_000 });
    const framing = head.stdout.split(' ').map(Number).reduce((a, b) => a + b, 0) + 60; // + a bearer longer than "x"

    say();
    say(`## delta: ${deltaSizeMiB} MiB file, 1% overwritten in 3 places (${fmt((3 * editBytes) / MiB, 2)} MiB changed)`);
    const ratios: number[] = [];
    peers.forEach((n, i) => {
      const r = rsyncDelta[i]!;
      const rsyncTotal = r.sent + r.received;
      const pxehaTotal = fetched[i]! + chunkCount[i]! * framing;
      ratios.push(pxehaTotal / rsyncTotal);
      say(
        `${n.name}: rsync sent ${r.sent} + received ${r.received} = ${fmt(rsyncTotal / MiB, 2)} MiB (literal ${fmt(r.literal / MiB, 2)} MiB, matched ${fmt(r.matched / MiB, 1)} MiB), eth0 ${fmt((wire1[i]! - wire0[i]!) / MiB, 2)} MiB | ` +
          `pxeha fetched ${fmt(fetched[i]! / MiB, 2)} MiB in ${chunkCount[i]} chunks (+ ~${chunkCount[i]! * framing} bytes HTTP framing) = ${fmt((fetched[i]! / deltaBytes) * 100, 2)}% of the file, eth0 ${fmt((wire3[i]! - wire2[i]!) / MiB, 2)} MiB | ratio ${fmt(pxehaTotal / rsyncTotal, 2)}`,
      );
    });

    say();
    say('## summary');
    say(`full copy ${sizeMiB} MiB to 2 peers (median of ${rows.length}): rsync ${fmt(med('rsync'), 2)} s, rsync --fsync ${fmt(med('rsyncFsync'), 2)} s, pxeha ${fmt(med('pxeha'), 2)} s (push ${fmt(med('push'), 2)} s not included)`);
    say(`pxeha speed / rsync speed: ${fmt(speed, 2)} (goal >= 0.8: ${speed >= 0.8 ? 'met' : 'NOT met'}); against rsync --fsync: ${fmt(speedFsync, 2)}`);
    const worst = Math.max(...ratios);
    say(`delta bytes pxeha / rsync (worst peer): ${fmt(worst, 2)} (goal <= 2: ${worst <= 2 ? 'met' : 'NOT met'})`);

    await daemon.stop(3000);
    if (cpuProfDir) {
      for (const n of ha.nodes) await n.stop(10_000);
      say(`# CPU profiles of the nodes in ${cpuProfDir} (node1 pid ${n1.runs[0]!.pid}, node2 ${n2.runs[0]!.pid}, node3 ${n3.runs[0]!.pid}); bench/lib/profile-summary.ts summarises one`);
    }
  } finally {
    await sandbox.cleanup();
  }
}

await main();
