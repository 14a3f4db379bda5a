import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DecodeError, EncodeError } from '../bytes.js';
import { PxehaError } from '../../errors.js';
import {
  FILE_OFFSET,
  MIN_BOOTP_BYTES,
  OPTIONS_OFFSET,
  SNAME_OFFSET,
  decodeDhcp4,
  encodeDhcp4,
} from './message.js';
import type { Dhcp4Message } from './types.js';

const hex = (h: string): Buffer => Buffer.from(h.replace(/\s+/g, ''), 'hex');

/** A BOOTREQUEST with the given option bytes (everything after the cookie), built by hand. */
function rawPacket(parts: { options: Buffer; sname?: Buffer; file?: Buffer; op?: number; hlen?: number }): Buffer {
  const header = Buffer.alloc(OPTIONS_OFFSET);
  header[0] = parts.op ?? 1;
  header[1] = 1;
  header[2] = parts.hlen ?? 6;
  hex('52 54 00 12 34 56').copy(header, 28);
  parts.sname?.copy(header, SNAME_OFFSET);
  parts.file?.copy(header, FILE_OFFSET);
  header.writeUInt32BE(0x63825363, 236);
  return Buffer.concat([header, parts.options]);
}

function message(options: [number, Buffer][], fields: Partial<Dhcp4Message> = {}): Dhcp4Message {
  const chaddr = Buffer.alloc(16);
  hex('52 54 00 12 34 56').copy(chaddr);
  return {
    op: 2,
    htype: 1,
    hlen: 6,
    hops: 0,
    xid: 0x12345678,
    secs: 0,
    flags: 0,
    ciaddr: '0.0.0.0',
    yiaddr: '10.99.0.100',
    siaddr: '10.99.0.1',
    giaddr: '0.0.0.0',
    chaddr,
    sname: '',
    file: '',
    ...fields,
    options: new Map(options),
  };
}

function assertDecodeError(buf: Buffer, field: string, offset: number): void {
  assert.throws(
    () => decodeDhcp4(buf),
    (err: unknown) => {
      assert.ok(err instanceof DecodeError, `expected DecodeError, got ${String(err)}`);
      assert.ok(err instanceof PxehaError);
      assert.equal(err.code, 'PXE_ERR_DECODE');
      assert.equal(err.field, field);
      assert.equal(err.offset, offset);
      return true;
    },
  );
}

function assertEncodeError(run: () => unknown, field: string): void {
  assert.throws(run, (err: unknown) => {
    assert.ok(err instanceof EncodeError, `expected EncodeError, got ${String(err)}`);
    assert.equal(err.code, 'PXE_ERR_ENCODE');
    assert.equal(err.field, field);
    return true;
  });
}

/** Where option `code` sits in the options field of `wire` (code byte offset), or -1. */
function findOption(wire: Buffer, code: number, from = OPTIONS_OFFSET, to = wire.length): number {
  let at = from;
  while (at < to) {
    const c = wire[at] as number;
    if (c === 255) return -1;
    if (c === 0) {
      at += 1;
      continue;
    }
    if (c === code) return at;
    at += 2 + (wire[at + 1] as number);
  }
  return -1;
}

describe('decodeDhcp4: malformed input fails with DecodeError at the right field and offset', () => {
  const valid = rawPacket({ options: hex('35 01 01 ff') });

  test('empty buffer: op at 0', () => assertDecodeError(Buffer.alloc(0), 'op', 0));
  test('truncated in the xid: xid at 4', () => assertDecodeError(valid.subarray(0, 6), 'xid', 4));
  test('truncated in chaddr: chaddr at 28', () => assertDecodeError(valid.subarray(0, 40), 'chaddr', 28));
  test('truncated in sname: sname at 44', () => assertDecodeError(valid.subarray(0, 100), 'sname', SNAME_OFFSET));
  test('truncated in file: file at 108', () => assertDecodeError(valid.subarray(0, 200), 'file', FILE_OFFSET));
  test('plain 236-byte BOOTP without cookie: cookie at 236', () =>
    assertDecodeError(valid.subarray(0, 236), 'cookie', 236));
  test('truncated in the cookie: cookie at 236', () => assertDecodeError(valid.subarray(0, 238), 'cookie', 236));
  test('bad magic cookie: cookie at 236', () => {
    const bad = Buffer.from(valid);
    bad.writeUInt32BE(0x63825364, 236);
    assertDecodeError(bad, 'cookie', 236);
  });
  test('op neither 1 nor 2: op at 0', () => assertDecodeError(rawPacket({ op: 3, options: hex('ff') }), 'op', 0));
  test('hlen over 16: hlen at 2', () => assertDecodeError(rawPacket({ hlen: 17, options: hex('ff') }), 'hlen', 2));
  test('option value overruns the packet: at the value', () =>
    assertDecodeError(rawPacket({ options: hex('35 01 01 0c 05 61 62') }), 'options[12].value', 245));
  test('option length byte missing: at the length', () =>
    assertDecodeError(rawPacket({ options: hex('35 01 01 0c') }), 'options[12].length', 244));
  test('overload value 4: options[52] at its value', () =>
    assertDecodeError(rawPacket({ options: hex('35 01 01 34 01 04 ff') }), 'options[52]', 245));
  test('overload two bytes long: options[52]', () =>
    assertDecodeError(rawPacket({ options: hex('34 02 01 01 ff') }), 'options[52]', 242));
  test('overload repeated (joined to two bytes, RFC 3396): options[52] at the first', () =>
    assertDecodeError(rawPacket({ options: hex('34 01 01 34 01 02 ff') }), 'options[52]', 242));
  test('overload inside the overloaded file field: file[52] at its code', () =>
    assertDecodeError(rawPacket({ options: hex('34 01 01 ff'), file: hex('34 01 03 ff') }), 'file[52]', FILE_OFFSET));
  test('overload inside the overloaded sname field: sname[52] at its code', () =>
    assertDecodeError(
      rawPacket({ options: hex('34 01 03 ff'), file: hex('ff'), sname: hex('00 34 01 01 ff') }),
      'sname[52]',
      SNAME_OFFSET + 1,
    ));
  test('option overruns the overloaded file field: at the value, not past the field', () =>
    assertDecodeError(rawPacket({ options: hex('34 01 01 ff'), file: hex('0c 7f') }), 'file[12].value', FILE_OFFSET + 2));
  test('option overruns the overloaded sname field', () => {
    const sname = Buffer.alloc(64);
    hex('0c 3f').copy(sname, 0); // 63 bytes claimed, 62 left in the 64-byte field
    assertDecodeError(rawPacket({ options: hex('34 01 02 ff'), sname }), 'sname[12].value', SNAME_OFFSET + 2);
  });
});

describe('decodeDhcp4: framing', () => {
  test('PAD is skipped, bytes after END are padding, a missing END is tolerated', () => {
    const m = decodeDhcp4(rawPacket({ options: hex('00 00 35 01 01 00 ff 0c 02 61 62') }));
    assert.deepStrictEqual([...m.options.keys()], [53]);
    const noEnd = decodeDhcp4(rawPacket({ options: hex('35 01 01 0c 02 61 62') }));
    assert.deepStrictEqual([...noEnd.options.keys()], [53, 12]);
  });

  test('a packet that ends right after the cookie has no options', () => {
    assert.equal(decodeDhcp4(rawPacket({ options: Buffer.alloc(0) })).options.size, 0);
  });

  test('zero-length options are kept', () => {
    const m = decodeDhcp4(rawPacket({ options: hex('50 00 ff') })); // 80 rapid commit, RFC 4039
    assert.deepStrictEqual(m.options.get(80), Buffer.alloc(0));
  });

  test('sname and file read up to the first NUL, one character per byte', () => {
    const file = Buffer.concat([Buffer.from('boot\xe9.0', 'latin1'), hex('00 41 42')]);
    const m = decodeDhcp4(rawPacket({ options: hex('ff'), file, sname: Buffer.from('srv') }));
    assert.equal(m.file, 'boot\u00e9.0');
    assert.equal(m.sname, 'srv');
  });

  test('decoded values do not alias the input buffer', () => {
    const wire = rawPacket({ options: hex('0c 02 61 62 ff') });
    const m = decodeDhcp4(wire);
    wire.fill(0);
    assert.deepStrictEqual(m.options.get(12), Buffer.from('ab'));
    assert.equal(m.chaddr[0], 0x52);
  });
});

describe('RFC 3396 long options', () => {
  test('repeated codes are joined in order, at the position of the first', () => {
    const m = decodeDhcp4(rawPacket({ options: hex('0c 02 61 62 35 01 01 0c 01 63 0c 00 0c 02 64 65 ff') }));
    assert.deepStrictEqual([...m.options.keys()], [12, 53]);
    assert.equal(m.options.get(12)?.toString(), 'abcde');
  });

  test('values over 255 bytes are split into consecutive 255-byte instances and join back', () => {
    const value = Buffer.from(Array.from({ length: 600 }, (_, i) => i % 251));
    const m = message([
      [53, hex('05')],
      [43, value],
      [54, hex('0a 63 00 01')],
    ]);
    const wire = encodeDhcp4(m, { maxSize: 1500 });
    const first = OPTIONS_OFFSET + 3;
    assert.deepStrictEqual([wire[first], wire[first + 1]], [43, 255]);
    assert.deepStrictEqual([wire[first + 257], wire[first + 258]], [43, 255]);
    assert.deepStrictEqual([wire[first + 514], wire[first + 515]], [43, 90]);
    assert.deepStrictEqual(wire.subarray(first + 2, first + 257), value.subarray(0, 255));
    assert.deepStrictEqual(decodeDhcp4(wire), m);
  });

  test('a value of exactly 255 bytes stays one instance; an empty value is one empty instance', () => {
    const m = message([
      [43, Buffer.alloc(255, 7)],
      [80, Buffer.alloc(0)],
    ]);
    const wire = encodeDhcp4(m, { maxSize: 1500 });
    assert.equal(findOption(wire, 43, OPTIONS_OFFSET + 257), -1);
    assert.deepStrictEqual(wire.subarray(OPTIONS_OFFSET + 257, OPTIONS_OFFSET + 260), hex('50 00 ff'));
    assert.deepStrictEqual(decodeDhcp4(wire), m);
  });
});

describe('encodeDhcp4: layout', () => {
  test('option 82 is written last whatever its Map position (RFC 3046 §2.1)', () => {
    const relay = hex('01 04 65 74 68 30');
    const m = message([
      [82, relay],
      [53, hex('02')],
      [54, hex('0a 63 00 01')],
    ]);
    const wire = encodeDhcp4(m);
    assert.deepStrictEqual(wire.subarray(OPTIONS_OFFSET, OPTIONS_OFFSET + 18), hex('35 01 02 36 04 0a 63 00 01 52 06 01 04 65 74 68 30 ff'));
  });

  test('other options keep Map insertion order, not sorted order', () => {
    const wire = encodeDhcp4(message([[53, hex('02')], [3, hex('0a 63 00 01')], [1, hex('ff ff ff 00')]]));
    assert.deepStrictEqual(wire.subarray(OPTIONS_OFFSET, OPTIONS_OFFSET + 4), hex('35 01 02 03'));
  });

  test('short messages are padded with zeros after END to 300 bytes (RFC 1542 §2.1)', () => {
    const wire = encodeDhcp4(message([[53, hex('06')]]));
    assert.equal(wire.length, MIN_BOOTP_BYTES);
    assert.equal(wire[OPTIONS_OFFSET + 3], 255);
    assert.ok(wire.subarray(OPTIONS_OFFSET + 4).every((b) => b === 0));
  });

  test('minSize changes the padding; longer messages are not padded', () => {
    assert.equal(encodeDhcp4(message([[53, hex('06')]]), { minSize: 0 }).length, OPTIONS_OFFSET + 4);
    assert.equal(encodeDhcp4(message([[53, hex('06')]]), { minSize: 548 }).length, 548);
    const long = encodeDhcp4(message([[43, Buffer.alloc(100)]]));
    assert.equal(long.length, OPTIONS_OFFSET + 102 + 1);
  });

  test('sname and file are NUL padded; chaddr shorter than 16 bytes is padded', () => {
    const m = message([[53, hex('02')]], { sname: 'pxe1', file: 'undionly.kpxe', chaddr: hex('52 54 00 12 34 56') });
    const wire = encodeDhcp4(m);
    assert.deepStrictEqual(wire.subarray(SNAME_OFFSET, SNAME_OFFSET + 5), Buffer.from('pxe1\0'));
    assert.deepStrictEqual(wire.subarray(FILE_OFFSET, FILE_OFFSET + 14), Buffer.from('undionly.kpxe\0'));
    assert.deepStrictEqual(decodeDhcp4(wire).chaddr, hex('52 54 00 12 34 56 00 00 00 00 00 00 00 00 00 00'));
  });
});

describe('encodeDhcp4: option overload (RFC 2131 §4.1, RFC 2132 §9.3)', () => {
  // 53 + 54 + 51 take 15 bytes; a 548-byte message leaves 308 option bytes (END included).
  const filler = (code: number, lengthBytes: number): [number, Buffer] => [code, Buffer.alloc(lengthBytes, code)];
  const base: [number, Buffer][] = [
    [53, hex('05')],
    [54, hex('0a 63 00 01')],
    [51, hex('00 00 0e 10')],
  ];

  test('no overload when the options fit in the default 548-byte message', () => {
    const m = message([...base, filler(224, 250)]);
    const wire = encodeDhcp4(m);
    assert.equal(wire.length, OPTIONS_OFFSET + 15 + 252 + 1);
    assert.equal(findOption(wire, 52), -1);
    assert.deepStrictEqual(decodeDhcp4(wire), m);
  });

  test('options beyond maxSize spill into file (overload 1) with 52 last in the options field', () => {
    const m = message([...base, filler(224, 250), filler(225, 60)]);
    const wire = encodeDhcp4(m);
    assert.ok(wire.length <= 548, `length ${wire.length}`);
    const overloadAt = findOption(wire, 52);
    assert.ok(overloadAt > 0);
    assert.deepStrictEqual(wire.subarray(overloadAt, overloadAt + 4), hex('34 01 01 ff'));
    assert.deepStrictEqual(wire.subarray(FILE_OFFSET, FILE_OFFSET + 2), hex('e1 3c'));
    assert.equal(wire[FILE_OFFSET + 62], 255);
    assert.deepStrictEqual(decodeDhcp4(wire), m);
  });

  test('then into sname (overload 3)', () => {
    const m = message([...base, filler(224, 250), filler(225, 120), filler(226, 40)]);
    const wire = encodeDhcp4(m);
    assert.ok(wire.length <= 548);
    const overloadAt = findOption(wire, 52);
    assert.deepStrictEqual(wire.subarray(overloadAt, overloadAt + 3), hex('34 01 03'));
    assert.deepStrictEqual(wire.subarray(SNAME_OFFSET, SNAME_OFFSET + 2), hex('e2 28'));
    assert.deepStrictEqual(decodeDhcp4(wire), m);
  });

  test('a non-empty file is never overwritten: spill goes to sname only (overload 2)', () => {
    const m = message([...base, filler(224, 250), filler(225, 40)], { file: 'undionly.kpxe' });
    const wire = encodeDhcp4(m);
    const overloadAt = findOption(wire, 52);
    assert.deepStrictEqual(wire.subarray(overloadAt, overloadAt + 3), hex('34 01 02'));
    assert.deepStrictEqual(decodeDhcp4(wire), m);
  });

  test('option 82 stays the last option even when spilled', () => {
    const m = message([[82, hex('01 02 aa bb')], ...base, filler(224, 250), filler(225, 60)]);
    const wire = encodeDhcp4(m);
    // The 82 instance follows option 225 in the file field, the last area used.
    assert.deepStrictEqual(wire.subarray(FILE_OFFSET + 62, FILE_OFFSET + 69), hex('52 04 01 02 aa bb ff'));
    assert.deepStrictEqual(decodeDhcp4(wire), m);
  });

  test('a larger maxSize (the request’s option 57) avoids overload', () => {
    const m = message([...base, filler(224, 250), filler(225, 60)]);
    const wire = encodeDhcp4(m, { maxSize: 1472 });
    assert.equal(findOption(wire, 52), -1);
    assert.equal(wire.length, OPTIONS_OFFSET + 15 + 252 + 62 + 1);
  });

  test('maxSize under 576 is raised to 576, which every client accepts', () => {
    const m = message([...base, filler(224, 250)]);
    assert.deepStrictEqual(encodeDhcp4(m, { maxSize: 300 }), encodeDhcp4(m));
  });

  test('too big even with overload: EncodeError PXE_ERR_ENCODE', () => {
    const m = message([...base, filler(224, 250), filler(225, 250), filler(226, 250)]);
    assertEncodeError(() => encodeDhcp4(m), 'options');
  });

  test('file and sname both in use: EncodeError instead of overload', () => {
    const m = message([...base, filler(224, 250), filler(225, 60)], { file: 'a', sname: 'b' });
    assertEncodeError(() => encodeDhcp4(m), 'options');
  });

  test('a caller-set option 52 is refused: the encoder owns overload', () => {
    assertEncodeError(() => encodeDhcp4(message([[52, hex('01')]])), 'options[52]');
  });
});

describe('encodeDhcp4: refuses what it cannot send', () => {
  test('PAD and END are not option codes', () => {
    assertEncodeError(() => encodeDhcp4(message([[0, hex('01')]])), 'options[0]');
    assertEncodeError(() => encodeDhcp4(message([[255, hex('01')]])), 'options[255]');
  });
  test('addresses must be dotted quads', () => {
    assertEncodeError(() => encodeDhcp4(message([], { yiaddr: '10.99.0.256' })), 'yiaddr');
    assertEncodeError(() => encodeDhcp4(message([], { giaddr: 'relay' })), 'giaddr');
  });
  test('integer fields must be in range', () => {
    assertEncodeError(() => encodeDhcp4(message([], { xid: 2 ** 32 })), 'xid');
    assertEncodeError(() => encodeDhcp4(message([], { secs: -1 })), 'secs');
    assertEncodeError(() => encodeDhcp4(message([], { flags: 0x1_0000 })), 'flags');
    assertEncodeError(() => encodeDhcp4(message([], { hlen: 17 })), 'hlen');
    assertEncodeError(() => encodeDhcp4(message([], { op: 3 as never })), 'op');
  });
  test('chaddr over 16 bytes', () => {
    assertEncodeError(() => encodeDhcp4(message([], { chaddr: Buffer.alloc(17) })), 'chaddr');
  });
  test('sname and file: too long, NUL inside, or characters above U+00FF', () => {
    assertEncodeError(() => encodeDhcp4(message([], { sname: 'x'.repeat(65) })), 'sname');
    assertEncodeError(() => encodeDhcp4(message([], { file: 'x'.repeat(129) })), 'file');
    assertEncodeError(() => encodeDhcp4(message([], { file: 'a\0b' })), 'file');
    assertEncodeError(() => encodeDhcp4(message([], { file: 'ipxe-\u2603.efi' })), 'file');
  });
  test('a full-length sname and file (no NUL terminator) round trip', () => {
    const m = message([[53, hex('02')]], { sname: 's'.repeat(64), file: 'f'.repeat(128) });
    assert.deepStrictEqual(decodeDhcp4(encodeDhcp4(m)), m);
  });
});
