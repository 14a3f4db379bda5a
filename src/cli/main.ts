/**
 * The `pxeha` command line. Each command is a thin shell over library functions and the node's
 * API; errors are printed with their stable code and, for invalid input, the path of each bad
 * field, and set a non-zero exit status.
 */
import { Command, Option } from 'commander';
import Table from 'cli-table3';
import { loadNodeConfig, parseClusterConfig, readYamlFile, validate } from '../config/load.js';
import { MachineSchema, ProfileSchema, type Machine, type Profile } from '../config/schema.js';
import { ConfigError, PxehaError, type ValidationIssue } from '../errors.js';
import { startNode } from '../node/node.js';
import { createLogger } from '../obs/log.js';
import { ipToInt } from '../util/ipv4.js';
import { withAccess, type AccessFlags } from './access.js';
import { registerLabCommands } from './lab.js';
import { registerClusterCommands } from './cluster.js';
import { registerImageCommands } from './images.js';
import { registerServiceCommands } from './service.js';
import { registerTokenCommands } from './tokens.js';
import { DEFAULT_FAILOVER, failoverWarnings } from '../cluster/failover.js';

type Output = 'table' | 'json';

function accessOptions(cmd: Command): Command {
  return cmd
    .option('-c, --config <file>', 'node configuration: its running node, or else its store')
    .option('--store <path>', 'embedded store file to use directly')
    .option('--server <url>', 'a node API to use, e.g. http://10.99.0.1:8080 or https://10.99.0.1:8443')
    .option('--token <token>', 'API token for --server (default: $PXEHA_TOKEN)')
    .option('--cacert <file>', 'CA certificate (PEM) that signed an https --server');
}

function outputOption(cmd: Command): Command {
  return cmd.addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table'));
}

function print(rows: Record<string, unknown>[], columns: string[], output: Output, raw: unknown = rows): void {
  if (output === 'json') {
    console.log(JSON.stringify(raw, null, 2));
    return;
  }
  const table = new Table({ head: columns, style: { head: [], border: [] } });
  for (const r of rows) table.push(columns.map((c) => String(r[c] ?? '')));
  console.log(table.toString());
}

function ago(ms: number | undefined, now = Date.now()): string {
  if (ms === undefined) return '';
  const s = Math.round((now - ms) / 1000);
  return s < 0 ? `in ${-s}s` : `${s}s ago`;
}

/**
 * Reads an apply file: the cluster configuration, plus optional `profiles:` and `machines:`
 * lists, each validated with its schema and reported with its path in the file.
 */
async function readApplyFile(
  file: string,
): Promise<{ cluster: ReturnType<typeof parseClusterConfig>; profiles?: Profile[]; machines?: Machine[] }> {
  const doc = ((await readYamlFile(file)) ?? {}) as Record<string, unknown>;
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError(file, [{ path: '', message: 'must be a mapping' }]);
  const { profiles, machines, ...clusterPart } = doc;
  const issues: ValidationIssue[] = [];
  const each = <T>(list: unknown, key: string, schema: Parameters<typeof validate>[0]): T[] | undefined => {
    if (list === undefined) return undefined;
    if (!Array.isArray(list)) {
      issues.push({ path: `/${key}`, message: 'must be a list' });
      return undefined;
    }
    return list.flatMap((item, i) => {
      try {
        return [validate<T>(schema, item, key)];
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        issues.push(...err.issues.map((x) => ({ path: `/${key}/${i}${x.path}`, message: x.message })));
        return [];
      }
    });
  };
  const p = each<Profile>(profiles, 'profiles', ProfileSchema);
  const m = each<Machine>(machines, 'machines', MachineSchema);
  let cluster;
  try {
    cluster = parseClusterConfig(clusterPart, file);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    issues.push(...err.issues);
  }
  if (issues.length > 0 || !cluster) throw new ConfigError(file, issues);
  return { cluster, ...(p ? { profiles: p } : {}), ...(m ? { machines: m } : {}) };
}

const listMachines = async (opts: AccessFlags & { output: Output }) => {
  const [list, statuses] = await withAccess(opts, async (a) => Promise.all([a.machines(), a.statuses()]));
  const byMac = new Map(statuses.map((s) => [s.mac, s]));
  const known = new Set(list.map((m) => m.mac?.toLowerCase()));
  const rows = list.map((m) => {
    const s = m.mac ? byMac.get(m.mac.toLowerCase()) : undefined;
    return {
      name: m.name,
      mac: m.mac,
      // Without a profile of its own a machine boots what its labels select, else the default.
      profile: m.profile ?? '(by labels)',
      stage: s?.lastStage,
      seen: ago(s?.lastSeenMs),
      node: s?.lastNode,
      installed: s?.installedAtMs ? 'yes' : '',
    };
  });
  // Machines that booted but are not configured: discovered.
  for (const s of statuses)
    if (!known.has(s.mac))
      rows.push({
        name: '(discovered)',
        mac: s.mac,
        profile: '',
        stage: s.lastStage,
        seen: ago(s.lastSeenMs),
        node: s.lastNode,
        installed: '',
      });
  print(rows, ['name', 'mac', 'profile', 'stage', 'seen', 'node', 'installed'], opts.output, { machines: list, statuses });
};

const listProfiles = async (opts: AccessFlags & { output: Output }) => {
  const list = await withAccess(opts, (a) => a.profiles());
  const rows = list.map((p) => ({
    name: p.name,
    boot: p.boot.kind,
    once: p.once ? 'yes' : '',
    files: Object.keys(p.files).join(' '),
    description: p.description,
  }));
  print(rows, ['name', 'boot', 'once', 'files', 'description'], opts.output, list);
};

export function buildProgram(): Command {
  const program = new Command('pxeha')
    .description('Highly available network boot: DHCP, TFTP and HTTP boot on a replicated store')
    .showHelpAfterError()
    .exitOverride();

  program
    .command('serve')
    .description('run a pxeha node')
    .requiredOption('-c, --config <file>', 'node configuration (YAML)')
    .addOption(new Option('--log-format <format>', 'log format, instead of the configuration\'s log.format').choices(['json', 'pretty']))
    .action(async (opts: { config: string; logFormat?: 'json' | 'pretty' }) => {
      const config = await loadNodeConfig(opts.config);
      const log = createLogger({ level: config.log.level, node: config.name, format: opts.logFormat ?? config.log.format });
      const node = await startNode(config, log);
      // `systemctl reload`: the TLS reloader (when http.tls is set) looks at its files; without
      // this listener SIGHUP's default would end the node.
      const onHangup = () => log.info({ signal: 'SIGHUP' }, 'reload requested: certificate files are checked; configuration follows the store');
      process.on('SIGHUP', onHangup);
      await new Promise<void>((resolve) => {
        const stop = (signal: string): void => {
          log.info({ signal }, 'stopping');
          resolve();
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      });
      process.off('SIGHUP', onHangup);
      await node.close();
    });

  accessOptions(
    program
      .command('apply')
      .description('validate a cluster file (configuration, and optionally profiles and machines) and write it')
      .requiredOption('-f, --file <file>', 'cluster file (YAML)')
      .option('--dry-run', 'validate only'),
  ).action(async (opts: AccessFlags & { file: string; dryRun?: boolean }) => {
    const { cluster, profiles, machines } = await readApplyFile(opts.file);
    const summary = `${cluster.subnets.length} subnet(s), ${profiles?.length ?? 0} profile(s), ${machines?.length ?? 0} machine(s)`;
    const failover = opts.config ? (await loadNodeConfig(opts.config)).cluster : DEFAULT_FAILOVER;
    for (const warning of failoverWarnings(cluster, failover)) console.error(`warning: ${warning}`);
    if (opts.dryRun) {
      console.log(`${opts.file} is valid: ${summary}`);
      return;
    }
    const revision = await withAccess(opts, async (access) => {
      // Profiles before machines that name them; the configuration (its default profile) between.
      for (const p of profiles ?? []) await access.putProfile(p);
      const rev = await access.writeConfig(cluster);
      for (const m of machines ?? []) await access.putMachine(m);
      return rev;
    });
    console.log(`applied ${opts.file} at revision ${revision}: ${summary}`);
  });

  const leasesCommand = (cmd: Command): Command =>
    outputOption(accessOptions(cmd.option('--subnet <name>', 'only this subnet'))).action(
      async (opts: AccessFlags & { subnet?: string; output: Output }) => {
        const records = await withAccess(opts, (a) => a.leases(opts.subnet));
        records.sort((a, b) => a.subnet.localeCompare(b.subnet) || ipToInt(a.ip) - ipToInt(b.ip));
        const now = Date.now();
        const rows = records.map((r) => ({
          subnet: r.subnet,
          ip: r.ip,
          state: r.state,
          mac: r.mac,
          client: r.clientKey,
          hostname: r.hostname,
          'expires in': r.expiresAtMs > now ? `${Math.round((r.expiresAtMs - now) / 1000)}s` : 'expired',
          node: r.node,
        }));
        print(rows, ['subnet', 'ip', 'state', 'mac', 'client', 'hostname', 'expires in', 'node'], opts.output, records);
      },
    );
  leasesCommand(program.command('leases').description('list DHCP leases'));
  registerLabCommands(program);

  const machines = program.command('machines').description('machines and their boot status');
  outputOption(accessOptions(machines.command('list', { isDefault: true }).description('list machines'))).action(listMachines);
  accessOptions(machines.command('show <name>').description('print a machine and its status as JSON')).action(
    async (name: string, opts: AccessFlags) => {
      const out = await withAccess(opts, async (a) => {
        const m = (await a.machines()).find((x) => x.name === name);
        if (!m) throw new PxehaError('PXE_ERR_NOT_FOUND', `machine ${name} does not exist`);
        const status = (await a.statuses()).find((s) => s.mac === m.mac?.toLowerCase());
        return { ...m, status };
      });
      console.log(JSON.stringify(out, null, 2));
    },
  );
  accessOptions(
    machines
      .command('add')
      .description('add or replace a machine')
      .option('-f, --file <file>', 'machine (YAML)')
      .option('--name <name>')
      .option('--mac <mac>')
      .option('--uuid <uuid>')
      .option('--profile <profile>')
      .option('--hostname <hostname>'),
  ).action(
    async (opts: AccessFlags & { file?: string; name?: string; mac?: string; uuid?: string; profile?: string; hostname?: string }) => {
      const input = opts.file
        ? await readYamlFile(opts.file)
        : Object.fromEntries(
            Object.entries({ name: opts.name, mac: opts.mac, uuid: opts.uuid, profile: opts.profile, hostname: opts.hostname }).filter(
              ([, v]) => v !== undefined,
            ),
          );
      const m = validate<Machine>(MachineSchema, input, opts.file ?? 'machine');
      await withAccess(opts, (a) => a.putMachine(m));
      console.log(`machine ${m.name} saved`);
    },
  );
  accessOptions(machines.command('remove <name>').description('remove a machine')).action(async (name: string, opts: AccessFlags) => {
    const deleted = await withAccess(opts, (a) => a.deleteMachine(name));
    if (!deleted) throw new PxehaError('PXE_ERR_NOT_FOUND', `machine ${name} does not exist`);
    console.log(`machine ${name} removed`);
  });
  accessOptions(machines.command('reprovision <name>').description('install again on the next boot (install-once profiles)')).action(
    async (name: string, opts: AccessFlags) => {
      await withAccess(opts, (a) => a.reprovision(name));
      console.log(`machine ${name} will be provisioned on its next boot`);
    },
  );

  const profiles = program.command('profiles').description('boot profiles');
  outputOption(accessOptions(profiles.command('list', { isDefault: true }).description('list profiles'))).action(listProfiles);
  accessOptions(profiles.command('show <name>').description('print a profile as JSON')).action(async (name: string, opts: AccessFlags) => {
    const p = (await withAccess(opts, (a) => a.profiles())).find((x) => x.name === name);
    if (!p) throw new PxehaError('PXE_ERR_NOT_FOUND', `profile ${name} does not exist`);
    console.log(JSON.stringify(p, null, 2));
  });
  accessOptions(
    profiles.command('add').description('add or replace a profile').requiredOption('-f, --file <file>', 'profile (YAML)'),
  ).action(async (opts: AccessFlags & { file: string }) => {
    const p = validate<Profile>(ProfileSchema, await readYamlFile(opts.file), opts.file);
    await withAccess(opts, (a) => a.putProfile(p));
    console.log(`profile ${p.name} saved`);
  });
  accessOptions(profiles.command('remove <name>').description('remove a profile no machine uses')).action(
    async (name: string, opts: AccessFlags) => {
      const deleted = await withAccess(opts, (a) => a.deleteProfile(name));
      if (!deleted) throw new PxehaError('PXE_ERR_NOT_FOUND', `profile ${name} does not exist`);
      console.log(`profile ${name} removed`);
    },
  );

  const get = program.command('get').description('print cluster objects');
  accessOptions(get.command('config').description('the cluster configuration and its revision, as JSON')).action(
    async (opts: AccessFlags) => {
      console.log(JSON.stringify(await withAccess(opts, (a) => a.readConfig()), null, 2));
    },
  );
  outputOption(accessOptions(get.command('subnets').description('subnets'))).action(async (opts: AccessFlags & { output: Output }) => {
    const { config } = await withAccess(opts, (a) => a.readConfig());
    const rows = config.subnets.map((s) => ({
      name: s.name,
      subnet: s.subnet,
      mode: s.mode,
      pools: s.pools.map((p) => `${p.start}-${p.end}`).join(' '),
      reservations: s.reservations.length,
      'lease time': `${s.leaseSeconds}s`,
    }));
    print(rows, ['name', 'subnet', 'mode', 'pools', 'reservations', 'lease time'], opts.output, config.subnets);
  });
  leasesCommand(get.command('leases').description('DHCP leases'));
  outputOption(accessOptions(get.command('machines').description('machines and discovered machines'))).action(listMachines);
  outputOption(accessOptions(get.command('profiles').description('boot profiles'))).action(listProfiles);

  // Kept for scripts written against the first release.
  accessOptions(
    program.command('config').description('cluster configuration').command('show').description('same as pxeha get config'),
  ).action(async (opts: AccessFlags) => {
    console.log(JSON.stringify(await withAccess(opts, (a) => a.readConfig()), null, 2));
  });

  registerClusterCommands(program);
  registerImageCommands(program);
  registerTokenCommands(program, accessOptions);
  registerServiceCommands(program);

  return program;
}

export function describeError(err: unknown): string {
  if (err instanceof ConfigError) {
    return [
      `error ${err.code}: invalid ${err.message.split(':')[0]}`,
      ...err.issues.map((i) => `  at ${i.path || '/'}: ${i.message}`),
    ].join('\n');
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
