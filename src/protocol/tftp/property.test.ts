/**
 * Property tests (insomniacslk `FuzzDHCPv4`): decode never throws anything but DecodeError, and
 * encode∘decode is stable: a decoded packet encodes, decodes to itself, and re-encodes to the
 * same bytes.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { DecodeError } from '../bytes.js';
import { Opcode } from './codes.js';
import { decodeTftp, encodeTftp, type TftpPacket } from './packet.js';
import { hexFixtures } from '../testdata/hex.js';

const { listHexFixtures, readHexFixture } = hexFixtures(new URL('./testdata/', import.meta.url));

const NUM_RUNS = 3000;
const fixtures = listHexFixtures().map((name) => readHexFixture(name));

function tryDecode(bytes: Uint8Array): TftpPacket | undefined {
  try {
    return decodeTftp(Buffer.from(bytes));
  } catch (err) {
    if (err instanceof DecodeError) return undefined;
    throw err;
  }
}

function assertStable(packet: TftpPacket): void {
  const wire = encodeTftp(packet);
  const again = decodeTftp(wire);
  assert.deepStrictEqual(again, packet);
  assert.deepStrictEqual(encodeTftp(again), wire, 'encoding is idempotent');
}

/** A NUL-free latin1 string (as decode produces), sometimes with upper case to lower. */
const cstring = (maxLength: number) =>
  fc.array(fc.integer({ min: 1, max: 255 }), { maxLength }).map((codes) => String.fromCharCode(...codes));
const lowerName = fc.constantFrom('blksize', 'tsize', 'timeout', 'windowsize', 'multicast', 'rollover', 'x');

/** Mostly well-formed datagrams: a valid opcode, then NUL-separated strings or a block number. */
const framed = fc
  .record({
    opcode: fc.integer({ min: 0, max: 8 }),
    strings: fc.array(
      fc.oneof(cstring(12), lowerName, fc.constantFrom('octet', 'NETASCII', 'Octet', '0', '1468', 'BlkSize')),
      { maxLength: 10 },
    ),
    trailingNul: fc.boolean(),
    tail: fc.option(fc.uint8Array({ maxLength: 6 }), { freq: 4 }),
  })
  .map(({ opcode, strings, trailingNul, tail }) => {
    const body = strings.join('\0') + (trailingNul ? '\0' : '');
    return Buffer.concat([Buffer.from([0, opcode]), Buffer.from(body, 'latin1'), Buffer.from(tail ?? [])]);
  });

/** A captured or crafted packet with a few bytes overwritten, maybe truncated or extended. */
const mutatedFixture = fc
  .record({
    base: fc.constantFrom(...fixtures),
    edits: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
    cut: fc.option(fc.nat()),
    tail: fc.uint8Array({ maxLength: 20 }),
  })
  .map(({ base, edits, cut, tail }) => {
    const buf = Buffer.from(base);
    if (buf.length > 0) for (const [at, value] of edits) buf[at % buf.length] = value;
    return cut === null ? Buffer.concat([buf, tail]) : buf.subarray(0, cut % (buf.length + 1));
  });

describe('decodeTftp properties', () => {
  test('arbitrary bytes: returns a packet or throws DecodeError, nothing else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
        const packet = tryDecode(bytes);
        if (packet) assertStable(packet);
      }),
      { numRuns: NUM_RUNS },
    );
  });

  test('framed strings under every opcode: decodes or DecodeError, and is stable', () => {
    fc.assert(
      fc.property(framed, (bytes) => {
        const packet = tryDecode(bytes);
        if (packet) assertStable(packet);
      }),
      { numRuns: NUM_RUNS },
    );
  });

  test('mutated golden packets: decodes or DecodeError, and is stable', () => {
    fc.assert(
      fc.property(mutatedFixture, (bytes) => {
        const packet = tryDecode(bytes);
        if (packet) assertStable(packet);
      }),
      { numRuns: NUM_RUNS },
    );
  });

  test('generated packets: encode then decode gives the packet back', () => {
    const options = fc
      .uniqueArray(fc.tuple(fc.oneof(lowerName, cstring(8).map((s) => s.replace(/[A-Z]/g, (c) => c.toLowerCase()))), cstring(10)), {
        selector: ([name]) => name,
        maxLength: 6,
      })
      .map((pairs) => new Map(pairs.filter(([name]) => name !== '')));
    const lower = (s: string) => s.replace(/[A-Z]/g, (c) => c.toLowerCase());
    const packet: fc.Arbitrary<TftpPacket> = fc.oneof(
      fc
        .record({ opcode: fc.constantFrom(Opcode.RRQ, Opcode.WRQ), filename: cstring(40), mode: cstring(10).map(lower), options })
        .map((p): TftpPacket => ({ ...p })),
      fc
        .record({ block: fc.nat(0xffff), data: fc.uint8Array({ maxLength: 1500 }) })
        .map(({ block, data }): TftpPacket => ({ opcode: Opcode.DATA, block, data: Buffer.from(data) })),
      fc.nat(0xffff).map((block): TftpPacket => ({ opcode: Opcode.ACK, block })),
      fc
        .record({ code: fc.nat(0xffff), message: cstring(40) })
        .map(({ code, message }): TftpPacket => ({ opcode: Opcode.ERROR, code, message })),
      options.map((o): TftpPacket => ({ opcode: Opcode.OACK, options: o })),
    );
    fc.assert(
      fc.property(packet, (p) => {
        assertStable(p);
      }),
      { numRuns: NUM_RUNS },
    );
  });
});
