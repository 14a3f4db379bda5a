/**
 * The overload queue: exchanges in progress before DISCOVERs, DISCOVERs newest first, stale
 * and overflowing entries dropped and reported; and the server answering from it, on a real
 * embedded store, with the REQUESTs of a flood all answered and no DISCOVER older than the
 * limit answered.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parseClusterConfig } from '../config/load.js';
import { silentLogger } from '../obs/log.js';
import { Metrics } from '../obs/metrics.js';
import { decodeDhcp4, encodeDhcp4 } from '../protocol/dhcp4/message.js';
import { MessageType } from '../protocol/dhcp4/types.js';
import { openStore } from '../store/open.js';
import { systemClock } from '../util/clock.js';
import { DhcpEngine } from './engine.js';
import { LeaseBook } from './lease-book.js';
import { peekMessageType } from './peek.js';
import { ReceiveQueue } from './receive-queue.js';
import { DhcpServer } from './server.js';
import type { InterfaceSocket } from './socket.js';

function drainAll<T>(q: ReceiveQueue<T>, now: number): { order: T[]; stale: T[] } {
  const order: T[] = [];
  const stale: T[] = [];
  for (;;) {
    const t = q.take(now);
    stale.push(...t.stale);
    if (t.next === undefined) return { order, stale };
    order.push(t.next);
  }
}

describe('receive queue', () => {
  it('answers exchanges in progress in arrival order before any DISCOVER, DISCOVERs newest first', () => {
    const q = new ReceiveQueue<string>();
    q.push('d1', MessageType.DISCOVER, 0);
    q.push('r1', MessageType.REQUEST, 1);
    q.push('d2', MessageType.DISCOVER, 2);
    q.push('x1', undefined, 3); // type not plain: full path, with the exchanges in progress
    q.push('r2', MessageType.REQUEST, 4);
    q.push('i1', MessageType.INFORM, 5);
    q.push('d3', MessageType.DISCOVER, 6);
    assert.deepEqual(drainAll(q, 10), { order: ['r1', 'x1', 'r2', 'i1', 'd3', 'd2', 'd1'], stale: [] });
    assert.equal(q.size, 0);
  });

  it('drops DISCOVERs older than the limit, and only them', () => {
    const q = new ReceiveQueue<string>({ maxDiscoverAgeMs: 1000 });
    q.push('old1', MessageType.DISCOVER, 0);
    q.push('old2', MessageType.DISCOVER, 500);
    q.push('oldRequest', MessageType.REQUEST, 0);
    q.push('fresh', MessageType.DISCOVER, 1200);
    const { order, stale } = drainAll(q, 1600);
    assert.deepEqual(order, ['oldRequest', 'fresh']);
    assert.deepEqual(stale, ['old1', 'old2']);
  });

  it('is bounded per class: a full class gives up its oldest entry, the other class is untouched', () => {
    const q = new ReceiveQueue<string>({ capacity: 3 });
    for (let i = 0; i < 3; i++) assert.equal(q.push(`r${i}`, MessageType.REQUEST, i), undefined);
    for (let i = 0; i < 5; i++) {
      const evicted = q.push(`d${i}`, MessageType.DISCOVER, i);
      assert.deepEqual(evicted, i < 3 ? undefined : { item: `d${i - 3}`, reason: 'queue-full' });
    }
    assert.deepEqual(q.push('r3', MessageType.REQUEST, 9), { item: 'r0', reason: 'queue-full' });
    assert.equal(q.size, 6);
    assert.deepEqual(drainAll(q, 10).order, ['r1', 'r2', 'r3', 'd4', 'd3', 'd2']);
  });

  it('never loses or duplicates an entry: every push comes out once, answered or dropped (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ type: fc.constantFrom(1, 3, 4, 7, 8, undefined), dt: fc.nat(400), take: fc.nat(3) }), { maxLength: 300 }),
        fc.integer({ min: 1, max: 20 }),
        (steps, capacity) => {
          const q = new ReceiveQueue<number>({ capacity, maxDiscoverAgeMs: 1000 });
          const seen: number[] = [];
          let now = 0;
          steps.forEach((s, i) => {
            now += s.dt;
            const ev = q.push(i, s.type, now);
            if (ev) seen.push(ev.item);
            for (let k = 0; k < s.take; k++) {
              const t = q.take(now);
              seen.push(...t.stale);
              if (t.next !== undefined) seen.push(t.next);
            }
          });
          const rest = q.clear();
          seen.push(...rest);
          assert.deepEqual([...seen].sort((a, b) => a - b), steps.map((_, i) => i));
          assert.equal(q.size, 0);
        },
      ),
    );
  });

  it('rejects a capacity that is not a positive integer', () => {
    assert.throws(() => new ReceiveQueue({ capacity: 0 }), RangeError);
    assert.throws(() => new ReceiveQueue({ capacity: 1.5 }), RangeError);
  });
});

describe('peekMessageType', () => {
  const packet = (options: Map<number, Buffer>): Buffer =>
    encodeDhcp4({
      op: 1, htype: 1, hlen: 6, hops: 0, xid: 1, secs: 0, flags: 0, ciaddr: '0.0.0.0', yiaddr: '0.0.0.0',
      siaddr: '0.0.0.0', giaddr: '0.0.0.0', chaddr: Buffer.alloc(16, 1), sname: '', file: '', options,
    });

  it('reads option 53 of a plain request, wherever it sits among the options', () => {
    assert.equal(peekMessageType(packet(new Map([[53, Buffer.from([1])]]))), MessageType.DISCOVER);
    const later = packet(new Map([[12, Buffer.from('host')], [55, Buffer.from([1, 3])], [53, Buffer.from([3])]]));
    assert.equal(peekMessageType(later), MessageType.REQUEST);
  });

  it('says nothing of anything unusual, and never throws on arbitrary bytes', () => {
    const discover = packet(new Map([[53, Buffer.from([1])]]));
    const reply = Buffer.from(discover);
    reply[0] = 2;
    assert.equal(peekMessageType(reply), undefined);
    const badCookie = Buffer.from(discover);
    badCookie[236] = 0;
    assert.equal(peekMessageType(badCookie), undefined);
    const wide = packet(new Map([[53, Buffer.from([1, 1])]]));
    assert.equal(peekMessageType(wide), undefined);
    assert.equal(peekMessageType(discover.subarray(0, 242)), undefined); // 53's length byte cut off
    assert.equal(peekMessageType(packet(new Map())), undefined);
    fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
      const t = peekMessageType(bytes);
      assert.ok(t === undefined || (Number.isInteger(t) && t >= 0 && t <= 255));
    }));
  });
});

/** A socket fed by the test; replies are collected in order. */
class MemorySocket extends EventEmitter {
  readonly ifname = 'eth0';
  readonly ifindex = 2;
  readonly localAddress = '10.96.0.1';
  readonly localPrefixLength = 12;
  readonly port = 67;
  readonly replies: Buffer[] = [];
  async sendReply(msg: Uint8Array): Promise<void> {
    this.replies.push(Buffer.from(msg));
  }
  async close(): Promise<void> {}
  deliver(buf: Buffer): void {
    this.emit('message', buf, { address: '10.96.0.2', port: 67, family: 'IPv4', size: buf.length });
  }
}

function relayed(type: MessageType, client: number, requestedIp?: string): Buffer {
  const chaddr = Buffer.alloc(16);
  chaddr.writeUInt32BE(0x52540000 + (client >>> 16), 0);
  chaddr.writeUInt16BE(client & 0xffff, 4);
  const options = new Map<number, Buffer>([[53, Buffer.from([type])]]);
  if (requestedIp !== undefined) {
    options.set(50, Buffer.from(requestedIp.split('.').map(Number)));
    options.set(54, Buffer.from([10, 96, 0, 1]));
  }
  return encodeDhcp4({
    op: 1, htype: 1, hlen: 6, hops: 1, xid: client, secs: 0, flags: 0, ciaddr: '0.0.0.0', yiaddr: '0.0.0.0',
    siaddr: '0.0.0.0', giaddr: '10.96.0.2', chaddr, sname: '', file: '', options,
  });
}

describe('DHCP server under overload', () => {
  it('answers every REQUEST of a flood before the DISCOVERs, drops stale DISCOVERs as overloaded, and binds no address twice', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pxeha-overload-'));
    const store = await openStore({ kind: 'embedded', path: join(dir, 'store.db') });
    const leases = await LeaseBook.open(store, () => {});
    const config = parseClusterConfig({ subnets: [{ name: 'flood', subnet: '10.96.0.0/12', pools: [{ start: '10.97.0.0', end: '10.97.255.254' }] }] });
    const engine = new DhcpEngine({ node: 'n1', advertiseAddress: undefined, httpPort: 8080, leases, clock: systemClock }, config);
    const metrics = new Metrics();
    let now = 0;
    const server = new DhcpServer({ engine, metrics, log: silentLogger(), serverPort: 67, clientPort: 68, queue: { maxDiscoverAgeMs: 50 }, now: () => now });
    const socket = new MemorySocket();
    server.addInterface(socket as unknown as InterfaceSocket);
    try {
      // 100 clients get OFFERs.
      for (let c = 0; c < 100; c++) socket.deliver(relayed(MessageType.DISCOVER, c));
      await until(() => socket.replies.length === 100);
      const offers = socket.replies.splice(0).map((b) => decodeDhcp4(b));
      // The order in which the engine is asked (an ACK is sent only after its commit is durable,
      // so the order of replies says less).
      const asked: MessageType[] = [];
      const decide = engine.decide.bind(engine);
      engine.decide = (request, via) => {
        asked.push(request.messageType!);
        return decide(request, via);
      };
      // Then, before the server's next turn: 1000 DISCOVERs that wait 100 ms (longer than the
      // 50 ms limit), 1000 fresh ones, and the 100 REQUESTs behind them all.
      for (let c = 1000; c < 2000; c++) socket.deliver(relayed(MessageType.DISCOVER, c));
      now += 100;
      for (let c = 2000; c < 3000; c++) socket.deliver(relayed(MessageType.DISCOVER, c));
      for (const o of offers) socket.deliver(relayed(MessageType.REQUEST, o.xid, o.yiaddr));
      assert.equal(server.queued, 2100);
      await until(() => server.queued === 0 && socket.replies.length === 1100);
      const replies = socket.replies.map((b) => decodeDhcp4(b));
      const types = replies.map((m) => m.options.get(53)?.[0]);
      const acks = replies.filter((_, i) => types[i] === MessageType.ACK);
      assert.equal(acks.length, 100, 'every REQUEST answered with an ACK');
      // The REQUESTs came after 2000 DISCOVERs yet were decided first.
      assert.equal(asked.length, 1100);
      assert.deepEqual(asked.slice(0, 100), new Array(100).fill(MessageType.REQUEST));
      // The fresh DISCOVERs answered newest first, the stale ones dropped, none answered.
      const offered = replies.filter((_, i) => types[i] === MessageType.OFFER).map((m) => m.xid);
      assert.equal(offered.length, 1000);
      assert.deepEqual(offered, Array.from({ length: 1000 }, (_, i) => 2999 - i));
      assert.equal(await dropped(metrics, 'overloaded'), 1000);
      const bound = acks.map((a) => a.yiaddr);
      assert.equal(new Set(bound).size, 100, 'no address bound twice');
    } finally {
      await server.close();
      await leases.close();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

async function dropped(metrics: Metrics, reason: string): Promise<number> {
  const m = await metrics.dhcpDropped.get();
  return m.values.find((v) => v.labels['reason'] === reason)?.value ?? 0;
}

async function until(cond: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}
