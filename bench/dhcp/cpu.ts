/**
 * CPU cost of one DORA exchange through pxeha's DHCP path, without a network: the packet
 * adapter (src/dhcp/server.ts) fed encoded DISCOVERs and REQUESTs from a relay, as perfdhcp
 * sends them, over an in-memory socket, on a real embedded store in a temporary directory.
 * It measures the process's CPU time (user + system, so the store's commits and fdatasyncs
 * count) per completed exchange: what bounds leases/s once the wire is not the limit. The
 * network benchmark (run.sh) is the one compared with Kea; this one shows where a change moves
 * the per-exchange cost, quietly, with --cpu-prof for a profile.
 *
 * Usage: node --import tsx bench/dhcp/cpu.ts [--clients 20000] [--batch 200] [--rounds 3]
 */
import { EventEmitter } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { parseClusterConfig } from '../../src/config/load.js';
import { DhcpEngine } from '../../src/dhcp/engine.js';
import { LeaseBook } from '../../src/dhcp/lease-book.js';
import { DhcpServer } from '../../src/dhcp/server.js';
import type { InterfaceSocket, MessageListener } from '../../src/dhcp/socket.js';
import type { ReplyDestination } from '../../src/dhcp/destination.js';
import { silentLogger } from '../../src/obs/log.js';
import { Metrics } from '../../src/obs/metrics.js';
import { decodeDhcp4, encodeDhcp4 } from '../../src/protocol/dhcp4/message.js';
import { MessageType } from '../../src/protocol/dhcp4/types.js';
import { openStore } from '../../src/store/open.js';
import { systemClock } from '../../src/util/clock.js';
import { fmt, integerOption, median, say } from '../lib/common.js';

const { values: args } = parseArgs({
  options: {
    clients: { type: 'string', default: '20000' },
    batch: { type: 'string', default: '200' },
    rounds: { type: 'string', default: '3' },
  },
  strict: true,
});
const clients = integerOption(args, 'clients', 1, 1_000_000);
const batch = integerOption(args, 'batch', 1, 10_000);
const rounds = integerOption(args, 'rounds', 1, 20);

const RELAY = '10.96.0.2';

/** A socket whose datagrams come from this file and whose replies are collected. */
class MemorySocket extends EventEmitter implements Partial<InterfaceSocket> {
  readonly ifname = 'eth0';
  readonly ifindex = 2;
  readonly localAddress = '10.96.0.1';
  readonly localPrefixLength = 12;
  readonly port = 67;
  replies: Buffer[] = [];
  waiters: Array<() => void> = [];
  expected = 0;

  async sendReply(msg: Uint8Array, _dest: ReplyDestination): Promise<void> {
    this.replies.push(Buffer.from(msg));
    if (this.replies.length >= this.expected) for (const w of this.waiters.splice(0)) w();
  }
  async send(): Promise<void> {}
  async close(): Promise<void> {}
  deliver(buf: Buffer): void {
    for (const l of this.listeners('message') as MessageListener[]) void l(buf, { address: RELAY, port: 67, family: 'IPv4', size: buf.length });
  }
  async collect(n: number): Promise<Buffer[]> {
    this.expected = n;
    if (this.replies.length < n) await new Promise<void>((resolve) => this.waiters.push(resolve));
    const out = this.replies;
    this.replies = [];
    return out;
  }
}

/**
 * A DISCOVER or REQUEST from the relay, encoded once per type; per client only chaddr, xid
 * and option 50 are patched in, so the harness itself costs next to nothing per exchange.
 */
function template(type: MessageType): { buf: Buffer; requestedIpAt: number } {
  const options = new Map<number, Buffer>([[53, Buffer.from([type])]]);
  options.set(55, Buffer.from([1, 3, 6, 15, 28, 51]));
  if (type === MessageType.REQUEST) {
    options.set(50, Buffer.from([0, 0, 0, 0]));
    options.set(54, Buffer.from([10, 96, 0, 1]));
  }
  const buf = encodeDhcp4({
    op: 1, htype: 1, hlen: 6, hops: 1, xid: 0, secs: 0, flags: 0, ciaddr: '0.0.0.0', yiaddr: '0.0.0.0',
    siaddr: '0.0.0.0', giaddr: RELAY, chaddr: Buffer.alloc(16), sname: '', file: '', options,
  });
  let requestedIpAt = -1;
  for (let o = 240; o < buf.length && buf[o] !== 255; o += 2 + buf[o + 1]!) if (buf[o] === 50) requestedIpAt = o + 2;
  return { buf, requestedIpAt };
}
const DISCOVER = template(MessageType.DISCOVER);
const REQUEST = template(MessageType.REQUEST);

function packet(t: { buf: Buffer; requestedIpAt: number }, client: number, round: number, yiaddr?: Buffer): Buffer {
  const buf = Buffer.from(t.buf);
  buf.writeUInt32BE(client, 4); // xid
  buf.writeUInt16BE(0x5254, 28); // chaddr
  buf.writeUInt8(round, 30);
  buf.writeUInt8(client >>> 16, 31);
  buf.writeUInt16BE(client & 0xffff, 32);
  if (yiaddr) yiaddr.copy(buf, t.requestedIpAt);
  return buf;
}

const dir = await mkdtemp(path.join(tmpdir(), 'pxeha-dhcp-cpu-'));
try {
  const config = parseClusterConfig({
    subnets: [{ name: 'bench', subnet: '10.96.0.0/12', pools: [{ start: '10.97.0.0', end: '10.111.255.254' }], leaseSeconds: 3600 }],
  });
  const store = await openStore({ kind: 'embedded', path: path.join(dir, 'store.db') });
  const leases = await LeaseBook.open(store, (err) => say(`lease watch failed: ${String(err)}`));
  const engine = new DhcpEngine({ node: 'bench', advertiseAddress: undefined, httpPort: 8080, leases, clock: systemClock }, config);
  const server = new DhcpServer({ engine, metrics: new Metrics(), log: silentLogger(), serverPort: 67, clientPort: 68 });
  const socket = new MemorySocket();
  server.addInterface(socket as unknown as InterfaceSocket);

  say(`# DHCP CPU per DORA, in process (no network): ${clients} clients per round in batches of ${batch}, node ${process.version}`);
  const perExchange: number[] = [];
  for (let round = 0; round <= rounds; round++) {
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    for (let first = 0; first < clients; first += batch) {
      const n = Math.min(batch, clients - first);
      for (let i = 0; i < n; i++) socket.deliver(packet(DISCOVER, first + i, round));
      const offers = await socket.collect(n);
      for (const o of offers) socket.deliver(packet(REQUEST, o.readUInt32BE(4), round, o.subarray(16, 20)));
      const acks = await socket.collect(n);
      // Every 100th reply is decoded whole and must be an ACK (option 53 = 5).
      for (let i = 0; i < acks.length; i += 100) if (decodeDhcp4(acks[i]!).options.get(53)?.[0] !== MessageType.ACK) throw new Error('not an ACK');
    }
    const cpu = process.cpuUsage(cpu0);
    const wall = performance.now() - t0;
    const us = (cpu.user + cpu.system) / clients;
    // Round 0 warms the JIT and is not counted.
    if (round > 0) perExchange.push(us);
    say(`${round === 0 ? 'warm-up' : `round ${round}`}: ${fmt(us, 1)} µs CPU per exchange (user ${fmt(cpu.user / clients, 1)}, system ${fmt(cpu.system / clients, 1)}), ${fmt(clients / (wall / 1000), 0)} exchanges/s wall`);
  }
  say(`median: ${fmt(median(perExchange), 1)} µs CPU per DORA exchange (= ${fmt(1e6 / median(perExchange), 0)} leases/s per core of CPU)`);
  await server.close();
  await leases.close();
  await store.close();
} finally {
  await rm(dir, { recursive: true, force: true });
}
