/**
 * ISC Kea (`kea-dhcp4`, Debian package kea-dhcp4-server) as the reference server for
 * bench/dhcp/: memfile lease database persisted to a CSV file in a temporary directory, no
 * control socket, single-threaded (Kea 2.2's default), run inside a namespace.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Netns, NetnsProcess } from './netns.js';
import { ServerProcess } from './server-process.js';

export interface KeaSubnet {
  /** Kea subnet id, > 0. */
  id: number;
  subnet: string;
  pools: Array<{ start: string; end: string }>;
}

export interface KeaServerOptions {
  interfaces?: string[];
  subnets: KeaSubnet[];
  validLifetimeSeconds?: number;
  /** Kea's multi-threading (off by default in 2.2). */
  threads?: number;
}

/** The kea-dhcp4 configuration for options, with the lease file at leaseFile. */
export function keaDhcp4Config(options: KeaServerOptions, leaseFile: string): object {
  return {
    Dhcp4: {
      'interfaces-config': { interfaces: options.interfaces ?? ['eth0'], 'dhcp-socket-type': 'udp' },
      // persist: every lease change is appended to the CSV file, as pxeha commits each one.
      // lfc-interval 0: no lease file cleanup process during a run.
      'lease-database': { type: 'memfile', persist: true, name: leaseFile, 'lfc-interval': 0 },
      'valid-lifetime': options.validLifetimeSeconds ?? 3600,
      ...(options.threads !== undefined
        ? { 'multi-threading': { 'enable-multi-threading': true, 'thread-pool-size': options.threads, 'packet-queue-size': 64 } }
        : {}),
      subnet4: options.subnets.map((s) => ({
        id: s.id,
        subnet: s.subnet,
        pools: s.pools.map((p) => ({ pool: `${p.start} - ${p.end}` })),
      })),
      loggers: [
        // INFO for DHCP4_STARTED (readiness); the per-lease INFO messages stay off, as pxeha
        // logs nothing per packet at info either.
        { name: 'kea-dhcp4', output_options: [{ output: 'stdout' }], severity: 'INFO' },
        { name: 'kea-dhcp4.leases', output_options: [{ output: 'stdout' }], severity: 'WARN' },
      ],
    },
  };
}

export class KeaServer extends ServerProcess {
  private constructor(
    proc: NetnsProcess,
    workDir: string,
    readonly leaseFile: string,
  ) {
    super(proc, workDir);
  }

  /** Writes the configuration, checks it (kea-dhcp4 -t), starts kea-dhcp4 and waits for DHCP4_STARTED. */
  static async start(ns: Netns, options: KeaServerOptions): Promise<KeaServer> {
    const workDir = ns.tempDir('pxt-kea-');
    const leaseFile = path.join(workDir, 'leases4.csv');
    const configFile = path.join(workDir, 'kea-dhcp4.json');
    await writeFile(configFile, JSON.stringify(keaDhcp4Config(options, leaseFile), null, 2));
    // Pid and lock files go to the temporary directory, not /run/kea.
    const env = { ...process.env, KEA_PIDFILE_DIR: workDir, KEA_LOCKFILE_DIR: workDir };
    const check = await ns.exec(['kea-dhcp4', '-t', configFile], { allowFailure: true, timeoutMs: 30_000 });
    if (check.code !== 0) throw new Error(`kea-dhcp4 -t refused ${configFile}:\n${check.stdout}${check.stderr}`);
    const proc = ns.spawn(['kea-dhcp4', '-c', configFile], { label: `kea-dhcp4 in ${ns.name}`, env });
    await proc.waitForLine(/DHCP4_STARTED/, { timeoutMs: 30_000 });
    return new KeaServer(proc, workDir, leaseFile);
  }

  /** ERROR and FATAL lines Kea logged. */
  problems(): string[] {
    return [...this.proc.lines(), ...this.proc.lines('stderr')].filter((l) => / (ERROR|FATAL) /.test(l));
  }

  /** Lease lines in the CSV file (header excluded): one per lease change Kea persisted. */
  async leaseFileRows(): Promise<string[]> {
    const text = await readFile(this.leaseFile, 'utf8').catch(() => '');
    return text.split('\n').filter((l) => l !== '' && !l.startsWith('address,'));
  }
}
