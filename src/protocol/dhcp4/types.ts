/**
 * DHCPv4 message model shared by the codec (message.ts) and the server (src/dhcp/).
 * Addresses are dotted-quad strings; options are raw bytes keyed by code, kept in wire
 * order on decode (repeated codes joined per RFC 3396) and written in Map order on encode,
 * with option 82 always last (RFC 3046 §2.1).
 */

/** RFC 2131 §2 `op`. */
export const BootOp = { BOOTREQUEST: 1, BOOTREPLY: 2 } as const;
export type BootOp = (typeof BootOp)[keyof typeof BootOp];

/** RFC 2132 §9.6 option 53 values. */
export const MessageType = {
  DISCOVER: 1,
  OFFER: 2,
  REQUEST: 3,
  DECLINE: 4,
  ACK: 5,
  NAK: 6,
  RELEASE: 7,
  INFORM: 8,
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];
export const MessageTypeName: Record<MessageType, string> = {
  1: 'DISCOVER',
  2: 'OFFER',
  3: 'REQUEST',
  4: 'DECLINE',
  5: 'ACK',
  6: 'NAK',
  7: 'RELEASE',
  8: 'INFORM',
};

/** Option codes pxeha reads or writes (RFC 2132 unless noted). */
export const OptionCode = {
  PAD: 0,
  SUBNET_MASK: 1,
  ROUTER: 3,
  DNS_SERVERS: 6,
  HOSTNAME: 12,
  DOMAIN_NAME: 15,
  BROADCAST_ADDRESS: 28,
  NTP_SERVERS: 42,
  VENDOR_SPECIFIC: 43,
  REQUESTED_IP: 50,
  LEASE_TIME: 51,
  OVERLOAD: 52,
  MESSAGE_TYPE: 53,
  SERVER_ID: 54,
  PARAMETER_REQUEST_LIST: 55,
  MESSAGE: 56,
  MAX_MESSAGE_SIZE: 57,
  RENEWAL_TIME: 58,
  REBINDING_TIME: 59,
  VENDOR_CLASS_ID: 60,
  CLIENT_ID: 61,
  TFTP_SERVER_NAME: 66,
  BOOTFILE_NAME: 67,
  USER_CLASS: 77, // RFC 3004
  RELAY_AGENT_INFO: 82, // RFC 3046
  CLIENT_ARCH: 93, // RFC 4578
  CLIENT_NDI: 94, // RFC 4578
  CLIENT_UUID: 97, // RFC 4578
  SUBNET_SELECTION: 118, // RFC 3011
  IPXE_ENCAP: 175, // iPXE encapsulated options
  END: 255,
} as const;
export type OptionCode = (typeof OptionCode)[keyof typeof OptionCode];

/** Sub-options of option 82 (RFC 3046, RFC 3527 link selection). */
export const RelaySubOption = { CIRCUIT_ID: 1, REMOTE_ID: 2, LINK_SELECTION: 5 } as const;

/** iPXE sub-options inside option 175 (ipxe src/include/ipxe/dhcp.h). */
export const IpxeSubOption = { NO_PXEDHCP: 176, BUS_ID: 177, HTTP: 19, HTTPS: 20, PXEEXT: 16 } as const;

/** RFC 2131 §2 flags field: the broadcast bit. */
export const BROADCAST_FLAG = 0x8000;

export interface Dhcp4Message {
  op: BootOp;
  /** Hardware type, 1 = Ethernet. */
  htype: number;
  /** Hardware address length, 6 for Ethernet. */
  hlen: number;
  hops: number;
  xid: number;
  secs: number;
  flags: number;
  ciaddr: string;
  yiaddr: string;
  siaddr: string;
  giaddr: string;
  /** Always 16 bytes on the wire; the first `hlen` are the hardware address. */
  chaddr: Buffer;
  /** Server host name (64 bytes on the wire, NUL padded), unless overloaded with options. */
  sname: string;
  /** Boot file name (128 bytes on the wire, NUL padded), unless overloaded with options. */
  file: string;
  /** Options by code, in wire order; values are the joined payload without code/length. */
  options: Map<number, Buffer>;
}
