/**
 * Malformed input fails with a DecodeError naming the field and the byte offset; values that
 * cannot go on the wire fail with an EncodeError. Plus the option registry's ranges.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DecodeError, EncodeError } from '../bytes.js';
import { Opcode, TftpErrorCode, tftpErrorName } from './codes.js';
import { toNetascii } from './netascii.js';
import { OPTION_SPECS, parseOptionValue, readRequestedOptions } from './options.js';
import { decodeTftp, encodeDataHeader, encodeTftp, writeDataPacket, type TftpPacket } from './packet.js';

const bytes = (s: string): Buffer => Buffer.from(s, 'latin1');

/** [name, wire bytes, field, offset] */
const MALFORMED: [string, Buffer, string, number][] = [
  ['empty datagram', bytes(''), 'opcode', 0],
  ['one byte', bytes('\0'), 'opcode', 0],
  ['opcode 0', bytes('\0\0x'), 'opcode', 0],
  ['opcode 7', bytes('\0\x07'), 'opcode', 0],
  ['opcode 0x0100 (little-endian RRQ)', bytes('\x01\0a\0octet\0'), 'opcode', 0],
  ['RRQ without filename NUL', bytes('\0\x01pxelinux.0'), 'filename', 2],
  ['RRQ without mode', bytes('\0\x01pxelinux.0\0'), 'mode', 13],
  ['RRQ without mode NUL', bytes('\0\x01a\0octet'), 'mode', 4],
  ['RRQ option name without NUL', bytes('\0\x01a\0octet\0blksize'), 'option name', 10],
  ['RRQ option name without value', bytes('\0\x01a\0octet\0blksize\0'), 'option value', 18],
  ['RRQ option value without NUL', bytes('\0\x01a\0octet\0blksize\x001432'), 'option blksize value', 18],
  ['RRQ empty option name (NUL padding)', bytes('\0\x01a\0octet\0\0\0'), 'option name', 10],
  ['RRQ repeated option', bytes('\0\x01a\0octet\0blksize\x00512\0BLKSIZE\x001432\0'), 'option name', 22],
  ['WRQ truncated', bytes('\0\x02'), 'filename', 2],
  ['DATA without block', bytes('\0\x03\0'), 'block', 2],
  ['ACK without block', bytes('\0\x04'), 'block', 2],
  ['ACK with a trailing byte', bytes('\0\x04\0\x01\0'), 'ACK', 4],
  ['ERROR without code', bytes('\0\x05\0'), 'error code', 2],
  ['ERROR without message NUL', bytes('\0\x05\0\x01File not found'), 'error message', 4],
  ['ERROR with bytes after the NUL', bytes('\0\x05\0\x01x\0y'), 'ERROR', 6],
  ['OACK value without NUL', bytes('\0\x06tsize\x0013'), 'option tsize value', 8],
  ['OACK name without value', bytes('\0\x06tsize\0'), 'option value', 8],
];

describe('decodeTftp: malformed packets', () => {
  for (const [name, wire, field, offset] of MALFORMED) {
    test(`${name} → DecodeError(${field} @ ${offset})`, () => {
      assert.throws(
        () => decodeTftp(wire),
        (err: unknown) => {
          assert.ok(err instanceof DecodeError, `not a DecodeError: ${String(err)}`);
          assert.equal(err.field, field);
          assert.equal(err.offset, offset);
          assert.equal(err.code, 'PXE_ERR_DECODE');
          return true;
        },
      );
    });
  }
});

describe('decodeTftp: edge cases that are well formed', () => {
  test('empty filename, empty mode and an empty option value decode', () => {
    assert.deepStrictEqual(decodeTftp(bytes('\0\x01\0\0x\0\0')), {
      opcode: Opcode.RRQ,
      filename: '',
      mode: '',
      options: new Map([['x', '']]),
    });
  });

  test('high-bit bytes in a filename survive as latin1 and re-encode exactly', () => {
    const wire = Buffer.concat([bytes('\0\x01'), Buffer.from('café/ü.efi', 'utf8'), bytes('\0octet\0')]);
    const packet = decodeTftp(wire);
    assert.equal(packet.opcode, Opcode.RRQ);
    if (packet.opcode === Opcode.RRQ) assert.equal(Buffer.from(packet.filename, 'latin1').toString('utf8'), 'café/ü.efi');
    assert.deepStrictEqual(encodeTftp(packet), wire);
  });

  test('a maximum-size DATA block and block 65535 decode', () => {
    const data = Buffer.alloc(65464, 0xab);
    const wire = Buffer.concat([bytes('\0\x03\xff\xff'), data]);
    assert.deepStrictEqual(decodeTftp(wire), { opcode: Opcode.DATA, block: 65535, data });
  });

  test('decoded DATA does not alias the input buffer', () => {
    const wire = bytes('\0\x03\0\x01abc');
    const packet = decodeTftp(wire);
    wire[4] = 0x7a;
    assert.equal(packet.opcode === Opcode.DATA && packet.data.toString(), 'abc');
  });

  test('an ERROR code outside 0–8 decodes, and has a printable name', () => {
    assert.deepStrictEqual(decodeTftp(bytes('\0\x05\x01\0odd\0')), { opcode: Opcode.ERROR, code: 256, message: 'odd' });
    assert.equal(tftpErrorName(256), 'code 256');
    assert.equal(tftpErrorName(TftpErrorCode.UNKNOWN_TID), 'unknown transfer ID');
  });
});

describe('encodeTftp: values that cannot be sent', () => {
  const cases: [string, TftpPacket, string][] = [
    ['NUL in a filename', { opcode: Opcode.RRQ, filename: 'a\0b', mode: 'octet', options: new Map() }, 'filename'],
    ['a non-latin1 filename', { opcode: Opcode.RRQ, filename: 'π', mode: 'octet', options: new Map() }, 'filename'],
    ['NUL in an option value', { opcode: Opcode.OACK, options: new Map([['tsize', '1\0']]) }, 'option tsize value'],
    ['an empty option name', { opcode: Opcode.OACK, options: new Map([['', '1']]) }, 'option name'],
    ['the same option in two cases', { opcode: Opcode.OACK, options: new Map([['tsize', '1'], ['TSIZE', '1']]) }, 'option name'],
    ['block 65536', { opcode: Opcode.ACK, block: 65536 }, 'block'],
    ['block -1', { opcode: Opcode.DATA, block: -1, data: Buffer.alloc(0) }, 'block'],
    ['error code 70000', { opcode: Opcode.ERROR, code: 70000, message: '' }, 'error code'],
    ['NUL in an error message', { opcode: Opcode.ERROR, code: 0, message: 'a\0' }, 'error message'],
    ['opcode 9', { opcode: 9 } as unknown as TftpPacket, 'opcode'],
  ];
  for (const [name, packet, field] of cases) {
    test(`${name} → EncodeError(${field})`, () => {
      assert.throws(
        () => encodeTftp(packet),
        (err: unknown) => err instanceof EncodeError && err.field === field,
      );
    });
  }
  test('encodeDataHeader refuses a block number out of 16 bits', () => {
    assert.throws(() => encodeDataHeader(65536), EncodeError);
    assert.deepStrictEqual(encodeDataHeader(65535), bytes('\0\x03\xff\xff'));
  });
  test('writeDataPacket refuses a block number out of 16 bits and a datagram that does not fit', () => {
    assert.throws(() => writeDataPacket(Buffer.alloc(8), 0, 65536, Buffer.alloc(1)), EncodeError);
    assert.throws(() => writeDataPacket(Buffer.alloc(8), 4, 1, Buffer.alloc(1)), EncodeError);
    assert.throws(() => writeDataPacket(Buffer.alloc(8), -1, 1, Buffer.alloc(1)), EncodeError);
    const target = Buffer.alloc(8);
    assert.equal(writeDataPacket(target, 3, 65535, Buffer.from('x')), 5);
    assert.deepStrictEqual(target, bytes('\0\0\0\0\x03\xff\xffx'));
  });
});

describe('option registry', () => {
  const cases: [keyof typeof OPTION_SPECS, string, number | undefined][] = [
    ['blksize', '8', 8],
    ['blksize', '7', undefined],
    ['blksize', '65464', 65464],
    ['blksize', '65465', undefined],
    ['blksize', '01432', 1432],
    ['blksize', ' 1432', undefined],
    ['blksize', '+1432', undefined],
    ['blksize', '1e3', undefined],
    ['blksize', '', undefined],
    ['timeout', '0', undefined],
    ['timeout', '1', 1],
    ['timeout', '255', 255],
    ['timeout', '256', undefined],
    ['windowsize', '0', undefined],
    ['windowsize', '1', 1],
    ['windowsize', '65535', 65535],
    ['windowsize', '65536', undefined],
    ['tsize', '0', 0],
    ['tsize', '9007199254740991', Number.MAX_SAFE_INTEGER],
    ['tsize', '9007199254740992', undefined],
    ['tsize', '99999999999999999999', undefined],
  ];
  for (const [name, value, expected] of cases) {
    test(`${name}=${JSON.stringify(value)} → ${expected}`, () => {
      assert.equal(parseOptionValue(name, value), expected);
    });
  }

  test('readRequestedOptions keeps known valid options and skips the rest', () => {
    const requested = readRequestedOptions(
      new Map([
        ['blksize', '1468'],
        ['tsize', '0'],
        ['timeout', '0'],
        ['windowsize', '16'],
        ['multicast', ''],
        ['rollover', '0'],
      ]),
    );
    assert.deepStrictEqual({ ...requested }, { blksize: 1468, tsize: 0, windowsize: 16 });
  });
});

describe('toNetascii', () => {
  const cases: [string, string][] = [
    ['', ''],
    ['no line ends', 'no line ends'],
    ['\n', '\r\n'],
    ['\r', '\r\0'],
    ['\r\n', '\r\0\r\n'],
    ['a\n\nb', 'a\r\n\r\nb'],
  ];
  for (const [raw, expected] of cases) {
    test(`${JSON.stringify(raw)} → ${JSON.stringify(expected)}`, () => {
      assert.deepStrictEqual(toNetascii(bytes(raw)), bytes(expected));
    });
  }
  test('converting in pieces equals converting the whole (no state across chunks)', () => {
    const raw = bytes('x\r\ny\rz\n\n\r');
    for (let cut = 0; cut <= raw.length; cut++) {
      const pieces = Buffer.concat([toNetascii(raw.subarray(0, cut)), toNetascii(raw.subarray(cut))]);
      assert.deepStrictEqual(pieces, toNetascii(raw));
    }
  });
});
