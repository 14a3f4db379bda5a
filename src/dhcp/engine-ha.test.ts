/**
 * Decision tables for several engines on one store: who answers, renewals after failover,
 * degraded mode and clock skew. Two LeaseBooks on one embedded store stand for two nodes;
 * each has its own fake clock and cluster view (no sockets).
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
import { staticClusterView, type MembershipClusterView, type MemberInfo } from './cluster-view.js';
import { bucketOfMac, ownerOf } from './designation.js';
import { DhcpEngine, type Decision } from './engine.js';
import { LeaseBook } from './lease-book.js';
import { LEASE_PREFIX, leaseKey, parseLeaseRecord, type LeaseRecord } from './lease-record.js';
import { interpretRequest, type DhcpRequest } from './request.js';
import { decodeDhcp4, encodeDhcp4 } from '../protocol/dhcp4/message.js';

const config = parseClusterConfig({
  subnets: [
    {
      name: 'lab',
      subnet: '10.99.0.0/24',
      pools: [{ start: '10.99.0.100', end: '10.99.0.199' }],
      leaseSeconds: 600,
      reservations: [{ mac: '52:54:00:00:00:aa', address: '10.99.0.10', hostname: 'fixed' }],
    },
  ],
  dhcp: { perClientRatePerSecond: 10_000, takeoverSecs: 3 },
});

const ADDR = { n1: '10.99.0.1', n2: '10.99.0.2' } as const;
type Name = keyof typeof ADDR;
const MEMBERS: MemberInfo[] = [
  { name: 'n1', weight: 100, addresses: [ADDR.n1] },
  { name: 'n2', weight: 100, addresses: [ADDR.n2] },
];
const viaOf = (n: Name): ReceiveInfo => ({ ifname: 'eth0', interfaceAddress: ADDR[n], service: 'dhcp', source: { address: '0.0.0.0', port: 68 } });

function mac(n: number): string {
  return `52:54:00:02:${((n >> 8) & 0xff).toString(16).padStart(2, '0')}:${(n & 0xff).toString(16).padStart(2, '0')}`;
}

/** A client MAC designated to `owner` when both nodes are healthy. */
function clientOf(owner: Name, skip = 0): string {
  let found = 0;
  for (let i = 0; ; i++) if (ownerOf(bucketOfMac(mac(i)), MEMBERS) === owner && found++ === skip) return mac(i);
}

function request(messageType: MessageType, m: string, extra: Partial<DhcpRequest> = {}): DhcpRequest {
  return {
    messageType, op: 1, htype: 1, hlen: 6, hops: 0, xid: 1, secs: 0, flags: 0, ciaddr: '0.0.0.0', giaddr: '0.0.0.0',
    mac: m, clientIdHex: undefined, clientKey: `mac:${m}`, requestedIp: undefined, serverId: undefined, hostname: undefined,
    requestedLeaseSeconds: undefined, parameterRequestList: [], maxMessageSize: undefined, vendorClass: undefined, userClasses: [],
    clientArch: undefined, clientUuid: undefined, isIpxe: false, relayAgentInfo: undefined, linkSelection: undefined,
    subnetSelection: undefined, ...extra,
  };
}

function replyOf(d: Decision): Extract<Decision, { kind: 'reply' }>['draft'] {
  assert.equal(d.kind, 'reply', `expected a reply, got ${JSON.stringify(d)}`);
  return (d as Extract<Decision, { kind: 'reply' }>).draft;
}
function dropOf(d: Decision): DropReason {
  assert.equal(d.kind, 'drop', `expected a drop, got ${JSON.stringify(d)}`);
  return (d as Extract<Decision, { kind: 'drop' }>).reason;
}

interface Node {
  name: Name;
  clock: FakeClock;
  book: LeaseBook;
  view: MembershipClusterView;
  engine: DhcpEngine;
  degraded: boolean;
  decide(r: DhcpRequest): Promise<Decision>;
}

describe('DHCP engine, several nodes on one store', () => {
  let dir: string;
  let store: Store;
  const nodes = {} as Record<Name, Node>;

  const makeNode = async (name: Name, clock: FakeClock): Promise<Node> => {
    const book = await LeaseBook.open(store, (err) => assert.fail(err));
    const node = { name, clock, book, degraded: false } as Node;
    node.view = staticClusterView(name, MEMBERS, { degraded: () => node.degraded });
    node.engine = new DhcpEngine({ node: name, advertiseAddress: undefined, httpPort: 8080, leases: book, clock, cluster: node.view }, config);
    node.decide = async (r) => (await node.engine.decide(r, viaOf(name))).decision;
    return node;
  };
  const allBound = async (): Promise<LeaseRecord[]> =>
    (await store.range(LEASE_PREFIX, { prefix: true })).kvs.map((kv) => parseLeaseRecord(kv.value)!).filter((r) => r.state === 'bound');
  const stored = async (ip: string): Promise<LeaseRecord | undefined> => {
    const kv = await store.get(leaseKey('lab', ip));
    return kv ? parseLeaseRecord(kv.value) : undefined;
  };
  /** DISCOVER + SELECTING REQUEST through `node`. */
  const bind = async (node: Node, m: string, secs = 0): Promise<string> => {
    const offer = replyOf(await node.decide(request(MessageType.DISCOVER, m, { secs })));
    const ack = replyOf(await node.decide(request(MessageType.REQUEST, m, { serverId: ADDR[node.name], requestedIp: offer.yiaddr, secs })));
    assert.equal(ack.messageType, MessageType.ACK);
    return ack.yiaddr;
  };
  const healthy = (...names: Name[]): void => {
    for (const n of Object.values(nodes)) n.view.update(MEMBERS.filter((m) => names.includes(m.name as Name)));
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pxeha-engine-ha-'));
    store = await openStore({ kind: 'embedded', path: join(dir, 'store.db') });
    nodes.n1 = await makeNode('n1', new FakeClock());
    nodes.n2 = await makeNode('n2', new FakeClock());
  });
  after(async () => {
    for (const n of Object.values(nodes)) await n.book.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('a late DISCOVER on a node whose view has not seen the binding yet never changes the binding', async () => {
    const m = clientOf('n1', 7);
    const offer = replyOf(await nodes.n1.decide(request(MessageType.DISCOVER, m)));
    // n2's view as it was between n1's OFFER and its ACK, until n2's first write meets the truth.
    const staleEntry = nodes.n1.book.get('lab', offer.yiaddr);
    const staleOwn = nodes.n1.book.forClient('lab', `mac:${m}`);
    const ack = replyOf(await nodes.n1.decide(request(MessageType.REQUEST, m, { serverId: ADDR.n1, requestedIp: offer.yiaddr })));
    assert.equal(ack.messageType, MessageType.ACK);
    const binding = await store.get(leaseKey('lab', ack.yiaddr));
    const revision = await store.revision();
    let fresh = false;
    const book = nodes.n2.book;
    const staleBook = new Proxy(book, {
      get(target, prop) {
        if (prop === 'get') return (subnet: string, ip: string) => (!fresh && ip === offer.yiaddr ? staleEntry : target.get(subnet, ip));
        if (prop === 'forClient') return (subnet: string, key: string) => (fresh ? target.forClient(subnet, key) : staleOwn);
        if (prop === 'write') {
          return async (...args: Parameters<LeaseBook['write']>) => {
            const result = await target.write(...args);
            fresh = true;
            return result;
          };
        }
        const value = Reflect.get(target, prop, target) as unknown;
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    const late = new DhcpEngine(
      { node: 'n2', advertiseAddress: undefined, httpPort: 8080, leases: staleBook, clock: nodes.n2.clock, cluster: staticClusterView('n2', MEMBERS) },
      config,
    );
    // secs at the threshold: n2 answers although n1 is designated. Its view does not know the
    // client, so it offers an address of its own share, and writes nothing (offers are held in memory).
    const lateOffer = replyOf((await late.decide(request(MessageType.DISCOVER, m, { secs: 3 }), viaOf('n2'))).decision);
    assert.equal(lateOffer.messageType, MessageType.OFFER);
    assert.equal(await store.revision(), revision, 'a late OFFER writes nothing');
    assert.deepEqual(await store.get(leaseKey('lab', ack.yiaddr)), binding, 'the binding n1 ACKed is untouched');
    const rec = await stored(ack.yiaddr);
    assert.equal(rec?.state, 'bound', 'the binding n1 ACKed is still a binding');
    // Once n2's view has the binding, n2 offers the client its bound address, again without writing.
    for (let i = 0; i < 100 && nodes.n2.book.get('lab', ack.yiaddr)?.record.state !== 'bound'; i++) await new Promise((r) => setTimeout(r, 10));
    const freshOffer = replyOf(await nodes.n2.decide(request(MessageType.DISCOVER, m, { secs: 3 })));
    assert.equal(freshOffer.yiaddr, ack.yiaddr);
    assert.equal(await store.revision(), revision);
  });

  describe('who answers', () => {
    it('the designated node answers a DISCOVER, the other drops it as not designated', async () => {
      healthy('n1', 'n2');
      const m = clientOf('n1');
      assert.equal(replyOf(await nodes.n1.decide(request(MessageType.DISCOVER, m))).messageType, MessageType.OFFER);
      assert.equal(dropOf(await nodes.n2.decide(request(MessageType.DISCOVER, m))), DropReason.NOT_DESIGNATED);
    });

    it('secs at the takeover threshold lets any node answer; below it does not', async () => {
      healthy('n1', 'n2');
      const m = clientOf('n1', 1);
      assert.equal(dropOf(await nodes.n2.decide(request(MessageType.DISCOVER, m, { secs: 2 }))), DropReason.NOT_DESIGNATED);
      assert.equal(replyOf(await nodes.n2.decide(request(MessageType.DISCOVER, m, { secs: 3 }))).messageType, MessageType.OFFER);
    });

    it('nodes offering at the same time offer from disjoint shares of the pool and write nothing', async () => {
      healthy('n1', 'n2');
      const revision = await store.revision();
      // Every client is answered by both nodes (secs over the threshold), all at once.
      const clients = Array.from({ length: 15 }, (_, i) => `52:54:00:05:00:${i.toString(16).padStart(2, '0')}`);
      const offers = await Promise.all(
        clients.flatMap((m) =>
          (['n1', 'n2'] as const).map(async (n) => ({ n, m, ip: replyOf(await nodes[n].decide(request(MessageType.DISCOVER, m, { secs: 10 }))).yiaddr })),
        ),
      );
      const byIp = new Map<string, Set<string>>();
      for (const o of offers) byIp.set(o.ip, (byIp.get(o.ip) ?? new Set()).add(`${o.n} ${o.m}`));
      assert.deepEqual([...byIp].filter(([, who]) => who.size > 1), [], 'no address offered twice');
      assert.equal(await store.revision(), revision, 'offers are held in memory');
    });

    it('a designated node that is no healthy member is taken over at once', async () => {
      healthy('n2');
      const m = clientOf('n1', 2);
      assert.equal(replyOf(await nodes.n2.decide(request(MessageType.DISCOVER, m))).messageType, MessageType.OFFER);
      healthy('n1', 'n2');
    });

    it('INIT-REBOOT follows designation; a SELECTING REQUEST naming this node is answered', async () => {
      healthy('n1', 'n2');
      const m = clientOf('n2');
      const ip = await bind(nodes.n2, m);
      const initReboot = request(MessageType.REQUEST, m, { requestedIp: ip });
      assert.equal(dropOf(await nodes.n1.decide(initReboot)), DropReason.NOT_DESIGNATED);
      assert.equal(replyOf(await nodes.n2.decide(initReboot)).messageType, MessageType.ACK);
    });

    it('a SELECTING REQUEST naming a healthy member is left to it', async () => {
      healthy('n1', 'n2');
      const m = clientOf('n2', 1);
      const offer = replyOf(await nodes.n2.decide(request(MessageType.DISCOVER, m)));
      const r = request(MessageType.REQUEST, m, { serverId: ADDR.n2, requestedIp: offer.yiaddr });
      assert.equal(dropOf(await nodes.n1.decide(r)), DropReason.OTHER_SERVER);
    });

    it('a RENEWING REQUEST goes to the node that wrote the binding, designated or not', async () => {
      healthy('n1', 'n2');
      const m = clientOf('n2', 2);
      const ip = await bind(nodes.n1, m, 5); // n1 took it over by secs
      assert.equal((await stored(ip))?.node, 'n1');
      const renew = request(MessageType.REQUEST, m, { ciaddr: ip });
      assert.equal(replyOf(await nodes.n1.decide(renew)).messageType, MessageType.ACK);
    });
  });

  describe('quick drop from the raw packet', () => {
    const packet = (type: MessageType, m: string, extra: { secs?: number; serverId?: string; requestedIp?: string; ciaddr?: string } = {}): Buffer => {
      const options = new Map<number, Buffer>([[53, Buffer.from([type])]]);
      if (extra.requestedIp) options.set(50, Buffer.from(extra.requestedIp.split('.').map(Number)));
      if (extra.serverId) options.set(54, Buffer.from(extra.serverId.split('.').map(Number)));
      const chaddr = Buffer.alloc(16);
      Buffer.from(m.replace(/:/g, ''), 'hex').copy(chaddr);
      return encodeDhcp4({
        op: 1, htype: 1, hlen: 6, hops: 0, xid: 7, secs: extra.secs ?? 0, flags: 0, ciaddr: extra.ciaddr ?? '0.0.0.0', yiaddr: '0.0.0.0',
        siaddr: '0.0.0.0', giaddr: '0.0.0.0', chaddr, sname: '', file: '', options,
      });
    };

    it('drops exactly what decide() drops as not designated or as another healthy member’s offer', async () => {
      healthy('n1', 'n2');
      const cases: Buffer[] = [];
      for (let i = 0; i < 40; i++) {
        const m = `52:54:00:06:00:${i.toString(16).padStart(2, '0')}`;
        cases.push(packet(MessageType.DISCOVER, m), packet(MessageType.DISCOVER, m, { secs: 3 }), packet(MessageType.DISCOVER, m, { secs: 2 }));
        for (const serverId of [ADDR.n1, ADDR.n2, '10.99.0.254']) {
          cases.push(packet(MessageType.REQUEST, m, { serverId, requestedIp: '10.99.0.150' }));
          cases.push(packet(MessageType.REQUEST, m, { serverId, ciaddr: '10.99.0.150' }));
        }
        cases.push(packet(MessageType.REQUEST, m, { requestedIp: '10.99.0.150' }), packet(MessageType.RELEASE, m, { serverId: ADDR.n2, ciaddr: '10.99.0.150' }));
      }
      let quick = 0;
      for (const node of [nodes.n1, nodes.n2]) {
        for (const buf of cases) {
          const q = node.engine.quickDrop(buf, viaOf(node.name));
          if (!q) continue;
          quick++;
          const d = await node.decide(interpretRequest(decodeDhcp4(buf)));
          assert.equal(dropOf(d), q.reason);
        }
      }
      // Half the DISCOVERs below the threshold and the SELECTING REQUESTs naming the other node.
      assert.ok(quick > 80, `${quick} quick drops`);
    });

    it('leaves everything to decide() without a cluster view, on port 4011, and for odd packets', async () => {
      const m = clientOf('n2', 9);
      const discover = packet(MessageType.DISCOVER, m);
      assert.equal(nodes.n1.engine.quickDrop(discover, viaOf('n1'))?.reason, DropReason.NOT_DESIGNATED);
      assert.equal(nodes.n1.engine.quickDrop(discover, { ...viaOf('n1'), service: 'pxe' }), undefined);
      const alone = new DhcpEngine({ node: 'n1', advertiseAddress: undefined, httpPort: 8080, leases: nodes.n1.book, clock: nodes.n1.clock }, config);
      assert.equal(alone.quickDrop(discover, viaOf('n1')), undefined);
      const overloaded = Buffer.from(discover);
      overloaded[240 + 3] = 52; // option 52 (overload) instead of END: decode must judge
      assert.equal(nodes.n1.engine.quickDrop(overloaded, viaOf('n1')), undefined);
      const truncated = discover.subarray(0, 243);
      assert.equal(nodes.n1.engine.quickDrop(truncated, viaOf('n1')), undefined);
    });
  });

  describe('renewals after failover', () => {
    it('a surviving node ACKs renewals, rebinds and reboots of a lease a down node granted, never NAKs', async () => {
      healthy('n1', 'n2');
      const m = clientOf('n1', 3);
      const ip = await bind(nodes.n1, m);
      healthy('n2'); // n1's lease lapsed
      nodes.n2.clock.advance(400_000); // past T1 and T2 of the 600 s lease
      nodes.n1.clock.advance(400_000);
      const cases: [string, DhcpRequest][] = [
        ['REBINDING (broadcast, no option 54)', request(MessageType.REQUEST, m, { ciaddr: ip })],
        ['RENEWING that carries the dead node’s option 54', request(MessageType.REQUEST, m, { ciaddr: ip, serverId: ADDR.n1 })],
        ['INIT-REBOOT', request(MessageType.REQUEST, m, { requestedIp: ip })],
      ];
      for (const [label, r] of cases) {
        const ack = replyOf(await nodes.n2.decide(r));
        assert.equal(ack.messageType, MessageType.ACK, label);
        assert.equal(ack.yiaddr, ip, label);
      }
      assert.equal((await stored(ip))?.node, 'n2');
    });

    it('a SELECTING REQUEST for the offer of a node that died is taken over', async () => {
      healthy('n1', 'n2');
      const m = clientOf('n1', 4);
      const offer = replyOf(await nodes.n1.decide(request(MessageType.DISCOVER, m)));
      healthy('n2');
      const ack = replyOf(await nodes.n2.decide(request(MessageType.REQUEST, m, { serverId: ADDR.n1, requestedIp: offer.yiaddr })));
      assert.equal(ack.messageType, MessageType.ACK);
      assert.equal(ack.yiaddr, offer.yiaddr);
    });

    it('a valid binding wins over an offer the node holds for another client: the renewal is ACKed, not NAKed', async () => {
      healthy('n1', 'n2');
      const other = clientOf('n2', 20);
      const owner = clientOf('n1', 20);
      // n2 offers an address to a client of its own (held in n2's memory only) ...
      const held = replyOf(await nodes.n2.decide(request(MessageType.DISCOVER, other))).yiaddr;
      // ... which n1, knowing nothing of that hold, offers and binds to its own client that asked for it.
      const offer = replyOf(await nodes.n1.decide(request(MessageType.DISCOVER, owner, { requestedIp: held })));
      assert.equal(offer.yiaddr, held);
      const ack = replyOf(await nodes.n1.decide(request(MessageType.REQUEST, owner, { serverId: ADDR.n1, requestedIp: held })));
      assert.equal(ack.messageType, MessageType.ACK);
      for (let i = 0; i < 100 && nodes.n2.book.get('lab', held)?.record.clientKey !== `mac:${owner}`; i++) await new Promise((r) => setTimeout(r, 10));
      // The owner rebinds late enough (secs at the takeover threshold) that n2 answers it too.
      const rebind = replyOf(await nodes.n2.decide(request(MessageType.REQUEST, owner, { ciaddr: held, secs: 3 })));
      assert.equal(rebind.messageType, MessageType.ACK, `renewal of a valid binding NAKed: ${rebind.message}`);
      assert.equal(rebind.yiaddr, held);
      // The client whose offer lost the address is refused it, and offered another.
      const lost = replyOf(await nodes.n2.decide(request(MessageType.REQUEST, other, { serverId: ADDR.n2, requestedIp: held })));
      assert.equal(lost.messageType, MessageType.NAK);
      const again = replyOf(await nodes.n2.decide(request(MessageType.DISCOVER, other)));
      assert.notEqual(again.yiaddr, held);
    });

    it('a NAK rests on the store, not on a view that trails it: a renewal seen as another client\'s address is ACKed', async () => {
      healthy('n1', 'n2');
      const before = clientOf('n1', 22);
      const owner = clientOf('n1', 23);
      const ip = await bind(nodes.n1, before);
      for (let i = 0; i < 100 && nodes.n2.book.get('lab', ip)?.record.clientKey !== `mac:${before}`; i++) await new Promise((r) => setTimeout(r, 10));
      const stale = nodes.n2.book.get('lab', ip);
      // The first client releases the address and the next one binds it, both through n1 ...
      await nodes.n1.decide(request(MessageType.RELEASE, before, { ciaddr: ip }));
      const offer = replyOf(await nodes.n1.decide(request(MessageType.DISCOVER, owner, { requestedIp: ip })));
      assert.equal(offer.yiaddr, ip);
      assert.equal(replyOf(await nodes.n1.decide(request(MessageType.REQUEST, owner, { serverId: ADDR.n1, requestedIp: ip }))).messageType, MessageType.ACK);
      // ... while n2's view still shows the first client's binding (its watch has not delivered).
      let reread = false;
      const book = nodes.n2.book;
      const lagging = new Proxy(book, {
        get(target, prop) {
          if (prop === 'get') return (subnet: string, addr: string) => (!reread && addr === ip ? stale : target.get(subnet, addr));
          if (prop === 'reread') {
            return async (subnet: string, addr: string) => {
              reread = true;
              return target.reread(subnet, addr);
            };
          }
          const value = Reflect.get(target, prop, target) as unknown;
          return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
        },
      });
      const late = new DhcpEngine(
        { node: 'n2', advertiseAddress: undefined, httpPort: 8080, leases: lagging, clock: nodes.n2.clock, cluster: staticClusterView('n2', MEMBERS) },
        config,
      );
      const rebind = replyOf((await late.decide(request(MessageType.REQUEST, owner, { ciaddr: ip, secs: 3 }), viaOf('n2'))).decision);
      assert.equal(rebind.messageType, MessageType.ACK, `renewal NAKed from a lagging view: ${rebind.message}`);
      assert.ok(reread, 'the store was read before deciding');
      assert.equal((await stored(ip))?.clientKey, `mac:${owner}`);
    });

    it('a rebinding answered by its binding\'s writer and by its designated node at once is ACKed by both, NAKed by neither', async () => {
      healthy('n2');
      const m = clientOf('n1', 21);
      const ip = await bind(nodes.n2, m); // n2 wrote it while n1 was away
      healthy('n1', 'n2'); // n1 returns: designated again; n2 still the writer
      for (let round = 0; round < 5; round++) {
        const r = request(MessageType.REQUEST, m, { ciaddr: ip, xid: 100 + round });
        const answers = await Promise.all([nodes.n1.decide(r), nodes.n2.decide(r)]);
        for (const d of answers) {
          if (d.kind === 'drop') continue; // a retransmission's answer is in flight on that node
          const a = replyOf(d);
          assert.equal(a.messageType, MessageType.ACK, `round ${round}: ${a.message}`);
          assert.equal(a.yiaddr, ip);
        }
        assert.ok(answers.some((d) => d.kind === 'reply'), `round ${round}: nobody answered`);
      }
      const rec = await stored(ip);
      assert.equal(rec?.clientKey, `mac:${m}`);
      assert.equal(rec?.state, 'bound');
    });

    it('option 54 of a server that never was a member is another server', async () => {
      healthy('n1', 'n2');
      const m = clientOf('n1', 5);
      const r = request(MessageType.REQUEST, m, { serverId: '10.99.0.254', ciaddr: '10.99.0.150' });
      assert.equal(dropOf(await nodes.n1.decide(r)), DropReason.OTHER_SERVER);
    });
  });

  describe('degraded mode', () => {
    it('stops allocating at once, answers reservations and known bindings, records renewals with CAS later', async () => {
      healthy('n1', 'n2');
      const n1 = nodes.n1;
      const known = clientOf('n1', 6);
      const ip = await bind(n1, known);
      const conflicted = clientOf('n1', 7);
      const ip2 = await bind(n1, conflicted);
      n1.clock.advance(200_000);

      n1.degraded = true;
      assert.equal(n1.engine.status().degraded, true);
      assert.equal(dropOf(await n1.decide(request(MessageType.DISCOVER, clientOf('n1', 8)))), DropReason.STORE_UNAVAILABLE);
      // Reservation: from configuration, no store write.
      const fixed = '52:54:00:00:00:aa';
      assert.equal(replyOf(await n1.decide(request(MessageType.DISCOVER, fixed, { secs: 10 }))).yiaddr, '10.99.0.10');
      assert.equal(replyOf(await n1.decide(request(MessageType.REQUEST, fixed, { requestedIp: '10.99.0.10', secs: 10 }))).messageType, MessageType.ACK);
      // Known binding: OFFER again and ACK a renewal for the time it has left (600 - 200 s).
      assert.equal(replyOf(await n1.decide(request(MessageType.DISCOVER, known))).yiaddr, ip);
      const ack = replyOf(await n1.decide(request(MessageType.REQUEST, known, { ciaddr: ip })));
      assert.equal(ack.messageType, MessageType.ACK);
      assert.equal(ack.leaseSeconds, 400);
      replyOf(await n1.decide(request(MessageType.REQUEST, conflicted, { ciaddr: ip2 })));
      // An unknown address is not NAKed (we cannot know), only dropped.
      assert.equal(dropOf(await n1.decide(request(MessageType.REQUEST, known, { ciaddr: '10.99.0.190' }))), DropReason.STORE_UNAVAILABLE);
      assert.equal(n1.engine.status().queuedRenewals, 2);

      // Meanwhile n2 changes one of the two records (the client released and re-bound elsewhere).
      healthy('n2');
      const r2 = replyOf(await nodes.n2.decide(request(MessageType.REQUEST, conflicted, { ciaddr: ip2 })));
      assert.equal(r2.messageType, MessageType.ACK);
      const before = await stored(ip2);

      n1.degraded = false;
      const conflicts: string[] = [];
      const result = await n1.engine.flushDegradedRenewals((k) => conflicts.push(k));
      assert.equal(result.written, 1);
      assert.deepEqual(conflicts, [leaseKey('lab', ip2)]);
      assert.equal((await stored(ip))?.node, 'n1');
      assert.deepEqual(await stored(ip2), before, 'the record changed by n2 is not overwritten');
      assert.equal(n1.engine.status().queuedRenewals, 0);
      healthy('n1', 'n2');
    });
  });

  describe('clock skew', () => {
    it('two nodes whose clocks differ by 300 s racing on one store: no address bound twice, renewals ACKed', async () => {
      const base = 1_800_000_000_000;
      const a = await makeNode('n1', new FakeClock(base));
      const b = await makeNode('n2', new FakeClock(base + 300_000));
      try {
        // Every client is answered by both nodes at once (secs over the threshold).
        const clients = Array.from({ length: 40 }, (_, i) => `52:54:00:03:00:${i.toString(16).padStart(2, '0')}`);
        await Promise.all(
          clients.flatMap((m) =>
            [a, b].map(async (node) => {
              const offer = await node.decide(request(MessageType.DISCOVER, m, { secs: 10 }));
              if (offer.kind !== 'reply') return;
              await node.decide(request(MessageType.REQUEST, m, { serverId: ADDR[node.name], requestedIp: offer.draft.yiaddr, secs: 10 }));
            }),
          ),
        );
        const bound = (await allBound()).filter((r) => r.mac.startsWith('52:54:00:03'));
        const ips = bound.map((r) => r.ip);
        assert.equal(new Set(ips).size, ips.length, 'no address bound twice');
        // Each client renews through the node that did not write its binding: still an ACK.
        for (const r of bound) {
          const other = r.node === 'n1' ? b : a;
          const renew = await other.decide(request(MessageType.REQUEST, r.mac, { ciaddr: r.ip, secs: 10 }));
          assert.equal(replyOf(renew).messageType, MessageType.ACK, `${r.mac} via ${other.name}`);
        }
      } finally {
        await a.book.close();
        await b.book.close();
      }
    });

    it('a node whose clock runs 300 s ahead does not see the other node’s bindings end early', async () => {
      const base = 1_900_000_000_000;
      const a = await makeNode('n1', new FakeClock(base));
      const b = await makeNode('n2', new FakeClock(base + 300_000));
      // What membership estimates from the clocks in the members' records (estimateOffsetMs).
      b.view.update(MEMBERS.map((m) => ({ ...m, ...(m.name === 'n1' ? { clockOffsetMs: -300_000 } : {}) })));
      a.view.update(MEMBERS.map((m) => ({ ...m, ...(m.name === 'n2' ? { clockOffsetMs: 300_000 } : {}) })));
      try {
        const first = '52:54:00:04:00:01';
        const offer = replyOf(await a.decide(request(MessageType.DISCOVER, first, { secs: 10 })));
        const ip = replyOf(await a.decide(request(MessageType.REQUEST, first, { serverId: ADDR.n1, requestedIp: offer.yiaddr, secs: 10 }))).yiaddr;
        a.clock.advance(400_000); // 200 s of the 600 s lease left; b's clock says 100 s past its end
        b.clock.advance(400_000);
        const other = replyOf(await b.decide(request(MessageType.DISCOVER, '52:54:00:04:00:02', { secs: 10, requestedIp: ip })));
        assert.notEqual(other.yiaddr, ip, 'the address is still bound to the first client');
        const renew = replyOf(await b.decide(request(MessageType.REQUEST, first, { ciaddr: ip, secs: 10 })));
        assert.equal(renew.messageType, MessageType.ACK);
      } finally {
        await a.book.close();
        await b.book.close();
      }
    });
  });
});
