/**
 * The `pxeha` command line. Each command is a thin shell over library functions; errors are
 * printed with their stable code and the path of a bad field, and set a non-zero exit status.
 */
import { Command, Option } from 'commander';
import Table from 'cli-table3';
import { readClusterConfig, writeClusterConfig } from '../config/cluster-store.js';
import { loadClusterConfig, loadNodeConfig } from '../config/load.js';
import { listLeases } from '../api/routes.js';
import { LocalApiClient } from '../api/local-client.js';
import type { ClusterConfig } from '../config/schema.js';
import type { LeaseRecord } from '../dhcp/lease-record.js';
import { ConfigError, PxehaError } from '../errors.js';
import { apiSocketOf, startNode, storePathOf } from '../node/node.js';
import { createLogger } from '../obs/log.js';
import { openStore } from '../store/open.js';
import type { Store } from '../store/store.js';
import { ipToInt } from '../util/ipv4.js';

interface StoreFlags {
  config?: string;
  store?: string;
}

/** What the read/write commands need, from a running node's API or from the store itself. */
interface ClusterAccess {
  readConfig(): Promise<{ revision: number; config: ClusterConfig }>;
  writeConfig(config: ClusterConfig): Promise<number>;
  leases(subnet?: string): Promise<LeaseRecord[]>;
  close(): Promise<void>;
}

function storeAccess(store: Store): ClusterAccess {
  return {
    readConfig: () => readClusterConfig(store),
    writeConfig: (config) => writeClusterConfig(store, config),
    leases: (subnet) => listLeases(store, subnet),
    close: () => store.close(),
  };
}

function apiAccess(client: LocalApiClient): ClusterAccess {
  return {
    readConfig: () => client.call('GET', '/api/v1/config/cluster'),
    writeConfig: async (config) => (await client.call<{ revision: number }>('PUT', '/api/v1/config/cluster', config)).revision,
    leases: (subnet) => client.call('GET', `/api/v1/leases${subnet ? `?subnet=${encodeURIComponent(subnet)}` : ''}`),
    close: async () => {},
  };
}

/**
 * --store opens a store file directly; --config asks the node if it is running (the embedded
 * store is held by one process at a time) and opens its store otherwise.
 */
async function openAccess(flags: StoreFlags): Promise<ClusterAccess> {
  if (flags.store) return storeAccess(await openStore({ kind: 'embedded', path: flags.store }));
  if (flags.config) {
    const node = await loadNodeConfig(flags.config);
    const client = new LocalApiClient(apiSocketOf(node));
    if (await client.reachable()) return apiAccess(client);
    return storeAccess(await openStore({ kind: 'embedded', path: storePathOf(node) }));
  }
  throw new PxehaError('PXE_ERR_CONFIG_INVALID', 'say which store to use: --config NODE.yaml or --store PATH');
}

async function withAccess<T>(flags: StoreFlags, fn: (access: ClusterAccess) => Promise<T>): Promise<T> {
  const access = await openAccess(flags);
  try {
    return await fn(access);
  } finally {
    await access.close();
  }
}

function storeOptions(cmd: Command): Command {
  return cmd
    .option('-c, --config <file>', 'node configuration: its running node, or else its store')
    .option('--store <path>', 'embedded store file to use directly');
}

export function buildProgram(): Command {
  const program = new Command('pxeha')
    .description('Highly available network boot: DHCP, TFTP and HTTP boot on a replicated store')
    .showHelpAfterError()
    .exitOverride();

  program
    .command('serve')
    .description('run a pxeha node')
    .requiredOption('-c, --config <file>', 'node configuration (YAML)')
    .action(async (opts: { config: string }) => {
      const config = await loadNodeConfig(opts.config);
      const log = createLogger({ level: config.log.level, node: config.name });
      const node = await startNode(config, log);
      await new Promise<void>((resolve) => {
        const stop = (signal: string): void => {
          log.info({ signal }, 'stopping');
          resolve();
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      });
      await node.close();
    });

  storeOptions(
    program
      .command('apply')
      .description('validate a cluster configuration file and write it into the store')
      .requiredOption('-f, --file <file>', 'cluster configuration (YAML)')
      .option('--dry-run', 'validate only'),
  ).action(async (opts: StoreFlags & { file: string; dryRun?: boolean }) => {
    const cluster = await loadClusterConfig(opts.file);
    if (opts.dryRun) {
      console.log(`${opts.file} is valid: ${cluster.subnets.length} subnet(s)`);
      return;
    }
    const revision = await withAccess(opts, (access) => access.writeConfig(cluster));
    console.log(`applied ${opts.file} at revision ${revision}: ${cluster.subnets.length} subnet(s)`);
  });

  storeOptions(
    program
      .command('leases')
      .description('list DHCP leases')
      .option('--subnet <name>', 'only this subnet')
      .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table')),
  ).action(async (opts: StoreFlags & { subnet?: string; output: 'table' | 'json' }) => {
    const records = await withAccess(opts, (access) => access.leases(opts.subnet));
    records.sort((a, b) => a.subnet.localeCompare(b.subnet) || ipToInt(a.ip) - ipToInt(b.ip));
    if (opts.output === 'json') {
      console.log(JSON.stringify(records, null, 2));
      return;
    }
    const now = Date.now();
    const table = new Table({ head: ['subnet', 'ip', 'state', 'mac', 'client', 'hostname', 'expires in', 'node'], style: { head: [], border: [] } });
    for (const r of records) {
      const left = Math.round((r.expiresAtMs - now) / 1000);
      table.push([r.subnet, r.ip, r.state, r.mac, r.clientKey, r.hostname ?? '', left > 0 ? `${left}s` : 'expired', r.node]);
    }
    console.log(table.toString());
  });

  const config = program.command('config').description('cluster configuration');
  storeOptions(config.command('show').description('print the cluster configuration in the store as JSON')).action(
    async (opts: StoreFlags) => {
      const stored = await withAccess(opts, (access) => access.readConfig());
      console.log(JSON.stringify({ revision: stored.revision, config: stored.config }, null, 2));
    },
  );

  return program;
}

export function describeError(err: unknown): string {
  if (err instanceof ConfigError) {
    return [`error ${err.code}: invalid ${err.message.split(':')[0]}`, ...err.issues.map((i) => `  at ${i.path || '/'}: ${i.message}`)].join('\n');
  }
  if (err instanceof PxehaError) return `error ${err.code}: ${err.message}`;
  return `error: ${(err as Error)?.stack ?? String(err)}`;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    const e = err as { code?: string; exitCode?: number };
    if (typeof e.code === 'string' && e.code.startsWith('commander.')) return e.exitCode ?? 2;
    console.error(describeError(err));
    return 1;
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.exitCode = await main(process.argv.slice(2));
}
