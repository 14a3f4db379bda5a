/**
 * Bounds-checked byte access shared by the wire codecs (DHCPv4, TFTP).
 *
 * Every decoder reads through one `ByteReader`: each read names the field it is reading, so a
 * short or malformed packet fails with a `DecodeError` that says which field and at which byte
 * offset, and never with a `RangeError` out of `Buffer`. Encoders write through `ByteWriter`,
 * which grows as needed and rejects out-of-range values with an `EncodeError` instead of letting
 * `Buffer.writeUInt*` throw its own error type.
 */
import { PxehaError } from '../errors.js';
import { parseIpv4 } from '../util/ipv4.js';

/** A wire packet could not be decoded; `field` names what was being read, `offset` where. */
export class DecodeError extends PxehaError {
  readonly field: string;
  /** Absolute byte offset into the buffer handed to the decoder. */
  readonly offset: number;
  constructor(field: string, offset: number, reason: string) {
    super('PXE_ERR_DECODE', `${field} at offset ${offset}: ${reason}`);
    this.field = field;
    this.offset = offset;
  }
}

/** A message could not be encoded (a value out of range, or it does not fit). */
export class EncodeError extends PxehaError {
  readonly field: string;
  constructor(field: string, reason: string) {
    super('PXE_ERR_ENCODE', `${field}: ${reason}`);
    this.field = field;
  }
}

/**
 * Reads a window of a buffer front to back. `baseOffset` is the absolute offset of the window's
 * first byte, so readers over a sub-range (an option value, the `file` field) still report
 * offsets relative to the whole packet.
 */
export class ByteReader {
  private readonly buf: Buffer;
  private readonly baseOffset: number;
  private pos = 0;

  constructor(buf: Buffer, baseOffset = 0) {
    this.buf = buf;
    this.baseOffset = baseOffset;
  }

  /** Absolute offset of the next byte to be read. */
  get offset(): number {
    return this.baseOffset + this.pos;
  }

  /** Bytes left in the window. */
  get remaining(): number {
    return this.buf.length - this.pos;
  }

  private take(field: string, lengthBytes: number): number {
    if (lengthBytes < 0 || lengthBytes > this.remaining) {
      throw new DecodeError(field, this.offset, `needs ${lengthBytes} bytes, ${this.remaining} left`);
    }
    const at = this.pos;
    this.pos += lengthBytes;
    return at;
  }

  u8(field: string): number {
    return this.buf[this.take(field, 1)] as number;
  }

  /** Big-endian (network order) unsigned 16-bit integer. */
  u16(field: string): number {
    return this.buf.readUInt16BE(this.take(field, 2));
  }

  /** Big-endian (network order) unsigned 32-bit integer. */
  u32(field: string): number {
    return this.buf.readUInt32BE(this.take(field, 4));
  }

  /** A copy of the next `lengthBytes` bytes, so decoded values never alias the input buffer. */
  bytes(field: string, lengthBytes: number): Buffer {
    const at = this.take(field, lengthBytes);
    return Buffer.from(this.buf.subarray(at, at + lengthBytes));
  }

  /** Dotted-quad text of the next four bytes. */
  ipv4(field: string): string {
    const at = this.take(field, 4);
    return `${this.buf[at]}.${this.buf[at + 1]}.${this.buf[at + 2]}.${this.buf[at + 3]}`;
  }

  /** A reader over the next `lengthBytes` bytes that keeps absolute offsets. */
  sub(field: string, lengthBytes: number): ByteReader {
    const startOffset = this.offset;
    const at = this.take(field, lengthBytes);
    return new ByteReader(this.buf.subarray(at, at + lengthBytes), startOffset);
  }

  /** Everything left in the window (copied), leaving the reader at its end. */
  rest(field: string): Buffer {
    return this.bytes(field, this.remaining);
  }

  /** Fails with a DecodeError unless the window has been read to its end. */
  expectEnd(field: string): void {
    if (this.remaining !== 0) {
      throw new DecodeError(field, this.offset, `${this.remaining} unexpected trailing bytes`);
    }
  }
}

const INITIAL_CAPACITY_BYTES = 576;

/** Appends big-endian values to a buffer that grows by doubling. */
export class ByteWriter {
  private buf: Buffer;
  private lengthBytes = 0;

  constructor(initialCapacityBytes = INITIAL_CAPACITY_BYTES) {
    this.buf = Buffer.alloc(Math.max(16, initialCapacityBytes));
  }

  /** Bytes written so far. */
  get length(): number {
    return this.lengthBytes;
  }

  private reserve(lengthBytes: number): number {
    const needed = this.lengthBytes + lengthBytes;
    if (needed > this.buf.length) {
      let capacity = this.buf.length;
      while (capacity < needed) capacity *= 2;
      const grown = Buffer.alloc(capacity);
      this.buf.copy(grown, 0, 0, this.lengthBytes);
      this.buf = grown;
    }
    const at = this.lengthBytes;
    this.lengthBytes = needed;
    return at;
  }

  private static checkUint(field: string, value: number, max: number): void {
    if (!Number.isInteger(value) || value < 0 || value > max) {
      throw new EncodeError(field, `${value} is not an integer in 0..${max}`);
    }
  }

  u8(field: string, value: number): this {
    ByteWriter.checkUint(field, value, 0xff);
    this.buf[this.reserve(1)] = value;
    return this;
  }

  u16(field: string, value: number): this {
    ByteWriter.checkUint(field, value, 0xffff);
    this.buf.writeUInt16BE(value, this.reserve(2));
    return this;
  }

  u32(field: string, value: number): this {
    ByteWriter.checkUint(field, value, 0xffffffff);
    this.buf.writeUInt32BE(value, this.reserve(4));
    return this;
  }

  bytes(field: string, value: Uint8Array): this {
    const at = this.reserve(value.length);
    this.buf.set(value, at);
    return this;
  }

  /** `lengthBytes` zero bytes (NUL padding of fixed fields, padding after the END option). */
  zeros(field: string, lengthBytes: number): this {
    ByteWriter.checkUint(field, lengthBytes, Number.MAX_SAFE_INTEGER);
    this.reserve(lengthBytes); // capacity beyond the old length is already zero-filled
    return this;
  }

  ipv4(field: string, dottedQuad: string): this {
    const value = parseIpv4(dottedQuad);
    if (value < 0) throw new EncodeError(field, `${JSON.stringify(dottedQuad)} is not a dotted-quad IPv4 address`);
    this.buf.writeUInt32BE(value, this.reserve(4));
    return this;
  }

  /** A copy of the bytes written so far. */
  toBuffer(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.lengthBytes));
  }
}

/** Four bytes of a dotted-quad IPv4 address; throws EncodeError on anything else. */
export function ipv4ToBytes(field: string, dottedQuad: string): Buffer {
  const value = parseIpv4(dottedQuad);
  if (value < 0) throw new EncodeError(field, `${JSON.stringify(dottedQuad)} is not a dotted-quad IPv4 address`);
  const out = Buffer.allocUnsafe(4);
  out.writeUInt32BE(value, 0);
  return out;
}
