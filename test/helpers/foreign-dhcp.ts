/**
 * A foreign DHCP server for the ProxyDHCP tests: dnsmasq, in a namespace of the sandbox,
 * assigning addresses from a range and knowing nothing of PXE (no pxe-service, no
 * dhcp-boot), as the site's DHCP server beside which pxeha runs in proxy mode.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Netns, NetnsProcess } from './netns.js';

export interface DnsmasqOptions {
  /** Directory for its lease and pid files. */
  dir: string;
  ifname?: string;
  rangeStart: string;
  rangeEnd: string;
  leaseTime?: string;
}

/** One line of dnsmasq's lease file: `<expiry> <mac> <ip> <hostname> <client-id>`. */
export interface DnsmasqLease {
  expiry: number;
  mac: string;
  ip: string;
  hostname: string;
  clientId: string;
}

export class Dnsmasq {
  readonly leaseFile: string;
  readonly proc: NetnsProcess;

  private constructor(ns: Netns, options: DnsmasqOptions) {
    this.leaseFile = path.join(options.dir, 'dnsmasq.leases');
    const ifname = options.ifname ?? 'eth0';
    this.proc = ns.spawn(
      [
        'dnsmasq',
        '--no-daemon',
        '--conf-file=/dev/null',
        '--port=0', // DHCP only, no DNS
        `--interface=${ifname}`,
        '--bind-interfaces',
        `--dhcp-range=${options.rangeStart},${options.rangeEnd},${options.leaseTime ?? '12h'}`,
        `--dhcp-leasefile=${this.leaseFile}`,
        `--pid-file=${path.join(options.dir, 'dnsmasq.pid')}`,
        '--log-dhcp',
        '--no-ping',
        '--log-facility=-', // stderr, so failures show it; never the host's syslog
      ],
      { label: `${ns.name}: dnsmasq` },
    );
  }

  /** Starts dnsmasq and waits until it has announced its DHCP range. */
  static async start(ns: Netns, options: DnsmasqOptions): Promise<Dnsmasq> {
    const server = new Dnsmasq(ns, options);
    await server.proc.waitForLine(/DHCP, IP range/, { stream: 'stderr', timeoutMs: 10_000 });
    return server;
  }

  leases(): DnsmasqLease[] {
    if (!existsSync(this.leaseFile)) return [];
    return readFileSync(this.leaseFile, 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => {
        const [expiry, mac, ip, hostname, clientId] = l.split(' ');
        return { expiry: Number(expiry), mac: mac ?? '', ip: ip ?? '', hostname: hostname ?? '', clientId: clientId ?? '' };
      });
  }

  stop(): Promise<unknown> {
    return this.proc.stop();
  }
}
