/**
 * A decoded DHCP message interpreted once into the facts every handler asks about, so the
 * handlers never touch raw option bytes.
 */
import type { MessageType } from '../protocol/dhcp4/types.js';

export interface DhcpRequest {
  messageType: MessageType | undefined;
  op: number;
  htype: number;
  hlen: number;
  hops: number;
  xid: number;
  /** Seconds since the client began acquiring (RFC 2131 §2); used by HA to pick up slow clients. */
  secs: number;
  flags: number;
  ciaddr: string;
  giaddr: string;
  /** Hardware address, lowercase colon-separated. */
  mac: string;
  /** Option 61 as lowercase hex, if sent. */
  clientIdHex: string | undefined;
  /** Lease owner key: client identifier if present, else MAC (RFC 2131 §4.2). */
  clientKey: string;
  requestedIp: string | undefined;
  serverId: string | undefined;
  hostname: string | undefined;
  /** Option 51 in a request: the lease time the client would like. */
  requestedLeaseSeconds: number | undefined;
  parameterRequestList: number[];
  /** Option 57: largest message the client accepts. */
  maxMessageSize: number | undefined;
  vendorClass: string | undefined;
  userClasses: string[];
  /** First entry of option 93. */
  clientArch: number | undefined;
  clientUuid: string | undefined;
  /** iPXE: user class "iPXE" or option 175 present. */
  isIpxe: boolean;
  /** Option 82 raw bytes, echoed unchanged (RFC 3046 §2.2). */
  relayAgentInfo: Buffer | undefined;
  /** RFC 3527 link selection (82.5). */
  linkSelection: string | undefined;
  /** RFC 3011 option 118. */
  subnetSelection: string | undefined;
}
