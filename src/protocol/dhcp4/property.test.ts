/**
 * Property tests (insomniacslk `FuzzDHCPv4`): decode never throws anything but DecodeError, and
 * encode∘decode is stable.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { DecodeError, EncodeError } from '../bytes.js';
import { OPTIONS_OFFSET, decodeDhcp4, encodeDhcp4 } from './message.js';
import { hexFixtures } from '../testdata/hex.js';
import { OptionCode, type Dhcp4Message } from './types.js';

const { listHexFixtures, readHexFixture } = hexFixtures(new URL('./testdata/', import.meta.url));

const NUM_RUNS = 2000;
const fixtures = listHexFixtures().map((name) => readHexFixture(name));

/** Decodes, or returns undefined on DecodeError; any other exception fails the property. */
function tryDecode(bytes: Uint8Array): Dhcp4Message | undefined {
  try {
    return decodeDhcp4(Buffer.from(bytes));
  } catch (err) {
    if (err instanceof DecodeError) return undefined;
    throw err;
  }
}

/** The order decode gives after a round trip with no overload: Map order, 82 moved last. */
function expectedOrder(m: Dhcp4Message): number[] {
  const codes = [...m.options.keys()];
  return [...codes.filter((c) => c !== OptionCode.RELAY_AGENT_INFO), ...codes.filter((c) => c === OptionCode.RELAY_AGENT_INFO)];
}

/** decode(encode(m)) deep-equals m; with room enough for no overload, order is pinned too. */
function assertStable(m: Dhcp4Message): void {
  const wire = encodeDhcp4(m, { maxSize: 0xffff });
  const again = decodeDhcp4(wire);
  assert.deepStrictEqual(again, m);
  assert.deepStrictEqual([...again.options.keys()], expectedOrder(m));
  assert.deepStrictEqual(encodeDhcp4(again, { maxSize: 0xffff }), wire, 'encoding is idempotent');

  // With the default 576-byte limit the encoder may overload or refuse, but never lose content.
  let small: Buffer | undefined;
  try {
    small = encodeDhcp4(m);
  } catch (err) {
    if (!(err instanceof EncodeError)) throw err;
  }
  if (small) {
    assert.ok(small.length <= 548, `${small.length} bytes exceed the 548-byte default`);
    assert.deepStrictEqual(decodeDhcp4(small), m);
  }
}

/**
 * Option bytes that are mostly well formed (PAD, TLVs with repeated codes, maybe END, maybe a
 * little garbage), so that most samples get past the framing and exercise joins and overload.
 */
const optionStream = fc
  .record({
    items: fc.array(
      fc.oneof(
        fc.constant(Buffer.from([OptionCode.PAD])),
        fc
          .tuple(fc.oneof(fc.integer({ min: 1, max: 254 }), fc.constantFrom(12, 43, 53, 82)), fc.uint8Array({ maxLength: 40 }))
          .map(([code, value]) => Buffer.concat([Buffer.from([code, value.length]), value])),
      ),
      { maxLength: 12 },
    ),
    end: fc.boolean(),
    garbage: fc.option(fc.uint8Array({ maxLength: 6 }), { freq: 5 }),
  })
  .map(({ items, end, garbage }) =>
    Buffer.concat([...items, Buffer.from(end ? [OptionCode.END] : []), Buffer.from(garbage ?? [])]),
  );

/** `stream` cut or NUL padded to a fixed field's size. */
const fitTo = (stream: Buffer, fieldBytes: number): Buffer =>
  Buffer.concat([stream.subarray(0, fieldBytes), Buffer.alloc(Math.max(0, fieldBytes - stream.length))]);

/** A valid fixed header and cookie with arbitrary fields, then options; sname/file may hold options. */
const headerThenOptions = fc
  .record({
    header: fc.uint8Array({ minLength: OPTIONS_OFFSET, maxLength: OPTIONS_OFFSET }),
    op: fc.constantFrom(1, 2),
    hlen: fc.integer({ min: 0, max: 16 }),
    overload: fc.option(fc.integer({ min: 0, max: 4 })),
    options: optionStream,
    file: optionStream,
    sname: optionStream,
  })
  .map(({ header, op, hlen, overload, options, file, sname }) => {
    const buf = Buffer.from(header);
    buf[0] = op;
    buf[2] = hlen;
    if (overload !== null && (overload & 1) !== 0) fitTo(file, 128).copy(buf, 108);
    if (overload !== null && (overload & 2) !== 0) fitTo(sname, 64).copy(buf, 44);
    buf.writeUInt32BE(0x63825363, 236);
    const prefix = overload === null ? Buffer.alloc(0) : Buffer.from([OptionCode.OVERLOAD, 1, overload]);
    return Buffer.concat([buf, prefix, options]);
  });

/** A captured or crafted packet with a few bytes overwritten, maybe truncated or extended. */
const mutatedFixture = fc
  .record({
    base: fc.constantFrom(...fixtures),
    edits: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }),
    cut: fc.option(fc.nat()),
    tail: fc.uint8Array({ maxLength: 40 }),
  })
  .map(({ base, edits, cut, tail }) => {
    const buf = Buffer.from(base);
    for (const [at, value] of edits) buf[at % buf.length] = value;
    return cut === null ? Buffer.concat([buf, tail]) : buf.subarray(0, cut % (buf.length + 1));
  });

describe('decodeDhcp4 properties', () => {
  test('arbitrary bytes: returns a message or throws DecodeError, nothing else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 700 }), (bytes) => {
        tryDecode(bytes);
      }),
      { numRuns: NUM_RUNS },
    );
  });

  test('valid header + arbitrary options (with and without overload): decodes or DecodeError, and is stable', () => {
    fc.assert(
      fc.property(headerThenOptions, (bytes) => {
        const m = tryDecode(bytes);
        if (m) assertStable(m);
      }),
      { numRuns: NUM_RUNS },
    );
  });

  test('mutated golden packets: decodes or DecodeError, and is stable', () => {
    fc.assert(
      fc.property(mutatedFixture, (bytes) => {
        const m = tryDecode(bytes);
        if (m) assertStable(m);
      }),
      { numRuns: NUM_RUNS },
    );
  });

  test('generated messages: encode then decode gives the message back', () => {
    const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((o) => o.join('.'));
    const latin1 = (maxLength: number) =>
      fc.array(fc.integer({ min: 1, max: 255 }), { maxLength }).map((codes) => String.fromCharCode(...codes));
    const message = fc.record({
      op: fc.constantFrom(1 as const, 2 as const),
      htype: fc.nat(255),
      hlen: fc.nat(16),
      hops: fc.nat(255),
      xid: fc.nat(0xffffffff),
      secs: fc.nat(0xffff),
      flags: fc.nat(0xffff),
      ciaddr: ipv4,
      yiaddr: ipv4,
      siaddr: ipv4,
      giaddr: ipv4,
      chaddr: fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => Buffer.from(b)),
      sname: latin1(64),
      file: latin1(128),
      options: fc
        .uniqueArray(
          fc.tuple(
            fc.integer({ min: 1, max: 254 }).filter((c) => c !== OptionCode.OVERLOAD),
            fc.uint8Array({ maxLength: 600 }).map((b) => Buffer.from(b)),
          ),
          { selector: ([code]) => code, maxLength: 12 },
        )
        .map((entries) => new Map(entries)),
    }).map((m): Dhcp4Message => ({ ...m })); // fc.record objects have a null prototype
    fc.assert(
      fc.property(message, (m) => {
        assertStable(m);
      }),
      { numRuns: 500 },
    );
  });
});
