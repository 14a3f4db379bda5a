/**
 * The `pxeha` command line. Each command is a thin shell over library functions; errors are
 * printed with their stable code and the path of a bad field, and set a non-zero exit status.
 */
import { Command, Option } from 'commander';
import Table from 'cli-table3';
import { readClusterConfig, writeClusterConfig } from '../config/cluster-store.js';
import { loadClusterConfig, loadNodeConfig } from '../config/load.js';
import { LEASE_PREFIX, parseLeaseRecord, type LeaseRecord } from '../dhcp/lease-record.js';
import { ConfigError, PxehaError } from '../errors.js';
import { startNode, storePathOf } from '../node/node.js';
import { createLogger } from '../obs/log.js';
import { openStore } from '../store/open.js';
import type { Store } from '../store/store.js';
import { ipToInt } from '../util/ipv4.js';

interface StoreFlags {
  config?: string;
  store?: string;
}

async function openStoreFromFlags(flags: StoreFlags): Promise<Store> {
  if (flags.store) return openStore({ kind: 'embedded', path: flags.store });
  if (flags.config) return openStore({ kind: 'embedded', path: storePathOf(await loadNodeConfig(flags.config)) });
  throw new PxehaError('PXE_ERR_CONFIG_INVALID', 'say which store to use: --config NODE.yaml or --store PATH');
}

async function withStore<T>(flags: StoreFlags, fn: (store: Store) => Promise<T>): Promise<T> {
  const store = await openStoreFromFlags(flags);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

function storeOptions(cmd: Command): Command {
  return cmd
    .option('-c, --config <file>', "node configuration whose store to use")
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
    const revision = await withStore(opts, (store) => writeClusterConfig(store, cluster));
    console.log(`applied ${opts.file} at revision ${revision}: ${cluster.subnets.length} subnet(s)`);
  });

  storeOptions(
    program
      .command('leases')
      .description('list DHCP leases')
      .option('--subnet <name>', 'only this subnet')
      .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table')),
  ).action(async (opts: StoreFlags & { subnet?: string; output: 'table' | 'json' }) => {
    const records = await withStore(opts, async (store) => {
      const prefix = opts.subnet ? `${LEASE_PREFIX}${opts.subnet}/` : LEASE_PREFIX;
      const { kvs } = await store.range(prefix, { prefix: true });
      return kvs.map((kv) => parseLeaseRecord(kv.value)).filter((r): r is LeaseRecord => r !== undefined);
    });
    records.sort((a, b) => a.subnet.localeCompare(b.subnet) || ipToInt(a.ip) - ipToInt(b.ip));
    if (opts.output === 'json') {
      console.log(JSON.stringify(records, null, 2));
      return;
    }
    const now = Date.now();
    const table = new Table({ head: ['subnet', 'ip', 'state', 'mac', 'client', 'hostname', 'expires in', 'node'] });
    for (const r of records) {
      const left = Math.round((r.expiresAtMs - now) / 1000);
      table.push([r.subnet, r.ip, r.state, r.mac, r.clientKey, r.hostname ?? '', left > 0 ? `${left}s` : 'expired', r.node]);
    }
    console.log(table.toString());
  });

  const config = program.command('config').description('cluster configuration');
  storeOptions(config.command('show').description('print the cluster configuration in the store as JSON')).action(
    async (opts: StoreFlags) => {
      const stored = await withStore(opts, (store) => readClusterConfig(store));
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
