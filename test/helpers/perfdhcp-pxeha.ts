/**
 * pxeha as the server under perfdhcp load: configuration files in a temporary directory,
 * `pxeha apply` before the server starts (the embedded store is single-process while it runs),
 * `pxeha serve` inside a namespace, and afterwards the leases and their history read back
 * from the store, with the invariants every load must keep.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { LEASE_PREFIX, type LeaseRecord } from '../../src/dhcp/lease-record.js';
import { openStore } from '../../src/store/open.js';
import type { Store, WatchEvent } from '../../src/store/store.js';
import { REPO_ROOT, run, type Netns, type NetnsProcess } from './netns.js';
import { ServerProcess } from './server-process.js';

export const PXEHA_BIN = path.join(REPO_ROOT, 'bin', 'pxeha.js');

/** The cluster document as `pxeha apply -f` reads it (see docs/configuration.md). */
export interface ClusterDocument {
  subnets: Array<{
    name: string;
    subnet: string;
    pools?: Array<{ start: string; end: string }>;
    leaseSeconds?: number;
    options?: Record<string, unknown>;
  }>;
  dhcp?: Record<string, unknown>;
}

export interface PxehaServerOptions {
  /** Node name; default 'perf1'. */
  name?: string;
  interfaces?: string[];
  cluster: ClusterDocument;
  /** Default 'info': the level 'dhcp listening' is logged at. */
  logLevel?: 'warn' | 'info' | 'debug';
  /** Extra node options for `pxeha serve`, e.g. ['--cpu-prof', '--cpu-prof-dir=DIR']. */
  nodeArgs?: string[];
}

/** A pxeha log line (pino JSON). */
export interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

export class PxehaServer extends ServerProcess {
  private constructor(
    proc: NetnsProcess,
    workDir: string,
    readonly storePath: string,
  ) {
    super(proc, workDir);
  }

  /**
   * Writes node.yaml and cluster.yaml into a fresh temporary directory, applies the cluster
   * configuration, starts `pxeha serve` in ns and waits for every interface's 'dhcp listening'.
   */
  static async start(ns: Netns, options: PxehaServerOptions): Promise<PxehaServer> {
    const workDir = ns.tempDir('pxt-pxeha-');
    const dataDir = path.join(workDir, 'data');
    const interfaces = options.interfaces ?? ['eth0'];
    const nodeFile = path.join(workDir, 'node.yaml');
    const clusterFile = path.join(workDir, 'cluster.yaml');
    // JSON is YAML: no serializer needed, and the files stay readable in a failure report.
    await writeFile(
      nodeFile,
      JSON.stringify(
        {
          name: options.name ?? 'perf1',
          dataDir,
          store: { kind: 'embedded' },
          dhcp: { interfaces },
          log: { level: options.logLevel ?? 'info' },
        },
        null,
        2,
      ),
    );
    await writeFile(clusterFile, JSON.stringify(options.cluster, null, 2));
    await run([process.execPath, PXEHA_BIN, 'apply', '-f', clusterFile, '--config', nodeFile], { timeoutMs: 60_000 });
    const proc = ns.spawn([process.execPath, ...(options.nodeArgs ?? []), PXEHA_BIN, 'serve', '--config', nodeFile], { label: `pxeha serve in ${ns.name}` });
    const server = new PxehaServer(proc, workDir, path.join(dataDir, 'store.db'));
    await proc.waitUntil(
      () => {
        const listening = server.logLines().filter((l) => l.msg === 'dhcp listening').length;
        return listening >= interfaces.length ? true : undefined;
      },
      { timeoutMs: 60_000 },
    );
    return server;
  }

  /** Every JSON line pxeha has logged so far. */
  logLines(): LogLine[] {
    return this.proc.lines().flatMap((line) => {
      try {
        const parsed = JSON.parse(line) as LogLine;
        return typeof parsed.level === 'number' ? [parsed] : [];
      } catch {
        return [];
      }
    });
  }

  /** Log lines at warn (40) or above, and anything on stderr: what a load must not produce. */
  problems(): string[] {
    const logged = this.logLines()
      .filter((l) => l.level >= 40)
      .map((l) => JSON.stringify(l));
    const stderr = this.proc.stderr().trim();
    return stderr ? [...logged, `stderr: ${stderr}`] : logged;
  }

  /** `pxeha leases --store … -o json`; only after stop(). */
  async leases(): Promise<LeaseRecord[]> {
    const { stdout } = await run([process.execPath, PXEHA_BIN, 'leases', '--store', this.storePath, '-o', 'json'], {
      timeoutMs: 60_000,
    });
    return JSON.parse(stdout) as LeaseRecord[];
  }

  /** The lease history the store still keeps (see readLeaseHistory); only after stop(). */
  history(): Promise<LeaseHistory> {
    return readLeaseHistory(this.storePath);
  }
}

// ---------------------------------------------------------------------------------------------
// Lease history and invariants

export interface LeaseVersion {
  revision: number;
  /** undefined for a delete. */
  record: LeaseRecord | undefined;
}

export interface LeaseHistory {
  /** Versions per store key (`/pxeha/leases/<subnet>/<ip>`), in revision order. */
  byKey: Map<string, LeaseVersion[]>;
  /** First revision covered: 1 when the whole history is there. */
  fromRevision: number;
  toRevision: number;
}

/**
 * Reads every lease change the store still has, by watching the lease prefix from revision 1
 * (or, when that is compacted, from the oldest revision kept: the embedded store keeps about
 * the last 10 000 revisions).
 */
export async function readLeaseHistory(storePath: string): Promise<LeaseHistory> {
  const store = await openStore({ kind: 'embedded', path: storePath });
  try {
    const toRevision = await store.revision();
    // Revisions without a lease change (configuration writes) send no lease event, so the
    // watch is complete once it has delivered the newest lease key's revision.
    const current = await store.range(LEASE_PREFIX, { prefix: true });
    const lastLeaseRevision = Math.max(0, ...current.kvs.map((kv) => kv.modRevision));
    let from = 1;
    let result = await watchUntil(store, from, lastLeaseRevision);
    const oldest = 'error' in result ? /before (\d+) is compacted/.exec(result.error.message)?.[1] : undefined;
    if (oldest !== undefined) {
      from = Number(oldest);
      result = await watchUntil(store, from, lastLeaseRevision);
    }
    if ('error' in result) throw result.error;
    return { byKey: result.byKey, fromRevision: from, toRevision };
  } finally {
    await store.close();
  }
}

async function watchUntil(
  store: Store,
  startRevision: number,
  lastRevision: number,
): Promise<{ byKey: Map<string, LeaseVersion[]> } | { error: Error }> {
  const byKey = new Map<string, LeaseVersion[]>();
  if (lastRevision < startRevision) return { byKey };
  const watcher = await store.watch(LEASE_PREFIX, { prefix: true, startRevision });
  try {
    return await new Promise((resolve) => {
      const timer = setTimeout(() => resolve({ error: new Error(`lease history: revision ${lastRevision} not seen after 30 s`) }), 30_000);
      watcher.on('events', (events: WatchEvent[], revision: number) => {
        for (const e of events) {
          let versions = byKey.get(e.kv.key);
          if (!versions) byKey.set(e.kv.key, (versions = []));
          versions.push({ revision, record: e.type === 'put' ? (JSON.parse(e.kv.value) as LeaseRecord) : undefined });
        }
        if (revision >= lastRevision) {
          clearTimeout(timer);
          resolve({ byKey });
        }
      });
      watcher.on('error', (error: Error) => {
        clearTimeout(timer);
        resolve({ error });
      });
    });
  } finally {
    await watcher.cancel();
  }
}

/**
 * Violations of the address invariants, one line each (empty when sound):
 * - an address whose binding moved to another client while it was still valid (neither
 *   released, declined nor expired) — in the retained history;
 * - a client holding two valid bindings in one subnet — in the final state.
 */
export function leaseViolations(leases: readonly LeaseRecord[], history: LeaseHistory | undefined, nowMs: number): string[] {
  const out: string[] = [];
  for (const [key, versions] of history?.byKey ?? []) {
    for (let i = 1; i < versions.length; i++) {
      const prev = versions[i - 1]?.record;
      const next = versions[i]?.record;
      if (!prev || !next || prev.state !== 'bound' || prev.clientKey === next.clientKey) continue;
      const writtenAtMs = next.state === 'bound' ? (next.boundAtMs ?? nowMs) : nowMs;
      if (prev.expiresAtMs > writtenAtMs) {
        out.push(`${key}: bound to ${prev.clientKey} until ${prev.expiresAtMs}, then ${next.state} to ${next.clientKey} at revision ${versions[i]?.revision}`);
      }
    }
  }
  const holders = new Map<string, string[]>();
  for (const l of leases) {
    if (l.state !== 'bound' || l.expiresAtMs <= nowMs) continue;
    const who = `${l.subnet}/${l.clientKey}`;
    holders.set(who, [...(holders.get(who) ?? []), l.ip]);
  }
  for (const [who, ips] of holders) if (ips.length > 1) out.push(`${who} holds ${ips.length} bindings: ${ips.join(', ')}`);
  return out;
}
