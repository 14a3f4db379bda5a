/**
 * What went over the wire, as a client saw it: tcpdump writing a pcap file inside a client
 * namespace, and a reader for that file that needs nothing but the format itself.
 *
 * pcap (https://www.tcpdump.org/manpages/pcap-savefile.5.html, draft-ietf-opsawg-pcap):
 *
 *   global header, 24 bytes:  magic(4) major(2) minor(2) thiszone(4) sigfigs(4) snaplen(4) linktype(4)
 *   per record, 16 bytes:     ts_sec(4) ts_frac(4) incl_len(4) orig_len(4), then incl_len bytes
 *
 * The magic says the byte order (a1b2c3d4 written natively) and the fraction unit
 * (a1b23c4d: nanoseconds). Link type 1 is Ethernet (IEEE 802.3): dst(6) src(6) type(2), an
 * 802.1Q tag (type 8100) adding 4 bytes. Then IPv4 (RFC 791: IHL in 32-bit words, protocol
 * at 9, source at 12, destination at 16) and UDP (RFC 768: ports, length, checksum).
 */
import { existsSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { decodeDhcp4 } from '../../src/protocol/dhcp4/message.js';
import type { Dhcp4Message } from '../../src/protocol/dhcp4/types.js';
import type { Netns, NetnsProcess } from './netns.js';

const PCAP_GLOBAL_HEADER_BYTES = 24;
const PCAP_RECORD_HEADER_BYTES = 16;
const LINKTYPE_ETHERNET = 1;
const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_VLAN = 0x8100;
const IP_PROTOCOL_UDP = 17;

export interface CapturedUdp {
  /** Position in the capture, from 0. */
  index: number;
  timeMs: number;
  srcMac: string;
  dstMac: string;
  srcIp: string;
  dstIp: string;
  srcPort: number;
  dstPort: number;
  payload: Buffer;
  /** The payload decoded as DHCP, when it is DHCP. */
  dhcp: Dhcp4Message | undefined;
}

function mac(bytes: Buffer): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

function ipv4(bytes: Buffer): string {
  return [...bytes].join('.');
}

/**
 * UDP datagrams over IPv4 in a pcap file's bytes. A record cut short (tcpdump still writing)
 * ends the list; frames that are not Ethernet/IPv4/UDP are skipped.
 */
export function parsePcapUdp(file: Buffer): CapturedUdp[] {
  if (file.length < PCAP_GLOBAL_HEADER_BYTES) return [];
  const magicLE = file.readUInt32LE(0);
  let le: boolean;
  let fracPerMs: number;
  if (magicLE === 0xa1b2c3d4 || magicLE === 0xa1b23c4d) {
    le = true;
    fracPerMs = magicLE === 0xa1b23c4d ? 1e6 : 1e3;
  } else {
    const magicBE = file.readUInt32BE(0);
    if (magicBE !== 0xa1b2c3d4 && magicBE !== 0xa1b23c4d) throw new Error(`not a pcap file (magic ${magicLE.toString(16)})`);
    le = false;
    fracPerMs = magicBE === 0xa1b23c4d ? 1e6 : 1e3;
  }
  const u32 = (at: number): number => (le ? file.readUInt32LE(at) : file.readUInt32BE(at));
  const linktype = u32(20) & 0x0fffffff; // the top bits carry FCS information
  if (linktype !== LINKTYPE_ETHERNET) throw new Error(`pcap link type ${linktype}, expected Ethernet (1)`);

  const out: CapturedUdp[] = [];
  let at = PCAP_GLOBAL_HEADER_BYTES;
  while (at + PCAP_RECORD_HEADER_BYTES <= file.length) {
    const tsSec = u32(at);
    const tsFrac = u32(at + 4);
    const inclLen = u32(at + 8);
    const start = at + PCAP_RECORD_HEADER_BYTES;
    if (start + inclLen > file.length) break;
    const frame = file.subarray(start, start + inclLen);
    at = start + inclLen;

    if (frame.length < 14) continue;
    let l3 = 14;
    let ethertype = frame.readUInt16BE(12);
    if (ethertype === ETHERTYPE_VLAN && frame.length >= 18) {
      ethertype = frame.readUInt16BE(16);
      l3 = 18;
    }
    if (ethertype !== ETHERTYPE_IPV4 || frame.length < l3 + 20) continue;
    const versionIhl = frame[l3] as number;
    if (versionIhl >> 4 !== 4) continue;
    const ihlBytes = (versionIhl & 0x0f) * 4;
    if (frame[l3 + 9] !== IP_PROTOCOL_UDP) continue;
    const fragment = frame.readUInt16BE(l3 + 6);
    if ((fragment & 0x1fff) !== 0 || (fragment & 0x2000) !== 0) continue; // DHCP never fragments here
    const l4 = l3 + ihlBytes;
    if (frame.length < l4 + 8) continue;
    const udpLength = frame.readUInt16BE(l4 + 4);
    const payload = Buffer.from(frame.subarray(l4 + 8, Math.min(frame.length, l4 + udpLength)));
    let dhcp: Dhcp4Message | undefined;
    try {
      dhcp = decodeDhcp4(payload);
    } catch {
      dhcp = undefined;
    }
    out.push({
      index: out.length,
      timeMs: tsSec * 1000 + tsFrac / fracPerMs,
      dstMac: mac(frame.subarray(0, 6)),
      srcMac: mac(frame.subarray(6, 12)),
      srcIp: ipv4(frame.subarray(l3 + 12, l3 + 16)),
      dstIp: ipv4(frame.subarray(l3 + 16, l3 + 20)),
      srcPort: frame.readUInt16BE(l4),
      dstPort: frame.readUInt16BE(l4 + 2),
      payload,
      dhcp,
    });
  }
  return out;
}

/**
 * tcpdump on one interface of a namespace, writing every DHCP and PXE boot server datagram
 * (ports 67, 68, 4011) to a pcap file as it arrives (-U, --immediate-mode).
 */
export class Capture {
  readonly proc: NetnsProcess;

  private constructor(
    ns: Netns,
    readonly file: string,
    ifname: string,
  ) {
    this.proc = ns.spawn(
      // -Z root: Debian's tcpdump otherwise drops to user tcpdump, who cannot write our temp dir.
      ['tcpdump', '-i', ifname, '-n', '-U', '--immediate-mode', '-Z', 'root', '-w', file, 'udp and (port 67 or port 68 or port 4011)'],
      { label: `${ns.name}: tcpdump ${ifname}` },
    );
  }

  /** Starts tcpdump and waits until it is capturing. `file` should end in .pcap (AppArmor). */
  static async start(ns: Netns, file: string, ifname = 'eth0'): Promise<Capture> {
    const capture = new Capture(ns, file, ifname);
    await capture.proc.waitForLine(/listening on/, { stream: 'stderr', timeoutMs: 10_000 });
    return capture;
  }

  packets(): CapturedUdp[] {
    return existsSync(this.file) ? parsePcapUdp(readFileSync(this.file)) : [];
  }

  /** Polls the file (bounded) until `check` returns something. */
  async waitFor<T>(check: (packets: CapturedUdp[]) => T | undefined, timeoutMs = 10_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = check(this.packets());
      if (found !== undefined) return found;
      if (Date.now() > deadline) {
        throw new Error(
          `capture ${this.file}: awaited packet not seen in ${timeoutMs} ms (${this.packets().length} packets)\n${this.proc.describe()}`,
        );
      }
      await sleep(50);
    }
  }

  /** Stops tcpdump (SIGTERM: it flushes and closes the file) and returns what it captured. */
  async stop(): Promise<CapturedUdp[]> {
    await this.proc.stop();
    return this.packets();
  }
}
