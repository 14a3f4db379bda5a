// Shared by the golden-packet capture scripts (scripts/capture-dhcp-golden.sh,
// src/protocol/tftp/testdata/capture-golden.sh): the UDP datagrams of a pcap file (Ethernet
// link type, IPv4), and annotated hex rows for the .hex files. Deliberately independent of the
// codecs under test: a plain walk of pcap, Ethernet, IPv4 and UDP headers.
import { readFileSync } from 'node:fs';

export const hex = (b) => [...b].map((x) => x.toString(16).padStart(2, '0')).join(' ');
export const ip = (b) => [...b].join('.');

/** Every IPv4 UDP datagram of the capture, in order: payload, addresses and ports. */
export function* udpDatagrams(pcapPath) {
  const pcap = readFileSync(pcapPath);
  const le = pcap.readUInt32LE(0) === 0xa1b2c3d4 || pcap.readUInt32LE(0) === 0xa1b23c4d;
  const u32 = (o) => (le ? pcap.readUInt32LE(o) : pcap.readUInt32BE(o));
  if (u32(20) !== 1) throw new Error(`link type ${u32(20)} is not Ethernet`);
  let off = 24;
  while (off + 16 <= pcap.length) {
    const incl = u32(off + 8);
    const frame = pcap.subarray(off + 16, off + 16 + incl);
    off += 16 + incl;
    if (frame.readUInt16BE(12) !== 0x0800) continue;
    const ipHdr = frame.subarray(14);
    const ihl = (ipHdr[0] & 0x0f) * 4;
    if (ipHdr[9] !== 17) continue;
    const udp = ipHdr.subarray(ihl);
    const srcIp = ip(ipHdr.subarray(12, 16));
    const dstIp = ip(ipHdr.subarray(16, 20));
    const srcPort = udp.readUInt16BE(0);
    const dstPort = udp.readUInt16BE(2);
    yield { payload: udp.subarray(8, udp.readUInt16BE(4)), srcIp, dstIp, wire: `${srcIp}:${srcPort} -> ${dstIp}:${dstPort}` };
  }
}

/** Lines of a .hex file: `row` writes up to 16 bytes with a comment, `rows` any number. */
export function hexLines() {
  const lines = [];
  const row = (bytes, comment) => lines.push(`${hex(bytes).padEnd(48)}${comment ? ` # ${comment}` : ''}`.trimEnd());
  const rows = (bytes, comment) => {
    for (let i = 0; i < bytes.length; i += 16) row(bytes.subarray(i, i + 16), i === 0 ? comment : '');
  };
  return { lines, row, rows };
}
