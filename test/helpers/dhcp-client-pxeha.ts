/**
 * pxeha as the server that real DHCP clients talk to in the integration tests: one node run
 * through its command line (`pxeha apply`, `pxeha serve`, `pxeha leases`) inside a server
 * namespace, exactly as an operator runs it, with its JSON log kept across restarts.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import type { LeaseRecord } from '../../src/dhcp/lease-record.js';
import { REPO_ROOT, run, type ExitStatus, type Netns, type NetnsProcess } from './netns.js';

const PXEHA = path.join(REPO_ROOT, 'bin', 'pxeha.js');

/** One line of pxeha's pino log. */
export interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

export interface PxehaNodeOptions {
  /** Node name (node.yaml `name`). */
  name: string;
  /** Created if missing; holds node.yaml, cluster.yaml and the data dir. */
  workDir: string;
  /** The cluster document; written as JSON, which is YAML. */
  cluster: unknown;
  interfaces?: readonly string[];
  /** Extra node.yaml fields (e.g. advertiseAddress). */
  node?: Record<string, unknown>;
}

/** The boot files a cluster document names (`boot.files`). */
function bootFilesOf(cluster: unknown): string[] {
  const files = (cluster as { boot?: { files?: Record<string, unknown> } }).boot?.files ?? {};
  return Object.values(files).filter((f): f is string => typeof f === 'string');
}

function parseLogLine(line: string): LogLine | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    return JSON.parse(line) as LogLine;
  } catch {
    return undefined;
  }
}

export class PxehaNode {
  readonly nodeFile: string;
  readonly clusterFile: string;
  readonly dataDir: string;
  readonly artifactsDir: string;
  /** Every run of this node, oldest first. */
  readonly runs: NetnsProcess[] = [];

  private constructor(
    readonly ns: Netns,
    readonly options: PxehaNodeOptions,
  ) {
    mkdirSync(options.workDir, { recursive: true });
    this.nodeFile = path.join(options.workDir, 'node.yaml');
    this.clusterFile = path.join(options.workDir, 'cluster.yaml');
    this.dataDir = path.join(options.workDir, 'data');
    this.artifactsDir = path.join(options.workDir, 'artifacts');
  }

  /**
   * Writes node.yaml and cluster.yaml and applies the cluster document to the store. The
   * node's artifacts directory gets a placeholder for every boot file of the applied
   * configuration (defaults included), so the node reports ready (/healthz) whatever the
   * host's ipxe package ships.
   */
  static async create(ns: Netns, options: PxehaNodeOptions): Promise<PxehaNode> {
    const node = new PxehaNode(ns, options);
    mkdirSync(node.artifactsDir, { recursive: true });
    const nodeConfig = {
      name: options.name,
      dataDir: node.dataDir,
      artifactsDir: node.artifactsDir,
      store: { kind: 'embedded' },
      dhcp: { interfaces: options.interfaces ?? ['eth0'] },
      log: { level: 'debug' },
      ...options.node,
    };
    writeFileSync(node.nodeFile, `${JSON.stringify(nodeConfig, null, 2)}\n`);
    writeFileSync(node.clusterFile, `${JSON.stringify(options.cluster, null, 2)}\n`);
    // Before `serve`: the embedded store is held by one process while a node runs.
    await node.cli(['apply', '-f', node.clusterFile, '--config', node.nodeFile]);
    const { stdout } = await node.cli(['config', 'show', '--config', node.nodeFile]);
    const applied = JSON.parse(stdout) as { config: unknown };
    for (const file of bootFilesOf(applied.config)) writeFileSync(path.join(node.artifactsDir, file), `placeholder ${file}\n`);
    return node;
  }

  /** Runs a pxeha command in the host namespace (apply/leases touch files and the API socket only). */
  cli(args: readonly string[]): Promise<{ stdout: string; stderr: string }> {
    return run([process.execPath, PXEHA, ...args], { timeoutMs: 20_000 });
  }

  get current(): NetnsProcess | undefined {
    return this.runs.at(-1);
  }

  /** Starts `pxeha serve` in the namespace and waits until it serves DHCP and its API. */
  async start(): Promise<NetnsProcess> {
    if (this.current && !this.current.status) throw new Error(`${this.options.name} is already running`);
    const proc = this.ns.spawn([process.execPath, PXEHA, 'serve', '--config', this.nodeFile], {
      label: `${this.ns.name}: pxeha serve #${this.runs.length + 1}`,
    });
    this.runs.push(proc);
    await proc.waitForLine((l) => parseLogLine(l)?.msg === 'dhcp listening', { timeoutMs: 20_000 });
    await proc.waitForLine((l) => parseLogLine(l)?.msg === 'node started', { timeoutMs: 20_000 });
    return proc;
  }

  /** SIGTERM (graceful: decisions in flight finish, sockets close) or SIGKILL (a crash). */
  async stop(signal: 'SIGTERM' | 'SIGKILL'): Promise<ExitStatus> {
    const proc = this.current;
    if (!proc || proc.status) throw new Error(`${this.options.name} is not running`);
    if (signal === 'SIGTERM') return proc.stop(10_000);
    process.kill(proc.pid, 'SIGKILL');
    return proc.exited;
  }

  /** Log lines of every run (or only of the current one). */
  logs(options: { currentRunOnly?: boolean } = {}): LogLine[] {
    const runs = options.currentRunOnly ? this.runs.slice(-1) : this.runs;
    return runs.flatMap((r) =>
      r
        .lines()
        .map(parseLogLine)
        .filter((l): l is LogLine => l !== undefined),
    );
  }

  /** `dhcp reply` log lines (debug): request type, reply type, ip, destination. */
  replies(filter: { mac?: string; reply?: string } = {}): LogLine[] {
    return this.logs().filter(
      (l) =>
        l.msg === 'dhcp reply' &&
        (filter.mac === undefined || l['mac'] === filter.mac) &&
        (filter.reply === undefined || l['reply'] === filter.reply),
    );
  }

  /** `dhcp drop` log lines (debug), each with its `reason`. */
  drops(filter: { mac?: string; reason?: string } = {}): LogLine[] {
    return this.logs().filter(
      (l) =>
        l.msg === 'dhcp drop' &&
        (filter.mac === undefined || l['mac'] === filter.mac) &&
        (filter.reason === undefined || l['reason'] === filter.reason),
    );
  }

  /** Waits for a log line of the current run matching `check`. */
  async waitForLog(check: (l: LogLine) => boolean, timeoutMs = 15_000): Promise<LogLine> {
    const proc = this.current;
    if (!proc) throw new Error(`${this.options.name} has not been started`);
    const line = await proc.waitForLine(
      (l) => {
        const parsed = parseLogLine(l);
        return parsed !== undefined && check(parsed);
      },
      { timeoutMs },
    );
    return parseLogLine(line) as LogLine;
  }

  /**
   * `pxeha leases -o json`: through the running node's API socket, or from the store file
   * when the node is stopped. One CLI run costs a second of process start-up, so tests use it
   * where the command itself is the point; `leases()` is the fast read.
   */
  async leasesViaCli(): Promise<LeaseRecord[]> {
    const { stdout } = await this.cli(['leases', '--config', this.nodeFile, '-o', 'json']);
    return sortLeases(JSON.parse(stdout) as LeaseRecord[]);
  }

  /** The running node's leases (GET /api/v1/leases on its socket), or the CLI's when stopped. */
  async leases(): Promise<LeaseRecord[]> {
    if (!this.current || this.current.status) return this.leasesViaCli();
    return sortLeases(JSON.parse(await this.apiGet('/api/v1/leases')) as LeaseRecord[]);
  }

  /** The running node's Prometheus text, from its API socket. */
  metrics(): Promise<string> {
    return this.apiGet('/metrics');
  }

  private apiGet(urlPath: string): Promise<string> {
    return apiGet(this.dataDir, urlPath);
  }

}

/** The CLI's order: subnet, then address numerically. */
function sortLeases(records: LeaseRecord[]): LeaseRecord[] {
  const n = (ip: string): number => ip.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
  return records.sort((a, b) => a.subnet.localeCompare(b.subnet) || n(a.ip) - n(b.ip));
}

/** The value of one sample in Prometheus text, 0 when absent. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const labelText = line.slice(name.length).match(/^\{([^}]*)\}/)?.[1] ?? '';
    const have = labelText === '' ? [] : labelText.split(',');
    if (want.every((w) => have.includes(w))) return Number(line.trim().split(/\s+/).at(-1));
  }
  return 0;
}

/** GET from a node's API over its Unix socket (reachable from the host whatever the namespace). */
export function apiGet(dataDir: string, urlPath: string): Promise<string> {
  const socketPath = path.join(dataDir, 'pxeha.sock');
  return new Promise((resolve, reject) => {
    const req = http.get({ socketPath, path: urlPath, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`GET ${urlPath}: ${res.statusCode} ${body}`))));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${urlPath} timed out`)));
    req.on('error', reject);
  });
}
