/** IPv4 address arithmetic on unsigned 32-bit integers. */

export function ipToInt(ip: string): number {
  const parts = ip.split('.');
  if (parts.length !== 4) throw new RangeError(`not an IPv4 address: ${ip}`);
  let n = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) throw new RangeError(`not an IPv4 address: ${ip}`);
    const v = Number(p);
    if (v > 255) throw new RangeError(`not an IPv4 address: ${ip}`);
    n = n * 256 + v;
  }
  return n;
}

export function intToIp(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

export interface Ipv4Network {
  /** Network address as an integer. */
  network: number;
  prefixLength: number;
  /** Netmask as an integer. */
  mask: number;
}

export function parseCidr(cidr: string): Ipv4Network {
  const [addr, len] = cidr.split('/');
  const prefixLength = Number(len);
  if (addr === undefined || !Number.isInteger(prefixLength) || prefixLength < 0 || prefixLength > 32) {
    throw new RangeError(`not an IPv4 CIDR: ${cidr}`);
  }
  const mask = prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0;
  return { network: (ipToInt(addr) & mask) >>> 0, prefixLength, mask };
}

export function networkContains(net: Ipv4Network, ip: number): boolean {
  return ((ip & net.mask) >>> 0) === net.network;
}

export function broadcastOf(net: Ipv4Network): number {
  return (net.network | (~net.mask >>> 0)) >>> 0;
}

export function formatCidr(net: Ipv4Network): string {
  return `${intToIp(net.network)}/${net.prefixLength}`;
}
