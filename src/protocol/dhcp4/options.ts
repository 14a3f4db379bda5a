/**
 * The one registry of DHCPv4 option codecs: code → { name, decode, encode }, and typed access
 * to `Dhcp4Message.options` through it (`getOption`, `setOption`).
 *
 * Options stay raw bytes in the message (message.ts); a value is decoded only when someone asks
 * for it, and a malformed value throws `DecodeError` naming the option. Each codec cites the
 * RFC section that fixes its layout.
 *
 * Text options are NVT ASCII (RFC 2132 §2). They are read one character per byte (latin1), so
 * nothing is lost, with trailing NULs removed as §2 requires of receivers; on encode, characters
 * above U+00FF are refused instead of silently mangled. To send UTF-8, convert first:
 * `Buffer.from(s, 'utf8').toString('latin1')`.
 */
import { parseIpv4 } from '../../util/ipv4.js';
import { ByteReader, ByteWriter, DecodeError, EncodeError, ipv4ToBytes } from '../bytes.js';
import {
  IpxeSubOption,
  MessageType,
  MessageTypeName,
  OptionCode,
  RelaySubOption,
  type Dhcp4Message,
} from './types.js';

export interface OptionCodec<T> {
  /** Name for logs, the key of the code in `OptionCode`. */
  readonly name: string;
  /** Typed value of the (joined) option payload; throws DecodeError when it is malformed. */
  decode(value: Buffer): T;
  /** Payload bytes for a typed value; throws EncodeError when the value cannot be sent. */
  encode(value: T): Buffer;
}

/** One TLV inside an encapsulating option (43, 82, 175). */
export interface SubOption {
  code: number;
  data: Buffer;
}

/** RFC 2132 §9.14: a type byte (1 = Ethernet, i.e. htype; 255 = RFC 4361 IAID+DUID) and data. */
export interface ClientId {
  type: number;
  data: Buffer;
}

/** RFC 4578 §2.2: network interface identifier; type 1 is UNDI, followed by its version. */
export interface ClientNdi {
  type: number;
  major: number;
  minor: number;
}

/** Option code → name, for logs. Codes pxeha does not know print as `OPTION_<code>`. */
export const OptionName: Readonly<Record<number, string>> = Object.freeze(
  Object.fromEntries(Object.entries(OptionCode).map(([name, code]) => [code, name])),
);

export function optionName(code: number): string {
  return OptionName[code] ?? `OPTION_${code}`;
}

const fieldOf = (code: number): string => `option ${code} ${optionName(code)}`;

/* ----------------------------------------------------------------------------------------- */
/* Codec builders                                                                            */
/* ----------------------------------------------------------------------------------------- */

function ipv4Codec(code: number): OptionCodec<string> {
  const field = fieldOf(code);
  return {
    name: optionName(code),
    decode(value) {
      const r = new ByteReader(value);
      const ip = r.ipv4(field);
      r.expectEnd(field);
      return ip;
    },
    encode: (ip) => ipv4ToBytes(field, ip),
  };
}

/** RFC 2132 §3.5 and others: one or more addresses, length a multiple of 4. */
function ipv4ListCodec(code: number): OptionCodec<string[]> {
  const field = fieldOf(code);
  return {
    name: optionName(code),
    decode(value) {
      if (value.length === 0 || value.length % 4 !== 0) {
        throw new DecodeError(field, 0, `length ${value.length} is not a positive multiple of 4`);
      }
      const r = new ByteReader(value);
      const ips: string[] = [];
      while (r.remaining > 0) ips.push(r.ipv4(field));
      return ips;
    },
    encode(ips) {
      if (ips.length === 0) throw new EncodeError(field, 'needs at least one address');
      const out = Buffer.allocUnsafe(4 * ips.length);
      ips.forEach((ip, i) => {
        const value = parseIpv4(ip);
        if (value < 0) throw new EncodeError(field, `${JSON.stringify(ip)} is not a dotted-quad IPv4 address`);
        out.writeUInt32BE(value, 4 * i);
      });
      return out;
    },
  };
}

function uintCodec(code: number, widthBytes: 1 | 2 | 4): OptionCodec<number> {
  const field = fieldOf(code);
  return {
    name: optionName(code),
    decode(value) {
      const r = new ByteReader(value);
      const n = widthBytes === 1 ? r.u8(field) : widthBytes === 2 ? r.u16(field) : r.u32(field);
      r.expectEnd(field);
      return n;
    },
    encode(n) {
      if (!Number.isInteger(n) || n < 0 || n > 2 ** (8 * widthBytes) - 1) {
        throw new EncodeError(field, `${n} is not an integer in 0..${2 ** (8 * widthBytes) - 1}`);
      }
      const out = Buffer.allocUnsafe(widthBytes);
      out.writeUIntBE(n, 0, widthBytes);
      return out;
    },
  };
}

/** Latin1 text with trailing NULs removed (RFC 2132 §2). */
function decodeText(value: Buffer): string {
  let end = value.length;
  while (end > 0 && value[end - 1] === 0) end -= 1;
  return value.subarray(0, end).toString('latin1');
}

function encodeText(field: string, text: string): Buffer {
  if (/[^\x00-\xff]/.test(text)) {
    throw new EncodeError(field, 'holds a character above U+00FF; text options are one byte a character');
  }
  return Buffer.from(text, 'latin1');
}

/** RFC 2132: text options have a minimum length of 1. */
function textCodec(code: number): OptionCodec<string> {
  const field = fieldOf(code);
  return {
    name: optionName(code),
    decode: decodeText,
    encode(text) {
      if (text.length === 0) throw new EncodeError(field, 'text options are at least one byte long');
      return encodeText(field, text);
    },
  };
}

/** RFC 2132 §9.6. */
const messageTypeCodec: OptionCodec<MessageType> = {
  name: optionName(OptionCode.MESSAGE_TYPE),
  decode(value) {
    const field = fieldOf(OptionCode.MESSAGE_TYPE);
    const r = new ByteReader(value);
    const type = r.u8(field);
    r.expectEnd(field);
    if (!(type in MessageTypeName)) throw new DecodeError(field, 0, `unknown DHCP message type ${type}`);
    return type as MessageType;
  },
  encode: (type) => Buffer.from([type]),
};

/** RFC 2132 §9.8: a list of option codes, one byte each. */
const parameterRequestListCodec: OptionCodec<number[]> = {
  name: optionName(OptionCode.PARAMETER_REQUEST_LIST),
  decode: (value) => [...value],
  encode(codes) {
    const w = new ByteWriter(codes.length);
    for (const c of codes) w.u8(fieldOf(OptionCode.PARAMETER_REQUEST_LIST), c);
    return w.toBuffer();
  },
};

/** RFC 2132 §9.14: type byte plus at least one byte of identifier. */
const clientIdCodec: OptionCodec<ClientId> = {
  name: optionName(OptionCode.CLIENT_ID),
  decode(value) {
    const field = fieldOf(OptionCode.CLIENT_ID);
    if (value.length < 2) throw new DecodeError(field, 0, 'client identifier needs a type byte and data');
    const r = new ByteReader(value);
    return { type: r.u8(field), data: r.rest(field) };
  },
  encode(id) {
    const field = fieldOf(OptionCode.CLIENT_ID);
    if (id.data.length === 0) throw new EncodeError(field, 'client identifier needs data');
    return new ByteWriter(1 + id.data.length).u8(field, id.type).bytes(field, id.data).toBuffer();
  },
};

/** RFC 4578 §2.1: one or more 16-bit architecture types (IANA "Processor Architecture Types"). */
const clientArchCodec: OptionCodec<number[]> = {
  name: optionName(OptionCode.CLIENT_ARCH),
  decode(value) {
    const field = fieldOf(OptionCode.CLIENT_ARCH);
    if (value.length === 0 || value.length % 2 !== 0) {
      throw new DecodeError(field, 0, `length ${value.length} is not a positive multiple of 2`);
    }
    const r = new ByteReader(value);
    const arches: number[] = [];
    while (r.remaining > 0) arches.push(r.u16(field));
    return arches;
  },
  encode(arches) {
    const field = fieldOf(OptionCode.CLIENT_ARCH);
    if (arches.length === 0) throw new EncodeError(field, 'needs at least one architecture');
    const w = new ByteWriter(arches.length * 2);
    for (const a of arches) w.u16(field, a);
    return w.toBuffer();
  },
};

/** RFC 4578 §2.2: exactly three bytes, type (1 = UNDI), major, minor. */
const clientNdiCodec: OptionCodec<ClientNdi> = {
  name: optionName(OptionCode.CLIENT_NDI),
  decode(value) {
    const field = fieldOf(OptionCode.CLIENT_NDI);
    const r = new ByteReader(value);
    const ndi = { type: r.u8(field), major: r.u8(field), minor: r.u8(field) };
    r.expectEnd(field);
    return ndi;
  },
  encode(ndi) {
    const field = fieldOf(OptionCode.CLIENT_NDI);
    return new ByteWriter(3).u8(field, ndi.type).u8(field, ndi.major).u8(field, ndi.minor).toBuffer();
  },
};

/* ----------------------------------------------------------------------------------------- */
/* UUID (option 97)                                                                          */
/* ----------------------------------------------------------------------------------------- */

/** RFC 4578 §2.3: type 0 followed by the 16-byte machine identifier. */
const UUID_TYPE_GUID = 0;
const UUID_BYTES = 16;
const UUID_TEXT = /^([0-9a-f]{8})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{12})$/i;

/**
 * Option 97's 16 bytes as text. RFC 4578 §2.3 leaves the byte order open; PXE ROMs and iPXE
 * send the SMBIOS/EFI GUID layout, whose first three groups are little-endian (iPXE `dhcp.c`
 * calls `uuid_mangle` before sending; our QEMU capture with `-uuid 12345678-9abc-def0-...`
 * puts `78 56 34 12 bc 9a f0 de` on the wire). Swapping those groups back gives the text that
 * `dmidecode -s system-uuid`, iPXE's `${uuid}` and the hypervisor show, which is what an
 * operator types into an inventory. Lowercase, 8-4-4-4-12.
 */
export function formatGuid(bytes: Buffer): string {
  const hex = (from: number, to: number, reverse: boolean): string => {
    const part = [...bytes.subarray(from, to)];
    return (reverse ? part.reverse() : part).map((b) => b.toString(16).padStart(2, '0')).join('');
  };
  return [hex(0, 4, true), hex(4, 6, true), hex(6, 8, true), hex(8, 10, false), hex(10, 16, false)].join('-');
}

/** Inverse of `formatGuid`; throws EncodeError on text that is not 8-4-4-4-12 hex. */
export function parseGuid(field: string, text: string): Buffer {
  const m = UUID_TEXT.exec(text);
  if (!m) throw new EncodeError(field, `${JSON.stringify(text)} is not an 8-4-4-4-12 UUID`);
  const groups = m.slice(1).map((g) => Buffer.from(g, 'hex'));
  for (const i of [0, 1, 2]) (groups[i] as Buffer).reverse();
  return Buffer.concat(groups);
}

const clientUuidCodec: OptionCodec<string> = {
  name: optionName(OptionCode.CLIENT_UUID),
  decode(value) {
    const field = fieldOf(OptionCode.CLIENT_UUID);
    const r = new ByteReader(value);
    const type = r.u8(field);
    if (type !== UUID_TYPE_GUID) throw new DecodeError(field, 0, `UUID type ${type} is not 0 (RFC 4578 §2.3)`);
    const guid = r.bytes(field, UUID_BYTES);
    r.expectEnd(field);
    return formatGuid(guid);
  },
  encode: (text) => Buffer.concat([Buffer.from([UUID_TYPE_GUID]), parseGuid(fieldOf(OptionCode.CLIENT_UUID), text)]),
};

/* ----------------------------------------------------------------------------------------- */
/* User class (option 77)                                                                    */
/* ----------------------------------------------------------------------------------------- */

/**
 * RFC 3004 §4: a series of (length, data) instances, each at least one byte. iPXE instead sends
 * the bare text "iPXE" with no length byte (ipxe `dhcp.c`, `DHCP_USER_CLASS_ID`, and our QEMU
 * capture; tcpdump flags it as invalid), as do some other firmwares. The value is RFC 3004 when
 * the instances cover the payload exactly; otherwise it is one bare string. A bare string that
 * happens to parse as RFC 3004 (its first byte equal to the remaining length, and so on) would be
 * misread, but no real client sends one: "iPXE" starts with 0x69.
 */
export function parseUserClass(value: Buffer): string[] {
  const classes: string[] = [];
  let at = 0;
  while (at < value.length) {
    const lengthBytes = value[at] as number;
    if (lengthBytes === 0 || at + 1 + lengthBytes > value.length) return [decodeText(value)];
    classes.push(value.subarray(at + 1, at + 1 + lengthBytes).toString('latin1'));
    at += 1 + lengthBytes;
  }
  return classes;
}

/** Always the RFC 3004 form. */
export function buildUserClass(classes: readonly string[]): Buffer {
  const field = fieldOf(OptionCode.USER_CLASS);
  if (classes.length === 0) throw new EncodeError(field, 'needs at least one class');
  const w = new ByteWriter();
  for (const c of classes) {
    if (c.length === 0 || c.length > 255) throw new EncodeError(field, 'each class is 1..255 bytes');
    w.u8(field, c.length).bytes(field, encodeText(field, c));
  }
  return w.toBuffer();
}

const userClassCodec: OptionCodec<string[]> = {
  name: optionName(OptionCode.USER_CLASS),
  decode: parseUserClass,
  encode: buildUserClass,
};

/* ----------------------------------------------------------------------------------------- */
/* Encapsulated sub-options (43, 82, 175)                                                    */
/* ----------------------------------------------------------------------------------------- */

/**
 * Sub-options as plain TLVs with no PAD or END (RFC 3046 §2.0 for option 82: codes 0 and 255
 * are ordinary sub-option codes there). Throws DecodeError when a TLV overruns.
 */
export function parseTlvs(value: Buffer, field: string): SubOption[] {
  return readTlvs(value, field, false);
}

/**
 * Sub-options encapsulated the RFC 2132 §8.4 way, as PXE (option 43) and iPXE (option 175) use:
 * PAD (0) is skipped and END (255) stops the list.
 */
export function parseEncapsulated(value: Buffer, field: string): SubOption[] {
  return readTlvs(value, field, true);
}

function readTlvs(value: Buffer, field: string, padAndEnd: boolean): SubOption[] {
  const r = new ByteReader(value);
  const subs: SubOption[] = [];
  while (r.remaining > 0) {
    const code = r.u8(`${field}.code`);
    if (padAndEnd && code === OptionCode.PAD) continue;
    if (padAndEnd && code === OptionCode.END) break;
    const lengthBytes = r.u8(`${field}[${code}].length`);
    subs.push({ code, data: r.bytes(`${field}[${code}].data`, lengthBytes) });
  }
  return subs;
}

/**
 * TLVs back to bytes; `withEnd` appends END (PXE option 43 ends with one, PXE specification
 * 2.1 Table 2-1).
 */
export function buildTlvs(subs: readonly SubOption[], field: string, withEnd = false): Buffer {
  const w = new ByteWriter();
  for (const s of subs) {
    if (s.data.length > 255) throw new EncodeError(`${field}[${s.code}]`, 'sub-option data is at most 255 bytes');
    w.u8(`${field}.code`, s.code).u8(`${field}[${s.code}].length`, s.data.length).bytes(field, s.data);
  }
  if (withEnd) w.u8(field, OptionCode.END);
  return w.toBuffer();
}

export function findSubOption(subs: readonly SubOption[], code: number): Buffer | undefined {
  return subs.find((s) => s.code === code)?.data;
}

/**
 * RFC 3046 relay agent information. The server must echo it unchanged (RFC 3046 §2.2), so the
 * message keeps the raw bytes and this view is only for reading sub-options.
 */
const relayAgentInfoCodec: OptionCodec<SubOption[]> = {
  name: optionName(OptionCode.RELAY_AGENT_INFO),
  decode: (value) => parseTlvs(value, fieldOf(OptionCode.RELAY_AGENT_INFO)),
  encode: (subs) => buildTlvs(subs, fieldOf(OptionCode.RELAY_AGENT_INFO)),
};

/** iPXE option 175: encapsulated options (ipxe `include/ipxe/dhcp.h`); iPXE sends no END. */
const ipxeEncapCodec: OptionCodec<SubOption[]> = {
  name: optionName(OptionCode.IPXE_ENCAP),
  decode: (value) => parseEncapsulated(value, fieldOf(OptionCode.IPXE_ENCAP)),
  encode: (subs) => buildTlvs(subs, fieldOf(OptionCode.IPXE_ENCAP)),
};

/** Vendor-specific information stays raw: its layout depends on option 60 (RFC 2132 §8.4). */
const vendorSpecificCodec: OptionCodec<Buffer> = {
  name: optionName(OptionCode.VENDOR_SPECIFIC),
  decode: (value) => Buffer.from(value),
  encode: (value) => Buffer.from(value),
};

/** RFC 2132 §9.3; message.ts consumes 52 itself, the codec is here for completeness. */
const overloadCodec = uintCodec(OptionCode.OVERLOAD, 1);

/* ----------------------------------------------------------------------------------------- */
/* The registry                                                                              */
/* ----------------------------------------------------------------------------------------- */

export const optionRegistry = Object.freeze({
  [OptionCode.SUBNET_MASK]: ipv4Codec(OptionCode.SUBNET_MASK), // RFC 2132 §3.3
  [OptionCode.ROUTER]: ipv4ListCodec(OptionCode.ROUTER), // §3.5
  [OptionCode.DNS_SERVERS]: ipv4ListCodec(OptionCode.DNS_SERVERS), // §3.8
  [OptionCode.HOSTNAME]: textCodec(OptionCode.HOSTNAME), // §3.14
  [OptionCode.DOMAIN_NAME]: textCodec(OptionCode.DOMAIN_NAME), // §3.17
  [OptionCode.BROADCAST_ADDRESS]: ipv4Codec(OptionCode.BROADCAST_ADDRESS), // §5.3
  [OptionCode.NTP_SERVERS]: ipv4ListCodec(OptionCode.NTP_SERVERS), // §8.3
  [OptionCode.VENDOR_SPECIFIC]: vendorSpecificCodec, // §8.4
  [OptionCode.REQUESTED_IP]: ipv4Codec(OptionCode.REQUESTED_IP), // §9.1
  [OptionCode.LEASE_TIME]: uintCodec(OptionCode.LEASE_TIME, 4), // §9.2, seconds
  [OptionCode.OVERLOAD]: overloadCodec, // §9.3
  [OptionCode.MESSAGE_TYPE]: messageTypeCodec, // §9.6
  [OptionCode.SERVER_ID]: ipv4Codec(OptionCode.SERVER_ID), // §9.7
  [OptionCode.PARAMETER_REQUEST_LIST]: parameterRequestListCodec, // §9.8
  [OptionCode.MESSAGE]: textCodec(OptionCode.MESSAGE), // §9.9
  [OptionCode.MAX_MESSAGE_SIZE]: uintCodec(OptionCode.MAX_MESSAGE_SIZE, 2), // §9.10, bytes
  [OptionCode.RENEWAL_TIME]: uintCodec(OptionCode.RENEWAL_TIME, 4), // §9.11, seconds
  [OptionCode.REBINDING_TIME]: uintCodec(OptionCode.REBINDING_TIME, 4), // §9.12, seconds
  [OptionCode.VENDOR_CLASS_ID]: textCodec(OptionCode.VENDOR_CLASS_ID), // §9.13
  [OptionCode.CLIENT_ID]: clientIdCodec, // §9.14
  [OptionCode.TFTP_SERVER_NAME]: textCodec(OptionCode.TFTP_SERVER_NAME), // §9.4
  [OptionCode.BOOTFILE_NAME]: textCodec(OptionCode.BOOTFILE_NAME), // §9.5
  [OptionCode.USER_CLASS]: userClassCodec, // RFC 3004
  [OptionCode.RELAY_AGENT_INFO]: relayAgentInfoCodec, // RFC 3046
  [OptionCode.CLIENT_ARCH]: clientArchCodec, // RFC 4578 §2.1
  [OptionCode.CLIENT_NDI]: clientNdiCodec, // RFC 4578 §2.2
  [OptionCode.CLIENT_UUID]: clientUuidCodec, // RFC 4578 §2.3
  [OptionCode.SUBNET_SELECTION]: ipv4Codec(OptionCode.SUBNET_SELECTION), // RFC 3011 §3
  [OptionCode.IPXE_ENCAP]: ipxeEncapCodec, // iPXE
} as const satisfies Record<number, OptionCodec<unknown>>);

export type RegisteredOptionCode = keyof typeof optionRegistry;
export type OptionValue<C extends RegisteredOptionCode> =
  (typeof optionRegistry)[C] extends OptionCodec<infer T> ? T : never;

/**
 * The typed value of option `code`, or undefined when the message lacks it. Throws DecodeError
 * (field `option <code> <NAME>`, offset within the value) when the value is malformed.
 */
export function getOption<C extends RegisteredOptionCode>(
  msg: Pick<Dhcp4Message, 'options'>,
  code: C,
): OptionValue<C> | undefined {
  const raw = msg.options.get(code);
  if (raw === undefined) return undefined;
  const codec = optionRegistry[code] as OptionCodec<OptionValue<C>>;
  return codec.decode(raw);
}

/**
 * Sets option `code` to the encoding of `value`. A code already present keeps its position in
 * the Map (and so on the wire); a new one is appended. Throws EncodeError for unsendable values.
 */
export function setOption<C extends RegisteredOptionCode>(
  msg: Pick<Dhcp4Message, 'options'>,
  code: C,
  value: OptionValue<C>,
): void {
  const codec = optionRegistry[code] as OptionCodec<OptionValue<C>>;
  msg.options.set(code, codec.encode(value));
}

/* ----------------------------------------------------------------------------------------- */
/* Relay agent information (82)                                                              */
/* ----------------------------------------------------------------------------------------- */

/**
 * RFC 3527 link selection: the subnet the relay wants the address from, which takes precedence
 * over giaddr. Undefined when the message has no 82 or no sub-option 5. Throws DecodeError when
 * 82 is malformed or sub-option 5 is not four bytes.
 */
export function getLinkSelection(msg: Pick<Dhcp4Message, 'options'>): string | undefined {
  const subs = getOption(msg, OptionCode.RELAY_AGENT_INFO);
  const data = subs && findSubOption(subs, RelaySubOption.LINK_SELECTION);
  if (data === undefined) return undefined;
  const field = `${fieldOf(OptionCode.RELAY_AGENT_INFO)}[${RelaySubOption.LINK_SELECTION}]`;
  const r = new ByteReader(data);
  const ip = r.ipv4(field);
  r.expectEnd(field);
  return ip;
}

/* ----------------------------------------------------------------------------------------- */
/* PXE vendor options (43 when option 60 starts with "PXEClient")                            */
/* ----------------------------------------------------------------------------------------- */

/** PXE specification 2.1, Table 2-1: sub-options of option 43 for PXE clients. */
export const PxeVendorSubOption = {
  MTFTP_IP: 1,
  MTFTP_CPORT: 2,
  MTFTP_SPORT: 3,
  MTFTP_TMOUT: 4,
  MTFTP_DELAY: 5,
  DISCOVERY_CONTROL: 6,
  DISCOVERY_MCAST_ADDR: 7,
  BOOT_SERVERS: 8,
  BOOT_MENU: 9,
  MENU_PROMPT: 10,
  MCAST_ADDRS_ALLOC: 11,
  CREDENTIAL_TYPES: 12,
  BOOT_ITEM: 71,
} as const;
export type PxeVendorSubOption = (typeof PxeVendorSubOption)[keyof typeof PxeVendorSubOption];

/** PXE specification 2.1, Table 2-1: bits of PXE_DISCOVERY_CONTROL (sub-option 6). */
export const PxeDiscoveryControl = {
  DISABLE_BROADCAST: 0x01,
  DISABLE_MULTICAST: 0x02,
  ONLY_LISTED_SERVERS: 0x04,
  /** Boot the file named in this offer without boot server discovery or a menu. */
  USE_BOOTFILE: 0x08,
} as const;

export function parsePxeVendorOptions(value: Buffer): SubOption[] {
  return parseEncapsulated(value, fieldOf(OptionCode.VENDOR_SPECIFIC));
}

/** PXE ROMs expect the sub-option list closed by END. */
export function buildPxeVendorOptions(subs: readonly SubOption[]): Buffer {
  return buildTlvs(subs, fieldOf(OptionCode.VENDOR_SPECIFIC), true);
}

/* ----------------------------------------------------------------------------------------- */
/* iPXE encapsulated options (175)                                                           */
/* ----------------------------------------------------------------------------------------- */

/** Names of the iPXE sub-options of 175 (ipxe `include/ipxe/dhcp.h` and `features.h`). */
export const IpxeSubOptionName: Readonly<Record<number, string>> = Object.freeze({
  0x10: 'PXE_EXT',
  0x11: 'ISCSI',
  0x12: 'AOE',
  0x13: 'HTTP',
  0x14: 'HTTPS',
  0x15: 'TFTP',
  0x16: 'FTP',
  0x17: 'DNS',
  0x18: 'BZIMAGE',
  0x19: 'MULTIBOOT',
  0x1a: 'SLAM',
  0x1b: 'SRP',
  0x20: 'NBI',
  0x21: 'PXE',
  0x22: 'ELF',
  0x23: 'COMBOOT',
  0x24: 'EFI',
  0x25: 'FCOE',
  0x26: 'VLAN',
  0x27: 'MENU',
  0x28: 'SDI',
  0x29: 'NFS',
  [IpxeSubOption.NO_PXEDHCP]: 'NO_PXEDHCP',
  [IpxeSubOption.BUS_ID]: 'BUS_ID',
  0xeb: 'VERSION',
});

/**
 * Whether iPXE advertises feature `code` in option 175 (a one-byte sub-option, non-zero when
 * present, e.g. 0x13 HTTP, 0x14 HTTPS). False when there is no 175.
 */
export function hasIpxeFeature(msg: Pick<Dhcp4Message, 'options'>, code: number): boolean {
  const data = findSubOption(getOption(msg, OptionCode.IPXE_ENCAP) ?? [], code);
  return data !== undefined && data.some((b) => b !== 0);
}

/**
 * The 175.176 sub-option a server sends to tell iPXE not to wait for ProxyDHCP (iPXE
 * `DHCP_EB_NO_PXEDHCP`, value 1).
 */
export function ipxeNoPxeDhcp(): SubOption {
  return { code: IpxeSubOption.NO_PXEDHCP, data: Buffer.from([1]) };
}

/* ----------------------------------------------------------------------------------------- */
/* Formatting                                                                                */
/* ----------------------------------------------------------------------------------------- */

/** The first `hlen` bytes of chaddr as lowercase colon-separated hex (`52:54:00:12:34:56`). */
export function formatMac(chaddr: Buffer, hlen: number): string {
  const lengthBytes = Math.max(0, Math.min(hlen, chaddr.length));
  return [...chaddr.subarray(0, lengthBytes)].map((b) => b.toString(16).padStart(2, '0')).join(':');
}
