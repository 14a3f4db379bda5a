/**
 * Real DHCP clients for integration tests, run inside client namespaces (netns.ts): busybox
 * udhcpc and ISC dhclient, each with the same event script, which prints what the client was
 * given and configures eth0 the way the stock scripts would (so renewals and releases, which
 * go unicast from the leased address, really leave from it).
 *
 * The script writes to the client's stdout (udhcpc) and always to an events file, because
 * dhclient runs its script with an environment of its own making and its own stdio handling.
 * Events are blocks:
 *
 *   PXT-EVENT-BEGIN bound
 *   ip=10.99.0.161
 *   …
 *   PXT-EVENT-END
 */
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ExecResult, Netns, NetnsProcess } from './netns.js';

/** One script call: udhcpc's `$1` (deconfig, bound, renew, …) or dhclient's `$reason`. */
export interface ClientEvent {
  event: string;
  env: Record<string, string>;
}

const EVENT_BEGIN = 'PXT-EVENT-BEGIN ';
const EVENT_END = 'PXT-EVENT-END';

/**
 * Variables printed by the script: udhcpc's (busybox networking/udhcp/dhcpc.c fill_envp:
 * ip, mask as a prefix length, subnet, router, dns, lease, serverid, opt<N> for options it
 * has no name for) and dhclient's (`reason`, `new_*`, see dhclient-script(8)).
 */
const ENV_PATTERN =
  '^(interface|ip|mask|subnet|router|dns|domain|hostname|lease|serverid|broadcast|siaddr|sname|boot_file|ntpsrv|message|opt[0-9]+|reason|new_[a-z0-9_]+|old_ip_address)=';

/** Writes the event script to dir; returns its path and the events file it appends to. */
export function writeEventScript(dir: string, name = 'dhcp-event.sh'): { script: string; eventsFile: string } {
  const script = path.join(dir, name);
  const eventsFile = path.join(dir, `${name}.events`);
  writeFileSync(eventsFile, '');
  writeFileSync(
    script,
    `#!/bin/sh
# DHCP client event script for pxeha's integration tests (udhcpc -s, dhclient -sf).
# dhclient passes a fresh environment, so PATH is set here.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
event="\${1:-$reason}"
# Configure first, then report: a test that sees the event may look at the interface at once.
case "$event" in
  deconfig|RELEASE|EXPIRE|STOP|FAIL)
    ip -4 addr flush dev "$interface" ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/\${mask:-24}" dev "$interface" ;;
  BOUND|RENEW|REBIND|REBOOT)
    if [ -n "$old_ip_address" ] && [ "$old_ip_address" != "$new_ip_address" ]; then ip -4 addr flush dev "$interface"; fi
    ip addr replace "$new_ip_address/$new_subnet_mask" dev "$interface" ;;
esac
block=$( { echo "${EVENT_BEGIN}$event"; env | grep -E '${ENV_PATTERN}' | sort; echo "${EVENT_END}"; } )
echo "$block"
echo "$block" >> '${eventsFile}'
exit 0
`,
  );
  chmodSync(script, 0o755);
  return { script, eventsFile };
}

/** Parses event blocks out of script output lines. */
export function parseEvents(lines: readonly string[]): ClientEvent[] {
  const events: ClientEvent[] = [];
  let current: ClientEvent | undefined;
  for (const line of lines) {
    if (line.startsWith(EVENT_BEGIN)) {
      current = { event: line.slice(EVENT_BEGIN.length).trim(), env: {} };
    } else if (line === EVENT_END) {
      if (current) events.push(current);
      current = undefined;
    } else if (current) {
      const eq = line.indexOf('=');
      if (eq > 0) current.env[line.slice(0, eq)] = line.slice(eq + 1);
    }
  }
  return events;
}

export function readEventsFile(eventsFile: string): ClientEvent[] {
  return existsSync(eventsFile) ? parseEvents(readFileSync(eventsFile, 'utf8').split('\n')) : [];
}

/** The IPv4 addresses (CIDR) configured on an interface in a namespace. */
export async function interfaceAddresses(ns: Netns, ifname = 'eth0'): Promise<string[]> {
  const { stdout } = await ns.ip(['-j', '-4', 'addr', 'show', 'dev', ifname]);
  const [link] = JSON.parse(stdout) as Array<{ addr_info?: Array<{ local: string; prefixlen: number }> }>;
  return (link?.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`);
}

// ---------------------------------------------------------------------------------------------
// busybox udhcpc

export interface UdhcpcOptions {
  ifname?: string;
  /** Extra udhcpc arguments, e.g. ['-V', 'PXEClient', '-x', '0x5d:0000']. */
  args?: readonly string[];
  label?: string;
}

/**
 * One udhcpc run to a lease and out (-q), giving up after 5 DISCOVERs a second apart (-n):
 * bounded, so a silent server fails the test instead of hanging it.
 */
export async function udhcpcOnce(
  ns: Netns,
  script: string,
  options: UdhcpcOptions = {},
): Promise<{ result: ExecResult; events: ClientEvent[] }> {
  const argv = [
    'busybox',
    'udhcpc',
    '-i',
    options.ifname ?? 'eth0',
    '-f',
    '-q',
    '-n',
    '-t',
    '5',
    '-T',
    '1',
    '-s',
    script,
    ...(options.args ?? []),
  ];
  const result = await ns.exec(argv, { allowFailure: true, timeoutMs: 20_000 });
  return { result, events: parseEvents(result.stdout.split('\n')) };
}

/**
 * A udhcpc that stays running (no -q), for renewals (SIGUSR1) and releases (SIGUSR2), as
 * busybox's udhcpc(8) documents them.
 */
export class Udhcpc {
  readonly proc: NetnsProcess;

  constructor(ns: Netns, script: string, options: UdhcpcOptions = {}) {
    this.proc = ns.spawn(
      ['busybox', 'udhcpc', '-i', options.ifname ?? 'eth0', '-f', '-n', '-t', '5', '-T', '1', '-s', script, ...(options.args ?? [])],
      { label: options.label ?? `${ns.name}: udhcpc` },
    );
  }

  events(): ClientEvent[] {
    return parseEvents(this.proc.lines());
  }

  /** Waits for the next event named one of `names` after the first `after` events. */
  async waitEvent(names: readonly string[], after: number, timeoutMs = 15_000): Promise<ClientEvent> {
    return this.proc.waitUntil(
      (lines) =>
        parseEvents(lines)
          .slice(after)
          .find((e) => names.includes(e.event)),
      { timeoutMs },
    );
  }

  /** SIGUSR1: renew now (unicast REQUEST from the bound address, RFC 2131 RENEWING). */
  renew(): void {
    process.kill(this.proc.pid, 'SIGUSR1');
  }

  /** SIGUSR2: release the lease and deconfigure. */
  release(): void {
    process.kill(this.proc.pid, 'SIGUSR2');
  }

  stop(): Promise<unknown> {
    return this.proc.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// ISC dhclient

/**
 * ISC dhclient with its own files in `dir`: lease file (so a second run does INIT-REBOOT with
 * the remembered address), pid file (so `dhclient -r` finds and stops the running one), a
 * configuration of its own (not the host's /etc/dhcp/dhclient.conf) and the event script.
 */
export class Dhclient {
  readonly leaseFile: string;
  readonly pidFile: string;
  readonly confFile: string;
  readonly script: string;
  readonly eventsFile: string;
  proc: NetnsProcess | undefined;

  constructor(
    private readonly ns: Netns,
    dir: string,
    private readonly ifname = 'eth0',
  ) {
    this.leaseFile = path.join(dir, 'dhclient.leases');
    this.pidFile = path.join(dir, 'dhclient.pid');
    this.confFile = path.join(dir, 'dhclient.conf');
    ({ script: this.script, eventsFile: this.eventsFile } = writeEventScript(dir, 'dhclient-event.sh'));
    writeFileSync(
      this.confFile,
      [
        'send host-name "pxt-dhclient";',
        'request subnet-mask, broadcast-address, routers, domain-name, domain-name-servers, host-name;',
        // Bounds every wait; the tests never rely on these timings.
        'timeout 15;',
        'retry 1;',
        'initial-interval 1;',
        '',
      ].join('\n'),
    );
  }

  events(): ClientEvent[] {
    return readEventsFile(this.eventsFile);
  }

  private argv(extra: readonly string[]): string[] {
    return ['dhclient', '-v', '-cf', this.confFile, '-sf', this.script, '-lf', this.leaseFile, '-pf', this.pidFile, ...extra, this.ifname];
  }

  /**
   * Starts `dhclient -1 -d` (one attempt, foreground) and waits until the script has been
   * run with one of `reasons` (BOUND after DISCOVER, REBOOT after an INIT-REBOOT REQUEST).
   */
  async start(reasons: readonly string[] = ['BOUND', 'REBOOT']): Promise<ClientEvent> {
    const before = this.events().length;
    const proc = this.ns.spawn(this.argv(['-1', '-d']), { label: `${this.ns.name}: dhclient` });
    this.proc = proc;
    // Bounded poll of the events file: the script runs as a child of dhclient, whose own
    // output says nothing a test could wait on reliably.
    for (let i = 0; i < 200; i++) {
      const seen = this.events().slice(before);
      const found = seen.find((e) => reasons.includes(e.event));
      if (found) return found;
      if (seen.some((e) => e.event === 'FAIL') || proc.status) {
        throw new Error(`dhclient got no lease (events ${JSON.stringify(seen.map((e) => e.event))})\n${proc.describe()}`);
      }
      await sleep(100);
    }
    throw new Error(`dhclient: no ${reasons.join('/')} within 20 s\n${proc.describe()}`);
  }

  /**
   * `dhclient -r`: stops the running dhclient (by its pid file) and sends a RELEASE for the
   * lease in the lease file, then runs the script with RELEASE.
   */
  async release(): Promise<ExecResult> {
    const result = await this.ns.exec(this.argv(['-r']), { timeoutMs: 20_000 });
    if (this.proc) await this.proc.exited;
    return result;
  }

  /** Stops the running dhclient without a RELEASE (a machine switched off). */
  async kill(): Promise<void> {
    if (!this.proc) return;
    process.kill(this.proc.pid, 'SIGKILL');
    await this.proc.exited;
  }
}
