/**
 * The end-to-end lab: real firmware in QEMU network-booting through pxeha.
 *
 *   srv namespace (IPv6 on)            lan namespace
 *   eth0 10.99.0.1/24  ── veth ──  s0 ─ br0 ─ tap0 … tapN ── QEMU (one per machine)
 *   pxeha serve, router advertiser
 *
 * QEMU runs in the lan namespace on taps created beforehand and already on the bridge, so
 * nothing (bridge, tap, QEMU) is in the host's namespace. Every process is spawned through
 * the sandbox, which kills it by PID on cleanup; each machine's serial console goes to a file
 * that failure messages include.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { MachineStatus } from '../../src/boot/render.js';
import type { LeaseRecord } from '../../src/dhcp/lease-record.js';
import { prepareUefiVars, qemuArgs, readConsole, writeSerconPort, type Firmware } from '../../src/lab/qemu.js';
import { ENABLE_IPV6_NO_DAD_SH, routerAdvertiserArgv } from '../../src/lab/router-advertiser.js';
import { apiGet, PxehaNode, type LogLine } from './dhcp-client-pxeha.js';
import { REPO_ROOT, type Netns, type NetnsProcess, type Sandbox } from './netns.js';

export const SERVER_IP = '10.99.0.1';

/** examples/lab/cluster.yaml, the configuration the lab serves, as an object to extend. */
export function exampleCluster(): Record<string, unknown> {
  return parseYaml(readFileSync(path.join(REPO_ROOT, 'examples', 'lab', 'cluster.yaml'), 'utf8')) as Record<string, unknown>;
}

export interface QemuLabOptions {
  workDir: string;
  /** The apply document: cluster configuration plus `profiles:` and `machines:`. */
  cluster: unknown;
}

export interface BootedVm {
  name: string;
  firmware: Firmware;
  mac: string;
  tap: string;
  proc: NetnsProcess;
  consoleFile: string;
  /** Date.now() just before QEMU was spawned. */
  startedAtMs: number;
  console(): string;
}

export class QemuLab {
  private taps = 0;
  private constructor(
    readonly sandbox: Sandbox,
    readonly srv: Netns,
    readonly lan: Netns,
    readonly node: PxehaNode,
    readonly workDir: string,
  ) {}

  static async create(sandbox: Sandbox, options: QemuLabOptions): Promise<QemuLab> {
    mkdirSync(options.workDir, { recursive: true });
    const srv = await sandbox.netns('srv', { ipv6: true });
    await srv.exec(['sh', '-c', ENABLE_IPV6_NO_DAD_SH]);
    const lan = await sandbox.netns('lan');
    await lan.addBridge('br0');
    await sandbox.veth(
      { ns: srv, ifname: 'eth0', address: `${SERVER_IP}/24`, mac: '02:00:00:99:00:01' },
      { ns: lan, ifname: 's0', bridge: 'br0' },
    );
    const ra = srv.spawn(routerAdvertiserArgv('eth0'), { label: 'router advertiser' });
    await ra.waitForLine(/router advertisements on eth0/, { timeoutMs: 10_000 });
    const node = await PxehaNode.create(srv, {
      name: 'lab1',
      workDir: path.join(options.workDir, 'node'),
      cluster: options.cluster,
      node: {
        advertiseAddress: SERVER_IP,
        http: { port: 8080 },
        tftp: { port: 69 },
        artifactsDir: '/usr/lib/ipxe',
        log: { level: 'debug' },
      },
    });
    await node.start();
    return new QemuLab(sandbox, srv, lan, node, options.workDir);
  }

  /** Creates a tap on the bridge and starts a machine on it. */
  async boot(name: string, firmware: Firmware, mac: string): Promise<BootedVm> {
    const tap = `tap${this.taps++}`;
    await this.lan.ip(['tuntap', 'add', 'dev', tap, 'mode', 'tap']);
    await this.lan.attachToBridge(tap, 'br0');
    return this.start(name, firmware, mac, tap);
  }

  /** Starts (again) a machine on an existing tap: a second boot of the same machine. */
  async start(name: string, firmware: Firmware, mac: string, tap: string): Promise<BootedVm> {
    const dir = path.join(this.workDir, 'vm', name);
    mkdirSync(dir, { recursive: true });
    const run = readdirCount(dir);
    const consoleFile = path.join(dir, `console-${run}.log`);
    const serconFile = path.join(dir, 'sercon-port');
    const uefiVarsFile = path.join(dir, 'OVMF_VARS.fd');
    if (firmware === 'bios') writeSerconPort(serconFile);
    else if (run === 0) prepareUefiVars(uefiVarsFile);
    const argv = ['qemu-system-x86_64', '-name', name, ...qemuArgs({ firmware, mac, tap, consoleFile, serconFile, uefiVarsFile })];
    const startedAtMs = Date.now();
    const proc = this.lan.spawn(argv, { label: `qemu ${name} (${firmware}, ${mac})` });
    return { name, firmware, mac, tap, proc, consoleFile, startedAtMs, console: () => readConsole(consoleFile) };
  }

  /**
   * Waits for pxeha's `boot complete` log line for the machine, then returns the seconds from
   * QEMU start to the callback. Fails with the serial console and pxeha's output if QEMU exits
   * or the bounded wait passes.
   */
  async waitForCallback(vm: BootedVm, timeoutMs: number): Promise<number> {
    const mac = vm.mac.toLowerCase();
    const done = this.node.waitForLog((l) => l.msg === 'boot complete' && l['mac'] === mac, timeoutMs);
    const exited = vm.proc.exited.then((s) => {
      throw new Error(`QEMU exited (code ${s.code}, signal ${s.signal}) before the callback`);
    });
    let line: LogLine;
    try {
      line = await Promise.race([done, exited]);
    } catch (err) {
      throw new Error(`${vm.name}: no boot callback: ${(err as Error).message.split('\n')[0]}\n${this.describe(vm)}`);
    }
    const atMs = typeof line['time'] === 'number' ? line['time'] : Date.now();
    return (atMs - vm.startedAtMs) / 1000;
  }

  /** Waits until the console shows `pattern` (bounded), for stages after the callback. */
  async waitForConsole(vm: BootedVm, pattern: RegExp, timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const text = vm.console();
      const m = pattern.exec(text);
      if (m) return m[0];
      if (vm.proc.status) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`${vm.name}: console never showed ${pattern}\n${this.describe(vm)}`);
  }

  /** The machine's serial console and QEMU's own output, for failure messages. */
  describe(vm: BootedVm): string {
    return [
      `--- serial console of ${vm.name} (${vm.consoleFile}) ---`,
      vm.console().slice(-12_000),
      vm.proc.describe(2000),
      `--- pxeha (last lines) ---`,
      (this.node.current?.lines() ?? []).slice(-40).join('\n'),
    ].join('\n');
  }

  async stopVm(vm: BootedVm): Promise<void> {
    await vm.proc.stop(2000);
  }

  async machineStatus(): Promise<MachineStatus[]> {
    return JSON.parse(await apiGet(this.node.dataDir, '/api/v1/machine-status')) as MachineStatus[];
  }

  async leases(): Promise<LeaseRecord[]> {
    return this.node.leases();
  }

  /** pxeha log lines for one MAC (DHCP replies, TFTP transfers, boot stages). */
  logsFor(mac: string): LogLine[] {
    const m = mac.toLowerCase();
    return this.node.logs().filter((l) => l['mac'] === m);
  }
}

function readdirCount(dir: string): number {
  let n = 0;
  for (;;) {
    try {
      readFileSync(path.join(dir, `console-${n}.log`));
      n++;
    } catch {
      return n;
    }
  }
}

