/**
 * ISC perfdhcp (Debian package kea-admin) as a load generator and relay agent, for the DHCP
 * integration tests and bench/dhcp/.
 *
 * In DHCPv4 perfdhcp always acts as one relay agent: it binds its local address (-l) on port
 * 67, writes that address into giaddr with hops = 1, and sends unicast to the server's port 67
 * (Kea perf_dhcp `TestControl::setDefaults4`). So the server must know a subnet containing the
 * local address (or a link/subnet selection option), and it answers to giaddr:67.
 *
 * perfdhcp v4 ignores NAKs: a NAKed REQUEST only shows up as a REQUEST-ACK drop
 * (`TestControl::processReceivedPacket4` handles OFFER and ACK only; "rejected leases" is
 * DHCPv6-only). To count NAKs, and to know which client got which address, the replies are
 * captured with tcpdump on the relay's link and decoded here (captureReplies / parseDhcpPcap).
 * That decoder is deliberately independent of src/protocol: the tests use it as an oracle.
 */
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { MessageTypeName, type MessageType } from '../../src/protocol/dhcp4/types.js';
import type { ExecResult, Netns, NetnsProcess } from './netns.js';

// ---------------------------------------------------------------------------------------------
// Running perfdhcp

export interface PerfdhcpLoad {
  /** Server address: the DISCOVERs go there unicast, from localAddress:67. */
  server: string;
  /** Our address; becomes giaddr (-l). */
  localAddress: string;
  /** Exchanges initiated per second (-r). Without it perfdhcp does one exchange. */
  rate?: number;
  /** Number of distinct simulated clients (-R): MACs base..base+clients-1, picked at random. */
  clients?: number;
  /** Stop initiating after this many seconds (-p). */
  periodSeconds?: number;
  /** Stop after this many exchanges (-n). */
  exchanges?: number;
  /** A reply later than this is a drop (-d, seconds; perfdhcp's default is 1). */
  dropTimeSeconds?: number;
  /** After the last exchange starts, keep receiving this long (-W, converted to µs). */
  exitWaitSeconds?: number;
  /** Base MAC (-b mac=...), so separate runs use separate clients. */
  baseMac?: string;
  /** Random seed (-s), for repeatable client choice. */
  seed?: number;
  /** Extra options in every request (-o code,hex). */
  options?: ReadonlyArray<{ code: number; hex: string }>;
  /** Receive in a separate thread (-g multi) or not (-g single); default perfdhcp's choice. */
  threadMode?: 'single' | 'multi';
}

/** The command line for a load; argv[0] is 'perfdhcp'. */
export function perfdhcpArgv(load: PerfdhcpLoad): string[] {
  const argv = ['perfdhcp', '-4', '-l', load.localAddress];
  if (load.rate !== undefined) argv.push('-r', String(load.rate));
  if (load.clients !== undefined) argv.push('-R', String(load.clients));
  if (load.periodSeconds !== undefined) argv.push('-p', String(load.periodSeconds));
  if (load.exchanges !== undefined) argv.push('-n', String(load.exchanges));
  if (load.dropTimeSeconds !== undefined) argv.push('-d', String(load.dropTimeSeconds));
  if (load.exitWaitSeconds !== undefined) argv.push('-W', String(Math.round(load.exitWaitSeconds * 1e6)));
  if (load.baseMac !== undefined) argv.push('-b', `mac=${load.baseMac}`);
  if (load.seed !== undefined) argv.push('-s', String(load.seed));
  if (load.threadMode !== undefined) argv.push('-g', load.threadMode);
  for (const o of load.options ?? []) argv.push('-o', `${o.code},${o.hex}`);
  argv.push(load.server);
  return argv;
}

export interface PerfdhcpRun {
  argv: string[];
  /** 0: every exchange completed; 3: some did not (drops); anything else is a failure. */
  code: number;
  output: string;
  report: PerfdhcpReport;
}

/**
 * Runs perfdhcp to completion inside ns. The load must be bounded (periodSeconds and/or
 * exchanges, or a single exchange); timeoutMs is only a safety net on top of it.
 */
export async function runPerfdhcp(ns: Netns, load: PerfdhcpLoad, timeoutMs?: number): Promise<PerfdhcpRun> {
  if (load.rate !== undefined && load.periodSeconds === undefined && load.exchanges === undefined) {
    throw new Error('runPerfdhcp: a load with a rate needs periodSeconds or exchanges, or it never ends');
  }
  const argv = perfdhcpArgv(load);
  const boundSeconds =
    (load.periodSeconds ?? (load.exchanges ?? 1) / (load.rate ?? 1)) + (load.dropTimeSeconds ?? 1) + (load.exitWaitSeconds ?? 0);
  const result: ExecResult = await ns.exec(argv, { allowFailure: true, timeoutMs: timeoutMs ?? boundSeconds * 1000 + 15_000 });
  const output = `${result.stdout}${result.stderr}`;
  if (result.code !== 0 && result.code !== 3) {
    throw new Error(`perfdhcp failed (exit ${result.code}): ${argv.join(' ')}\n${output}`);
  }
  return { argv, code: result.code, output, report: parsePerfdhcpReport(output) };
}

// ---------------------------------------------------------------------------------------------
// perfdhcp's report

export interface ExchangeStats {
  sent: number;
  received: number;
  drops: number;
  orphans: number;
  rejectedLeases: number;
  nonUniqueAddresses: number;
  /** Round-trip delay of the answered requests; undefined when none was answered ("n/a"). */
  avgDelayMs: number | undefined;
  maxDelayMs: number | undefined;
}

export interface PerfdhcpReport {
  /** Completed 4-way exchanges per second, as perfdhcp computes it ("Rate: …"). */
  rate: number;
  /** The -r asked for, when given. */
  expectedRate: number | undefined;
  malformed: number;
  discoverOffer: ExchangeStats;
  requestAck: ExchangeStats;
}

/**
 * Reads perfdhcp's final report (Kea 2.x layout):
 *
 *   ***Rate statistics***
 *   Rate: 1999.38 4-way exchanges/second, expected rate: 2000
 *   ***Malformed Packets***
 *   Malformed packets: 0
 *   ***Statistics for: DISCOVER-OFFER***
 *   sent packets: 9999
 *   received packets: 9999
 *   drops: 0
 *   …
 *   ***Statistics for: REQUEST-ACK***
 *   …
 */
export function parsePerfdhcpReport(text: string): PerfdhcpReport {
  const rateLine = /Rate: ([\d.]+) 4-way exchanges\/second(?:, expected rate: ([\d.]+))?/.exec(text);
  const section = (name: string): ExchangeStats => {
    const start = text.indexOf(`***Statistics for: ${name}***`);
    if (start < 0) throw new Error(`perfdhcp output has no ${name} statistics:\n${text}`);
    const next = text.indexOf('***Statistics for:', start + 1);
    const body = text.slice(start, next < 0 ? undefined : next);
    const num = (label: string): number => {
      const m = new RegExp(`^${label}: (\\d+)`, 'm').exec(body);
      if (!m?.[1]) throw new Error(`perfdhcp ${name} statistics have no "${label}":\n${body}`);
      return Number(m[1]);
    };
    const delay = (label: string): number | undefined => {
      const m = new RegExp(`^${label}: ([\\d.]+) ms`, 'm').exec(body);
      return m?.[1] !== undefined ? Number(m[1]) : undefined;
    };
    return {
      sent: num('sent packets'),
      received: num('received packets'),
      drops: num('drops'),
      orphans: num('orphans'),
      rejectedLeases: num('rejected leases'),
      nonUniqueAddresses: num('non unique addresses'),
      avgDelayMs: delay('avg delay'),
      maxDelayMs: delay('max delay'),
    };
  };
  return {
    rate: rateLine?.[1] !== undefined ? Number(rateLine[1]) : 0,
    expectedRate: rateLine?.[2] !== undefined ? Number(rateLine[2]) : undefined,
    malformed: Number(/Malformed packets: (\d+)/.exec(text)?.[1] ?? 0),
    discoverOffer: section('DISCOVER-OFFER'),
    requestAck: section('REQUEST-ACK'),
  };
}

// ---------------------------------------------------------------------------------------------
// Capturing replies

/** One DHCP message read off the wire. Addresses dotted, MAC colon-separated lowercase. */
export interface CapturedDhcp {
  src: string;
  dst: string;
  srcPort: number;
  dstPort: number;
  op: number;
  hops: number;
  xid: number;
  flags: number;
  ciaddr: string;
  yiaddr: string;
  siaddr: string;
  giaddr: string;
  mac: string;
  /** Option 53, or undefined when absent. */
  messageType: number | undefined;
  /** Option 53 by name (OFFER, ACK, NAK …), 'none' when absent. */
  typeName: string;
  /** Every option by code (the last copy of a repeated one). */
  options: Map<number, Buffer>;
}

export interface Capture {
  /** Stops tcpdump and decodes what it wrote. */
  stop(): Promise<CaptureResult>;
}

export interface CaptureResult {
  messages: CapturedDhcp[];
  /** tcpdump's "packets dropped by kernel": non-zero means the capture is incomplete. */
  kernelDrops: number;
}

/**
 * Captures DHCP messages arriving on ifname in ns (tcpdump -Q in), from when the promise
 * resolves until stop(). The default filter takes everything to UDP port 67, i.e. the replies
 * a relay agent receives.
 */
export async function captureReplies(ns: Netns, ifname: string, filter = 'udp and dst port 67'): Promise<Capture> {
  const dir = ns.tempDir('pxt-pcap-');
  const file = path.join(dir, 'replies.pcap');
  // -U: write each packet at once, so stop() loses nothing; -B: a 16 MiB capture buffer for
  // bursts of tens of thousands of packets a second.
  const proc: NetnsProcess = ns.spawn(['tcpdump', '-i', ifname, '-Q', 'in', '-n', '-s', '0', '-B', '16384', '-U', '-w', file, filter], {
    label: `tcpdump ${ns.name}/${ifname}`,
  });
  await proc.waitForLine(/listening on/, { stream: 'stderr' });
  return {
    async stop() {
      await proc.stop(5000);
      try {
        const kernelDrops = Number(/(\d+) packets? dropped by kernel/.exec(proc.stderr())?.[1] ?? 0);
        return { messages: parseDhcpPcap(await readFile(file)), kernelDrops };
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  };
}

/**
 * Decodes the DHCP messages of a classic pcap file (Ethernet link type, as tcpdump -w writes
 * for a veth). Frames that are not IPv4/UDP carrying a BOOTP message are skipped.
 */
export function parseDhcpPcap(pcap: Buffer): CapturedDhcp[] {
  if (pcap.length < 24) return [];
  const magicLE = pcap.readUInt32LE(0);
  let le: boolean;
  if (magicLE === 0xa1b2c3d4 || magicLE === 0xa1b23c4d) le = true;
  else if (pcap.readUInt32BE(0) === 0xa1b2c3d4 || pcap.readUInt32BE(0) === 0xa1b23c4d) le = false;
  else throw new Error('not a pcap file (pcapng is not supported)');
  const u32 = (off: number) => (le ? pcap.readUInt32LE(off) : pcap.readUInt32BE(off));
  const linkType = u32(20);
  if (linkType !== 1) throw new Error(`pcap link type ${linkType} is not Ethernet`);
  const out: CapturedDhcp[] = [];
  for (let off = 24; off + 16 <= pcap.length; ) {
    const caplen = u32(off + 8);
    const frame = pcap.subarray(off + 16, off + 16 + caplen);
    off += 16 + caplen;
    const msg = decodeFrame(frame);
    if (msg) out.push(msg);
  }
  return out;
}

function ipAt(buf: Buffer, off: number): string {
  return `${buf[off]}.${buf[off + 1]}.${buf[off + 2]}.${buf[off + 3]}`;
}

function decodeFrame(frame: Buffer): CapturedDhcp | undefined {
  let off = 12;
  let etherType = frame.length >= 14 ? frame.readUInt16BE(off) : 0;
  if (etherType === 0x8100 && frame.length >= 18) {
    off += 4;
    etherType = frame.readUInt16BE(off);
  }
  if (etherType !== 0x0800) return undefined;
  const ip = frame.subarray(off + 2);
  if (ip.length < 20 || ip[0]! >> 4 !== 4 || ip[9] !== 17) return undefined;
  const ihl = (ip[0]! & 0x0f) * 4;
  const udp = ip.subarray(ihl);
  if (udp.length < 8) return undefined;
  const bootp = udp.subarray(8);
  // 236 bytes of fixed fields, then the magic cookie 99.130.83.99 (RFC 2131 §3).
  if (bootp.length < 240 || bootp.readUInt32BE(236) !== 0x63825363) return undefined;
  const options = new Map<number, Buffer>();
  for (let i = 240; i < bootp.length; ) {
    const code = bootp[i]!;
    if (code === 0) {
      i++;
      continue;
    }
    if (code === 255 || i + 1 >= bootp.length) break;
    const len = bootp[i + 1]!;
    options.set(code, bootp.subarray(i + 2, i + 2 + len));
    i += 2 + len;
  }
  const hlen = Math.min(bootp[2]!, 16);
  const mac = [...bootp.subarray(28, 28 + hlen)].map((b) => b.toString(16).padStart(2, '0')).join(':');
  const messageType = options.get(53)?.[0];
  return {
    src: ipAt(ip, 12),
    dst: ipAt(ip, 16),
    srcPort: udp.readUInt16BE(0),
    dstPort: udp.readUInt16BE(2),
    op: bootp[0]!,
    hops: bootp[3]!,
    xid: bootp.readUInt32BE(4),
    flags: bootp.readUInt16BE(10),
    ciaddr: ipAt(bootp, 12),
    yiaddr: ipAt(bootp, 16),
    siaddr: ipAt(bootp, 20),
    giaddr: ipAt(bootp, 24),
    mac,
    messageType,
    typeName: messageType === undefined ? 'none' : MessageTypeName[messageType as MessageType] ?? `type${messageType}`,
    options,
  };
}

/** How many messages of each type (OFFER, ACK, NAK …). */
export function countByType(messages: readonly CapturedDhcp[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const m of messages) counts[m.typeName] = (counts[m.typeName] ?? 0) + 1;
  return counts;
}

/**
 * Checks the ACKs seen on the wire: returns one line per address ACKed to more than one MAC
 * (the property pxeha exists for: no address handed to two machines). Empty when sound.
 */
export function addressesAckedToSeveralClients(messages: readonly CapturedDhcp[]): string[] {
  const byIp = new Map<string, Set<string>>();
  for (const m of messages) {
    if (m.typeName !== 'ACK' || m.yiaddr === '0.0.0.0') continue;
    let macs = byIp.get(m.yiaddr);
    if (!macs) byIp.set(m.yiaddr, (macs = new Set()));
    macs.add(m.mac);
  }
  return [...byIp].filter(([, macs]) => macs.size > 1).map(([ip, macs]) => `${ip} ACKed to ${[...macs].join(', ')}`);
}
