import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PxehaError } from '../errors.js';
import fc from 'fast-check';
import { parseIpv4 } from '../util/ipv4.js';
import { ByteReader, ByteWriter, DecodeError, EncodeError, ipv4ToBytes } from './bytes.js';

function assertDecodeError(run: () => unknown, field: string, offset: number): void {
  assert.throws(run, (err: unknown) => {
    assert.ok(err instanceof DecodeError);
    assert.equal(err.field, field);
    assert.equal(err.offset, offset);
    return true;
  });
}

describe('ByteReader', () => {
  test('reads big-endian values and tracks the offset', () => {
    const r = new ByteReader(Buffer.from([0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 10, 99, 0, 1, 0xaa]));
    assert.equal(r.u8('a'), 0x01);
    assert.equal(r.u16('b'), 0x0203);
    assert.equal(r.u32('c'), 0x04050607);
    assert.equal(r.ipv4('d'), '10.99.0.1');
    assert.equal(r.offset, 11);
    assert.equal(r.remaining, 1);
    assert.deepStrictEqual(r.rest('e'), Buffer.from([0xaa]));
    r.expectEnd('f');
  });

  test('a short read throws DecodeError naming the field and where it started', () => {
    const r = new ByteReader(Buffer.from([1, 2, 3]));
    r.u8('first');
    assertDecodeError(() => r.u32('xid'), 'xid', 1);
    assert.equal(r.offset, 1, 'a failed read consumes nothing');
    assertDecodeError(() => r.bytes('chunk', 3), 'chunk', 1);
    assertDecodeError(() => new ByteReader(Buffer.alloc(0)).u8('op'), 'op', 0);
  });

  test('sub-readers report offsets relative to the whole buffer', () => {
    const r = new ByteReader(Buffer.alloc(20));
    r.bytes('skip', 8);
    const sub = r.sub('field', 4);
    assert.equal(r.offset, 12);
    assert.equal(sub.offset, 8);
    sub.u16('x');
    assertDecodeError(() => sub.u32('y'), 'y', 10);
    assertDecodeError(() => r.sub('too-long', 9), 'too-long', 12);
    assertDecodeError(() => new ByteReader(Buffer.alloc(0), 100).u8('z'), 'z', 100);
  });

  test('expectEnd reports trailing bytes', () => {
    const r = new ByteReader(Buffer.alloc(3));
    r.u8('a');
    assertDecodeError(() => r.expectEnd('opt'), 'opt', 1);
  });

  test('bytes() copies, so decoded values never alias the input', () => {
    const input = Buffer.from([1, 2, 3]);
    const copy = new ByteReader(input).bytes('b', 3);
    input[0] = 9;
    assert.equal(copy[0], 1);
  });

  test('DecodeError is a PxehaError with code PXE_ERR_DECODE', () => {
    const err = new DecodeError('cookie', 236, 'bad');
    assert.ok(err instanceof PxehaError);
    assert.equal(err.code, 'PXE_ERR_DECODE');
    assert.equal(err.name, 'DecodeError');
    assert.match(err.message, /cookie at offset 236/);
  });
});

describe('ByteWriter', () => {
  test('writes big-endian values and grows past its initial capacity', () => {
    const w = new ByteWriter(1);
    w.u8('a', 1).u16('b', 0x0203).u32('c', 0x04050607).ipv4('d', '10.99.0.1').zeros('e', 2);
    w.bytes('f', Buffer.alloc(100, 0xee));
    const out = w.toBuffer();
    assert.equal(out.length, 1 + 2 + 4 + 4 + 2 + 100);
    assert.deepStrictEqual(out.subarray(0, 13), Buffer.from([1, 2, 3, 4, 5, 6, 7, 10, 99, 0, 1, 0, 0]));
    assert.ok(out.subarray(13).every((b) => b === 0xee));
    assert.equal(w.length, out.length);
  });

  test('out-of-range values throw EncodeError (PXE_ERR_ENCODE) naming the field', () => {
    const cases: [() => unknown, string][] = [
      [() => new ByteWriter().u8('hops', 256), 'hops'],
      [() => new ByteWriter().u16('secs', -1), 'secs'],
      [() => new ByteWriter().u32('xid', 2 ** 32), 'xid'],
      [() => new ByteWriter().u8('htype', 1.5), 'htype'],
      [() => new ByteWriter().ipv4('giaddr', '1.2.3'), 'giaddr'],
    ];
    for (const [run, field] of cases) {
      assert.throws(run, (err: unknown) => err instanceof EncodeError && err.field === field && err.code === 'PXE_ERR_ENCODE');
    }
  });
});

describe('ipv4ToBytes', () => {
  test('accepts dotted quads only', () => {
    assert.deepStrictEqual(ipv4ToBytes('ip', '255.0.10.1'), Buffer.from([255, 0, 10, 1]));
    for (const bad of ['256.0.0.1', '1.2.3', '1.2.3.4.5', ' 1.2.3.4', '1.2.3.x', '', '::1']) {
      assert.throws(() => ipv4ToBytes('ip', bad), EncodeError, bad);
    }
  });

  test('parseIpv4 agrees with the dotted-quad grammar on any string (property)', () => {
    // The grammar as a regular expression: four 1-3 digit octets, none above 255.
    const reference = (s: string): number => {
      const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
      const octets = m ? m.slice(1).map(Number) : [];
      return octets.length === 4 && octets.every((o) => o <= 255) ? octets.reduce((n, o) => n * 256 + o, 0) : -1;
    };
    const octet = fc.oneof(fc.integer({ min: 0, max: 300 }).map(String), fc.stringMatching(/^[0-9]{1,4}$/));
    const near = fc.tuple(octet, octet, octet, octet, fc.constantFrom('', '.', ' ', 'x')).map(([a, b, c, d, tail]) => `${a}.${b}.${c}.${d}${tail}`);
    fc.assert(fc.property(fc.oneof(near, fc.string({ maxLength: 20 }), fc.stringMatching(/^[0-9.]{0,16}$/)), (s) => {
      assert.equal(parseIpv4(s), reference(s), JSON.stringify(s));
    }), { numRuns: 5000 });
    assert.equal(parseIpv4('255.255.255.255'), 0xffffffff);
    assert.equal(parseIpv4('0.0.0.0'), 0);
  });
});
