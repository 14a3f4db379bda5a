/**
 * DHCPv4 wire codec: `decodeDhcp4(buf)` and `encodeDhcp4(msg, opts)`, pure functions with no
 * sockets, clock or hidden state.
 *
 * RFC 2131 §2, Figure 1 (byte offsets added on the right):
 *
 *    0                   1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *    +---------------+---------------+---------------+---------------+
 *    |     op (1)    |   htype (1)   |   hlen (1)    |   hops (1)    |    0
 *    +---------------+---------------+---------------+---------------+
 *    |                            xid (4)                            |    4
 *    +-------------------------------+-------------------------------+
 *    |           secs (2)            |           flags (2)           |    8
 *    +-------------------------------+-------------------------------+
 *    |                          ciaddr  (4)                          |   12
 *    +---------------------------------------------------------------+
 *    |                          yiaddr  (4)                          |   16
 *    +---------------------------------------------------------------+
 *    |                          siaddr  (4)                          |   20
 *    +---------------------------------------------------------------+
 *    |                          giaddr  (4)                          |   24
 *    +---------------------------------------------------------------+
 *    |                                                               |
 *    |                          chaddr  (16)                         |   28
 *    |                                                               |
 *    |                                                               |
 *    +---------------------------------------------------------------+
 *    |                                                               |
 *    |                          sname   (64)                         |   44
 *    +---------------------------------------------------------------+
 *    |                                                               |
 *    |                          file    (128)                        |  108
 *    +---------------------------------------------------------------+
 *    |                                                               |
 *    |                          options (variable)                   |  236
 *    +---------------------------------------------------------------+
 *
 * The options field starts with the magic cookie 99.130.83.99 (RFC 2131 §3, RFC 2132 §2),
 * then code/length/value options, PAD (0) and END (255).
 *
 * Choices worth knowing:
 * - Options are `Map<code, Buffer>`. Decode joins repeated codes in the RFC 3396 §6 order
 *   (options field, then file, then sname); encode splits values over 255 bytes into
 *   consecutive instances (RFC 3396 §5). Options are written in Map order so that a decoded
 *   capture re-encodes to the same bytes; option 82 always goes last (RFC 3046 §2.1).
 * - Option 52 (overload) is framing, not content: decode consumes it and leaves it out of the
 *   Map, encode decides it. A caller-set 52 is refused.
 * - `sname` and `file` are binary (latin1) strings up to the first NUL, so every byte round
 *   trips; encode refuses characters above U+00FF rather than mangle them.
 * - Decode checks framing only. Typed option values are checked when read (options.ts
 *   `getOption`), so a bad host name does not make the whole packet undecodable.
 */
import { ByteReader, ByteWriter, DecodeError, EncodeError } from '../bytes.js';
import { BootOp, OptionCode, type Dhcp4Message } from './types.js';

/** RFC 2131 §3: the first four octets of the options field. */
export const MAGIC_COOKIE = 0x63825363;

/** The fixed BOOTP header, op through file (RFC 2131 §2). */
export const FIXED_HEADER_BYTES = 236;
const COOKIE_BYTES = 4;
/** Offset of the first option, right after the magic cookie. */
export const OPTIONS_OFFSET = FIXED_HEADER_BYTES + COOKIE_BYTES;
export const SNAME_OFFSET = 44;
export const FILE_OFFSET = 108;
const CHADDR_BYTES = 16;
const SNAME_BYTES = 64;
const FILE_BYTES = 128;

/**
 * RFC 1542 §2.1: a BOOTP message is at least 300 bytes (RFC 951's 236-byte header plus its
 * 64-byte `vend` field); some relays drop shorter ones.
 */
export const MIN_BOOTP_BYTES = 300;
/** RFC 2131 §2 and RFC 2132 §9.10: every client accepts a 576-byte IP datagram. */
export const MIN_MAX_MESSAGE_BYTES = 576;
const IPV4_UDP_HEADER_BYTES = 20 + 8;
const MAX_IPV4_DATAGRAM_BYTES = 0xffff;
/** Longest value one option instance can carry: the length field is one byte. */
const MAX_OPTION_VALUE_BYTES = 255;

/** RFC 2132 §9.3 option 52 values: which fixed fields carry options. */
export const Overload = { FILE: 1, SNAME: 2, BOTH: 3 } as const;
export type Overload = (typeof Overload)[keyof typeof Overload];

export interface EncodeOptions {
  /**
   * Largest DHCP message the receiver accepts, counted as a whole IP datagram (IP and UDP
   * headers included), exactly as option 57 of the request states it (RFC 2132 §9.10). Values
   * under 576 are raised to 576, which every client must accept. Default 576, i.e. 548 BOOTP
   * bytes.
   */
  maxSize?: number;
  /**
   * Smallest BOOTP payload to send (fixed header + cookie + options), padded with zeros after
   * END. Default 300 (RFC 1542 §2.1).
   */
  minSize?: number;
}

type OptionArea = 'options' | 'file' | 'sname';

/** Option instances gathered over the areas; `firstOffsets` keeps where each code first sat. */
interface RawOptions {
  values: Map<number, Buffer[]>;
  firstOffsets: Map<number, number>;
}

/**
 * Walks one option area (RFC 2132 §2): PAD is skipped, END stops the walk, anything after END
 * is padding. A missing END is tolerated (the area simply ends), as most servers do.
 */
function readOptionArea(reader: ByteReader, area: OptionArea, into: RawOptions): void {
  while (reader.remaining > 0) {
    const codeOffset = reader.offset;
    const code = reader.u8(`${area}.code`);
    if (code === OptionCode.PAD) continue;
    if (code === OptionCode.END) return;
    const lengthBytes = reader.u8(`${area}[${code}].length`);
    const valueOffset = reader.offset;
    const value = reader.bytes(`${area}[${code}].value`, lengthBytes);
    if (code === OptionCode.OVERLOAD && area !== 'options') {
      // RFC 2131 §4.1: option 52 is only meaningful in the options field. Honouring it inside
      // file or sname would let a packet point the decoder at fields it already read.
      throw new DecodeError(`${area}[${code}]`, codeOffset, 'option overload inside an overloaded field');
    }
    const chunks = into.values.get(code);
    if (chunks) {
      chunks.push(value);
    } else {
      into.values.set(code, [value]);
      into.firstOffsets.set(code, valueOffset);
    }
  }
}

/** The fixed-field text up to the first NUL, one character per byte. */
function readCString(bytes: Buffer): string {
  const nul = bytes.indexOf(0);
  return bytes.subarray(0, nul < 0 ? bytes.length : nul).toString('latin1');
}

/**
 * Decodes one BOOTP/DHCP payload (the UDP data). Throws only `DecodeError`, whose `field` and
 * `offset` say what was wrong and where.
 */
export function decodeDhcp4(buf: Buffer): Dhcp4Message {
  const r = new ByteReader(buf);
  const op = r.u8('op');
  if (op !== BootOp.BOOTREQUEST && op !== BootOp.BOOTREPLY) {
    throw new DecodeError('op', 0, `${op} is neither BOOTREQUEST (1) nor BOOTREPLY (2)`);
  }
  const htype = r.u8('htype');
  const hlen = r.u8('hlen');
  if (hlen > CHADDR_BYTES) {
    throw new DecodeError('hlen', 2, `${hlen} exceeds the ${CHADDR_BYTES}-byte chaddr field`);
  }
  const hops = r.u8('hops');
  const xid = r.u32('xid');
  const secs = r.u16('secs');
  const flags = r.u16('flags');
  const ciaddr = r.ipv4('ciaddr');
  const yiaddr = r.ipv4('yiaddr');
  const siaddr = r.ipv4('siaddr');
  const giaddr = r.ipv4('giaddr');
  const chaddr = r.bytes('chaddr', CHADDR_BYTES);
  const snameReader = r.sub('sname', SNAME_BYTES);
  const fileReader = r.sub('file', FILE_BYTES);
  const cookieOffset = r.offset;
  const cookie = r.u32('cookie');
  if (cookie !== MAGIC_COOKIE) {
    const cookieHex = cookie.toString(16).padStart(8, '0');
    throw new DecodeError('cookie', cookieOffset, `0x${cookieHex} is not the DHCP magic cookie`);
  }

  const raw: RawOptions = { values: new Map(), firstOffsets: new Map() };
  readOptionArea(r, 'options', raw);

  let overload = 0;
  const overloadChunks = raw.values.get(OptionCode.OVERLOAD);
  if (overloadChunks) {
    const value = Buffer.concat(overloadChunks);
    const at = raw.firstOffsets.get(OptionCode.OVERLOAD) ?? OPTIONS_OFFSET;
    const byte = value[0];
    if (value.length !== 1 || byte === undefined || byte < Overload.FILE || byte > Overload.BOTH) {
      throw new DecodeError('options[52]', at, 'option overload must be one byte of 1, 2 or 3 (RFC 2132 §9.3)');
    }
    overload = byte;
    raw.values.delete(OptionCode.OVERLOAD);
  }
  // RFC 3396 §6 / RFC 2131 §4.1: options field first, then file, then sname.
  const fileHoldsOptions = (overload & Overload.FILE) !== 0;
  const snameHoldsOptions = (overload & Overload.SNAME) !== 0;
  if (fileHoldsOptions) readOptionArea(fileReader, 'file', raw);
  if (snameHoldsOptions) readOptionArea(snameReader, 'sname', raw);

  const options = new Map<number, Buffer>();
  for (const [code, chunks] of raw.values) {
    options.set(code, chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks));
  }
  return {
    op,
    htype,
    hlen,
    hops,
    xid,
    secs,
    flags,
    ciaddr,
    yiaddr,
    siaddr,
    giaddr,
    chaddr,
    sname: snameHoldsOptions ? '' : readCString(snameReader.rest('sname')),
    file: fileHoldsOptions ? '' : readCString(fileReader.rest('file')),
    options,
  };
}

/** Bytes of a fixed NUL-padded text field; throws EncodeError rather than truncate or mangle. */
function encodeCString(field: 'sname' | 'file', text: string, fieldBytes: number): Buffer {
  // Most replies leave both fields empty: all zeros, shared (encodeDhcp4 only copies from it).
  if (text === '') return fieldBytes === SNAME_BYTES ? EMPTY_SNAME : fieldBytes === FILE_BYTES ? EMPTY_FILE : Buffer.alloc(fieldBytes);
  if (/[^\x01-\xff]/.test(text)) {
    throw new EncodeError(field, 'holds NUL or a character above U+00FF; it is sent as one byte a character');
  }
  if (text.length > fieldBytes) {
    throw new EncodeError(field, `${text.length} bytes do not fit the ${fieldBytes}-byte field`);
  }
  const bytes = Buffer.alloc(fieldBytes);
  bytes.write(text, 'latin1');
  return bytes;
}

const EMPTY_SNAME = Buffer.alloc(SNAME_BYTES);
const EMPTY_FILE = Buffer.alloc(FILE_BYTES);

/**
 * Option instances in wire order: Map order with 82 moved last (RFC 3046 §2.1: the relay
 * agent option is the last one), values over 255 bytes split per RFC 3396 §5. Options shorter
 * than 256 bytes are never split: many clients do not join them (draft-tojens-dhcp-option-
 * concat-considerations), so overload moves whole instances only.
 */
function optionInstances(options: Map<number, Buffer>): Buffer[] {
  const codes = [...options.keys()];
  const ordered = [
    ...codes.filter((c) => c !== OptionCode.RELAY_AGENT_INFO),
    ...codes.filter((c) => c === OptionCode.RELAY_AGENT_INFO),
  ];
  const instances: Buffer[] = [];
  for (const code of ordered) {
    if (!Number.isInteger(code) || code <= OptionCode.PAD || code >= OptionCode.END) {
      throw new EncodeError(`options[${code}]`, 'option codes are 1..254 (0 is PAD, 255 is END)');
    }
    if (code === OptionCode.OVERLOAD) {
      throw new EncodeError('options[52]', 'option overload is decided by the encoder from maxSize');
    }
    const value = options.get(code) as Buffer;
    let at = 0;
    do {
      const chunk = value.subarray(at, at + MAX_OPTION_VALUE_BYTES);
      const instance = Buffer.allocUnsafe(2 + chunk.length);
      instance[0] = code;
      instance[1] = chunk.length;
      instance.set(chunk, 2);
      instances.push(instance);
      at += MAX_OPTION_VALUE_BYTES;
    } while (at < value.length);
  }
  return instances;
}

interface Placement {
  optionsArea: Buffer[];
  fileArea: Buffer[] | undefined;
  snameArea: Buffer[] | undefined;
}

const sumBytes = (bufs: Buffer[]): number => bufs.reduce((n, b) => n + b.length, 0);

/**
 * Decides where each instance goes. Everything stays in the options field when it fits.
 * Otherwise (RFC 2131 §4.1, RFC 2132 §9.3) instances spill into `file` and then `sname`, each
 * only if the message leaves that field empty, and option 52 says which. Each instance takes
 * the first area with room, except that (a) chunks of one long option never go to an earlier
 * area than the chunk before them, so the RFC 3396 §6 join order (options, file, sname) gives
 * the value back, and (b) option 82 goes in the last area used, so it stays the last option.
 */
function placeOptions(instances: Buffer[], optionsAreaBytes: number, msg: Dhcp4Message): Placement {
  const END_BYTES = 1;
  const total = sumBytes(instances);
  if (total + END_BYTES <= optionsAreaBytes) {
    return { optionsArea: instances, fileArea: undefined, snameArea: undefined };
  }
  const OVERLOAD_OPTION_BYTES = 3;
  const areas: { name: OptionArea; freeBytes: number; items: Buffer[] }[] = [
    { name: 'options', freeBytes: optionsAreaBytes - OVERLOAD_OPTION_BYTES - END_BYTES, items: [] },
  ];
  if (msg.file === '') areas.push({ name: 'file', freeBytes: FILE_BYTES - END_BYTES, items: [] });
  if (msg.sname === '') areas.push({ name: 'sname', freeBytes: SNAME_BYTES - END_BYTES, items: [] });

  const areaOfCode = new Map<number, number>();
  let lastUsedArea = 0;
  for (const instance of instances) {
    const code = instance[0] as number;
    const earliest = code === OptionCode.RELAY_AGENT_INFO ? lastUsedArea : (areaOfCode.get(code) ?? 0);
    const index = areas.findIndex((a, i) => i >= earliest && a.freeBytes >= instance.length);
    const area = areas[index];
    if (!area) {
      const spillable = areas.slice(1).map((a) => a.name).join(' and ') || 'nothing (file and sname are in use)';
      throw new EncodeError(
        'options',
        `${total} bytes of options do not fit in ${optionsAreaBytes} option bytes even overloading ${spillable}`,
      );
    }
    area.items.push(instance);
    area.freeBytes -= instance.length;
    areaOfCode.set(code, index);
    lastUsedArea = Math.max(lastUsedArea, index);
  }
  const [optionsArea, ...spilled] = areas;
  const fileArea = spilled.find((a) => a.name === 'file' && a.items.length > 0)?.items;
  const snameArea = spilled.find((a) => a.name === 'sname' && a.items.length > 0)?.items;
  const overload = (fileArea ? Overload.FILE : 0) | (snameArea ? Overload.SNAME : 0);
  // Option 52 goes last in the options field, so a reply keeps 53 first where the server put it.
  const optionsItems = [...(optionsArea?.items ?? []), Buffer.from([OptionCode.OVERLOAD, 1, overload])];
  return { optionsArea: optionsItems, fileArea, snameArea };
}

/** A fixed field filled with options and END, NUL padded (RFC 2131 §4.1). */
function optionField(items: Buffer[], fieldBytes: number): Buffer {
  const field = Buffer.alloc(fieldBytes);
  Buffer.concat([...items, Buffer.from([OptionCode.END])]).copy(field);
  return field;
}

/**
 * Encodes a message as a BOOTP/DHCP payload. Throws `EncodeError` (PXE_ERR_ENCODE) when a
 * field is out of range or the options do not fit in `opts.maxSize` even with overload.
 */
export function encodeDhcp4(msg: Dhcp4Message, opts: EncodeOptions = {}): Buffer {
  const maxDatagramBytes = Math.min(
    MAX_IPV4_DATAGRAM_BYTES,
    Math.max(MIN_MAX_MESSAGE_BYTES, opts.maxSize ?? MIN_MAX_MESSAGE_BYTES),
  );
  const maxBootpBytes = maxDatagramBytes - IPV4_UDP_HEADER_BYTES;
  const minBootpBytes = opts.minSize ?? MIN_BOOTP_BYTES;

  if (msg.op !== BootOp.BOOTREQUEST && msg.op !== BootOp.BOOTREPLY) {
    throw new EncodeError('op', `${String(msg.op)} is neither BOOTREQUEST (1) nor BOOTREPLY (2)`);
  }
  if (msg.hlen > CHADDR_BYTES) throw new EncodeError('hlen', `${msg.hlen} exceeds ${CHADDR_BYTES}`);
  if (msg.chaddr.length > CHADDR_BYTES) {
    throw new EncodeError('chaddr', `${msg.chaddr.length} bytes do not fit the ${CHADDR_BYTES}-byte field`);
  }
  const placement = placeOptions(optionInstances(msg.options), maxBootpBytes - OPTIONS_OFFSET, msg);
  const sname = placement.snameArea
    ? optionField(placement.snameArea, SNAME_BYTES)
    : encodeCString('sname', msg.sname, SNAME_BYTES);
  const file = placement.fileArea
    ? optionField(placement.fileArea, FILE_BYTES)
    : encodeCString('file', msg.file, FILE_BYTES);

  const w = new ByteWriter(Math.max(minBootpBytes, MIN_MAX_MESSAGE_BYTES));
  w.u8('op', msg.op)
    .u8('htype', msg.htype)
    .u8('hlen', msg.hlen)
    .u8('hops', msg.hops)
    .u32('xid', msg.xid)
    .u16('secs', msg.secs)
    .u16('flags', msg.flags)
    .ipv4('ciaddr', msg.ciaddr)
    .ipv4('yiaddr', msg.yiaddr)
    .ipv4('siaddr', msg.siaddr)
    .ipv4('giaddr', msg.giaddr)
    .bytes('chaddr', msg.chaddr)
    .zeros('chaddr', CHADDR_BYTES - msg.chaddr.length)
    .bytes('sname', sname)
    .bytes('file', file)
    .u32('cookie', MAGIC_COOKIE);
  for (const instance of placement.optionsArea) w.bytes('options', instance);
  w.u8('options', OptionCode.END);
  if (w.length < minBootpBytes) w.zeros('padding', minBootpBytes - w.length);
  return w.toBuffer();
}
