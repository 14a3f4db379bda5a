/**
 * `pxeha cluster status`, `pxeha backup` and `pxeha restore`.
 *
 * Cluster status and backup ask a running node when there is one (its Unix socket, or
 * --server), which also works for an embedded store the node holds; otherwise they open the
 * store directly. Restore always writes to the store directly: into an etcd cluster (nodes may
 * run; they pick the state up through their watches) or into an embedded store no node holds.
 */
import { readFile, writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { Option } from 'commander';
import Table from 'cli-table3';
import { ApiClient } from '../api/client.js';
import { serverEndpoint, type AccessFlags } from './access.js';
import { formatBackup, parseBackup, restoreBackup, takeBackup } from '../cluster/backup.js';
import {
  clusterStatusOf,
  LEADER_ELECTION,
  leaderNameOf,
  MEMBERS_PREFIX,
  parseMemberRecord,
  type ClusterStatus,
  type MemberView,
} from '../cluster/member-record.js';
import type { PlacementStatus, RebalanceResult } from '../cluster/placement.js';
import { readClusterConfig } from '../config/cluster-store.js';
import { loadNodeConfig } from '../config/load.js';
import { PxehaError } from '../errors.js';
import { apiSocketOf, storeConfigOf } from '../node/node.js';
import { leader } from '../store/election.js';
import { openStore, type StoreConfig } from '../store/open.js';
import type { Store } from '../store/store.js';

type Flags = AccessFlags;

type Target = { kind: 'api'; client: ApiClient } | { kind: 'store'; store: StoreConfig; clockSkewWarnMs: number };

function targetFlags(cmd: Command): Command {
  return cmd
    .option('-c, --config <file>', 'node configuration: its running node, or else its store')
    .option('--store <path>', 'embedded store file to use directly')
    .option('--server <url>', 'a node API to use, e.g. http://10.99.0.1:8080 or https://10.99.0.1:8443')
    .option('--token <token>', 'API token for --server (default: $PXEHA_TOKEN)')
    .option('--cacert <file>', 'CA certificate (PEM) that signed an https --server');
}

/** Where to go: a node API, or a store (when preferApi and no node answers). */
async function resolveTarget(flags: Flags, preferApi: boolean): Promise<Target> {
  if (flags.server) {
    if (!preferApi) throw new PxehaError('PXE_ERR_BAD_REQUEST', 'this command writes to a store: use --config or --store, not --server');
    return { kind: 'api', client: new ApiClient(serverEndpoint({ ...flags, server: flags.server })) };
  }
  if (flags.store) return { kind: 'store', store: { kind: 'embedded', path: flags.store }, clockSkewWarnMs: 2000 };
  if (flags.config) {
    const node = await loadNodeConfig(flags.config);
    const client = new ApiClient({ socketPath: apiSocketOf(node) });
    const store = storeConfigOf(node);
    if (await client.reachable()) {
      if (preferApi) return { kind: 'api', client };
      if (store.kind === 'embedded') {
        throw new PxehaError('PXE_ERR_CONFLICT', `node ${node.name} is running and holds its embedded store ${store.path}: stop it first`);
      }
    }
    return { kind: 'store', store, clockSkewWarnMs: node.cluster.clockSkewWarnMs };
  }
  throw new PxehaError('PXE_ERR_CONFIG_INVALID', 'say where the cluster is: --config NODE.yaml, --store PATH or --server URL');
}

/** A running node's API: placement and rebalance are computed by a node (membership, holdings). */
async function nodeClient(flags: Flags): Promise<ApiClient> {
  const target = await resolveTarget(flags, true);
  if (target.kind !== 'api') throw new PxehaError('PXE_ERR_NOT_FOUND', 'no running node answers: start one, or pass --server URL of a node');
  return target.client;
}

async function withStore<T>(config: StoreConfig, fn: (store: Store) => Promise<T>): Promise<T> {
  const store = await openStore(config);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/** The cluster read straight from the store, by a CLI that is no member (no clock estimates). */
export async function clusterStatusFromStore(store: Store, clockSkewWarnMs: number, nowMs = Date.now()): Promise<ClusterStatus> {
  const [{ kvs }, config, leaderKv, revision] = await Promise.all([
    store.range(MEMBERS_PREFIX, { prefix: true }),
    readClusterConfig(store),
    leader(store, LEADER_ELECTION),
    store.revision(),
  ]);
  const members = kvs.flatMap((kv): MemberView[] => {
    const record = parseMemberRecord(kv.value);
    return record ? [{ record, modRevision: kv.modRevision }] : [];
  });
  return clusterStatusOf({
    observer: '(pxeha cli)',
    observedAtMs: nowMs,
    members,
    leaderName: leaderNameOf(leaderKv?.value),
    configRevision: config.revision,
    clockSkewThresholdMs: clockSkewWarnMs,
    store: { kind: store.kind, reachable: true, revision },
    degraded: false,
    observerIsNode: false,
  });
}

export function formatClusterStatus(status: ClusterStatus): string {
  const table = new Table({
    head: ['node', 'addresses', 'leader', 'config rev', 'clock offset', 'version', 'load', 'leases'],
    style: { head: [], border: [] },
  });
  for (const n of status.nodes) {
    table.push([
      n.name,
      n.addresses.map((a) => (n.httpPort ? `${a}:${n.httpPort}` : a)).join(' '),
      n.leader ? 'leader' : '',
      `${n.configRevision}${n.behind ? ' (behind)' : ''}`,
      n.clockOffsetMs === undefined ? '?' : `${n.clockOffsetMs >= 0 ? '+' : ''}${n.clockOffsetMs} ms`,
      n.version,
      String(n.load.loadAvg1),
      String(n.load.leaseRecords),
    ]);
  }
  const storeLine = status.store.reachable
    ? `store: ${status.store.kind}, reachable, revision ${status.store.revision ?? '?'}`
    : `store: ${status.store.kind}, UNREACHABLE${status.store.error ? ` (${status.store.error})` : ''}`;
  return [
    table.toString(),
    `leader: ${status.leader ?? '(none)'}`,
    `configuration revision in the store: ${status.configRevision}`,
    `clock skew: ${status.clockSkewMs === undefined ? 'unknown' : `${status.clockSkewMs} ms`} (warn above ${status.clockSkewThresholdMs} ms)`,
    storeLine,
    `seen by: ${status.observer}${status.degraded ? ' (DEGRADED: cannot reach the store)' : ''}`,
    ...status.warnings.map((w) => `warning: ${w}`),
  ].join('\n');
}

export function formatPlacement(p: PlacementStatus): string {
  const nodes = new Table({ head: ['node', 'weight', 'placed', 'buckets', 'machines'], style: { head: [], border: [] } });
  for (const n of p.nodes) nodes.push([n.name, String(n.weight), n.placed ? 'yes' : 'NO (waits for rebalance)', `${n.buckets}/256`, String(n.machines)]);
  const machines = new Table({ head: ['machine', 'mac', 'profile', 'boot server', 'fallbacks', 'last served by'], style: { head: [], border: [] } });
  for (const m of p.machines) {
    machines.push([m.name ?? '(discovered)', m.mac, m.profile ?? '', `${m.server ?? '(none)'}${m.complete ? '' : ' (no node holds all files)'}`, m.fallbacks.join(', '), m.lastNode ?? '']);
  }
  return [
    `rebalance: ${p.mode}${p.record ? `; placed ${p.record.members.join(', ')} (${p.record.by}, ${new Date(p.record.atMs).toISOString()})` : ''}`,
    nodes.toString(),
    p.machines.length > 0 ? machines.toString() : 'no machines known yet',
  ].join('\n');
}

export function registerClusterCommands(program: Command): void {
  const cluster = program.command('cluster').description('the cluster: members, leader, health');
  targetFlags(
    cluster
      .command('status', { isDefault: true })
      .description('nodes, leader, applied configuration revision per node, clock skew, store health')
      .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table')),
  ).action(async (opts: Flags & { output: 'table' | 'json' }) => {
    const target = await resolveTarget(opts, true);
    const status =
      target.kind === 'api'
        ? await target.client.call<ClusterStatus>('GET', '/api/v1/cluster')
        : await withStore(target.store, (store) => clusterStatusFromStore(store, target.clockSkewWarnMs));
    console.log(opts.output === 'json' ? JSON.stringify(status, null, 2) : formatClusterStatus(status));
  });

  targetFlags(
    cluster
      .command('placement')
      .description('which node serves which machines: boot server, fallbacks, share of clients per node')
      .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table')),
  ).action(async (opts: Flags & { output: 'table' | 'json' }) => {
    const client = await nodeClient(opts);
    const placement = await client.call<PlacementStatus>('GET', '/api/v1/cluster/placement');
    console.log(opts.output === 'json' ? JSON.stringify(placement, null, 2) : formatPlacement(placement));
  });

  targetFlags(
    cluster
      .command('rebalance')
      .description('give every healthy node its share of clients again (matters with dhcp.rebalance: manual)')
      .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table')),
  ).action(async (opts: Flags & { output: 'table' | 'json' }) => {
    const client = await nodeClient(opts);
    const result = await client.call<RebalanceResult>('POST', '/api/v1/cluster/rebalance');
    if (opts.output === 'json') {
      console.log(JSON.stringify(result, null, 2));
      return;
    }
    console.log(`placed: ${result.record.members.join(', ')} (store revision ${result.record.revision})`);
    if (result.mode === 'auto') console.log('rebalance is automatic (cluster dhcp.rebalance: auto): every healthy node already has its share');
    console.log(result.moved.length === 0 ? 'no machine moves' : `${result.moved.length} machine(s) move:`);
    for (const m of result.moved) console.log(`  ${m.name ?? m.mac} (${m.mac}): ${m.from ?? '(none)'} -> ${m.to ?? '(none)'}`);
  });

  targetFlags(
    program
      .command('backup')
      .description('write a consistent snapshot of all cluster state (one revision) to stdout or a file')
      .option('-f, --file <file>', 'write here instead of stdout'),
  ).action(async (opts: Flags & { file?: string }) => {
    const target = await resolveTarget(opts, true);
    let text: string;
    if (target.kind === 'api') {
      // The client parses JSON bodies; a backup of no keys is one JSON line and arrives parsed.
      const raw = await target.client.call<unknown>('GET', '/api/v1/backup');
      text = typeof raw === 'string' ? raw : `${JSON.stringify(raw)}\n`;
    } else {
      text = await withStore(target.store, async (store) => formatBackup(await takeBackup(store)));
    }
    const backup = parseBackup(text, 'snapshot'); // never hand out a file restore would refuse
    if (opts.file) await writeFile(opts.file, text, { mode: 0o600 });
    else process.stdout.write(text);
    console.error(
      `backup of ${backup.header.keys} keys at revision ${backup.header.revision}${opts.file ? ` written to ${opts.file}` : ''}`,
    );
  });

  targetFlags(
    program
      .command('restore <file>')
      .description('rebuild cluster state from a backup into an empty store (embedded or etcd)')
      .option('--force', 'replace the pxeha keys the store already holds'),
  ).action(async (file: string, opts: Flags & { force?: boolean }) => {
    const backup = parseBackup(
      await readFile(file, 'utf8').catch((err: Error) => {
        throw new PxehaError('PXE_ERR_CONFIG_READ', `cannot read ${file}: ${err.message}`);
      }),
      file,
    );
    const target = await resolveTarget(opts, false);
    if (target.kind !== 'store') throw new PxehaError('PXE_ERR_INTERNAL', 'restore needs a store');
    const result = await withStore(target.store, (store) => restoreBackup(store, backup, { force: opts.force === true }));
    console.log(
      `restored ${result.keys} keys from ${file} (taken at revision ${backup.header.revision}); store now at revision ${result.revision}`,
    );
  });
}
