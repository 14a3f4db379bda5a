/**
 * TFTP wire codec: `decodeTftp(buf)` and `encodeTftp(packet)`, pure functions with no sockets,
 * clock or hidden state. Packet layouts from RFC 1350 §5 (figures 5-1 to 5-4) and RFC 2347 §2
 * (options in requests, OACK):
 *
 *   RRQ / WRQ (RFC 1350 fig. 5-1; opcode 1 / 2), with RFC 2347 options appended:
 *
 *      2 bytes    string   1 byte   string  1 byte  string 1 byte  string  1 byte
 *     +--------+----~~----+------+----~~----+------+--~~--+------+--~~--+------+ ..
 *     | Opcode | Filename |  0   |   Mode   |  0   | opt1 |  0   | val1 |  0   | ..
 *     +--------+----~~----+------+----~~----+------+--~~--+------+--~~--+------+ ..
 *
 *   DATA (RFC 1350 fig. 5-2; opcode 3). n = block size, except the last block, n < block size:
 *
 *      2 bytes    2 bytes    n bytes
 *     +--------+----------+----~~----+
 *     | Opcode |  Block # |   Data   |
 *     +--------+----------+----~~----+
 *
 *   ACK (RFC 1350 fig. 5-3; opcode 4):
 *
 *      2 bytes    2 bytes
 *     +--------+----------+
 *     | Opcode |  Block # |
 *     +--------+----------+
 *
 *   ERROR (RFC 1350 fig. 5-4; opcode 5):
 *
 *      2 bytes    2 bytes    string   1 byte
 *     +--------+-----------+----~~----+------+
 *     | Opcode | ErrorCode |  ErrMsg  |  0   |
 *     +--------+-----------+----~~----+------+
 *
 *   OACK (RFC 2347 §2; opcode 6):
 *
 *      2 bytes   string 1 byte string 1 byte       string 1 byte string 1 byte
 *     +--------+--~~--+------+--~~--+------+ .. +--~~--+------+--~~--+------+
 *     | Opcode | opt1 |  0   | val1 |  0   | .. | optN |  0   | valN |  0   |
 *     +--------+--~~--+------+--~~--+------+ .. +--~~--+------+--~~--+------+
 *
 * All integers are big-endian (network order).
 *
 * Choices worth knowing:
 * - Strings are binary (latin1): one character per byte, so every byte round trips; encode
 *   refuses characters above U+00FF (and NUL) instead of mangling them. A UTF-8 file name is
 *   `Buffer.from(filename, 'latin1').toString('utf8')` away.
 * - Mode and option names are case-insensitive (RFC 1350 §5, RFC 2347 §2): decode lower-cases
 *   them (ASCII only). Options are a Map in wire order, and encode writes Map order, so output is
 *   deterministic and a decoded capture re-encodes byte for byte. A repeated option name is a
 *   DecodeError: there is no rule for which one would win.
 * - Framing is strict: a missing NUL, a name without a value, an empty option name or bytes
 *   after the last field are DecodeErrors naming the field and offset. Option values are not
 *   checked here (options.ts does that), so a bad blksize does not make a request undecodable.
 */
import { ByteReader, ByteWriter, DecodeError, EncodeError } from '../bytes.js';
import { Opcode, isOpcode } from './codes.js';

/** RRQ or WRQ (RFC 1350 §5 fig. 5-1, RFC 2347 §2). */
export interface RequestPacket {
  opcode: typeof Opcode.RRQ | typeof Opcode.WRQ;
  filename: string;
  /** Lower-cased: 'netascii', 'octet', 'mail' or whatever the peer sent. */
  mode: string;
  /** Lower-cased option name → value text, in wire order. */
  options: Map<string, string>;
}

/** RFC 1350 §5 fig. 5-2. `block` is the 16-bit wire number (it wraps past 65535). */
export interface DataPacket {
  opcode: typeof Opcode.DATA;
  block: number;
  data: Buffer;
}

/** RFC 1350 §5 fig. 5-3. */
export interface AckPacket {
  opcode: typeof Opcode.ACK;
  block: number;
}

/** RFC 1350 §5 fig. 5-4. `code` is usually a TftpErrorCode, but peers may send any 16-bit value. */
export interface ErrorPacket {
  opcode: typeof Opcode.ERROR;
  code: number;
  message: string;
}

/** RFC 2347 §2 option acknowledgment. */
export interface OackPacket {
  opcode: typeof Opcode.OACK;
  options: Map<string, string>;
}

export type TftpPacket = RequestPacket | DataPacket | AckPacket | ErrorPacket | OackPacket;

const NUL = 0;

function asciiLower(s: string): string {
  return s.replace(/[A-Z]+/g, (m) => m.toLowerCase());
}

/** A NUL-terminated string starting at the reader's position (the NUL is consumed). */
function readCString(reader: ByteReader, buf: Buffer, field: string): string {
  // The reader runs over the whole buffer from 0, so its offset indexes `buf` directly.
  const start = reader.offset;
  const end = buf.indexOf(NUL, start);
  if (end < 0) throw new DecodeError(field, start, 'string has no NUL terminator');
  const text = reader.bytes(field, end - start).toString('latin1');
  reader.u8(`${field} NUL`);
  return text;
}

/** RFC 2347 §2 name/value pairs up to the end of the packet. */
function readOptions(reader: ByteReader, buf: Buffer): Map<string, string> {
  const options = new Map<string, string>();
  while (reader.remaining > 0) {
    const at = reader.offset;
    const name = asciiLower(readCString(reader, buf, 'option name'));
    if (name === '') throw new DecodeError('option name', at, 'empty option name');
    if (reader.remaining === 0) throw new DecodeError('option value', reader.offset, `option ${JSON.stringify(name)} has no value`);
    const value = readCString(reader, buf, `option ${name} value`);
    if (options.has(name)) throw new DecodeError('option name', at, `option ${JSON.stringify(name)} repeated`);
    options.set(name, value);
  }
  return options;
}

/**
 * Decodes one TFTP datagram. Throws DecodeError (field, offset) for anything malformed and
 * never any other error. Decoded buffers and strings never alias `buf`.
 */
export function decodeTftp(buf: Buffer): TftpPacket {
  const reader = new ByteReader(buf);
  const opcode = reader.u16('opcode');
  if (!isOpcode(opcode)) throw new DecodeError('opcode', 0, `unknown opcode ${opcode}`);
  switch (opcode) {
    case Opcode.RRQ:
    case Opcode.WRQ: {
      const filename = readCString(reader, buf, 'filename');
      const mode = asciiLower(readCString(reader, buf, 'mode'));
      const options = readOptions(reader, buf);
      return { opcode, filename, mode, options };
    }
    case Opcode.DATA: {
      const block = reader.u16('block');
      return { opcode, block, data: reader.rest('data') };
    }
    case Opcode.ACK: {
      const block = reader.u16('block');
      reader.expectEnd('ACK');
      return { opcode, block };
    }
    case Opcode.ERROR: {
      const code = reader.u16('error code');
      const message = readCString(reader, buf, 'error message');
      reader.expectEnd('ERROR');
      return { opcode, code, message };
    }
    case Opcode.OACK:
      return { opcode, options: readOptions(reader, buf) };
  }
}

/** Bytes of a string field: latin1, no NUL, nothing above U+00FF. */
function cStringBytes(field: string, text: string): Buffer {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === NUL) throw new EncodeError(field, `contains NUL at index ${i}`);
    if (c > 0xff) throw new EncodeError(field, `character U+${c.toString(16).padStart(4, '0')} at index ${i} is not one byte`);
  }
  return Buffer.from(text, 'latin1');
}

function writeCString(writer: ByteWriter, field: string, text: string): void {
  writer.bytes(field, cStringBytes(field, text)).u8(`${field} NUL`, NUL);
}

function writeOptions(writer: ByteWriter, options: ReadonlyMap<string, string>): void {
  const seen = new Set<string>();
  for (const [name, value] of options) {
    if (name === '') throw new EncodeError('option name', 'empty option name');
    const lower = asciiLower(name);
    // Names are case-insensitive on the wire, so "BLKSIZE" and "blksize" would be one option twice.
    if (seen.has(lower)) throw new EncodeError('option name', `option ${JSON.stringify(name)} repeated (names are case-insensitive)`);
    seen.add(lower);
    writeCString(writer, 'option name', name);
    writeCString(writer, `option ${name} value`, value);
  }
}

/** Encodes a packet; throws EncodeError for values that cannot go on the wire. */
export function encodeTftp(packet: TftpPacket): Buffer {
  switch (packet.opcode) {
    case Opcode.RRQ:
    case Opcode.WRQ: {
      const writer = new ByteWriter(64 + packet.filename.length);
      writer.u16('opcode', packet.opcode);
      writeCString(writer, 'filename', packet.filename);
      writeCString(writer, 'mode', packet.mode);
      writeOptions(writer, packet.options);
      return writer.toBuffer();
    }
    case Opcode.DATA: {
      const writer = new ByteWriter(4 + packet.data.length);
      return writer.u16('opcode', packet.opcode).u16('block', packet.block).bytes('data', packet.data).toBuffer();
    }
    case Opcode.ACK:
      return new ByteWriter(4).u16('opcode', packet.opcode).u16('block', packet.block).toBuffer();
    case Opcode.ERROR: {
      const writer = new ByteWriter(5 + packet.message.length);
      writer.u16('opcode', packet.opcode).u16('error code', packet.code);
      writeCString(writer, 'error message', packet.message);
      return writer.toBuffer();
    }
    case Opcode.OACK: {
      const writer = new ByteWriter(64);
      writer.u16('opcode', packet.opcode);
      writeOptions(writer, packet.options);
      return writer.toBuffer();
    }
    default:
      throw new EncodeError('opcode', `unknown opcode ${(packet as { opcode: unknown }).opcode}`);
  }
}

/** Bytes of a DATA header: opcode 3 and the 16-bit block number. */
export const DATA_HEADER_BYTES = 4;

/**
 * The 4-byte DATA header alone, for the send path: a socket adapter sends `[header, data]` as
 * one datagram (scatter/gather) instead of copying the payload into a new buffer per packet.
 * `encodeTftp({opcode: DATA, block, data})` equals `Buffer.concat([encodeDataHeader(block), data])`.
 */
export function encodeDataHeader(block: number): Buffer {
  if (!Number.isInteger(block) || block < 0 || block > 0xffff) throw new EncodeError('block', `${block} is not an integer in 0..65535`);
  const header = Buffer.allocUnsafe(DATA_HEADER_BYTES);
  header.writeUInt16BE(Opcode.DATA, 0);
  header.writeUInt16BE(block, 2);
  return header;
}

/**
 * Writes a whole DATA datagram (header and payload, RFC 1350 fig. 5-2) into `target` at `offset`
 * and returns its length: the send path lays blocks out as ready datagrams once, when they are
 * read, instead of building a header (or a copy) per packet sent. The bytes written equal
 * `encodeTftp({opcode: DATA, block, data: payload})`.
 */
export function writeDataPacket(target: Buffer, offset: number, block: number, payload: Buffer): number {
  if (!Number.isInteger(block) || block < 0 || block > 0xffff) throw new EncodeError('block', `${block} is not an integer in 0..65535`);
  const length = DATA_HEADER_BYTES + payload.length;
  if (!Number.isInteger(offset) || offset < 0 || offset + length > target.length) {
    throw new EncodeError('data', `${length} bytes do not fit at offset ${offset} of ${target.length}`);
  }
  target.writeUInt16BE(Opcode.DATA, offset);
  target.writeUInt16BE(block, offset + 2);
  payload.copy(target, offset + DATA_HEADER_BYTES);
  return length;
}
