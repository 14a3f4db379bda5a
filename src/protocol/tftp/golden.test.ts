/**
 * Golden packets both ways (insomniacslk `dhcpv4_test.go` `TestFromBytes`): each testdata file
 * decodes to the expected object written out by hand from the annotated hex, and encoding that
 * object gives the file's exact bytes. Captured files come from real clients (tftp-hpa, atftp,
 * curl) and a real server (tftpd-hpa) inside a private network namespace
 * (testdata/capture-golden.sh); `crafted-*` files are laid out by hand from the RFCs.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Opcode, TftpErrorCode } from './codes.js';
import { toNetascii } from './netascii.js';
import { decodeTftp, encodeDataHeader, encodeTftp, writeDataPacket, type TftpPacket } from './packet.js';
import { hexFixtures } from '../testdata/hex.js';

const { listHexFixtures, readHexFixture } = hexFixtures(new URL('./testdata/', import.meta.url));

const text = (s: string): Buffer => Buffer.from(s, 'latin1');
const opts = (...pairs: [string, string][]): Map<string, string> => new Map(pairs);

const HELLO = text('hello, pxeha\n');

interface Golden {
  file: string;
  expected: TftpPacket;
  /** False when decode normalises (lower-cases) something, so the bytes cannot come back. */
  reencodes?: boolean;
}

const GOLDENS: Golden[] = [
  // tftp-hpa 5.2 client: plain RRQ, no options; then lock-step ACKs.
  { file: 'tftp-hpa-rrq.hex', expected: { opcode: Opcode.RRQ, filename: 'hello.txt', mode: 'octet', options: opts() } },
  { file: 'tftpd-hpa-data-to-tftp-hpa.hex', expected: { opcode: Opcode.DATA, block: 1, data: HELLO } },
  { file: 'tftp-hpa-ack.hex', expected: { opcode: Opcode.ACK, block: 1 } },
  {
    file: 'tftp-hpa-netascii-rrq.hex',
    expected: { opcode: Opcode.RRQ, filename: 'text.txt', mode: 'netascii', options: opts() },
  },
  // The file is "a\nb\rc\r\n": tftpd-hpa's netascii conversion, which toNetascii must match.
  {
    file: 'tftpd-hpa-data-to-tftp-hpa-netascii.hex',
    expected: { opcode: Opcode.DATA, block: 1, data: text('a\r\nb\r\0c\r\0\r\n') },
  },
  { file: 'tftp-hpa-netascii-ack.hex', expected: { opcode: Opcode.ACK, block: 1 } },
  { file: 'tftp-hpa-put-wrq.hex', expected: { opcode: Opcode.WRQ, filename: 'up.txt', mode: 'octet', options: opts() } },
  {
    file: 'tftpd-hpa-error-to-tftp-hpa-put.hex',
    expected: { opcode: Opcode.ERROR, code: TftpErrorCode.FILE_NOT_FOUND, message: 'File not found' },
  },
  // atftp 0.8: all four options; tftpd-hpa acknowledges all but windowsize, in request order.
  {
    file: 'atftp-rrq.hex',
    expected: {
      opcode: Opcode.RRQ,
      filename: 'hello.txt',
      mode: 'octet',
      options: opts(['tsize', '0'], ['timeout', '3'], ['blksize', '1468'], ['windowsize', '8']),
    },
  },
  {
    file: 'tftpd-hpa-oack-to-atftp.hex',
    expected: { opcode: Opcode.OACK, options: opts(['tsize', '13'], ['timeout', '3'], ['blksize', '1468']) },
  },
  { file: 'atftp-ack.hex', expected: { opcode: Opcode.ACK, block: 0 } },
  { file: 'tftpd-hpa-data-to-atftp.hex', expected: { opcode: Opcode.DATA, block: 1, data: HELLO } },
  // curl 7.88: always tsize, then blksize when asked, and its own timeout.
  {
    file: 'curl-rrq.hex',
    expected: {
      opcode: Opcode.RRQ,
      filename: 'hello.txt',
      mode: 'octet',
      options: opts(['tsize', '0'], ['blksize', '1468'], ['timeout', '6']),
    },
  },
  {
    file: 'tftpd-hpa-oack-to-curl.hex',
    expected: { opcode: Opcode.OACK, options: opts(['tsize', '13'], ['blksize', '1468'], ['timeout', '6']) },
  },
  { file: 'curl-ack.hex', expected: { opcode: Opcode.ACK, block: 0 } },
  { file: 'tftpd-hpa-data-to-curl.hex', expected: { opcode: Opcode.DATA, block: 1, data: HELLO } },
  {
    file: 'curl-missing-rrq.hex',
    expected: { opcode: Opcode.RRQ, filename: 'missing.bin', mode: 'octet', options: opts(['tsize', '0'], ['blksize', '512'], ['timeout', '6']) },
  },
  {
    file: 'tftpd-hpa-error-to-curl-missing.hex',
    expected: { opcode: Opcode.ERROR, code: TftpErrorCode.FILE_NOT_FOUND, message: 'File not found' },
  },
  // Crafted from the RFCs.
  {
    file: 'crafted-oack-windowsize.hex',
    expected: { opcode: Opcode.OACK, options: opts(['tsize', '67108864'], ['blksize', '1468'], ['windowsize', '16']) },
  },
  {
    file: 'crafted-error-option-refused.hex',
    expected: { opcode: Opcode.ERROR, code: TftpErrorCode.OPTION_REFUSED, message: 'blksize refused' },
  },
  { file: 'crafted-data-final-empty.hex', expected: { opcode: Opcode.DATA, block: 0, data: Buffer.alloc(0) } },
  {
    file: 'crafted-rrq-uppercase.hex',
    expected: { opcode: Opcode.RRQ, filename: 'pxelinux.0', mode: 'octet', options: opts(['blksize', '1432'], ['tsize', '0']) },
    reencodes: false,
  },
];

describe('TFTP golden packets', () => {
  test('every testdata file has an expectation', () => {
    assert.deepStrictEqual(GOLDENS.map((g) => g.file).sort(), listHexFixtures());
  });

  for (const golden of GOLDENS) {
    test(`${golden.file}: decodes to the expected packet`, () => {
      assert.deepStrictEqual(decodeTftp(readHexFixture(golden.file)), golden.expected);
    });
    if (golden.reencodes !== false) {
      test(`${golden.file}: encodes back to the same bytes`, () => {
        assert.deepStrictEqual(encodeTftp(golden.expected), readHexFixture(golden.file));
      });
    }
  }

  test('crafted-rrq-uppercase.hex re-encodes to its lower-cased form, which decodes the same', () => {
    const decoded = decodeTftp(readHexFixture('crafted-rrq-uppercase.hex'));
    const again = encodeTftp(decoded);
    assert.equal(again.toString('latin1'), '\0\x01pxelinux.0\0octet\0blksize\x001432\0tsize\x000\0');
    assert.deepStrictEqual(decodeTftp(again), decoded);
  });

  test('encodeDataHeader + payload equals encodeTftp of the DATA packet', () => {
    for (const file of ['tftpd-hpa-data-to-curl.hex', 'crafted-data-final-empty.hex']) {
      const packet = decodeTftp(readHexFixture(file));
      assert.equal(packet.opcode, Opcode.DATA);
      if (packet.opcode !== Opcode.DATA) continue;
      assert.deepStrictEqual(Buffer.concat([encodeDataHeader(packet.block), packet.data]), readHexFixture(file));
    }
  });

  test('writeDataPacket lays out the same bytes as encodeTftp, in place at an offset', () => {
    for (const file of ['tftpd-hpa-data-to-curl.hex', 'crafted-data-final-empty.hex']) {
      const packet = decodeTftp(readHexFixture(file));
      assert.equal(packet.opcode, Opcode.DATA);
      if (packet.opcode !== Opcode.DATA) continue;
      const target = Buffer.alloc(packet.data.length + 10, 0xee);
      const written = writeDataPacket(target, 3, packet.block, packet.data);
      assert.equal(written, packet.data.length + 4);
      assert.deepStrictEqual(target.subarray(3, 3 + written), readHexFixture(file));
      assert.equal(target[2], 0xee, 'nothing written before the offset');
      assert.equal(target[3 + written], 0xee, 'nothing written after the datagram');
    }
  });

  test("toNetascii matches tftpd-hpa's conversion of \"a\\nb\\rc\\r\\n\"", () => {
    const captured = decodeTftp(readHexFixture('tftpd-hpa-data-to-tftp-hpa-netascii.hex'));
    assert.equal(captured.opcode, Opcode.DATA);
    if (captured.opcode === Opcode.DATA) assert.deepStrictEqual(toNetascii(text('a\nb\rc\r\n')), captured.data);
  });
});
