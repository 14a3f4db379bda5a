import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { clientKeyOf } from './lease-record.js';

describe('clientKeyOf', () => {
  const mac = '52:54:00:ab:cd:ef';
  const cases: [string, string | undefined, string][] = [
    ['no option 61: the MAC', undefined, `mac:${mac}`],
    // OVMF's PXE client sends no option 61, the iPXE it loads sends 01+MAC: one lease, not two.
    ['type 1 + chaddr is the MAC', '01525400abcdef', `mac:${mac}`],
    ['upper-case hex alike', '01525400ABCDEF', `mac:${mac}`],
    ['another hardware address is its own identity', '01525400abcdee', 'id:01525400abcdee'],
    ['a DUID-style identifier is its own identity', 'ff00000001000100', 'id:ff00000001000100'],
    ['type 0 with the MAC bytes is not the MAC', '00525400abcdef', 'id:00525400abcdef'],
  ];
  for (const [name, clientIdHex, want] of cases) it(name, () => assert.equal(clientKeyOf(mac, clientIdHex), want));
});
