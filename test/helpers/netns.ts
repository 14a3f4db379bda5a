/**
 * Network namespaces for integration tests (coredhcp `.ci/setup-integ.sh`, made per test).
 *
 * Rule: test traffic stays inside namespaces created here. Nothing is added to the host's own
 * namespace: veth pairs are created from inside one namespace with the peer placed straight
 * into another, and bridges live in a namespace of their own (or the server's). Everything a
 * sandbox creates (namespaces, and processes it spawned, by PID) is removed by cleanup(), which
 * runs from the test's `after` hook and, should the file fail or be interrupted, from
 * process 'exit' / SIGINT / SIGTERM handlers. A run killed outright (SIGKILL) leaves an owner
 * file in /run/pxt/, and the next sandbox removes namespaces whose owner process is gone.
 *
 * Needs root (ip netns). The test process itself stays in the host namespace: code that must
 * run inside is spawned with `ip netns exec` (spawn / spawnNode / spawnNodeScript).
 */
import { after as nodeTestAfter } from 'node:test';
import { execFile, execFileSync, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root, the working directory for spawned node processes (tsx resolves from it). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

const OWNER_DIR = '/run/pxt';
const MAX_CAPTURE_BYTES = 4 * 1024 * 1024;

export interface ExecResult {
  stdout: string;
  stderr: string;
  code: number;
}

export interface ExecOptions {
  /** Resolve with the exit code instead of rejecting on a non-zero exit. */
  allowFailure?: boolean;
  /** Written to stdin. */
  input?: string;
  timeoutMs?: number;
}

export class CommandError extends Error {
  readonly result: ExecResult;
  constructor(argv: readonly string[], result: ExecResult) {
    super(`command failed (exit ${result.code}): ${argv.join(' ')}\n${result.stderr || result.stdout}`);
    this.name = 'CommandError';
    this.result = result;
  }
}

/** Runs a command (no shell) and collects its output. */
export function run(argv: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
  const [file, ...args] = argv;
  if (file === undefined) throw new Error('run: empty argv');
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      args,
      { encoding: 'utf8', maxBuffer: MAX_CAPTURE_BYTES, timeout: options.timeoutMs ?? 30_000 },
      (err, stdout, stderr) => {
        const rawCode = err ? (err as NodeJS.ErrnoException & { code?: unknown }).code : 0;
        const code = typeof rawCode === 'number' ? rawCode : err ? 1 : 0;
        const result = { stdout, stderr: err && typeof rawCode !== 'number' ? `${stderr}${err.message}` : stderr, code };
        if (code !== 0 && !options.allowFailure) reject(new CommandError(argv, result));
        else resolve(result);
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

// ---------------------------------------------------------------------------------------------
// Processes

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface SpawnOptions {
  /** Name used in failure output; defaults to the command. */
  label?: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

export interface WaitOptions {
  /** Safety net only; tests wait on events, not on time. Default 15 s. */
  timeoutMs?: number;
  /** Which stream's lines to match. Default 'stdout'. */
  stream?: 'stdout' | 'stderr';
}

/**
 * A long-running process inside a namespace. Its stdout and stderr are kept (up to 4 MiB each)
 * so a failing test can show them; describe() renders them.
 */
export class NetnsProcess {
  readonly pid: number;
  readonly label: string;
  readonly child: ChildProcessWithoutNullStreams;
  /** Settles when the process has exited (never rejects). */
  readonly exited: Promise<ExitStatus>;
  #status: ExitStatus | undefined;
  readonly #out = { stdout: '', stderr: '' };
  readonly #lines: { stdout: string[]; stderr: string[] } = { stdout: [], stderr: [] };
  readonly #partial = { stdout: '', stderr: '' };
  readonly #waiters = new Set<() => void>();

  constructor(child: ChildProcessWithoutNullStreams, label: string) {
    if (child.pid === undefined) throw new Error(`spawn ${label}: no pid`);
    this.pid = child.pid;
    this.label = label;
    this.child = child;
    for (const stream of ['stdout', 'stderr'] as const) {
      child[stream].setEncoding('utf8');
      child[stream].on('data', (chunk: string) => this.#append(stream, chunk));
    }
    // A process that exits early must not crash the test with EPIPE on our next write.
    child.stdin.on('error', () => undefined);
    this.exited = new Promise((resolve) => {
      child.on('error', (err) => {
        this.#append('stderr', `spawn error: ${err.message}\n`);
        this.#status ??= { code: null, signal: null };
        this.#wake();
        resolve(this.#status);
      });
      child.on('close', (code, signal) => {
        for (const stream of ['stdout', 'stderr'] as const) {
          if (this.#partial[stream] !== '') this.#lines[stream].push(this.#partial[stream]);
          this.#partial[stream] = '';
        }
        this.#status = { code, signal };
        this.#wake();
        resolve(this.#status);
      });
    });
  }

  #append(stream: 'stdout' | 'stderr', chunk: string): void {
    const text = this.#out[stream] + chunk;
    this.#out[stream] = text.length > MAX_CAPTURE_BYTES ? text.slice(-MAX_CAPTURE_BYTES) : text;
    const parts = (this.#partial[stream] + chunk).split('\n');
    this.#partial[stream] = parts.pop() ?? '';
    this.#lines[stream].push(...parts);
    this.#wake();
  }

  #wake(): void {
    for (const waiter of [...this.#waiters]) waiter();
  }

  /** Exit status once exited, else undefined. */
  get status(): ExitStatus | undefined {
    return this.#status;
  }

  stdout(): string {
    return this.#out.stdout;
  }

  stderr(): string {
    return this.#out.stderr;
  }

  /** Complete lines seen so far on a stream. */
  lines(stream: 'stdout' | 'stderr' = 'stdout'): readonly string[] {
    return this.#lines[stream];
  }

  /** Writes to the process's stdin. */
  write(text: string): void {
    this.child.stdin.write(text);
  }

  /**
   * Resolves with the first non-undefined value check() returns over the lines seen so far,
   * re-checked as output arrives. Rejects, with the captured output, if the process exits or
   * the safety timeout passes first.
   */
  waitUntil<T>(check: (lines: readonly string[]) => T | undefined, options: WaitOptions = {}): Promise<T> {
    const stream = options.stream ?? 'stdout';
    const timeoutMs = options.timeoutMs ?? 15_000;
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const finish = (settle: () => void) => {
        this.#waiters.delete(poll);
        if (timer) clearTimeout(timer);
        settle();
      };
      const poll = () => {
        let value: T | undefined;
        try {
          value = check(this.#lines[stream]);
        } catch (err) {
          finish(() => reject(err));
          return;
        }
        if (value !== undefined) finish(() => resolve(value));
        else if (this.#status) finish(() => reject(new Error(`${this.label} exited before the awaited output\n${this.describe()}`)));
      };
      timer = setTimeout(
        () => finish(() => reject(new Error(`timed out after ${timeoutMs} ms waiting on ${this.label}\n${this.describe()}`))),
        timeoutMs,
      );
      this.#waiters.add(poll);
      poll();
    });
  }

  /** The first line (at index >= from) that matches. */
  waitForLine(match: RegExp | ((line: string) => boolean), options: WaitOptions & { from?: number } = {}): Promise<string> {
    const test = typeof match === 'function' ? match : (line: string) => match.test(line);
    return this.waitUntil((lines) => lines.slice(options.from ?? 0).find(test), options);
  }

  /** SIGTERM, then SIGKILL after graceMs; resolves with the exit status. */
  async stop(graceMs = 3000): Promise<ExitStatus> {
    if (this.#status) return this.#status;
    signalPid(this.pid, 'SIGTERM');
    const timer = setTimeout(() => signalPid(this.pid, 'SIGKILL'), graceMs);
    const status = await this.exited;
    clearTimeout(timer);
    return status;
  }

  /** Label, pid, exit status and the tail of both streams, for failure messages. */
  describe(tailBytes = 8000): string {
    const status = this.#status
      ? `exited code=${this.#status.code} signal=${this.#status.signal}`
      : 'running';
    const tail = (s: string) => (s.length > tailBytes ? `…${s.slice(-tailBytes)}` : s);
    return [
      `--- ${this.label} (pid ${this.pid}, ${status}) ---`,
      `[stdout]\n${tail(this.#out.stdout)}`,
      `[stderr]\n${tail(this.#out.stderr)}`,
    ].join('\n');
  }
}

function signalPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone.
  }
}

// ---------------------------------------------------------------------------------------------
// Namespaces

export interface NodeSpawnOptions extends SpawnOptions {
  /** Load tsx so .ts files run (default true). */
  tsx?: boolean;
}

/** One network namespace owned by a sandbox. Loopback is up; IPv6 is off unless asked for. */
export class Netns {
  readonly name: string;
  readonly #sandbox: Sandbox;

  constructor(name: string, sandbox: Sandbox) {
    this.name = name;
    this.#sandbox = sandbox;
  }

  /** A temporary directory removed with this namespace's sandbox (see Sandbox.tempDir). */
  tempDir(prefix: string): string {
    return this.#sandbox.tempDir(prefix);
  }

  /** Runs argv inside the namespace (`ip netns exec`). */
  exec(argv: readonly string[], options?: ExecOptions): Promise<ExecResult> {
    return run(['ip', 'netns', 'exec', this.name, ...argv], options);
  }

  /** Runs `ip <args>` against this namespace (`ip -n`). */
  ip(args: readonly string[], options?: ExecOptions): Promise<ExecResult> {
    return run(['ip', '-n', this.name, ...args], options);
  }

  /** Adds an IPv4 address in CIDR form (e.g. 10.99.0.1/24) and brings the link up. */
  async addAddress(ifname: string, cidr: string): Promise<void> {
    await this.ip(['addr', 'add', cidr, 'dev', ifname]);
    await this.setUp(ifname);
  }

  async setUp(ifname: string): Promise<void> {
    await this.ip(['link', 'set', 'dev', ifname, 'up']);
  }

  async setMac(ifname: string, mac: string): Promise<void> {
    await this.ip(['link', 'set', 'dev', ifname, 'address', mac]);
  }

  async mac(ifname: string): Promise<string> {
    const { stdout } = await this.ip(['-j', 'link', 'show', 'dev', ifname]);
    const [link] = JSON.parse(stdout) as Array<{ address: string }>;
    if (!link) throw new Error(`${this.name}: no link ${ifname}`);
    return link.address;
  }

  /** Creates a bridge inside this namespace, up, optionally addressed. */
  async addBridge(name: string, options: { address?: string } = {}): Promise<void> {
    // Forward at once: a fresh bridge port spends seconds in the listening/learning states.
    await this.ip(['link', 'add', 'name', name, 'type', 'bridge', 'forward_delay', '0', 'stp_state', '0']);
    if (options.address) await this.addAddress(name, options.address);
    else await this.setUp(name);
  }

  /** Enslaves ifname to a bridge in this namespace and brings it up. */
  async attachToBridge(ifname: string, bridge: string): Promise<void> {
    await this.ip(['link', 'set', 'dev', ifname, 'master', bridge]);
    await this.setUp(ifname);
  }

  /** Starts argv inside the namespace; the sandbox kills it (by PID) on cleanup. */
  spawn(argv: readonly string[], options: SpawnOptions = {}): NetnsProcess {
    return this.#sandbox.track(
      spawn('ip', ['netns', 'exec', this.name, ...argv], {
        cwd: options.cwd ?? REPO_ROOT,
        env: options.env ?? process.env,
        stdio: ['pipe', 'pipe', 'pipe'],
      }),
      options.label ?? `${this.name}: ${argv.join(' ').slice(0, 80)}`,
    );
  }

  /**
   * Runs `node --import tsx <args>` inside the namespace from the repo root, e.g.
   * `spawnNode(['src/cli/main.ts', 'serve', '--config', file])`.
   */
  spawnNode(args: readonly string[], options: NodeSpawnOptions = {}): NetnsProcess {
    const loader = options.tsx === false ? [] : ['--import', 'tsx'];
    return this.spawn([process.execPath, ...loader, ...args], {
      ...options,
      label: options.label ?? `${this.name}: node ${args.join(' ').slice(0, 80)}`,
    });
  }

  /**
   * Runs an ES module given as source text inside the namespace (tsx loaded, so it may import
   * .ts files by absolute path; see srcUrl()). Good for small per-test fixtures.
   */
  spawnNodeScript(source: string, options: NodeSpawnOptions = {}): NetnsProcess {
    return this.spawnNode(['--input-type=module', '--eval', source], {
      ...options,
      label: options.label ?? `${this.name}: node script`,
    });
  }
}

/** A file: URL for a repo file, for imports in spawnNodeScript sources. */
export function srcUrl(relative: string): string {
  return new URL(`file://${path.join(REPO_ROOT, relative)}`).href;
}

export interface VethEnd {
  ns: Netns;
  ifname: string;
  /** CIDR address to add (e.g. 10.99.0.1/24). */
  address?: string;
  mac?: string;
  /** Bridge in the same namespace to enslave this end to. */
  bridge?: string;
}

export interface LabOptions {
  /** Client namespaces (default 1), each with eth0 on the bridge. */
  clients?: number;
  /** Server eth0 address (default 10.99.0.1/24). */
  serverAddress?: string;
  /** Several servers on the same segment (e.g. an HA pair); overrides serverAddress. */
  serverAddresses?: readonly string[];
  /** Per-client CIDR addresses; a client without one has no IPv4 address (a DHCP client). */
  clientAddresses?: readonly (string | undefined)[];
  /** Where the bridge lives: a namespace of its own (default) or the first server's. */
  bridgeIn?: 'own' | 'server';
  /** Client i's eth0 MAC; default 02:00:00:99:01:<i+1>. */
  clientMac?: (i: number) => string;
}

export interface Lab {
  /** The first server (servers[0]). */
  server: Netns;
  servers: Netns[];
  clients: Netns[];
  /** The namespace holding the bridge, and its name. */
  bridge: { ns: Netns; name: string };
  /** Every server's and client's link to the segment is named this. */
  ifname: 'eth0';
  /** Server addresses without prefix, e.g. ['10.99.0.1']. */
  serverIps: string[];
  serverMacs: string[];
  clientMacs: string[];
}

const liveSandboxes = new Set<Sandbox>();
let handlersInstalled = false;

function installProcessHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', () => {
    for (const sandbox of liveSandboxes) sandbox.cleanupSync();
  });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = () => {
      for (const sandbox of liveSandboxes) sandbox.cleanupSync();
      process.off(signal, onSignal);
      process.kill(process.pid, signal); // die of the same signal, as without the handler
    };
    process.on(signal, onSignal);
  }
}

/**
 * Everything one test file (or test) creates. Names are `pxt-<6 hex>-<role>`, so parallel runs
 * and leftovers never collide.
 */
export class Sandbox {
  readonly id: string;
  readonly namespaces: Netns[] = [];
  readonly processes: NetnsProcess[] = [];
  readonly #tempDirs: string[] = [];
  #closed = false;
  #labs = 0;

  constructor() {
    this.id = randomBytes(3).toString('hex');
    sweepStaleNamespaces();
    liveSandboxes.add(this);
    installProcessHandlers();
  }

  /** Creates `pxt-<id>-<role>` with lo up and, unless ipv6 is true, IPv6 disabled. */
  async netns(role: string, options: { ipv6?: boolean } = {}): Promise<Netns> {
    if (this.#closed) throw new Error('sandbox already cleaned up');
    if (!/^[a-z0-9-]{1,20}$/.test(role)) throw new Error(`bad role ${role}`);
    const name = `pxt-${this.id}-${role}`;
    if (this.namespaces.some((ns) => ns.name === name)) throw new Error(`this sandbox already has ${name}`);
    await run(['ip', 'netns', 'add', name]);
    const ns = new Netns(name, this);
    this.namespaces.push(ns);
    writeOwner(name);
    await ns.setUp('lo');
    if (!options.ipv6) {
      // Keeps captures free of router solicitations and DAD; DHCPv4 needs none of it.
      await ns.exec([
        'sh',
        '-c',
        'echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6',
      ], { allowFailure: true });
    }
    return ns;
  }

  /** A veth pair with one end in each namespace (never in the host's), both up. */
  async veth(a: VethEnd, b: VethEnd): Promise<void> {
    await a.ns.ip(['link', 'add', 'name', a.ifname, 'type', 'veth', 'peer', 'name', b.ifname, 'netns', b.ns.name]);
    for (const end of [a, b]) {
      if (end.mac) await end.ns.setMac(end.ifname, end.mac);
      if (end.bridge) await end.ns.attachToBridge(end.ifname, end.bridge);
      if (end.address) await end.ns.addAddress(end.ifname, end.address);
      else await end.ns.setUp(end.ifname);
    }
  }

  /**
   * One segment: server namespace(s) with eth0 (default 10.99.0.1/24) and N client namespaces
   * with eth0, all joined by bridge br0 in its own namespace (or the first server's).
   * Roles are srv, srv1…, br, c0, c1…; a second lab in the same sandbox prefixes them with l1-.
   */
  async lab(options: LabOptions = {}): Promise<Lab> {
    const prefix = this.#labs === 0 ? '' : `l${this.#labs}-`;
    this.#labs++;
    const serverAddresses = options.serverAddresses ?? [options.serverAddress ?? '10.99.0.1/24'];
    const clientCount = options.clients ?? 1;
    const clientMac = options.clientMac ?? ((i: number) => `02:00:00:99:01:${hex2(i + 1)}`);
    const servers: Netns[] = [];
    for (let i = 0; i < serverAddresses.length; i++) servers.push(await this.netns(`${prefix}${i === 0 ? 'srv' : `srv${i}`}`));
    const first = servers[0];
    if (!first) throw new Error('lab needs at least one server');
    const bridgeNs = options.bridgeIn === 'server' ? first : await this.netns(`${prefix}br`);
    const bridge = 'br0';
    await bridgeNs.addBridge(bridge);
    const serverMacs: string[] = [];
    for (const [i, ns] of servers.entries()) {
      const mac = `02:00:00:99:00:${hex2(i + 1)}`;
      serverMacs.push(mac);
      const address = serverAddresses[i];
      if (address === undefined) throw new Error('unreachable');
      await this.veth({ ns, ifname: 'eth0', address, mac }, { ns: bridgeNs, ifname: `s${i}`, bridge });
    }
    const clients: Netns[] = [];
    const clientMacs: string[] = [];
    for (let i = 0; i < clientCount; i++) {
      const ns = await this.netns(`${prefix}c${i}`);
      const mac = clientMac(i);
      const address = options.clientAddresses?.[i];
      await this.veth({ ns, ifname: 'eth0', mac, ...(address ? { address } : {}) }, { ns: bridgeNs, ifname: `c${i}`, bridge });
      clients.push(ns);
      clientMacs.push(mac);
    }
    return {
      server: first,
      servers,
      clients,
      bridge: { ns: bridgeNs, name: bridge },
      ifname: 'eth0',
      serverIps: serverAddresses.map((a) => a.split('/')[0] ?? a),
      serverMacs,
      clientMacs,
    };
  }

  /** @internal Registers a spawned process for cleanup. */
  track(child: ChildProcessWithoutNullStreams, label: string): NetnsProcess {
    const proc = new NetnsProcess(child, label);
    this.processes.push(proc);
    return proc;
  }

  /** describe() of every process, for a failure report. */
  dumpOutputs(): string {
    return this.processes.map((p) => p.describe()).join('\n');
  }

  /**
   * Stops spawned processes (SIGTERM, then SIGKILL), kills anything else still inside our
   * namespaces (children of an `exec`), and deletes the namespaces, which destroys their veths
   * and bridges. Idempotent. With PXT_DUMP=1 prints every process's output first.
   */
  async cleanup(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (process.env['PXT_DUMP'] === '1' && this.processes.length > 0) console.error(this.dumpOutputs());
    await Promise.all(this.processes.map((p) => p.stop(2000)));
    for (const ns of [...this.namespaces].reverse()) {
      for (const pid of namespacePids(ns.name)) signalPid(pid, 'SIGKILL');
      await run(['ip', 'netns', 'del', ns.name], { allowFailure: true });
      removeOwner(ns.name);
    }
    this.#removeTempDirs();
    liveSandboxes.delete(this);
  }

  /**
   * A fresh directory under the system's temporary directory (`<tmp>/<prefix>XXXXXX`) for a
   * server's configuration and data or a capture, removed when the sandbox is cleaned up,
   * on a signal too. PXT_DUMP=1 keeps them for a look after a failure.
   */
  tempDir(prefix: string): string {
    if (this.#closed) throw new Error('sandbox already cleaned up');
    const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
    this.#tempDirs.push(dir);
    return dir;
  }

  #removeTempDirs(): void {
    if (process.env['PXT_DUMP'] === '1') return;
    for (const dir of this.#tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  }

  /** The same, synchronously and without grace, for 'exit' and signal handlers. */
  cleanupSync(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const p of this.processes) if (!p.status) signalPid(p.pid, 'SIGKILL');
    for (const ns of [...this.namespaces].reverse()) {
      for (const pid of namespacePids(ns.name)) signalPid(pid, 'SIGKILL');
      try {
        execFileSync('ip', ['netns', 'del', ns.name], { stdio: 'ignore' });
      } catch {
        // Already gone.
      }
      removeOwner(ns.name);
    }
    this.#removeTempDirs();
    liveSandboxes.delete(this);
  }
}

/**
 * A sandbox cleaned up after the current suite (node:test `after`), or after the given test
 * when passed its context (`createSandbox(t)`).
 */
export function createSandbox(hooks: { after(fn: () => Promise<void>): unknown } = { after: nodeTestAfter }): Sandbox {
  const sandbox = new Sandbox();
  hooks.after(() => sandbox.cleanup());
  return sandbox;
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, '0');
}

function namespacePids(name: string): number[] {
  try {
    return execFileSync('ip', ['netns', 'pids', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .split(/\s+/)
      .filter((s) => /^\d+$/.test(s))
      .map(Number);
  } catch {
    return [];
  }
}

function writeOwner(name: string): void {
  try {
    mkdirSync(OWNER_DIR, { recursive: true });
    writeFileSync(path.join(OWNER_DIR, name), `${process.pid}\n`);
  } catch {
    // Best effort: only the stale sweep needs it.
  }
}

function removeOwner(name: string): void {
  rmSync(path.join(OWNER_DIR, name), { force: true });
}

/** Deletes pxt- namespaces whose recorded owner process no longer exists. */
function sweepStaleNamespaces(): void {
  let names: string[];
  try {
    names = readdirSync(OWNER_DIR).filter((n) => n.startsWith('pxt-'));
  } catch {
    return;
  }
  for (const name of names) {
    const owner = Number(readFileSync(path.join(OWNER_DIR, name), 'utf8').trim());
    if (Number.isInteger(owner) && owner > 0 && isAlive(owner)) continue;
    for (const pid of namespacePids(name)) signalPid(pid, 'SIGKILL');
    try {
      execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
    } catch {
      // Already gone.
    }
    removeOwner(name);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
