import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { replyDestination, type DestinationInput } from './destination.js';

const base: DestinationInput = {
  giaddr: '0.0.0.0',
  ciaddr: '0.0.0.0',
  yiaddr: '10.99.0.100',
  flags: 0,
  mac: '52:54:00:00:00:01',
  isNak: false,
  unicastSource: undefined,
  serverPort: 67,
  clientPort: 68,
};

describe('replyDestination (RFC 2131 §4.1)', () => {
  const cases: [string, Partial<DestinationInput>, ReturnType<typeof replyDestination>][] = [
    ['relayed: to the relay on the server port', { giaddr: '10.1.0.1', ciaddr: '10.1.0.5', isNak: true }, { kind: 'unicast', address: '10.1.0.1', port: 67 }],
    ['NAK: broadcast', { ciaddr: '10.99.0.5', isNak: true }, { kind: 'broadcast', port: 68 }],
    ['renewing client: unicast to ciaddr', { ciaddr: '10.99.0.5', flags: 0x8000 }, { kind: 'unicast', address: '10.99.0.5', port: 68 }],
    ['broadcast bit: broadcast', { flags: 0x8000 }, { kind: 'broadcast', port: 68 }],
    ['no address yet: unicast to yiaddr/chaddr', {}, { kind: 'unicast-to-new-client', address: '10.99.0.100', mac: '52:54:00:00:00:01', port: 68 }],
    ['proxy offer without yiaddr: broadcast', { yiaddr: '0.0.0.0' }, { kind: 'broadcast', port: 68 }],
    ['boot server port: back to the source', { unicastSource: { address: '10.99.0.7', port: 4011 }, giaddr: '10.1.0.1' }, { kind: 'unicast', address: '10.99.0.7', port: 4011 }],
  ];
  for (const [name, input, expected] of cases) {
    it(name, () => assert.deepEqual(replyDestination({ ...base, ...input }), expected));
  }
});
