import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DecodeError, EncodeError } from '../bytes.js';
import { decodeDhcp4 } from './message.js';
import {
  IpxeSubOptionName,
  OptionName,
  PxeDiscoveryControl,
  PxeVendorSubOption,
  buildPxeVendorOptions,
  buildTlvs,
  buildUserClass,
  findSubOption,
  formatGuid,
  formatMac,
  getLinkSelection,
  getOption,
  hasIpxeFeature,
  ipxeNoPxeDhcp,
  optionName,
  optionRegistry,
  parseEncapsulated,
  parseGuid,
  parsePxeVendorOptions,
  parseTlvs,
  parseUserClass,
  setOption,
  type RegisteredOptionCode,
} from './options.js';
import { hexFixtures } from '../testdata/hex.js';
import { IpxeSubOption, MessageType, OptionCode, RelaySubOption, type Dhcp4Message } from './types.js';

const { readHexFixture } = hexFixtures(new URL('./testdata/', import.meta.url));

const hex = (h: string): Buffer => Buffer.from(h.replace(/\s+/g, ''), 'hex');
const withOptions = (entries: [number, Buffer][]): Pick<Dhcp4Message, 'options'> => ({ options: new Map(entries) });

function assertDecodeError(run: () => unknown, field: string, offset?: number): void {
  assert.throws(run, (err: unknown) => {
    assert.ok(err instanceof DecodeError, `expected DecodeError, got ${String(err)}`);
    assert.equal(err.field, field);
    if (offset !== undefined) assert.equal(err.offset, offset);
    return true;
  });
}

describe('registry', () => {
  test('covers every option pxeha reads or writes', () => {
    const required = [1, 3, 6, 12, 15, 28, 42, 43, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 66, 67, 77, 82, 93, 94, 97, 118, 175];
    const registered = Object.keys(optionRegistry).map(Number);
    for (const code of required) assert.ok(registered.includes(code), `option ${code} missing`);
  });

  test('every codec round trips a sample value: encode → decode → same value', () => {
    const samples: { [C in RegisteredOptionCode]: unknown } = {
      1: '255.255.255.0',
      3: ['10.99.0.1'],
      6: ['10.99.0.1', '10.99.0.2'],
      12: 'node-07',
      15: 'pxeha.test',
      28: '10.99.0.255',
      42: ['10.99.0.1'],
      43: hex('06 01 08 ff'),
      50: '10.99.0.100',
      51: 3600,
      52: 3,
      53: MessageType.ACK,
      54: '10.99.0.1',
      55: [1, 3, 6, 66, 67],
      56: 'no address',
      57: 1472,
      58: 1800,
      59: 3150,
      60: 'PXEClient:Arch:00007:UNDI:003016',
      61: { type: 1, data: hex('52 54 00 12 34 56') },
      66: '10.99.0.1',
      67: 'undionly.kpxe',
      77: ['iPXE', 'rack-4'],
      82: [{ code: 1, data: Buffer.from('eth0') }],
      93: [7, 16],
      94: { type: 1, major: 3, minor: 16 },
      97: '12345678-9abc-def0-1234-56789abcdef0',
      118: '10.99.1.0',
      175: [{ code: 176, data: hex('01') }],
    };
    for (const key of Object.keys(optionRegistry)) {
      const code = Number(key) as RegisteredOptionCode;
      const codec = optionRegistry[code] as { encode(v: unknown): Buffer; decode(b: Buffer): unknown };
      assert.deepStrictEqual(codec.decode(codec.encode(samples[code])), samples[code], `option ${code}`);
    }
  });

  test('names for logs come from OptionCode; unknown codes still print', () => {
    assert.equal(OptionName[53], 'MESSAGE_TYPE');
    assert.equal(optionName(OptionCode.CLIENT_ARCH), 'CLIENT_ARCH');
    assert.equal(optionName(224), 'OPTION_224');
    assert.equal(optionRegistry[OptionCode.BOOTFILE_NAME].name, 'BOOTFILE_NAME');
  });
});

describe('getOption / setOption', () => {
  test('typed values from a real udhcpc PXE DISCOVER', () => {
    const m = decodeDhcp4(readHexFixture('udhcpc-pxe-discover.hex'));
    assert.equal(getOption(m, OptionCode.MESSAGE_TYPE), MessageType.DISCOVER);
    assert.equal(getOption(m, OptionCode.MAX_MESSAGE_SIZE), 576);
    assert.deepStrictEqual(getOption(m, OptionCode.PARAMETER_REQUEST_LIST), [1, 3, 6, 12, 15, 28, 42]);
    assert.equal(getOption(m, OptionCode.VENDOR_CLASS_ID), 'PXEClient');
    assert.deepStrictEqual(getOption(m, OptionCode.CLIENT_ID), { type: 1, data: hex('52 54 00 12 34 56') });
    assert.deepStrictEqual(getOption(m, OptionCode.CLIENT_ARCH), [0]);
    assert.equal(getOption(m, OptionCode.USER_CLASS), undefined);
  });

  test('typed values from a real iPXE DISCOVER (QEMU, -uuid 12345678-9abc-def0-1234-56789abcdef0)', () => {
    const m = decodeDhcp4(readHexFixture('ipxe-discover.hex'));
    assert.equal(getOption(m, OptionCode.MAX_MESSAGE_SIZE), 1472);
    assert.deepStrictEqual(getOption(m, OptionCode.CLIENT_NDI), { type: 1, major: 2, minor: 1 });
    assert.equal(getOption(m, OptionCode.VENDOR_CLASS_ID), 'PXEClient:Arch:00000:UNDI:002001');
    assert.deepStrictEqual(getOption(m, OptionCode.USER_CLASS), ['iPXE']);
    assert.equal(getOption(m, OptionCode.CLIENT_UUID), '12345678-9abc-def0-1234-56789abcdef0');
    const encap = getOption(m, OptionCode.IPXE_ENCAP) ?? [];
    assert.equal(encap.length, 14);
    assert.deepStrictEqual(findSubOption(encap, IpxeSubOption.BUS_ID), hex('01 80 86 10 0e')); // PCI 8086:100e, the e1000
    assert.deepStrictEqual(findSubOption(encap, 0xeb), hex('01 00 00')); // iPXE version 1.0.0
    assert.equal(hasIpxeFeature(m, IpxeSubOption.HTTP), true);
    assert.equal(hasIpxeFeature(m, IpxeSubOption.HTTPS), false, 'the Debian 2019 ROM is built without HTTPS');
    assert.equal(IpxeSubOptionName[IpxeSubOption.PXEEXT], 'PXE_EXT');
  });

  test('relay agent info and link selection from a relayed OFFER', () => {
    const m = decodeDhcp4(readHexFixture('crafted-offer-relayed.hex'));
    assert.deepStrictEqual(getOption(m, OptionCode.RELAY_AGENT_INFO), [
      { code: RelaySubOption.CIRCUIT_ID, data: Buffer.from('eth0') },
      { code: RelaySubOption.LINK_SELECTION, data: hex('0a 63 01 00') },
    ]);
    assert.equal(getLinkSelection(m), '10.99.1.0');
    assert.deepStrictEqual(getOption(m, OptionCode.DNS_SERVERS), ['10.99.0.1', '10.99.0.2']);
    assert.equal(getOption(m, OptionCode.RENEWAL_TIME), 1800);
    assert.equal(getLinkSelection(withOptions([])), undefined);
    assert.equal(getLinkSelection(withOptions([[82, hex('01 01 00')]])), undefined);
    assertDecodeError(() => getLinkSelection(withOptions([[82, hex('05 03 0a 63 01')]])), 'option 82 RELAY_AGENT_INFO[5]', 0);
  });

  test('setOption encodes through the registry and keeps an existing option in place', () => {
    const m = withOptions([
      [53, hex('02')],
      [54, hex('0a 63 00 01')],
    ]);
    setOption(m, OptionCode.MESSAGE_TYPE, MessageType.ACK);
    setOption(m, OptionCode.LEASE_TIME, 86400);
    setOption(m, OptionCode.BOOTFILE_NAME, 'undionly.kpxe');
    assert.deepStrictEqual([...m.options.keys()], [53, 54, 51, 67]);
    assert.deepStrictEqual(m.options.get(53), hex('05'));
    assert.deepStrictEqual(m.options.get(51), hex('00 01 51 80'));
    assert.throws(() => setOption(m, OptionCode.SERVER_ID, 'not-an-ip'), EncodeError);
    assert.throws(() => setOption(m, OptionCode.BOOTFILE_NAME, ''), EncodeError);
    assert.throws(() => setOption(m, OptionCode.LEASE_TIME, -1), EncodeError);
  });

  test('malformed values throw DecodeError naming the option', () => {
    const cases: [number, string, string][] = [
      [1, '0a 63 00', 'option 1 SUBNET_MASK'],
      [1, '0a 63 00 01 02', 'option 1 SUBNET_MASK'],
      [3, '0a 63 00 01 0a', 'option 3 ROUTER'],
      [6, '', 'option 6 DNS_SERVERS'],
      [51, '00 0e 10', 'option 51 LEASE_TIME'],
      [53, '09', 'option 53 MESSAGE_TYPE'],
      [53, '01 01', 'option 53 MESSAGE_TYPE'],
      [57, '05', 'option 57 MAX_MESSAGE_SIZE'],
      [61, '01', 'option 61 CLIENT_ID'],
      [93, '00', 'option 93 CLIENT_ARCH'],
      [94, '01 02', 'option 94 CLIENT_NDI'],
      [97, '01 78 56 34 12 bc 9a f0 de 12 34 56 78 9a bc de f0', 'option 97 CLIENT_UUID'],
      [97, '00 78 56 34 12', 'option 97 CLIENT_UUID'],
      [82, '01 05 65 74 68', 'option 82 RELAY_AGENT_INFO[1].data'],
      [175, 'b0 02 01', 'option 175 IPXE_ENCAP[176].data'],
    ];
    for (const [code, value, field] of cases) {
      assertDecodeError(() => getOption(withOptions([[code, hex(value)]]), code as RegisteredOptionCode), field);
    }
  });
});

describe('text options (RFC 2132 §2)', () => {
  test('trailing NULs are removed, bytes map one to one', () => {
    const m = withOptions([
      [12, Buffer.from('node-07\0\0')],
      [67, Buffer.from([0x62, 0xe9, 0x00])],
    ]);
    assert.equal(getOption(m, OptionCode.HOSTNAME), 'node-07');
    assert.equal(getOption(m, OptionCode.BOOTFILE_NAME), 'b\u00e9');
  });
  test('characters above U+00FF are refused, not mangled', () => {
    assert.throws(() => optionRegistry[OptionCode.BOOTFILE_NAME].encode('\u2603.efi'), EncodeError);
    assert.deepStrictEqual(optionRegistry[OptionCode.BOOTFILE_NAME].encode('b\u00e9'), Buffer.from([0x62, 0xe9]));
  });
});

describe('user class (option 77)', () => {
  test('RFC 3004 instances', () => {
    assert.deepStrictEqual(parseUserClass(hex('04 69 50 58 45 02 61 62')), ['iPXE', 'ab']);
    assert.deepStrictEqual(buildUserClass(['iPXE', 'ab']), hex('04 69 50 58 45 02 61 62'));
  });
  test('iPXE’s bare "iPXE" (no length byte) is read as one class', () => {
    assert.deepStrictEqual(parseUserClass(Buffer.from('iPXE')), ['iPXE']);
    // Anything that does not tile exactly into RFC 3004 instances is one bare string.
    assert.deepStrictEqual(parseUserClass(hex('03 61 62')), ['\u0003ab']);
    assert.deepStrictEqual(parseUserClass(hex('00 61')), ['\u0000a']);
  });
  test('building refuses empty lists and empty or long classes', () => {
    assert.throws(() => buildUserClass([]), EncodeError);
    assert.throws(() => buildUserClass(['']), EncodeError);
    assert.throws(() => buildUserClass(['x'.repeat(256)]), EncodeError);
  });
});

describe('client UUID (option 97)', () => {
  test('first three groups are byte-swapped (SMBIOS / EFI GUID order, as iPXE sends it)', () => {
    const wire = hex('78 56 34 12 bc 9a f0 de 12 34 56 78 9a bc de f0');
    assert.equal(formatGuid(wire), '12345678-9abc-def0-1234-56789abcdef0');
    assert.deepStrictEqual(parseGuid('uuid', '12345678-9ABC-DEF0-1234-56789ABCDEF0'), wire);
    assert.throws(() => parseGuid('uuid', '12345678-9abc-def0-1234'), EncodeError);
  });
});

describe('encapsulated sub-options', () => {
  test('PXE option 43: PAD skipped, END stops, built with END', () => {
    const value = hex('00 06 01 08 ff 09 01 00');
    assert.deepStrictEqual(parsePxeVendorOptions(value), [{ code: PxeVendorSubOption.DISCOVERY_CONTROL, data: hex('08') }]);
    assert.deepStrictEqual(
      buildPxeVendorOptions([{ code: PxeVendorSubOption.DISCOVERY_CONTROL, data: Buffer.from([PxeDiscoveryControl.USE_BOOTFILE]) }]),
      hex('06 01 08 ff'),
    );
    const proxy = decodeDhcp4(readHexFixture('crafted-proxy-offer.hex'));
    assert.deepStrictEqual(parsePxeVendorOptions(getOption(proxy, OptionCode.VENDOR_SPECIFIC) ?? Buffer.alloc(0)), [
      { code: 6, data: hex('08') },
    ]);
  });

  test('option 82 sub-options are plain TLVs: 0 and 255 are ordinary codes', () => {
    assert.deepStrictEqual(parseTlvs(hex('00 01 aa ff 00'), 'r'), [
      { code: 0, data: hex('aa') },
      { code: 255, data: Buffer.alloc(0) },
    ]);
    assert.deepStrictEqual(parseEncapsulated(hex('00 01 01 aa ff 00'), 'e'), [{ code: 1, data: hex('aa') }]);
  });

  test('overruns throw DecodeError at the sub-option', () => {
    assertDecodeError(() => parseTlvs(hex('01 02 aa bb 02'), 'relay'), 'relay[2].length', 5);
    assertDecodeError(() => parseEncapsulated(hex('06 02 08'), 'pxe'), 'pxe[6].data', 2);
  });

  test('iPXE 175.176: the "no ProxyDHCP" flag', () => {
    assert.deepStrictEqual(buildTlvs([ipxeNoPxeDhcp()], 'ipxe'), hex('b0 01 01'));
    const ack = decodeDhcp4(readHexFixture('crafted-ack-ipxe.hex'));
    assert.equal(hasIpxeFeature(ack, IpxeSubOption.NO_PXEDHCP), true);
    assert.equal(hasIpxeFeature(withOptions([]), IpxeSubOption.HTTP), false);
  });

  test('sub-option data over 255 bytes is refused', () => {
    assert.throws(() => buildTlvs([{ code: 1, data: Buffer.alloc(256) }], 'relay'), EncodeError);
  });
});

describe('formatMac', () => {
  test('first hlen bytes as lowercase colon hex', () => {
    const chaddr = hex('52 54 00 AB CD EF 00 00 00 00 00 00 00 00 00 00');
    assert.equal(formatMac(chaddr, 6), '52:54:00:ab:cd:ef');
    assert.equal(formatMac(chaddr, 0), '');
    assert.equal(formatMac(chaddr, 20), `52:54:00:ab:cd:ef${':00'.repeat(10)}`);
  });
});
