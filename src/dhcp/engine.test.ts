/**
 * Decision tables for the DHCP engine: request + store state → reply or drop reason, on a
 * real embedded store and a fake clock (no sockets).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseClusterConfig } from '../config/load.js';
import { MessageType } from '../protocol/dhcp4/types.js';
import { openStore } from '../store/open.js';
import type { Store } from '../store/store.js';
import { FakeClock } from '../util/clock.js';
import { DropReason, type ReceiveInfo } from './chain.js';
import { DhcpEngine, type Decision } from './engine.js';
import { LeaseBook } from './lease-book.js';
import { LEASE_PREFIX, leaseKey, parseLeaseRecord } from './lease-record.js';
import type { DhcpRequest } from './request.js';

const SERVER = '10.99.0.1';
const via: ReceiveInfo = { ifname: 'eth0', interfaceAddress: SERVER, service: 'dhcp', source: { address: '0.0.0.0', port: 68 } };

const config = parseClusterConfig({
  subnets: [
    {
      name: 'lab',
      subnet: '10.99.0.0/24',
      pools: [{ start: '10.99.0.100', end: '10.99.0.104' }],
      leaseSeconds: 600,
      options: { routers: ['10.99.0.1'] },
      reservations: [
        { mac: '52:54:00:00:00:aa', address: '10.99.0.10', hostname: 'fixed' },
        { mac: '52:54:00:00:00:bb', address: '10.99.0.102' },
      ],
    },
    { name: 'relayed', subnet: '10.50.0.0/16', pools: [{ start: '10.50.1.0', end: '10.50.1.255' }] },
    { name: 'pxe-only', subnet: '10.77.0.0/24', mode: 'proxy' },
  ],
  dhcp: { declineQuarantineSeconds: 60, perClientRatePerSecond: 20 },
});

function mac(n: number): string {
  return `52:54:00:00:01:${n.toString(16).padStart(2, '0')}`;
}

function request(messageType: MessageType, m: string, extra: Partial<DhcpRequest> = {}): DhcpRequest {
  return {
    messageType,
    op: 1,
    htype: 1,
    hlen: 6,
    hops: 0,
    xid: 0x1234,
    secs: 0,
    flags: 0,
    ciaddr: '0.0.0.0',
    giaddr: '0.0.0.0',
    mac: m,
    clientIdHex: undefined,
    clientKey: `mac:${m}`,
    requestedIp: undefined,
    serverId: undefined,
    hostname: undefined,
    requestedLeaseSeconds: undefined,
    parameterRequestList: [],
    maxMessageSize: undefined,
    vendorClass: undefined,
    userClasses: [],
    clientArch: undefined,
    clientUuid: undefined,
    isIpxe: false,
    relayAgentInfo: undefined,
    linkSelection: undefined,
    subnetSelection: undefined,
    ...extra,
  };
}

function replyOf(d: Decision): NonNullable<Extract<Decision, { kind: 'reply' }>['draft']> {
  assert.equal(d.kind, 'reply', `expected a reply, got ${JSON.stringify(d)}`);
  return (d as Extract<Decision, { kind: 'reply' }>).draft;
}

describe('DHCP engine', () => {
  let dir: string;
  let store: Store;
  let clock: FakeClock;
  let engine: DhcpEngine;
  let book: LeaseBook;

  const decide = async (r: DhcpRequest, v: ReceiveInfo = via): Promise<Decision> => (await engine.decide(r, v)).decision;
  const bind = async (m: string): Promise<string> => {
    const offer = replyOf(await decide(request(MessageType.DISCOVER, m)));
    const ack = replyOf(await decide(request(MessageType.REQUEST, m, { serverId: SERVER, requestedIp: offer.yiaddr })));
    assert.equal(ack.messageType, MessageType.ACK);
    return ack.yiaddr;
  };
  const stored = async (subnet: string, ip: string) => {
    const kv = await store.get(leaseKey(subnet, ip));
    return kv ? parseLeaseRecord(kv.value) : undefined;
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pxeha-engine-'));
    store = await openStore({ kind: 'embedded', path: join(dir, 'store.db') });
    clock = new FakeClock();
    book = await LeaseBook.open(store, (err) => assert.fail(err));
    engine = new DhcpEngine({ node: 'n1', advertiseAddress: undefined, httpPort: 8080, leases: book, clock }, config);
  });
  after(async () => {
    await book.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('offers a pool address, holds it in memory without writing, and ACKs the REQUEST with lease times', async () => {
    const revision = await store.revision();
    const offer = replyOf(await decide(request(MessageType.DISCOVER, mac(1))));
    assert.equal(offer.messageType, MessageType.OFFER);
    assert.match(offer.yiaddr, /^10\.99\.0\.10[0-4]$/);
    assert.notEqual(offer.yiaddr, '10.99.0.102', 'a reserved address is never offered dynamically');
    assert.equal(offer.leaseSeconds, 600);
    assert.equal(await store.revision(), revision, 'an OFFER writes nothing to the store');
    // The hold: the client gets the same address again, another client neither an offer of it
    // nor a binding of it while the hold lasts.
    assert.equal(replyOf(await decide(request(MessageType.DISCOVER, mac(1)))).yiaddr, offer.yiaddr);
    assert.notEqual(replyOf(await decide(request(MessageType.DISCOVER, mac(91)))).yiaddr, offer.yiaddr);
    const steal = replyOf(await decide(request(MessageType.REQUEST, mac(92), { requestedIp: offer.yiaddr })));
    assert.equal(steal.messageType, MessageType.NAK);
    assert.equal(await store.revision(), revision);

    const ack = replyOf(await decide(request(MessageType.REQUEST, mac(1), { serverId: SERVER, requestedIp: offer.yiaddr })));
    assert.equal(ack.messageType, MessageType.ACK);
    assert.equal(ack.yiaddr, offer.yiaddr);
    assert.deepEqual([ack.leaseSeconds, ack.renewalSeconds, ack.rebindingSeconds], [600, 300, 525]);
    const rec = await stored('lab', ack.yiaddr);
    assert.equal(rec?.state, 'bound');
    assert.equal(rec?.expiresAtMs, clock.now() + 600_000);
    assert.equal(rec?.node, 'n1');
  });

  it('gives a bound client its address again without writing', async () => {
    const ip = await bind(mac(2));
    const before = await store.revision();
    const offer = replyOf(await decide(request(MessageType.DISCOVER, mac(2))));
    assert.equal(offer.yiaddr, ip);
    assert.equal(await store.revision(), before);
  });

  it('renews (ciaddr, no server id) and NAKs a REQUEST for an address held by another client', async () => {
    const ip = await bind(mac(3));
    clock.advance(100_000);
    const renew = replyOf(await decide(request(MessageType.REQUEST, mac(3), { ciaddr: ip })));
    assert.equal(renew.messageType, MessageType.ACK);
    assert.equal((await stored('lab', ip))?.expiresAtMs, clock.now() + 600_000);

    const steal = replyOf(await decide(request(MessageType.REQUEST, mac(4), { requestedIp: ip })));
    assert.equal(steal.messageType, MessageType.NAK);
    assert.match(steal.message ?? '', /leased to another client/);
  });

  it('a retransmitted REQUEST while the same client’s commit is out is dropped, not NAKed', async () => {
    const offer = replyOf(await decide(request(MessageType.DISCOVER, mac(93))));
    const req = request(MessageType.REQUEST, mac(93), { serverId: SERVER, requestedIp: offer.yiaddr });
    const other = request(MessageType.REQUEST, mac(94), { requestedIp: offer.yiaddr });
    const [first, again, stranger] = await Promise.all([decide(req), decide(req), decide(other)]);
    assert.equal(replyOf(first).messageType, MessageType.ACK);
    assert.deepEqual(again.kind === 'drop' && again.reason, DropReason.IN_PROGRESS);
    assert.equal(replyOf(stranger).messageType, MessageType.NAK);
    // Once committed, the retransmission is ACKed again (the binding is this client's).
    assert.equal(replyOf(await decide(req)).messageType, MessageType.ACK);
  });

  it('NAKs INIT-REBOOT for an address on another network', async () => {
    const nak = replyOf(await decide(request(MessageType.REQUEST, mac(5), { requestedIp: '10.42.0.7' })));
    assert.equal(nak.messageType, MessageType.NAK);
    assert.equal(nak.yiaddr, '0.0.0.0');
  });

  it('offers and ACKs a reservation, with its hostname, and NAKs any other address for that client', async () => {
    const m = '52:54:00:00:00:aa';
    const offer = replyOf(await decide(request(MessageType.DISCOVER, m)));
    assert.equal(offer.yiaddr, '10.99.0.10');
    assert.equal(offer.hostname, 'fixed');
    const ack = replyOf(await decide(request(MessageType.REQUEST, m, { serverId: SERVER, requestedIp: '10.99.0.10' })));
    assert.equal(ack.messageType, MessageType.ACK);
    assert.equal((await stored('lab', '10.99.0.10'))?.state, 'bound');
    const nak = replyOf(await decide(request(MessageType.REQUEST, m, { requestedIp: '10.99.0.100' })));
    assert.equal(nak.messageType, MessageType.NAK);
  });

  it('drops a REQUEST addressed to another server', async () => {
    const d = await decide(request(MessageType.REQUEST, mac(6), { serverId: '10.99.0.2', requestedIp: '10.99.0.101' }));
    assert.deepEqual(d, { kind: 'drop', reason: DropReason.OTHER_SERVER });
  });

  it('exhausts the pool, then reuses released, declined-after-quarantine and expired addresses', async () => {
    // The pool has 4 dynamic addresses (one of 5 is reserved); let earlier bindings expire.
    clock.advance(700_000);
    const bound: string[] = [];
    for (let i = 10; i < 20; i++) {
      const d = await decide(request(MessageType.DISCOVER, mac(i)));
      if (d.kind === 'drop') {
        assert.equal(d.reason, DropReason.POOL_EXHAUSTED);
        break;
      }
      bound.push(await bind(mac(i)));
    }
    assert.equal(bound.length, 4);
    assert.equal(new Set(bound).size, bound.length);
    assert.deepEqual(await decide(request(MessageType.DISCOVER, mac(30))), { kind: 'drop', reason: DropReason.POOL_EXHAUSTED, detail: 'subnet lab' });

    // RELEASE frees the address for another client.
    const released = bound[0]!;
    const owner = mac(10);
    assert.equal((await decide(request(MessageType.RELEASE, owner, { ciaddr: released, serverId: SERVER }))).kind, 'done');
    assert.equal(await bind(mac(30)), released);

    // DECLINE by its holder quarantines it, for everyone.
    const declined = bound[1]!;
    await decide(request(MessageType.DECLINE, mac(11), { requestedIp: declined, serverId: SERVER }));
    assert.equal((await stored('lab', declined))?.state, 'declined');
    assert.equal((await decide(request(MessageType.DISCOVER, mac(31)))).kind, 'drop');
    clock.advance(61_000);
    assert.equal(replyOf(await decide(request(MessageType.DISCOVER, mac(31)))).yiaddr, declined);

    // A DECLINE from a client that does not hold the address changes nothing.
    const other = bound[2]!;
    await decide(request(MessageType.DECLINE, mac(99), { requestedIp: other, serverId: SERVER }));
    assert.equal((await stored('lab', other))?.state, 'bound');

    // Once a binding expires, another client may have the address.
    clock.advance(700_000);
    const reused = replyOf(await decide(request(MessageType.DISCOVER, mac(32))));
    assert.equal(reused.messageType, MessageType.OFFER);
  });

  it('answers relayed requests from the giaddr subnet and link selection', async () => {
    const offer = replyOf(await decide(request(MessageType.DISCOVER, mac(40), { giaddr: '10.50.0.1', hops: 1 })));
    assert.match(offer.yiaddr, /^10\.50\.1\.\d+$/);
    const unknown = await decide(request(MessageType.DISCOVER, mac(41), { giaddr: '10.51.0.1' }));
    assert.deepEqual(unknown, { kind: 'drop', reason: DropReason.NO_SUBNET });
    const linked = replyOf(await decide(request(MessageType.DISCOVER, mac(42), { giaddr: '10.51.0.1', linkSelection: '10.50.9.9' })));
    assert.match(linked.yiaddr, /^10\.50\.1\.\d+$/);
  });

  it('adds boot information for PXE and iPXE clients in full mode', async () => {
    const relayed = { giaddr: '10.50.0.1' };
    const pxe = replyOf(await decide(request(MessageType.DISCOVER, mac(50), { ...relayed, vendorClass: 'PXEClient:Arch:00007:UNDI:003016', clientArch: 7 })));
    assert.equal(pxe.file, 'ipxe.efi');
    assert.equal(pxe.siaddr, SERVER);
    assert.equal(pxe.vendorClass, 'PXEClient');
    assert.equal(pxe.pxeDiscoveryControl, 8);
    const ipxe = replyOf(await decide(request(MessageType.DISCOVER, mac(51), { ...relayed, vendorClass: 'PXEClient:Arch:00000:UNDI:002001', isIpxe: true, userClasses: ['iPXE'] })));
    assert.match(ipxe.file ?? '', /^http:\/\/10\.99\.0\.1:8080\/boot\.ipxe\?mac=/);
    assert.equal(ipxe.ipxeSkipProxyWait, true);
    const plain = replyOf(await decide(request(MessageType.DISCOVER, mac(52), relayed)));
    assert.equal(plain.file, undefined);
    assert.equal(plain.siaddr, '0.0.0.0');
  });

  it('proxy mode: boot information only, to PXE clients, on port 67 and 4011', async () => {
    const proxyVia: ReceiveInfo = { ...via, interfaceAddress: '10.77.0.1' };
    const pxe = { vendorClass: 'PXEClient:Arch:00000:UNDI:002001', clientArch: 0 };
    const offer = replyOf(await decide(request(MessageType.DISCOVER, mac(60), pxe), proxyVia));
    assert.equal(offer.messageType, MessageType.OFFER);
    assert.equal(offer.yiaddr, '0.0.0.0');
    assert.equal(offer.leaseSeconds, undefined);
    assert.equal(offer.file, 'undionly.kpxe');
    assert.equal(offer.siaddr, '10.77.0.1');
    assert.deepEqual(await decide(request(MessageType.DISCOVER, mac(61)), proxyVia), { kind: 'drop', reason: DropReason.NOT_PXE });
    assert.deepEqual(await decide(request(MessageType.REQUEST, mac(60), { ...pxe, requestedIp: '10.77.0.50', serverId: '10.77.0.254' }), proxyVia), {
      kind: 'drop',
      reason: DropReason.OTHER_SERVER,
    });
    assert.deepEqual(await decide(request(MessageType.REQUEST, mac(60), { ...pxe, requestedIp: '10.77.0.50', serverId: '10.77.0.1' }), proxyVia), {
      kind: 'drop',
      reason: DropReason.PROXY_NO_ADDRESSES,
    });
    const bootServer: ReceiveInfo = { ...proxyVia, service: 'pxe', source: { address: '10.77.0.50', port: 68 } };
    const ack = replyOf(await decide(request(MessageType.REQUEST, mac(60), { ...pxe, ciaddr: '10.77.0.50' }), bootServer));
    assert.equal(ack.messageType, MessageType.ACK);
    assert.equal(ack.file, 'undionly.kpxe');
    assert.deepEqual((await store.range(leaseKey('pxe-only', ''), { prefix: true })).count, 0, 'proxy mode writes no lease');
  });

  it('rate-limits a flood from one MAC and still serves others', async () => {
    let limited = 0;
    for (let i = 0; i < 40; i++) {
      const d = await decide(request(MessageType.INFORM, mac(70), { ciaddr: '10.99.0.200' }));
      if (d.kind === 'drop' && d.reason === DropReason.RATE_LIMITED) limited++;
    }
    assert.equal(limited, 20);
    assert.equal((await decide(request(MessageType.INFORM, mac(71), { ciaddr: '10.99.0.201' }))).kind, 'reply');
    clock.advance(1000);
    assert.equal((await decide(request(MessageType.INFORM, mac(70), { ciaddr: '10.99.0.200' }))).kind, 'reply');
  });

  it('drops malformed requests by reason', async () => {
    assert.deepEqual(await decide(request(MessageType.DISCOVER, mac(80), { op: 2 })), { kind: 'drop', reason: DropReason.NOT_A_REQUEST });
    assert.deepEqual(await decide(request(MessageType.OFFER, mac(80))), { kind: 'drop', reason: DropReason.UNSUPPORTED_MESSAGE });
    assert.deepEqual(await decide(request(undefined as unknown as MessageType, mac(80))), { kind: 'drop', reason: DropReason.NO_MESSAGE_TYPE });
    assert.deepEqual(await decide(request(MessageType.DISCOVER, mac(80), { hlen: 16 })), { kind: 'drop', reason: DropReason.BAD_HARDWARE_ADDRESS });
  });
});

describe('two engines on one store', () => {
  it('never commit one address to two clients, however their requests interleave', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pxeha-race-'));
    const store = await openStore({ kind: 'embedded', path: join(dir, 'store.db') });
    const clock = new FakeClock();
    const small = parseClusterConfig({ subnets: [{ name: 'lab', subnet: '10.99.0.0/24', pools: [{ start: '10.99.0.10', end: '10.99.0.69' }] }] });
    const books = [await LeaseBook.open(store, assert.fail), await LeaseBook.open(store, assert.fail)];
    const engines = books.map((leases, i) => new DhcpEngine({ node: `n${i}`, advertiseAddress: undefined, httpPort: 8080, leases, clock }, small));
    try {
      // 100 clients race for 60 addresses, each asking both engines at once.
      const acks = new Map<string, string>();
      await Promise.all(
        Array.from({ length: 100 }, async (_, c) => {
          const m = `52:54:00:00:02:${c.toString(16).padStart(2, '0')}`;
          for (const engine of engines) {
            const d = (await engine.decide(request(MessageType.DISCOVER, m), via)).decision;
            if (d.kind !== 'reply') continue;
            const r = (await engine.decide(request(MessageType.REQUEST, m, { serverId: SERVER, requestedIp: d.draft.yiaddr }), via)).decision;
            if (r.kind === 'reply' && r.draft.messageType === MessageType.ACK) acks.set(m, r.draft.yiaddr);
          }
        }),
      );
      const { kvs } = await store.range(LEASE_PREFIX, { prefix: true });
      const boundByIp = new Map<string, string>();
      for (const kv of kvs) {
        const r = parseLeaseRecord(kv.value)!;
        if (r.state === 'bound') boundByIp.set(r.ip, r.clientKey);
      }
      assert.equal(boundByIp.size, 60, 'every address of the pool ended up bound');
      const ackedIps = [...acks.values()];
      assert.equal(new Set(ackedIps).size, ackedIps.length, 'no address ACKed to two clients');
      for (const [m, ip] of acks) assert.equal(boundByIp.get(ip), `mac:${m}`, `${ip} is bound to the client it was ACKed to`);
    } finally {
      for (const b of books) await b.close();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
