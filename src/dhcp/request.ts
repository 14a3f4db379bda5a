/**
 * A decoded DHCP message interpreted once into the facts every handler asks about, so the
 * handlers never touch raw option bytes.
 */
import { formatMac, getLinkSelection, getOption } from '../protocol/dhcp4/options.js';
import { OptionCode, type Dhcp4Message, type MessageType } from '../protocol/dhcp4/types.js';
import { clientKeyOf } from './lease-record.js';

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

/**
 * Reads the facts handlers need from a decoded message. Throws DecodeError when an option the
 * server relies on is malformed (the adapter counts it as a decode error and drops the packet).
 */
export function interpretRequest(msg: Dhcp4Message): DhcpRequest {
  const mac = formatMac(msg.chaddr, msg.hlen);
  // The raw option 61 bytes (type byte included) are the client's identity (RFC 2131 §4.2).
  getOption(msg, OptionCode.CLIENT_ID); // validates the form
  const rawClientId = msg.options.get(OptionCode.CLIENT_ID);
  const clientIdHex = rawClientId?.toString('hex');
  const userClasses = getOption(msg, OptionCode.USER_CLASS) ?? [];
  return {
    messageType: getOption(msg, OptionCode.MESSAGE_TYPE),
    op: msg.op,
    htype: msg.htype,
    hlen: msg.hlen,
    hops: msg.hops,
    xid: msg.xid,
    secs: msg.secs,
    flags: msg.flags,
    ciaddr: msg.ciaddr,
    giaddr: msg.giaddr,
    mac,
    clientIdHex,
    clientKey: clientKeyOf(mac, clientIdHex),
    requestedIp: getOption(msg, OptionCode.REQUESTED_IP),
    serverId: getOption(msg, OptionCode.SERVER_ID),
    hostname: getOption(msg, OptionCode.HOSTNAME),
    requestedLeaseSeconds: getOption(msg, OptionCode.LEASE_TIME),
    parameterRequestList: getOption(msg, OptionCode.PARAMETER_REQUEST_LIST) ?? [],
    maxMessageSize: getOption(msg, OptionCode.MAX_MESSAGE_SIZE),
    vendorClass: getOption(msg, OptionCode.VENDOR_CLASS_ID),
    userClasses,
    clientArch: getOption(msg, OptionCode.CLIENT_ARCH)?.[0],
    clientUuid: getOption(msg, OptionCode.CLIENT_UUID),
    isIpxe: userClasses.includes('iPXE') || msg.options.has(OptionCode.IPXE_ENCAP),
    relayAgentInfo: msg.options.get(OptionCode.RELAY_AGENT_INFO),
    linkSelection: getLinkSelection(msg),
    subnetSelection: getOption(msg, OptionCode.SUBNET_SELECTION),
  };
}
