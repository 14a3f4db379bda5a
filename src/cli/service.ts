/**
 * `pxeha install-service`: run pxeha under systemd. Writes the unit
 * (`/etc/systemd/system/pxeha.service`), creates `/etc/pxeha` and `/var/lib/pxeha` (0750), and
 * a starter `/etc/pxeha/node.yaml` when there is none. It starts nothing: it prints the
 * systemctl commands to run. `--dry-run` prints what it would do and touches nothing; `--root`
 * puts every path under another directory (packaging, tests).
 */
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { hostname, networkInterfaces } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const UNIT_PATH = '/etc/systemd/system/pxeha.service';
export const CONFIG_DIR = '/etc/pxeha';
export const DATA_DIR = '/var/lib/pxeha';
export const DEFAULT_NODE_CONFIG = `${CONFIG_DIR}/node.yaml`;

/** The command line's entry point of this installation (bin/pxeha.js). */
export function installedEntry(): string {
  return fileURLToPath(new URL('../../bin/pxeha.js', import.meta.url));
}

/** The unit file; packaging/pxeha.service is this with /usr/bin/node and /opt/pxeha. */
export function systemdUnit(options: { node: string; entry: string; config: string }): string {
  return `# pxeha: highly available network boot (DHCP, TFTP, HTTP). Written by \`pxeha install-service\`.
[Unit]
Description=pxeha network boot server (DHCP, TFTP, HTTP boot)
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart=${options.node} ${options.entry} serve --config ${options.config}
# DHCP (port 67), TFTP (69) and sockets bound to interfaces (SO_BINDTODEVICE) need root.
User=root
# SIGHUP (systemctl reload): a renewed API certificate is installed at once.
ExecReload=/bin/kill -HUP $MAINPID
# SIGTERM: decisions in flight finish, the node resigns leadership and closes its store.
KillSignal=SIGTERM
TimeoutStopSec=15s
Restart=on-failure
RestartSec=2s
LimitNOFILE=65536
# ${DATA_DIR} (store, API socket) and ${CONFIG_DIR}, created if missing.
StateDirectory=pxeha
StateDirectoryMode=0750
ConfigurationDirectory=pxeha
ConfigurationDirectoryMode=0750
NoNewPrivileges=yes
PrivateTmp=yes
ProtectSystem=full
ProtectHome=read-only
ProtectKernelTunables=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes

[Install]
WantedBy=multi-user.target
`;
}

/** A starter node configuration: this host's name, its first interface, the defaults. */
export function starterNodeConfig(options: { name: string; iface: string }): string {
  return `# pxeha node configuration (docs/configuration.md). Check the interface, then:
#   systemctl enable --now pxeha
name: ${options.name}
dataDir: ${DATA_DIR}
store:
  kind: embedded              # or etcd, for a cluster of nodes
dhcp:
  interfaces: [${options.iface}]
http:
  port: 8080                  # boot scripts and artifacts (plain HTTP: iPXE firmware has no HTTPS)
  # tls:                      # the API and dashboard over HTTPS on a port of their own
  #   certFile: ${CONFIG_DIR}/api.pem
  #   keyFile: ${CONFIG_DIR}/api.key
  #   port: 8443
tftp:
  port: 69
artifactsDir: /usr/lib/ipxe
log:
  level: info
  format: json                # pretty: text for a terminal
`;
}

export type InstallStep =
  | { kind: 'mkdir'; path: string; mode: number; exists: boolean }
  | { kind: 'write'; path: string; mode: number; content: string; exists: boolean; what: string }
  | { kind: 'keep'; path: string; what: string };

function firstInterface(): string {
  const names = Object.entries(networkInterfaces())
    .filter(([, addrs]) => (addrs ?? []).some((a) => !a.internal && a.family === 'IPv4'))
    .map(([name]) => name)
    .sort();
  return names[0] ?? 'eth0';
}

export function planInstall(options: { root: string; config: string; node: string; entry: string; name?: string; iface?: string }): InstallStep[] {
  const at = (p: string): string => (options.root === '/' ? p : join(options.root, p));
  const steps: InstallStep[] = [];
  for (const dir of [CONFIG_DIR, DATA_DIR]) steps.push({ kind: 'mkdir', path: at(dir), mode: 0o750, exists: existsSync(at(dir)) });
  const unit = at(UNIT_PATH);
  steps.push({ kind: 'mkdir', path: dirname(unit), mode: 0o755, exists: existsSync(dirname(unit)) });
  steps.push({ kind: 'write', path: unit, mode: 0o644, content: systemdUnit(options), exists: existsSync(unit), what: 'systemd unit' });
  const config = at(options.config);
  if (existsSync(config)) steps.push({ kind: 'keep', path: config, what: 'node configuration' });
  else {
    const content = starterNodeConfig({ name: options.name ?? hostname().split('.')[0] ?? 'pxeha1', iface: options.iface ?? firstInterface() });
    steps.push({ kind: 'mkdir', path: dirname(config), mode: 0o750, exists: existsSync(dirname(config)) });
    steps.push({ kind: 'write', path: config, mode: 0o640, content, exists: false, what: 'starter node configuration' });
  }
  return steps.filter((s, i) => !(s.kind === 'mkdir' && steps.findIndex((t) => t.kind === 'mkdir' && t.path === s.path) !== i));
}

export function describePlan(steps: readonly InstallStep[], dryRun: boolean): string {
  const will = dryRun ? 'would ' : '';
  const lines: string[] = [];
  for (const s of steps) {
    const mode = (m: number): string => `0${m.toString(8)}`;
    if (s.kind === 'mkdir') lines.push(s.exists ? `${s.path} exists` : `${will}create directory ${s.path} (mode ${mode(s.mode)})`);
    else if (s.kind === 'keep') lines.push(`${s.path} exists: ${s.what} kept as it is`);
    else {
      lines.push(`${will}${s.exists ? 'replace' : 'write'} ${s.what} ${s.path} (mode ${mode(s.mode)})${dryRun ? ':' : ''}`);
      if (dryRun) lines.push(...s.content.trimEnd().split('\n').map((l) => `    ${l}`));
    }
  }
  return lines.join('\n');
}

export async function applyPlan(steps: readonly InstallStep[]): Promise<void> {
  for (const s of steps) {
    if (s.kind === 'mkdir' && !s.exists) {
      await mkdir(s.path, { recursive: true, mode: s.mode });
      await chmod(s.path, s.mode);
    } else if (s.kind === 'write') {
      await writeFile(s.path, s.content, { mode: s.mode });
      await chmod(s.path, s.mode);
    }
  }
}

export function registerServiceCommands(program: Command): void {
  program
    .command('install-service')
    .description('install pxeha as a systemd service: unit file, /etc/pxeha, /var/lib/pxeha, a starter node.yaml')
    .option('--dry-run', 'print what would be done, change nothing')
    .option('--root <dir>', 'install under this directory instead of / (packaging, tests)', '/')
    .option('-c, --config <file>', 'node configuration the service runs with', DEFAULT_NODE_CONFIG)
    .option('--name <name>', 'node name for a starter node.yaml (default: the host name)')
    .option('--interface <ifname>', 'DHCP interface for a starter node.yaml (default: the first with an IPv4 address)')
    .action(async (opts: { dryRun?: boolean; root: string; config: string; name?: string; interface?: string }) => {
      const steps = planInstall({
        root: opts.root,
        config: opts.config,
        node: process.execPath,
        entry: installedEntry(),
        ...(opts.name ? { name: opts.name } : {}),
        ...(opts.interface ? { iface: opts.interface } : {}),
      });
      if (opts.dryRun) {
        console.log(describePlan(steps, true));
        console.log('dry run: nothing was changed');
        return;
      }
      await applyPlan(steps);
      console.log(describePlan(steps, false));
      console.log(
        opts.root === '/'
          ? `next: edit ${opts.config}, then run\n  systemctl daemon-reload && systemctl enable --now pxeha\n  journalctl -u pxeha -f`
          : `installed under ${opts.root}`,
      );
    });
}
