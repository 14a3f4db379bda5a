/**
 * The cluster configuration compiled for the packet path: parsed networks, pools as integer
 * ranges and reservation indexes, built once per configuration revision so that no request
 * parses a CIDR or scans a reservation list.
 */
import type { ClusterConfig, ReservationConfig, SubnetConfig } from '../config/schema.js';
import { ipToInt, networkContains, parseCidr, type Ipv4Network } from '../util/ipv4.js';

export interface PoolRange {
  start: number;
  end: number;
}

export interface CompiledSubnet {
  config: SubnetConfig;
  name: string;
  network: Ipv4Network;
  pools: PoolRange[];
  /** Total addresses in all pools. */
  poolSize: number;
  reservationsByMac: Map<string, ReservationConfig>;
  reservationsByClientId: Map<string, ReservationConfig>;
  /** Reserved addresses, never handed out dynamically even if inside a pool. */
  reservedAddresses: Set<number>;
}

export interface CompiledCluster {
  config: ClusterConfig;
  subnets: CompiledSubnet[];
}

export function normalizeMac(mac: string): string {
  return mac.toLowerCase().replaceAll('-', ':');
}

export function normalizeHex(hex: string): string {
  return hex.toLowerCase().replaceAll(':', '');
}

export function compileCluster(config: ClusterConfig): CompiledCluster {
  return { config, subnets: config.subnets.map(compileSubnet) };
}

function compileSubnet(config: SubnetConfig): CompiledSubnet {
  const pools = config.pools.map((p) => ({ start: ipToInt(p.start), end: ipToInt(p.end) }));
  const byMac = new Map<string, ReservationConfig>();
  const byClientId = new Map<string, ReservationConfig>();
  const reserved = new Set<number>();
  for (const r of config.reservations) {
    if (r.mac) byMac.set(normalizeMac(r.mac), r);
    if (r.clientId) byClientId.set(normalizeHex(r.clientId), r);
    reserved.add(ipToInt(r.address));
  }
  return {
    config,
    name: config.name,
    network: parseCidr(config.subnet),
    pools,
    poolSize: pools.reduce((n, p) => n + (p.end - p.start + 1), 0),
    reservationsByMac: byMac,
    reservationsByClientId: byClientId,
    reservedAddresses: reserved,
  };
}

/** The reservation for a client: client identifier first (RFC 2131 §4.2), then MAC. */
export function findReservation(
  subnet: CompiledSubnet,
  mac: string,
  clientIdHex: string | undefined,
): ReservationConfig | undefined {
  return (clientIdHex !== undefined ? subnet.reservationsByClientId.get(clientIdHex) : undefined) ?? subnet.reservationsByMac.get(mac);
}

export function inPool(subnet: CompiledSubnet, ip: number): boolean {
  return subnet.pools.some((p) => ip >= p.start && ip <= p.end);
}

export interface SubnetSelectionInput {
  giaddr: string;
  /** RFC 3527 link selection sub-option of option 82. */
  linkSelection: string | undefined;
  /** RFC 3011 subnet selection option 118. */
  subnetSelection: string | undefined;
  /** Address of the interface the request arrived on. */
  interfaceAddress: string | undefined;
  /** Client's own address, for unicast requests (renewals, port 4011). */
  ciaddr: string;
}

/**
 * The subnet a request belongs to (RFC 2131 §4.3.1, RFC 3011, RFC 3527): the relay's link
 * selection, then the client's subnet selection, then giaddr; for direct requests the
 * receiving interface's address, then the client's own address.
 */
export function selectSubnet(cluster: CompiledCluster, i: SubnetSelectionInput): CompiledSubnet | undefined {
  const candidates =
    i.giaddr !== '0.0.0.0'
      ? [i.linkSelection, i.subnetSelection, i.giaddr]
      : [i.subnetSelection, i.interfaceAddress, i.ciaddr !== '0.0.0.0' ? i.ciaddr : undefined];
  for (const c of candidates) {
    if (c === undefined) continue;
    const ip = ipToInt(c);
    const found = cluster.subnets.find((s) => networkContains(s.network, ip));
    if (found) return found;
    // A given selector that matches nothing must not fall through to a less specific one:
    // answering from the wrong subnet is worse than not answering.
    return undefined;
  }
  return undefined;
}
