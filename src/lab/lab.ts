/**
 * `pxeha lab`: the virtual lab of the end-to-end tests, for a person.
 *
 *   pxlab-srv (IPv6 on)                 pxlab-lan
 *   eth0 10.99.0.1/24  ── veth ──  s0 ─ br0 ─ tap1 … tapN ── QEMU machines
 *   pxeha serve (examples/lab), router advertiser
 *
 *   host namespace: a loopback-only TCP forward 127.0.0.1:<port> → the node's API socket
 *
 * Nothing is added to the host's interfaces: the bridge, taps and every address live in the
 * two namespaces. The node's API is a Unix socket in its data dir (reachable from any
 * namespace, so `pxeha … --config <stateDir>/node.yaml` works from the host), and the forward
 * makes the same API (and OpenAPI docs) reachable over TCP on loopback only, for a browser or
 * curl. Every process the lab starts is recorded with its PID and command line in
 * `<stateDir>/state.json`; `down` stops exactly those (checking the command line, so a reused
 * PID is never hit) and deletes the namespaces by the names it created.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, closeSync, readSync, statSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { ApiClient } from '../api/client.js';
import type { MachineStatus } from '../boot/render.js';
import type { LeaseRecord } from '../dhcp/lease-record.js';
import { PxehaError } from '../errors.js';
import { cleanConsole, missingFirmware, prepareUefiVars, qemuArgs, stagesInConsole, writeSerconPort, type Firmware } from './qemu.js';
import { ENABLE_IPV6_NO_DAD_SH, routerAdvertiserArgv } from './router-advertiser.js';

/** The checkout (or installed package) root: src/lab/ and dist/lab/ are both two levels down. */
export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export const DEFAULT_STATE_DIR = '/run/pxeha-lab';
export const LAB_NAMESPACES = { srv: 'pxlab-srv', lan: 'pxlab-lan' } as const;
const SERVER_CIDR = '10.99.0.1/24';

export interface LabProcess {
  role: string;
  pid: number;
  /** A substring of /proc/<pid>/cmdline: a PID whose command line lacks it is not ours. */
  signature: string;
}

export interface LabVm {
  name: string;
  firmware: Firmware;
  mac: string;
  tap: string;
  consoleFile: string;
  pid: number;
  startedAtMs: number;
}

export interface LabState {
  stateDir: string;
  namespaces: string[];
  nodeConfig: string;
  apiSocket: string;
  apiUrl: string;
  processes: LabProcess[];
  vms: LabVm[];
  nextVm: number;
}

export type Say = (line: string) => void;

function statePath(stateDir: string): string {
  return path.join(stateDir, 'state.json');
}

export function readState(stateDir: string): LabState | undefined {
  try {
    return JSON.parse(readFileSync(statePath(stateDir), 'utf8')) as LabState;
  } catch {
    return undefined;
  }
}

function writeState(state: LabState): void {
  writeFileSync(statePath(state.stateDir), `${JSON.stringify(state, null, 2)}\n`);
}

function sh(argv: readonly string[], options: { allowFailure?: boolean } = {}): string {
  const [file, ...args] = argv;
  const r = spawnSync(file ?? 'false', args, { encoding: 'utf8', timeout: 60_000 });
  if ((r.status !== 0 || r.error) && !options.allowFailure) {
    throw new PxehaError('PXE_ERR_INTERNAL', `${argv.join(' ')} failed: ${(r.stderr || r.error?.message || '').trim()}`);
  }
  return r.stdout ?? '';
}

/** How to run this same pxeha command line again (bin/pxeha.js or `node --import tsx main.ts`). */
function pxehaArgv(): string[] {
  const script = process.argv[1];
  if (!script) throw new PxehaError('PXE_ERR_INTERNAL', 'cannot tell how pxeha was started');
  return [process.execPath, ...process.execArgv, script];
}

/** Starts a process that outlives this command, output to a log file; returns its PID. */
function spawnDetached(argv: readonly string[], logFile: string): number {
  const fd = openSync(logFile, 'a');
  const [file, ...args] = argv;
  const child = spawn(file ?? 'false', args, { detached: true, stdio: ['ignore', fd, fd], cwd: PACKAGE_ROOT });
  closeSync(fd);
  if (child.pid === undefined) throw new PxehaError('PXE_ERR_INTERNAL', `could not start ${argv.join(' ')}`);
  child.unref();
  return child.pid;
}

function cmdlineOf(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return undefined;
  }
}

/** Stops one recorded process: SIGTERM, then SIGKILL after graceMs; only if it is still ours. */
async function stopProcess(pid: number, signature: string, graceMs = 3000): Promise<void> {
  const ours = (): boolean => cmdlineOf(pid)?.includes(signature) ?? false;
  if (!ours()) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!ours()) return;
    await sleep(100);
  }
  try {
    if (ours()) process.kill(pid, 'SIGKILL');
  } catch {
    // Gone.
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function requireRoot(): void {
  if (process.getuid?.() !== 0) throw new PxehaError('PXE_ERR_INTERNAL', 'pxeha lab must run as root (it creates network namespaces)');
}

/** Installs what the lab needs (QEMU, iPXE, OVMF, …) through the checkout's install script. */
function ensurePackages(say: Say): void {
  const qemu = spawnSync('sh', ['-c', 'command -v qemu-system-x86_64'], { encoding: 'utf8' }).status === 0;
  const python = spawnSync('sh', ['-c', 'command -v python3'], { encoding: 'utf8' }).status === 0;
  if (qemu && python && missingFirmware().length === 0 && existsSync('/usr/lib/ipxe/undionly.kpxe')) return;
  const script = path.join(PACKAGE_ROOT, 'scripts', 'install-deps.sh');
  if (!existsSync(script)) {
    throw new PxehaError('PXE_ERR_INTERNAL', 'missing qemu-system-x86, ipxe, ipxe-qemu, ovmf or python3: install them with apt-get');
  }
  say('installing the Debian packages the lab needs (scripts/install-deps.sh)');
  const r = spawnSync('bash', [script], { stdio: 'inherit' });
  if (r.status !== 0) throw new PxehaError('PXE_ERR_INTERNAL', 'scripts/install-deps.sh failed');
}

async function waitForApi(api: ApiClient, timeoutMs: number, isAlive: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await api.reachable()) return;
    if (!isAlive()) break;
    await sleep(200);
  }
  throw new PxehaError('PXE_ERR_INTERNAL', 'the lab node did not start; see its log');
}

export interface UpOptions {
  stateDir?: string;
  /** Loopback TCP port of the API forward (0: none). */
  apiPort?: number;
}

/** Creates the namespaces, the segment and the node; returns the recorded state. */
export async function labUp(options: UpOptions, say: Say): Promise<LabState> {
  requireRoot();
  const stateDir = options.stateDir ?? DEFAULT_STATE_DIR;
  if (readState(stateDir)) throw new PxehaError('PXE_ERR_CONFLICT', `a lab is already up (${statePath(stateDir)}); run pxeha lab down first`);
  const existing = sh(['ip', 'netns', 'list']);
  for (const ns of Object.values(LAB_NAMESPACES)) {
    if (new RegExp(`^${ns}\\b`, 'm').test(existing)) throw new PxehaError('PXE_ERR_CONFLICT', `namespace ${ns} already exists; run pxeha lab down`);
  }
  ensurePackages(say);
  mkdirSync(stateDir, { recursive: true });
  const dataDir = path.join(stateDir, 'lab1');
  const apiPort = options.apiPort ?? 8080;
  const state: LabState = {
    stateDir,
    namespaces: [],
    nodeConfig: path.join(stateDir, 'node.yaml'),
    apiSocket: path.join(dataDir, 'pxeha.sock'),
    apiUrl: apiPort === 0 ? '' : `http://127.0.0.1:${apiPort}`,
    processes: [],
    vms: [],
    nextVm: 1,
  };
  writeState(state);
  try {
    const { srv, lan } = LAB_NAMESPACES;
    for (const ns of [srv, lan]) {
      sh(['ip', 'netns', 'add', ns]);
      state.namespaces.push(ns);
      writeState(state);
      sh(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
    }
    sh(['ip', 'netns', 'exec', srv, 'sh', '-c', ENABLE_IPV6_NO_DAD_SH]);
    sh(['ip', 'netns', 'exec', lan, 'sh', '-c', 'echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6']);
    sh(['ip', '-n', lan, 'link', 'add', 'name', 'br0', 'type', 'bridge', 'forward_delay', '0', 'stp_state', '0']);
    sh(['ip', '-n', lan, 'link', 'set', 'br0', 'up']);
    sh(['ip', '-n', srv, 'link', 'add', 'name', 'eth0', 'type', 'veth', 'peer', 'name', 's0', 'netns', lan]);
    sh(['ip', '-n', srv, 'addr', 'add', SERVER_CIDR, 'dev', 'eth0']);
    sh(['ip', '-n', srv, 'link', 'set', 'eth0', 'up']);
    sh(['ip', '-n', lan, 'link', 'set', 's0', 'master', 'br0']);
    sh(['ip', '-n', lan, 'link', 'set', 's0', 'up']);
    say(`namespaces ${srv} (eth0 ${SERVER_CIDR}) and ${lan} (bridge br0) created`);

    const record = (role: string, pid: number, signature: string): void => {
      state.processes.push({ role, pid, signature });
      writeState(state);
    };
    record('router-advertiser', spawnDetached(['ip', 'netns', 'exec', srv, ...routerAdvertiserArgv('eth0')], path.join(stateDir, 'ra.log')), 'python3');

    const example = parseYaml(readFileSync(path.join(PACKAGE_ROOT, 'examples', 'lab', 'node.yaml'), 'utf8')) as Record<string, unknown>;
    writeFileSync(state.nodeConfig, toYaml({ ...example, dataDir }));
    const pxeha = pxehaArgv();
    const apply = spawnSync(pxeha[0] ?? 'node', [...pxeha.slice(1), 'apply', '-f', path.join(PACKAGE_ROOT, 'examples', 'lab', 'cluster.yaml'), '--config', state.nodeConfig], {
      encoding: 'utf8',
    });
    if (apply.status !== 0) throw new PxehaError('PXE_ERR_INTERNAL', `pxeha apply failed: ${apply.stderr}`);
    const nodePid = spawnDetached(['ip', 'netns', 'exec', srv, ...pxeha, 'serve', '--config', state.nodeConfig], path.join(stateDir, 'pxeha.log'));
    record('pxeha', nodePid, 'serve');
    const api = new ApiClient({ socketPath: state.apiSocket });
    await waitForApi(api, 30_000, () => cmdlineOf(nodePid) !== undefined);
    // The lab's default profile (cluster.yaml boot.defaultProfile): a script that says hello and calls back.
    const hello = parseYaml(readFileSync(path.join(PACKAGE_ROOT, 'examples', 'lab', 'profiles', 'hello.yaml'), 'utf8')) as unknown;
    await api.call('PUT', `/api/v1/profiles/${(hello as { name: string }).name}`, hello);
    say(`pxeha node lab1 serving 10.99.0.0/24 in ${srv} (log ${path.join(stateDir, 'pxeha.log')})`);

    if (apiPort !== 0) {
      const fwd = spawnDetached([...pxeha, 'lab', 'forward', '--port', String(apiPort), '--socket', state.apiSocket], path.join(stateDir, 'forward.log'));
      record('api-forward', fwd, 'forward');
      await waitForTcp(apiPort, 10_000, () => cmdlineOf(fwd) !== undefined);
    }
    say(`API: ${state.apiUrl ? `${state.apiUrl} (loopback only; OpenAPI at ${state.apiUrl}/api/openapi.json), ` : ''}Unix socket ${state.apiSocket}`);
    say(`CLI: pxeha machines --config ${state.nodeConfig}`);
    return state;
  } catch (err) {
    await labDown({ stateDir }, () => undefined);
    throw err;
  }
}

async function waitForTcp(port: number, timeoutMs: number, isAlive: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = createConnection({ host: '127.0.0.1', port }, () => {
        c.destroy();
        resolve(true);
      });
      c.on('error', () => resolve(false));
    });
    if (ok) return;
    if (!isAlive()) break;
    await sleep(100);
  }
  throw new PxehaError('PXE_ERR_INTERNAL', `the API forward on 127.0.0.1:${port} did not start (port in use? try --api-port)`);
}

/**
 * The loopback forward: 127.0.0.1:port → the node's Unix socket. Runs until killed. Binds
 * 127.0.0.1 only, so the API never becomes reachable from outside the host.
 */
export function runForward(port: number, socketPath: string): Promise<never> {
  const server = createServer((client) => {
    const upstream = createConnection({ path: socketPath });
    client.pipe(upstream).pipe(client);
    const close = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close);
    upstream.on('error', close);
  });
  return new Promise((_, reject) => {
    server.on('error', reject);
    server.listen(port, '127.0.0.1');
  });
}

export interface BootOptions {
  stateDir?: string;
  firmware: Firmware;
  count: number;
  /** Bound on the whole boot (default 300 s). */
  timeoutMs?: number;
  /** Leave the machines running after they booted. */
  keep?: boolean;
  /** Print every console line (default true). */
  consoles?: boolean;
}

export interface BootResult {
  name: string;
  mac: string;
  firmware: Firmware;
  /** Seconds from QEMU start to the callback; undefined if it never came. */
  seconds: number | undefined;
  ip?: string;
}

const STAGE_LABEL = { dhcp: 'DHCP', tftp: 'TFTP', http: 'HTTP', done: 'done' } as const;

/** Boots machines, streams their consoles and one progress line per stage; resolves when all are done. */
export async function labBoot(options: BootOptions, say: Say): Promise<BootResult[]> {
  requireRoot();
  const stateDir = options.stateDir ?? DEFAULT_STATE_DIR;
  const state = readState(stateDir);
  if (!state) throw new PxehaError('PXE_ERR_NOT_FOUND', 'no lab is up; run pxeha lab up');
  const api = new ApiClient({ socketPath: state.apiSocket });
  const vms: LabVm[] = [];
  for (let i = 0; i < options.count; i++) {
    const k = state.nextVm++;
    const name = `vm${k}`;
    const mac = `52:54:00:99:02:${k.toString(16).padStart(2, '0')}`;
    const tap = `tap${k}`;
    const dir = path.join(stateDir, 'vms', name);
    mkdirSync(dir, { recursive: true });
    const consoleFile = path.join(dir, 'console.log');
    const serconFile = path.join(dir, 'sercon-port');
    const uefiVarsFile = path.join(dir, 'OVMF_VARS.fd');
    if (options.firmware === 'bios') writeSerconPort(serconFile);
    else prepareUefiVars(uefiVarsFile);
    sh(['ip', '-n', LAB_NAMESPACES.lan, 'tuntap', 'add', 'dev', tap, 'mode', 'tap']);
    sh(['ip', '-n', LAB_NAMESPACES.lan, 'link', 'set', tap, 'master', 'br0']);
    sh(['ip', '-n', LAB_NAMESPACES.lan, 'link', 'set', tap, 'up']);
    const argv = ['qemu-system-x86_64', '-name', `pxlab-${name}`, ...qemuArgs({ firmware: options.firmware, mac, tap, consoleFile, serconFile, uefiVarsFile })];
    const startedAtMs = Date.now();
    const pid = spawnDetached(['ip', 'netns', 'exec', LAB_NAMESPACES.lan, ...argv], path.join(dir, 'qemu.log'));
    const vm = { name, firmware: options.firmware, mac, tap, consoleFile, pid, startedAtMs };
    state.vms.push(vm);
    vms.push(vm);
    writeState(state);
    say(`[${name}] ${options.firmware.toUpperCase()} machine ${mac} started (QEMU pid ${pid}, console ${consoleFile})`);
  }

  const timeoutMs = options.timeoutMs ?? 300_000;
  const deadline = Date.now() + timeoutMs;
  const seen = new Map<string, Set<string>>(vms.map((v) => [v.name, new Set<string>()]));
  const offsets = new Map<string, number>(vms.map((v) => [v.name, 0]));
  const partial = new Map<string, string>(vms.map((v) => [v.name, '']));
  const results = new Map<string, BootResult>();
  while (results.size < vms.length && Date.now() < deadline) {
    let statuses: MachineStatus[] = [];
    let leases: LeaseRecord[] = [];
    try {
      [statuses, leases] = await Promise.all([api.call<MachineStatus[]>('GET', '/api/v1/machine-status'), api.call<LeaseRecord[]>('GET', '/api/v1/leases')]);
    } catch {
      // The node is busy or restarting; the console still streams.
    }
    for (const vm of vms) {
      if (results.has(vm.name)) continue;
      const fresh = readNew(vm.consoleFile, offsets.get(vm.name) ?? 0);
      offsets.set(vm.name, fresh.offset);
      const text = (partial.get(vm.name) ?? '') + cleanConsole(fresh.text);
      const lines = text.split('\n');
      partial.set(vm.name, lines.pop() ?? '');
      if (options.consoles !== false) for (const line of lines) if (line.trim() !== '') say(`${vm.name}| ${line}`);
      const stages = seen.get(vm.name) ?? new Set<string>();
      const consoleSoFar = readFileText(vm.consoleFile);
      const lease = leases.find((l) => l.mac === vm.mac && l.state === 'bound');
      const status = statuses.find((s) => s.mac === vm.mac);
      const reached = new Set<string>(stagesInConsole(consoleSoFar));
      if (lease) reached.add('dhcp');
      if (status && (status.lastStageMs ?? 0) >= vm.startedAtMs) {
        if (status.lastStage === 'script') reached.add('http');
        if (status.lastStage === 'done') {
          reached.add('http');
          reached.add('done');
        }
      }
      for (const stage of ['dhcp', 'tftp', 'http', 'done'] as const) {
        if (!reached.has(stage) || stages.has(stage)) continue;
        stages.add(stage);
        const secs = ((Date.now() - vm.startedAtMs) / 1000).toFixed(1);
        const detail = stage === 'dhcp' && lease ? ` ${lease.ip}` : stage === 'done' ? ' (pxeha recorded the callback)' : '';
        say(`[${vm.name}] ${STAGE_LABEL[stage]}${detail} at ${secs} s`);
      }
      if (stages.has('done')) {
        const seconds = status?.lastStageMs !== undefined ? (status.lastStageMs - vm.startedAtMs) / 1000 : (Date.now() - vm.startedAtMs) / 1000;
        results.set(vm.name, { name: vm.name, mac: vm.mac, firmware: vm.firmware, seconds, ...(lease ? { ip: lease.ip } : {}) });
      } else if (cmdlineOf(vm.pid) === undefined) {
        say(`[${vm.name}] QEMU exited before the boot completed (see ${path.join(path.dirname(vm.consoleFile), 'qemu.log')})`);
        results.set(vm.name, { name: vm.name, mac: vm.mac, firmware: vm.firmware, seconds: undefined });
      }
    }
    if (results.size < vms.length) await sleep(250);
  }
  for (const vm of vms) {
    if (!results.has(vm.name)) {
      say(`[${vm.name}] no callback within ${Math.round(timeoutMs / 1000)} s`);
      results.set(vm.name, { name: vm.name, mac: vm.mac, firmware: vm.firmware, seconds: undefined });
    }
    if (!options.keep) await stopVm(state, vm);
  }
  writeState(state);
  return vms.map((v) => results.get(v.name) as BootResult);
}

async function stopVm(state: LabState, vm: LabVm): Promise<void> {
  await stopProcess(vm.pid, 'qemu-system', 2000);
  sh(['ip', '-n', LAB_NAMESPACES.lan, 'link', 'del', vm.tap], { allowFailure: true });
  state.vms = state.vms.filter((v) => v.name !== vm.name);
}

function readNew(file: string, offset: number): { text: string; offset: number } {
  try {
    const size = statSync(file).size;
    if (size <= offset) return { text: '', offset };
    const fd = openSync(file, 'r');
    const buf = Buffer.alloc(size - offset);
    readSync(fd, buf, 0, buf.length, offset);
    closeSync(fd);
    return { text: buf.toString('latin1'), offset: size };
  } catch {
    return { text: '', offset };
  }
}

function readFileText(file: string): string {
  try {
    return cleanConsole(readFileSync(file, 'latin1'));
  } catch {
    return '';
  }
}

/** Removes everything the lab made: its processes by PID, then its namespaces by name. */
export async function labDown(options: { stateDir?: string }, say: Say): Promise<void> {
  requireRoot();
  const stateDir = options.stateDir ?? DEFAULT_STATE_DIR;
  const state = readState(stateDir);
  if (!state) {
    say('no lab is up');
    return;
  }
  for (const vm of state.vms) await stopProcess(vm.pid, 'qemu-system', 2000);
  for (const p of [...state.processes].reverse()) await stopProcess(p.pid, p.signature);
  for (const ns of [...state.namespaces].reverse()) {
    // Anything still inside a namespace the lab created was started there by the lab.
    for (const pid of sh(['ip', 'netns', 'pids', ns], { allowFailure: true }).split(/\s+/).filter((s) => /^\d+$/.test(s))) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // Gone.
      }
    }
    sh(['ip', 'netns', 'del', ns], { allowFailure: true });
  }
  rmSync(stateDir, { recursive: true, force: true });
  say(`lab removed (${state.vms.length} machine(s), ${state.processes.length} process(es), namespaces ${state.namespaces.join(', ') || 'none'})`);
}
