/**
 * The HA lab: N pxeha nodes (3 or 5) on one Ethernet segment, on a 3-member etcd cluster that
 * runs on the same servers, all inside network namespaces a Sandbox creates and removes.
 *
 *   bridge ns (br0) ── srv…  eth0 10.99.0.1/16: etcd m0 (10.99.0.1:2379/2380), store proxy, node1
 *                   ── srv1  eth0 10.99.0.2/16: etcd m1,                        store proxy, node2
 *                   ── srv2  eth0 10.99.0.3/16: etcd m2,                        store proxy, node3
 *                   ── srv3… eth0 10.99.0.4/16 (no etcd member; N = 5: also srv4) …
 *                   ── c0…   eth0 (DHCP clients; a load client may have a static address)
 *
 * Every node reaches etcd only through a small TCP proxy in its own namespace (127.0.0.1:23790+k
 * → member k), so a test can cut one node's store traffic (pause: a silent network; cut:
 * connection resets) and nothing else: its DHCP, the etcd members' peer traffic and the other
 * nodes' store traffic all go on. The proxy is a plain Node script controlled through its stdin.
 *
 * Nodes are `pxeha serve` (bin/pxeha.js) with the etcd store, DHCP on eth0, TFTP and HTTP on
 * their own address, names node1…nodeN and a data dir each. The cluster document is applied
 * once, from the first server. Leases are read straight from etcd (etcdctl inside a server's
 * namespace), and so is their history, which the store-wide invariants are checked over.
 *
 * Everything started here is a process of the sandbox (killed by PID at cleanup); etcd data
 * lives under /dev/shm/pxt-<sandbox id>-ha-etcd (removed at cleanup and at process exit; after
 * a run killed by a signal, by the next lab once that sandbox's namespaces are gone).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LeaseRecord } from '../../src/dhcp/lease-record.js';
import { apiGet, type LogLine } from './dhcp-client-pxeha.js';
import { REPO_ROOT, srcUrl, type Lab, type Netns, type NetnsProcess, type Sandbox } from './netns.js';
import { leaseViolations, type LeaseHistory, type LeaseVersion } from './perfdhcp-pxeha.js';

const PXEHA = path.join(REPO_ROOT, 'bin', 'pxeha.js');
const ETCD_MEMBERS = 3;
const ETCD_CLIENT_PORT = 2379;
const ETCD_PEER_PORT = 2380;
/** Node k's proxy to etcd member m listens on 127.0.0.1:(PROXY_BASE_PORT + m) in k's namespace. */
const PROXY_BASE_PORT = 23790;

export interface HaLabOptions {
  /** pxeha nodes (and server namespaces); default 3. The first three also run etcd members. */
  nodes?: number;
  /** Client namespaces on the segment (eth0, no address unless clientAddresses gives one). */
  clients?: number;
  /** Per-client static CIDR addresses (e.g. a perfdhcp relay address); undefined = DHCP client. */
  clientAddresses?: readonly (string | undefined)[];
  /** The cluster document applied once; default: one /16 subnet with a large pool. */
  cluster?: Record<string, unknown>;
  /** Membership lease TTL (node.yaml cluster.memberTtlSeconds); default 2, as the schema's. */
  memberTtlSeconds?: number;
  /** pxeha log level; default 'info' (per-packet lines are debug: costly under load). */
  logLevel?: 'info' | 'debug' | 'warn';
  /** Extra node.yaml fields for every node (merged over the defaults). */
  node?: Record<string, unknown>;
  /** Per-node extra node.yaml fields (e.g. a weight), by node index. */
  nodeFields?: (i: number) => Record<string, unknown>;
  /** Extra files for a node's artifacts directory (relative path → content), by node index. */
  artifacts?: (i: number) => Record<string, string | Buffer>;
}

/** The lab segment: 10.99.0.0/16, servers at 10.99.0.1…, pool 10.99.1.0 – 10.99.254.255. */
export const LAB_SUBNET = '10.99.0.0/16';
export const LAB_PREFIX = 16;
export function serverIp(i: number): string {
  return `10.99.0.${i + 1}`;
}

/** One subnet of 65 024 pool addresses: perfdhcp's thousands of clients fit many times over. */
export function defaultHaCluster(): Record<string, unknown> {
  return {
    subnets: [
      {
        name: 'lab',
        subnet: LAB_SUBNET,
        mode: 'full',
        pools: [{ start: '10.99.1.0', end: '10.99.254.255' }],
        leaseSeconds: 3600,
        options: { routers: ['10.99.0.1'] },
      },
    ],
    boot: { files: { bios: 'undionly.kpxe', efiX64: 'snponly.efi' } },
    dhcp: { offerHoldSeconds: 30 },
  };
}

function parseLogLine(line: string): LogLine | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    return JSON.parse(line) as LogLine;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// The store proxy (runs inside a server namespace)

/**
 * Source of the per-node proxy: one listener per etcd member on 127.0.0.1, forwarding to the
 * member's address. Commands on stdin, one per line, each answered `ok <command>` on stdout:
 * `pause` (stop moving bytes both ways, on open and new connections: a silent network),
 * `cut` (reset every connection, refuse new ones), `resume`.
 */
function proxySource(routes: ReadonlyArray<{ listenPort: number; host: string; port: number }>): string {
  return `
import net from 'node:net';
import readline from 'node:readline';
const routes = ${JSON.stringify(routes)};
let mode = 'forward';
const pairs = new Set();
const destroy = (pair) => {
  if (!pairs.delete(pair)) return;
  for (const s of pair) if (!s.destroyed) s.resetAndDestroy();
};
let listening = 0;
for (const r of routes) {
  const server = net.createServer((client) => {
    if (mode === 'cut') { client.resetAndDestroy(); return; }
    const upstream = net.createConnection({ host: r.host, port: r.port });
    const pair = [client, upstream];
    pairs.add(pair);
    client.pipe(upstream);
    upstream.pipe(client);
    for (const s of pair) { s.on('error', () => destroy(pair)); s.on('close', () => destroy(pair)); }
    if (mode === 'paused') { client.pause(); upstream.pause(); }
  });
  server.listen(r.listenPort, '127.0.0.1', () => { if (++listening === routes.length) console.log('proxy ready'); });
}
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const cmd = line.trim();
  if (cmd === 'pause') { mode = 'paused'; for (const [a, b] of pairs) { a.pause(); b.pause(); } }
  else if (cmd === 'cut') { mode = 'cut'; for (const p of [...pairs]) destroy(p); }
  else if (cmd === 'resume') { mode = 'forward'; for (const [a, b] of pairs) { a.resume(); b.resume(); } }
  else { console.log('unknown ' + cmd); return; }
  console.log('ok ' + cmd);
});
process.stdin.on('end', () => process.exit(0));
`;
}

/**
 * A relay agent's fan-out, as `ip helper-address` with one line per node: every datagram that
 * arrives on listenIp:67 is sent on, unchanged, to port 67 of every target, from listenIp:67.
 * perfdhcp talks to one server only (unicast; it cannot broadcast), so it is pointed at this
 * fan-out and every node sees every DISCOVER and REQUEST, as on a relayed segment. Replies go
 * to giaddr (perfdhcp's own address) straight from the nodes. Runs in `ns` until killed.
 */
export async function startRelayFanout(ns: Netns, listenIp: string, targets: readonly string[]): Promise<NetnsProcess> {
  const source = `
import dgram from 'node:dgram';
const targets = ${JSON.stringify(targets)};
const socket = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
let forwarded = 0;
socket.on('message', (msg) => { forwarded++; for (const t of targets) socket.send(msg, 67, t); });
socket.bind(67, ${JSON.stringify(listenIp)}, () => console.log('fanout ready'));
process.on('SIGTERM', () => { console.log('forwarded ' + forwarded); process.exit(0); });
`;
  const proc = ns.spawnNodeScript(source, { tsx: false, label: `relay fan-out ${listenIp} → ${targets.join(',')}` });
  await proc.waitForLine(/^fanout ready$/, { timeoutMs: 10_000 });
  return proc;
}

// ---------------------------------------------------------------------------------------------
// One node

export class HaNode {
  readonly index: number;
  readonly name: string;
  readonly ns: Netns;
  readonly ip: string;
  readonly workDir: string;
  readonly nodeFile: string;
  readonly dataDir: string;
  /** Every run of `pxeha serve`, oldest first. */
  readonly runs: NetnsProcess[] = [];
  proxy: NetnsProcess | undefined;
  /** Extra environment for the next `pxeha serve` runs (e.g. LD_PRELOAD of libfaketime in test/faults). */
  env: Record<string, string> | undefined;

  constructor(index: number, ns: Netns, workDir: string) {
    this.index = index;
    this.name = `node${index + 1}`;
    this.ns = ns;
    this.ip = serverIp(index);
    this.workDir = workDir;
    this.nodeFile = path.join(workDir, 'node.yaml');
    this.dataDir = path.join(workDir, 'data');
  }

  get current(): NetnsProcess | undefined {
    return this.runs.at(-1);
  }

  /** PID of the running `pxeha serve`, undefined while down. */
  get pid(): number | undefined {
    const c = this.current;
    return c && !c.status ? c.pid : undefined;
  }

  get running(): boolean {
    return this.pid !== undefined;
  }

  /** Starts `pxeha serve` and waits until it listens for DHCP and has started. */
  async start(timeoutMs = 30_000): Promise<NetnsProcess> {
    if (this.running) throw new Error(`${this.name} is already running`);
    const proc = this.ns.spawn([process.execPath, PXEHA, 'serve', '--config', this.nodeFile], {
      label: `${this.name} (${this.ns.name}) run #${this.runs.length + 1}`,
      ...(this.env ? { env: { ...process.env, ...this.env } } : {}),
    });
    this.runs.push(proc);
    await proc.waitForLine((l) => parseLogLine(l)?.msg === 'node started', { timeoutMs });
    await proc.waitForLine((l) => parseLogLine(l)?.msg === 'dhcp listening', { timeoutMs });
    return proc;
  }

  /** SIGKILL by PID (a crash: no resign, no lease revoke); resolves once it has exited. */
  async kill(): Promise<void> {
    const proc = this.current;
    if (!proc || proc.status) return;
    process.kill(proc.pid, 'SIGKILL');
    await proc.exited;
  }

  /** SIGTERM (graceful), SIGKILL after graceMs. */
  async stop(graceMs = 10_000): Promise<void> {
    const proc = this.current;
    if (!proc || proc.status) return;
    await proc.stop(graceMs);
  }

  /** Sends a command to this node's store proxy and waits for its acknowledgement. */
  async proxyCommand(command: 'pause' | 'cut' | 'resume'): Promise<void> {
    const proxy = this.proxy;
    if (!proxy || proxy.status) throw new Error(`${this.name}: store proxy is not running`);
    const from = proxy.lines().length;
    proxy.write(`${command}\n`);
    await proxy.waitForLine(new RegExp(`^ok ${command}$`), { from, timeoutMs: 5000 });
  }

  /** JSON log lines of every run (or of the current one). */
  logs(options: { currentRunOnly?: boolean } = {}): LogLine[] {
    const runs = options.currentRunOnly ? this.runs.slice(-1) : this.runs;
    return runs.flatMap((r) => r.lines().map(parseLogLine).filter((l): l is LogLine => l !== undefined));
  }

  /** Log lines at warn or above (pino levels ≥ 40). */
  problems(): LogLine[] {
    return this.logs().filter((l) => l.level >= 40);
  }

  /** GET on the node's API (Unix socket in its data dir). */
  async api<T>(urlPath: string): Promise<T> {
    return JSON.parse(await apiGet(this.dataDir, urlPath)) as T;
  }

  /** /api/v1/status (state 'ok' | 'degraded', leader, …). */
  status(): Promise<{ node: string; state: string; leader: boolean; [k: string]: unknown }> {
    return this.api('/api/v1/status');
  }

  /** The node's local lease view (/api/v1/leases). */
  leases(): Promise<LeaseRecord[]> {
    return this.api('/api/v1/leases');
  }

  describe(): string {
    return [...this.runs, ...(this.proxy ? [this.proxy] : [])].map((p) => p.describe(4000)).join('\n');
  }
}

// ---------------------------------------------------------------------------------------------
// The lab

export class HaLab {
  readonly sandbox: Sandbox;
  readonly lab: Lab;
  readonly nodes: HaNode[];
  /** etcd member processes, by member index (servers 0…2). */
  readonly etcd: NetnsProcess[] = [];
  readonly etcdDir: string;
  readonly options: HaLabOptions;
  #closed = false;

  private constructor(sandbox: Sandbox, lab: Lab, nodes: HaNode[], etcdDir: string, options: HaLabOptions) {
    this.sandbox = sandbox;
    this.lab = lab;
    this.nodes = nodes;
    this.etcdDir = etcdDir;
    this.options = options;
  }

  get clients(): Netns[] {
    return this.lab.clients;
  }

  /** Client URLs of the etcd members (reachable from the server namespaces). */
  get etcdEndpoints(): string[] {
    return Array.from({ length: ETCD_MEMBERS }, (_, m) => `http://${serverIp(m)}:${ETCD_CLIENT_PORT}`);
  }

  /**
   * Builds the segment, starts etcd, the store proxies and every node, applies the cluster
   * document, and waits until every node sees all N members. On failure everything started so
   * far is removed (the sandbox's cleanup does the rest).
   */
  static async start(sandbox: Sandbox, options: HaLabOptions = {}): Promise<HaLab> {
    const count = options.nodes ?? 3;
    if (count < ETCD_MEMBERS) throw new Error(`the HA lab needs at least ${ETCD_MEMBERS} nodes`);
    const lab = await sandbox.lab({
      serverAddresses: Array.from({ length: count }, (_, i) => `${serverIp(i)}/${LAB_PREFIX}`),
      clients: options.clients ?? 1,
      ...(options.clientAddresses ? { clientAddresses: options.clientAddresses } : {}),
      clientMac: (i) => `02:00:00:99:01:${(i + 1).toString(16).padStart(2, '0')}`,
    });
    sweepStaleEtcdDirs();
    const etcdDir = path.join(ETCD_BASE_DIR, `pxt-${sandbox.id}-ha-etcd`);
    mkdirSync(etcdDir, { recursive: true });
    liveEtcdDirs.add(etcdDir);
    const nodes = lab.servers.map((ns, i) => new HaNode(i, ns, ns.tempDir(`pxt-ha-node${i + 1}-`)));
    const ha = new HaLab(sandbox, lab, nodes, etcdDir, options);
    try {
      await ha.#startEtcd();
      for (const node of nodes) await ha.#startProxy(node);
      ha.#writeConfigs();
      const applied = await nodes[0]!.ns.exec(
        [process.execPath, PXEHA, 'apply', '-f', path.join(nodes[0]!.workDir, 'cluster.yaml'), '--config', nodes[0]!.nodeFile],
        { timeoutMs: 30_000, allowFailure: true },
      );
      if (applied.code !== 0) throw new Error(`pxeha apply failed:\n${applied.stdout}${applied.stderr}`);
      // One at a time: each start compiles the sources with tsx and the host has two cores.
      for (const node of nodes) await node.start();
      await ha.waitMembers(count);
    } catch (err) {
      await ha.cleanup();
      throw err;
    }
    return ha;
  }

  async #startEtcd(): Promise<void> {
    const peers = Array.from({ length: ETCD_MEMBERS }, (_, m) => `m${m}=http://${serverIp(m)}:${ETCD_PEER_PORT}`).join(',');
    for (let m = 0; m < ETCD_MEMBERS; m++) this.etcd.push(this.#spawnEtcd(m, peers, 'new'));
    await Promise.all(this.etcd.map((_, m) => this.#waitEtcdHealthy(m)));
  }

  #spawnEtcd(m: number, peers: string, state: 'new' | 'existing'): NetnsProcess {
    const ip = serverIp(m);
    const ns = this.lab.servers[m]!;
    return ns.spawn(
      [
        'etcd',
        `--name=m${m}`,
        `--data-dir=${path.join(this.etcdDir, `m${m}`)}`,
        `--listen-client-urls=http://${ip}:${ETCD_CLIENT_PORT}`,
        `--advertise-client-urls=http://${ip}:${ETCD_CLIENT_PORT}`,
        `--listen-peer-urls=http://${ip}:${ETCD_PEER_PORT}`,
        `--initial-advertise-peer-urls=http://${ip}:${ETCD_PEER_PORT}`,
        `--initial-cluster=${peers}`,
        `--initial-cluster-state=${state}`,
        `--initial-cluster-token=pxt-ha-${path.basename(this.etcdDir)}`,
        // As test/helpers/etcd-cluster.ts: short Raft timings, so elections take fractions of a second.
        '--heartbeat-interval=50',
        '--election-timeout=500',
        '--pre-vote=true', // see test/helpers/etcd-cluster.ts
        '--logger=zap',
        '--log-outputs=stderr',
        '--log-level=warn',
      ],
      { label: `etcd m${m} (${ns.name})` },
    );
  }

  async #waitEtcdHealthy(m: number, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      const proc = this.etcd[m]!;
      if (proc.status) throw new Error(`etcd m${m} exited\n${proc.describe()}`);
      const r = await this.etcdctl(m, ['endpoint', 'health', `--endpoints=http://${serverIp(m)}:${ETCD_CLIENT_PORT}`], true);
      if (r.code === 0) return;
      last = r.stderr;
      await sleep(200);
    }
    throw new Error(`etcd m${m} not healthy after ${timeoutMs} ms: ${last}\n${this.etcd[m]!.describe()}`);
  }

  async #startProxy(node: HaNode): Promise<void> {
    const routes = Array.from({ length: ETCD_MEMBERS }, (_, m) => ({
      listenPort: PROXY_BASE_PORT + m,
      host: serverIp(m),
      port: ETCD_CLIENT_PORT,
    }));
    node.proxy = node.ns.spawnNodeScript(proxySource(routes), { tsx: false, label: `${node.name} store proxy` });
    await node.proxy.waitForLine(/^proxy ready$/, { timeoutMs: 10_000 });
  }

  #writeConfigs(): void {
    const cluster = this.options.cluster ?? defaultHaCluster();
    const bootFiles = Object.values(((cluster as { boot?: { files?: Record<string, string> } }).boot?.files) ?? {});
    for (const node of this.nodes) {
      const artifactsDir = path.join(node.workDir, 'artifacts');
      mkdirSync(artifactsDir, { recursive: true });
      // Placeholders for every boot file (defaults included), so /healthz reports ready.
      for (const file of new Set([...bootFiles, 'undionly.kpxe', 'ipxe.efi', 'snponly.efi'])) {
        writeFileSync(path.join(artifactsDir, file), `placeholder ${file}\n`);
      }
      for (const [file, content] of Object.entries(this.options.artifacts?.(node.index) ?? {})) {
        mkdirSync(path.dirname(path.join(artifactsDir, file)), { recursive: true });
        writeFileSync(path.join(artifactsDir, file), content);
      }
      const config = {
        name: node.name,
        dataDir: node.dataDir,
        artifactsDir,
        store: {
          kind: 'etcd',
          endpoints: Array.from({ length: ETCD_MEMBERS }, (_, m) => `http://127.0.0.1:${PROXY_BASE_PORT + m}`),
          requestTimeoutMs: 2000,
        },
        advertiseAddress: node.ip,
        dhcp: { interfaces: ['eth0'] },
        http: { address: node.ip, port: 8080 },
        tftp: { address: node.ip, port: 69 },
        cluster: { memberTtlSeconds: this.options.memberTtlSeconds ?? 2 },
        log: { level: this.options.logLevel ?? 'info' },
        ...this.options.node,
        ...this.options.nodeFields?.(node.index),
      };
      // JSON is YAML: no serializer needed, and the files stay readable in a failure report.
      writeFileSync(node.nodeFile, `${JSON.stringify(config, null, 2)}\n`);
      writeFileSync(path.join(node.workDir, 'cluster.yaml'), `${JSON.stringify(cluster, null, 2)}\n`);
    }
  }

  /** SIGKILL of etcd member m (by PID); resolves once it has exited. */
  async killEtcd(m: number): Promise<void> {
    const proc = this.etcd[m];
    if (!proc) throw new Error(`no etcd member ${m}`);
    if (proc.status) return;
    process.kill(proc.pid, 'SIGKILL');
    await proc.exited;
  }

  /** Starts etcd member m again on its data dir; waits for it to be healthy unless told not to (no quorum yet). */
  async restartEtcd(m: number, options: { waitHealthy?: boolean } = {}): Promise<void> {
    if (this.etcd[m] && !this.etcd[m]!.status) throw new Error(`etcd m${m} is running`);
    const peers = Array.from({ length: ETCD_MEMBERS }, (_, k) => `m${k}=http://${serverIp(k)}:${ETCD_PEER_PORT}`).join(',');
    this.etcd[m] = this.#spawnEtcd(m, peers, 'existing');
    if (options.waitHealthy ?? true) await this.#waitEtcdHealthy(m);
  }

  /** The index of the etcd member that is Raft leader now (`etcdctl endpoint status`), undefined without one. */
  async etcdLeader(): Promise<number | undefined> {
    const live = this.etcd.map((p, m) => (p.status ? -1 : m)).filter((m) => m >= 0);
    if (live.length === 0) return undefined;
    const endpoints = live.map((m) => `http://${serverIp(m)}:${ETCD_CLIENT_PORT}`).join(',');
    const r = await this.etcdctl(live[0]!, ['endpoint', 'status', '-w', 'json', `--endpoints=${endpoints}`, '--command-timeout=2s'], true);
    if (!r.stdout.trim().startsWith('[')) return undefined;
    // Member ids are uint64: quote them before parsing, or they lose precision.
    const rows = JSON.parse(r.stdout.replace(/"(member_id|leader|cluster_id|raft_term|revision)":(\d+)/g, '"$1":"$2"')) as Array<{ Endpoint: string; Status: { header: { member_id: number | string }; leader: number | string } }>;
    const leader = rows.find((row) => String(row.Status.header.member_id) === String(row.Status.leader));
    return leader ? this.etcdEndpoints.indexOf(leader.Endpoint) : undefined;
  }

  /** A member index whose etcd runs (etcdctl is run in its namespace). */
  #liveMember(): number {
    const m = this.etcd.findIndex((p) => !p.status);
    if (m < 0) throw new Error('no etcd member is running');
    return m;
  }

  /** etcdctl (v3) inside member m's namespace, against every member. */
  async etcdctl(m: number, args: readonly string[], allowFailure = false): Promise<{ stdout: string; stderr: string; code: number }> {
    const hasEndpoints = args.some((a) => a.startsWith('--endpoints='));
    return this.lab.servers[m]!.exec(
      ['env', 'ETCDCTL_API=3', 'etcdctl', ...(hasEndpoints ? [] : [`--endpoints=${this.etcdEndpoints.join(',')}`]), ...args],
      { timeoutMs: 20_000, allowFailure },
    );
  }

  /** Waits until every running node lists `count` members in /api/v1/cluster. */
  async waitMembers(count: number, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let seen = '';
    while (Date.now() < deadline) {
      const views = await Promise.all(
        this.nodes
          .filter((n) => n.running)
          .map((n) => n.api<{ nodes?: Array<{ name: string }> }>('/api/v1/cluster').then((c) => c.nodes?.length ?? 0, () => -1)),
      );
      seen = views.join(',');
      if (views.every((v) => v === count)) return;
      await sleep(100);
    }
    throw new Error(`nodes see ${seen} members, want ${count}, after ${timeoutMs} ms`);
  }

  /** kill -9 of node i. */
  kill(i: number): Promise<void> {
    return this.#node(i).kill();
  }

  /** Starts node i again (after kill or stop) on its data dir. */
  async restart(i: number): Promise<void> {
    const node = this.#node(i);
    if (node.running) await node.kill();
    await node.start();
  }

  /** Node i's store traffic goes silent (both directions; the TCP connections stay open). */
  pauseStore(i: number): Promise<void> {
    return this.#node(i).proxyCommand('pause');
  }

  /** Node i's store connections are reset and new ones refused. */
  cutStore(i: number): Promise<void> {
    return this.#node(i).proxyCommand('cut');
  }

  resumeStore(i: number): Promise<void> {
    return this.#node(i).proxyCommand('resume');
  }

  /** Every lease record in etcd (the store itself, not a node's view). */
  async leases(): Promise<LeaseRecord[]> {
    const { stdout } = await this.etcdctl(this.#liveMember(), ['get', '--prefix', '/pxeha/leases/', '--print-value-only']);
    return stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as LeaseRecord);
  }

  /**
   * Every lease record now and every change etcd still keeps (the tests run no compaction, so
   * all of them), read by a small script in a server namespace through the etcd store.
   */
  async leaseHistory(timeoutMs = 60_000): Promise<{ leases: LeaseRecord[]; history: LeaseHistory }> {
    const m = this.#liveMember();
    const source = `
import { openStore } from ${JSON.stringify(srcUrl('src/store/open.ts'))};
const store = await openStore({ kind: 'etcd', endpoints: ${JSON.stringify(this.etcdEndpoints)}, requestTimeoutMs: 10000 });
const prefix = '/pxeha/leases/';
const current = await store.range(prefix, { prefix: true });
const toRevision = current.revision ?? 0;
const last = Math.max(0, ...current.kvs.map((kv) => kv.modRevision));
const byKey = {};
if (last >= 1) {
  const watcher = await store.watch(prefix, { prefix: true, startRevision: 1 });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('history: revision ' + last + ' not seen')), ${timeoutMs - 5000});
    watcher.on('events', (events, revision) => {
      for (const e of events) (byKey[e.kv.key] ??= []).push({ revision, record: e.type === 'put' ? JSON.parse(e.kv.value) : undefined });
      if (revision >= last) { clearTimeout(timer); resolve(); }
    });
    watcher.on('error', (err) => { clearTimeout(timer); reject(err); });
  });
  await watcher.cancel();
}
await store.close();
// A pipe is written asynchronously: exit only once the whole line is out.
process.stdout.write(JSON.stringify({ leases: current.kvs.map((kv) => JSON.parse(kv.value)), byKey, toRevision }) + '\\n', () => process.exit(0));
`;
    const proc = this.lab.servers[m]!.spawnNodeScript(source, { label: 'lease history reader' });
    // A cancelled timer: a pending one would keep the test process alive after the suite.
    const timeout = new AbortController();
    const status = await Promise.race([proc.exited, sleep(timeoutMs, undefined, { signal: timeout.signal }).catch(() => undefined)]);
    timeout.abort();
    if (!status) {
      await proc.stop(1000);
      throw new Error(`lease history reader timed out\n${proc.describe()}`);
    }
    const line = proc.lines().find((l) => l.startsWith('{"leases"'));
    if (status.code !== 0 || !line) throw new Error(`lease history reader failed\n${proc.describe()}`);
    const parsed = JSON.parse(line) as { leases: LeaseRecord[]; byKey: Record<string, LeaseVersion[]>; toRevision: number };
    return {
      leases: parsed.leases,
      history: { byKey: new Map(Object.entries(parsed.byKey)), fromRevision: 1, toRevision: parsed.toRevision },
    };
  }

  /**
   * The store-wide invariant, one line per violation (empty when sound): no address's valid
   * binding ever moved to another client (over etcd's whole history), no client holds two valid
   * bindings in a subnet, and no address is bound to two clients in the final state.
   */
  async duplicateBindings(nowMs = Date.now()): Promise<{ violations: string[]; leases: LeaseRecord[] }> {
    const { leases, history } = await this.leaseHistory();
    const violations = leaseViolations(leases, history, nowMs);
    const byIp = new Map<string, Set<string>>();
    for (const l of leases) {
      if (l.state !== 'bound' || l.expiresAtMs <= nowMs) continue;
      const k = `${l.subnet}/${l.ip}`;
      byIp.set(k, (byIp.get(k) ?? new Set()).add(l.clientKey));
    }
    for (const [k, holders] of byIp) if (holders.size > 1) violations.push(`${k} bound to ${[...holders].join(', ')}`);
    return { violations, leases };
  }

  /** Output of every node, proxy and etcd member, for a failure report. */
  describe(): string {
    return [...this.nodes.map((n) => n.describe()), ...this.etcd.map((p) => p.describe(2000))].join('\n');
  }

  /** Stops everything (sandbox cleanup: processes by PID, namespaces) and removes etcd's data. */
  async cleanup(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Nodes before the etcd members they would otherwise retry against.
    await Promise.all(this.nodes.map((n) => n.kill()));
    await this.sandbox.cleanup();
    rmSync(this.etcdDir, { recursive: true, force: true });
    liveEtcdDirs.delete(this.etcdDir);
  }

  #node(i: number): HaNode {
    const node = this.nodes[i];
    if (!node) throw new Error(`no node ${i} (the lab has ${this.nodes.length})`);
    return node;
  }
}

const ETCD_BASE_DIR = existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();

/**
 * Removes etcd data dirs of labs whose sandbox is gone (its namespaces deleted): a run killed by
 * a signal removes its namespaces (Sandbox) but cannot run the 'exit' hook below.
 */
function sweepStaleEtcdDirs(): void {
  let live: string;
  try {
    live = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  } catch {
    return;
  }
  for (const name of readdirSync(ETCD_BASE_DIR)) {
    const id = /^pxt-([0-9a-f]{6})-ha-etcd$/.exec(name)?.[1];
    if (id && !live.includes(`pxt-${id}-`)) rmSync(path.join(ETCD_BASE_DIR, name), { recursive: true, force: true });
  }
}

const liveEtcdDirs = new Set<string>();
process.on('exit', () => {
  for (const dir of liveEtcdDirs) rmSync(dir, { recursive: true, force: true });
});
