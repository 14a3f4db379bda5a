/**
 * Where a reply goes: RFC 2131 §4.1, in the order coredhcp's server/handle.go applies it.
 * Written once, for every handler and both ports.
 */
import { BROADCAST_FLAG } from '../protocol/dhcp4/types.js';

export type ReplyDestination =
  /** Send to this address and port as is. */
  | { kind: 'unicast'; address: string; port: number }
  /** Broadcast 255.255.255.255 on the receiving interface. */
  | { kind: 'broadcast'; port: number }
  /**
   * Unicast to a client that has no address yet: needs an ARP entry for (address, mac);
   * the adapter falls back to broadcast when it cannot add one (RFC 2131 §4.1 allows it).
   */
  | { kind: 'unicast-to-new-client'; address: string; mac: string; port: number };

export interface DestinationInput {
  giaddr: string;
  ciaddr: string;
  yiaddr: string;
  flags: number;
  mac: string;
  isNak: boolean;
  /** Set when the request came to the PXE boot server port (4011): answer where it came from. */
  unicastSource: { address: string; port: number } | undefined;
  serverPort: number;
  clientPort: number;
}

const ZERO = '0.0.0.0';

export function replyDestination(i: DestinationInput): ReplyDestination {
  if (i.unicastSource) return { kind: 'unicast', ...i.unicastSource };
  if (i.giaddr !== ZERO) return { kind: 'unicast', address: i.giaddr, port: i.serverPort };
  if (i.isNak) return { kind: 'broadcast', port: i.clientPort };
  if (i.ciaddr !== ZERO) return { kind: 'unicast', address: i.ciaddr, port: i.clientPort };
  if ((i.flags & BROADCAST_FLAG) !== 0 || i.yiaddr === ZERO) return { kind: 'broadcast', port: i.clientPort };
  return { kind: 'unicast-to-new-client', address: i.yiaddr, mac: i.mac, port: i.clientPort };
}
