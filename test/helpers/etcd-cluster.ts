/**
 * A real etcd cluster (Debian's `etcd-server`, 3.4) on loopback for tests: N members with
 * their own client and peer ports on 127.0.0.1, data directories under one temporary
 * directory (on /dev/shm when it exists, so fsync costs nothing), and short Raft timings so
 * elections and lease expiry take fractions of a second instead of seconds.
 *
 * Members are started and stopped by PID only. stop() kills every member this cluster started
 * and removes its directory; it also runs from a process 'exit' handler and on SIGINT/SIGTERM,
 * so a failing or interrupted test leaves no etcd behind. A SIGKILLed test process cannot
 * clean up; its members then die when their ports are reused or by hand.
 *
 * API (kept stable for every test that needs etcd; src/store/etcd/etcd.test.ts and
 * test/integration/cluster.test.ts use it):
 * - `EtcdCluster.start({ members, tls, heartbeatMs, electionTimeoutMs })`: N members, healthy.
 * - `endpoints` (all client URLs), `endpoint(i)`, `pid(i)` (undefined while down), `log(i)`.
 * - `stopMember(i)` (SIGTERM), `kill(i)` (SIGKILL, no goodbye to the peers), `startMember(i)`
 *   (rejoins with its data directory, --initial-cluster-state existing), `restartMember(i)`.
 * - `etcdctl(args)` with the cluster's endpoints and TLS files.
 * - `stop()` / `close()`: kill every member by PID, remove the data directories.
 * For a connection that fails while both ends stay up, put test/helpers/tcp-proxy.ts between.
 */
import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface EtcdClusterOptions {
  /** Number of members; default 3. */
  members?: number;
  /** Serve clients over TLS with these PEM files (the peers stay plain http on loopback). */
  tls?: {
    caFile: string;
    certFile: string;
    keyFile: string;
    /** Require client certificates signed by caFile (etcd --client-cert-auth). */
    clientCertAuth?: boolean;
  };
  /** Raft heartbeat; default 50 ms. */
  heartbeatMs?: number;
  /** Raft election timeout; default 500 ms, which also makes etcd's minimum lease TTL 1 s. */
  electionTimeoutMs?: number;
  /** How long start() and startMember() wait for health; default 30 s. */
  startTimeoutMs?: number;
}

interface Member {
  name: string;
  clientPort: number;
  peerPort: number;
  dataDir: string;
  process: ChildProcess | undefined;
  /** Last lines etcd wrote, for error messages. */
  log: string[];
}

type ResolvedOptions = Required<Omit<EtcdClusterOptions, 'tls'>> & Pick<EtcdClusterOptions, 'tls'>;

const LOG_LINES_KEPT = 40;
const live = new Set<EtcdCluster>();
let exitHooksInstalled = false;

/** Whether the etcd binary is installed (scripts/install-deps.sh installs etcd-server). */
export function etcdAvailable(): boolean {
  return spawnSync('etcd', ['--version'], { stdio: 'ignore' }).status === 0;
}

export class EtcdCluster {
  readonly dir: string;
  readonly #members: Member[];
  readonly #options: ResolvedOptions;
  readonly #token = `pxeha-test-${randomBytes(6).toString('hex')}`;
  #stopped = false;

  private constructor(dir: string, members: Member[], options: ResolvedOptions) {
    this.dir = dir;
    this.#members = members;
    this.#options = options;
  }

  /** Starts every member and resolves once each answers /health. */
  static async start(options: EtcdClusterOptions = {}): Promise<EtcdCluster> {
    const resolved: ResolvedOptions = {
      members: options.members ?? 3,
      heartbeatMs: options.heartbeatMs ?? 50,
      electionTimeoutMs: options.electionTimeoutMs ?? 500,
      startTimeoutMs: options.startTimeoutMs ?? 30_000,
      tls: options.tls,
    };
    const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
    const dir = await mkdtemp(join(base, 'pxeha-etcd-'));
    const ports = await freePorts(resolved.members * 2);
    const members = Array.from({ length: resolved.members }, (_, i): Member => ({
      name: `m${i}`,
      clientPort: ports[2 * i]!,
      peerPort: ports[2 * i + 1]!,
      dataDir: join(dir, `m${i}`),
      process: undefined,
      log: [],
    }));
    const cluster = new EtcdCluster(dir, members, resolved);
    live.add(cluster);
    installExitHooks();
    try {
      for (let i = 0; i < members.length; i++) cluster.#spawn(i, 'new');
      await Promise.all(members.map((_, i) => cluster.waitHealthy(i)));
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  /** Client URLs of every member, in member order. */
  get endpoints(): string[] {
    return this.#members.map((_, i) => this.endpoint(i));
  }

  endpoint(i: number): string {
    const scheme = this.#options.tls ? 'https' : 'http';
    return `${scheme}://127.0.0.1:${this.#member(i).clientPort}`;
  }

  /** PID of member i, or undefined while it is down. */
  pid(i: number): number | undefined {
    const child = this.#member(i).process;
    return child && child.exitCode === null && child.signalCode === null ? child.pid : undefined;
  }

  /** Recent output of member i. */
  log(i: number): string {
    return this.#member(i).log.join('\n');
  }

  /** Graceful stop (SIGTERM): the member leaves as a clean shutdown would. */
  async stopMember(i: number): Promise<void> {
    await this.#terminate(i, 'SIGTERM');
  }

  /** SIGKILL: the member vanishes mid-whatever, as on a power loss. */
  async kill(i: number): Promise<void> {
    await this.#terminate(i, 'SIGKILL');
  }

  /** Restarts a stopped member on its data directory and waits until it is healthy. */
  async startMember(i: number): Promise<void> {
    if (this.pid(i) !== undefined) throw new Error(`etcd member ${i} is already running`);
    this.#spawn(i, 'existing');
    await this.waitHealthy(i);
  }

  /** Stops member i (SIGTERM) if it runs, then starts it again and waits until it is healthy. */
  async restartMember(i: number): Promise<void> {
    await this.stopMember(i);
    await this.startMember(i);
  }

  /** Waits until member i answers /health with {"health":"true"} (it has a leader and quorum). */
  async waitHealthy(i: number, timeoutMs = this.#options.startTimeoutMs): Promise<void> {
    const member = this.#member(i);
    const deadline = Date.now() + timeoutMs;
    let last = 'no answer yet';
    while (Date.now() < deadline) {
      const child = member.process;
      if (!child || child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`etcd member ${member.name} exited (${child?.exitCode ?? child?.signalCode}):\n${this.log(i)}`);
      }
      try {
        const body = await this.#get(i, '/health');
        if (/"health":\s*"true"/.test(body)) return;
        last = body;
      } catch (err) {
        last = err instanceof Error ? err.message : String(err);
      }
      await sleep(50);
    }
    throw new Error(`etcd member ${member.name} not healthy after ${timeoutMs} ms (${last}):\n${this.log(i)}`);
  }

  /** Runs etcdctl (v3 API) against the given members (default all), with the cluster's TLS files. */
  etcdctl(args: string[], options: { members?: number[]; user?: string } = {}): Promise<string> {
    const endpoints = (options.members ?? this.#members.map((_, i) => i)).map((i) => this.endpoint(i)).join(',');
    const tls = this.#options.tls;
    const argv = [
      `--endpoints=${endpoints}`,
      ...(tls ? [`--cacert=${tls.caFile}`, `--cert=${tls.certFile}`, `--key=${tls.keyFile}`] : []),
      ...(options.user ? [`--user=${options.user}`] : []),
      ...args,
    ];
    return new Promise((resolve, reject) => {
      execFile('etcdctl', argv, { env: { ...process.env, ETCDCTL_API: '3' }, timeout: 15_000 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`etcdctl ${args.join(' ')} failed: ${stderr || err.message}`));
        else resolve(stdout);
      });
    });
  }

  /** Kills every member by PID and removes the data directories. Safe to call twice. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await Promise.all(this.#members.map((_, i) => this.#terminate(i, 'SIGKILL')));
    rmSync(this.dir, { recursive: true, force: true });
    live.delete(this);
  }

  /** The same as stop(). */
  close(): Promise<void> {
    return this.stop();
  }

  /** Synchronous last resort for process exit: SIGKILL by PID, remove the directory. */
  killNow(): void {
    for (const member of this.#members) {
      const pid = member.process?.pid;
      if (pid !== undefined && member.process?.exitCode === null && member.process.signalCode === null) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
    live.delete(this);
  }

  #member(i: number): Member {
    const member = this.#members[i];
    if (!member) throw new Error(`no etcd member ${i} (cluster has ${this.#members.length})`);
    return member;
  }

  #spawn(i: number, state: 'new' | 'existing'): void {
    const member = this.#member(i);
    const peers = this.#members.map((m) => `${m.name}=http://127.0.0.1:${m.peerPort}`).join(',');
    const tls = this.#options.tls;
    const args = [
      `--name=${member.name}`,
      `--data-dir=${member.dataDir}`,
      `--listen-client-urls=${this.endpoint(i)}`,
      `--advertise-client-urls=${this.endpoint(i)}`,
      `--listen-peer-urls=http://127.0.0.1:${member.peerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${member.peerPort}`,
      `--initial-cluster=${peers}`,
      `--initial-cluster-state=${state}`,
      `--initial-cluster-token=${this.#token}`,
      `--heartbeat-interval=${this.#options.heartbeatMs}`,
      `--election-timeout=${this.#options.electionTimeoutMs}`,
      // As etcd 3.5's default: a member that returns (or was cut off) asks before campaigning,
      // so its higher term does not depose a working leader (an outage of its own, 3.4's default).
      '--pre-vote=true',
      '--logger=zap',
      '--log-outputs=stderr',
      '--log-level=warn',
      ...(tls ? [`--cert-file=${tls.certFile}`, `--key-file=${tls.keyFile}`, `--trusted-ca-file=${tls.caFile}`] : []),
      ...(tls?.clientCertAuth ? ['--client-cert-auth'] : []),
    ];
    const child = spawn('etcd', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    member.process = child;
    member.log = [];
    const keep = (chunk: Buffer) => {
      member.log.push(...chunk.toString('utf8').split('\n').filter((l) => l !== ''));
      if (member.log.length > LOG_LINES_KEPT) member.log.splice(0, member.log.length - LOG_LINES_KEPT);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    child.on('error', (err) => member.log.push(`spawn error: ${err.message}`));
  }

  async #terminate(i: number, signal: NodeJS.Signals): Promise<void> {
    const member = this.#member(i);
    const child = member.process;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    process.kill(child.pid!, signal);
    const timer = setTimeout(() => {
      if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGKILL');
    }, 10_000);
    await exited;
    clearTimeout(timer);
  }

  #get(i: number, path: string): Promise<string> {
    const tls = this.#options.tls;
    const url = new URL(path, this.endpoint(i));
    return new Promise((resolve, reject) => {
      const done = (res: import('node:http').IncomingMessage) => {
        let body = '';
        res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk)).on('end', () => resolve(body));
      };
      const req = tls
        ? httpsRequest(url, { timeout: 2000, ...tlsFiles(tls) }, done)
        : httpRequest(url, { timeout: 2000 }, done);
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', reject);
      req.end();
    });
  }
}

function tlsFiles(tls: NonNullable<EtcdClusterOptions['tls']>): { ca: Buffer; cert: Buffer; key: Buffer } {
  return { ca: readFileSync(tls.caFile), cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) };
}

export interface TestCertificates {
  caFile: string;
  /** Server certificate for 127.0.0.1 (SAN IP:127.0.0.1), signed by the CA. */
  serverCertFile: string;
  serverKeyFile: string;
  /** Client certificate (CN pxeha-client), signed by the CA. */
  clientCertFile: string;
  clientKeyFile: string;
  /** A second, unrelated CA, for "wrong CA" tests. */
  otherCaFile: string;
}

/** A throwaway CA and certificates made with openssl (P-256 keys, valid one day) in `dir`. */
export function createTestCertificates(dir: string): TestCertificates {
  const file = (name: string) => join(dir, name);
  const openssl = (args: string[]) => {
    const result = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
    if (result.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${result.stderr}`);
  };
  const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  for (const ca of ['ca', 'other-ca']) {
    openssl(['req', '-x509', ...key, '-keyout', `${ca}.key`, '-out', `${ca}.crt`, '-days', '1', '-subj', `/CN=pxeha test ${ca}`]);
  }
  const issue = (name: string, cn: string, extensions: string) => {
    writeFileSync(file(`${name}.ext`), extensions);
    openssl(['req', ...key, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`]);
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '1', '-extfile', `${name}.ext`]);
  };
  issue('server', '127.0.0.1', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n');
  issue('client', 'pxeha-client', 'extendedKeyUsage=clientAuth\n');
  return {
    caFile: file('ca.crt'),
    serverCertFile: file('server.crt'),
    serverKeyFile: file('server.key'),
    clientCertFile: file('client.crt'),
    clientKeyFile: file('client.key'),
    otherCaFile: file('other-ca.crt'),
  };
}

/** Ports the kernel hands out for 127.0.0.1, all held open together so they are distinct. */
async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: count }, () => new Promise<import('node:net').Server>((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve(server));
    })),
  );
  const ports = servers.map((s) => (s.address() as import('node:net').AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  process.on('exit', (code) => {
    for (const cluster of [...live]) cluster.killNow();
    // Leave now rather than through Node's environment teardown: after tests that killed etcd
    // members under open gRPC (HTTP/2) connections, Node 20 sometimes keeps a request it
    // never completes and spins for ever in Environment::CleanupHandles (seen with gdb, about
    // every other run under `node --test`). By the 'exit' event the loop is empty and stdio
    // (pipes, files) is written synchronously, so nothing is lost by skipping that teardown.
    process.exit(code);
  });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      for (const cluster of [...live]) cluster.killNow();
      // The listener is gone now, so this ends the process the way the signal would have.
      process.kill(process.pid, signal);
    });
  }
}
