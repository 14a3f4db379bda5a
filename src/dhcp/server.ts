/**
 * The DHCP socket adapter: bytes in, decision, bytes out. It decodes, asks the engine,
 * encodes and sends to the RFC 2131 §4.1 destination, and counts everything. Nothing thrown
 * on the packet path escapes: a bad packet or a failed store write is a counted drop.
 *
 * Datagrams are read as they come into a bounded queue (receive-queue.ts) and answered from
 * it a slice per event-loop turn, exchanges in progress first, so that under overload the
 * sockets are still drained every turn and what is dropped is our choice: stale DISCOVERs,
 * not the REQUESTs that complete leases.
 */
import { PxehaError } from '../errors.js';
import type { Logger } from '../obs/log.js';
import type { Metrics } from '../obs/metrics.js';
import { decodeDhcp4, encodeDhcp4 } from '../protocol/dhcp4/message.js';
import { MessageTypeName, type MessageType } from '../protocol/dhcp4/types.js';
import { DropReason, type ReceiveInfo } from './chain.js';
import { replyDestination } from './destination.js';
import { peekRequest } from './peek.js';
import { ReceiveQueue, type ReceiveQueueOptions } from './receive-queue.js';
import type { DhcpEngine } from './engine.js';
import { buildReply } from './reply.js';
import { interpretRequest } from './request.js';
import type { InterfaceSocket, UdpSocket } from './socket.js';

export interface DhcpServerOptions {
  engine: DhcpEngine;
  metrics: Metrics;
  log: Logger;
  serverPort: number;
  clientPort: number;
  /** Bounds of the receive queue (receive-queue.ts defaults). */
  queue?: ReceiveQueueOptions;
  /** Milliseconds clock for queue ages; default Date.now. */
  now?: () => number;
}

interface Received {
  socket: UdpSocket;
  via: ReceiveInfo;
  buf: Buffer;
  /** process.hrtime.bigint() when read: the decision histogram counts the wait in the queue. */
  receivedAt: bigint;
}

/**
 * Datagrams answered per event-loop turn. Between slices libuv reads up to 32 datagrams per
 * socket, so the slice must stay small enough to keep reading ahead of a flood (the kernel's
 * buffer then never decides what is lost) and large enough that the store commits and sends go
 * out in batches. Measured at 20 000/s offered (bench/dhcp/RESULTS.md): 4 and 8 gave ~4800
 * leases/s, 12 ~5900, 16 ~6600-7200 with few or no kernel drops, 32 ~4400 with the kernel
 * dropping 120 000 requests.
 */
const SLICE = 16;

export class DhcpServer {
  private readonly sockets: { socket: UdpSocket; service: ReceiveInfo['service'] }[] = [];
  private readonly queue: ReceiveQueue<Received>;
  private drainScheduled = false;
  private inFlight = 0;
  private closing = false;
  private idle: (() => void) | undefined;

  private readonly now: () => number;

  constructor(private readonly options: DhcpServerOptions) {
    this.queue = new ReceiveQueue(options.queue);
    this.now = options.now ?? Date.now;
  }

  /** Datagrams read and not yet answered or dropped. */
  get queued(): number {
    return this.queue.size;
  }

  /** Serves DHCP (port 67) on an interface-bound socket. */
  addInterface(socket: InterfaceSocket): void {
    this.attach(socket, 'dhcp');
  }

  /** Serves the PXE boot server port (4011) on a socket. */
  addBootServer(socket: UdpSocket): void {
    this.attach(socket, 'pxe');
  }

  private attach(socket: UdpSocket, service: ReceiveInfo['service']): void {
    this.sockets.push({ socket, service });
    socket.on('message', (buf, rinfo) => {
      if (this.closing) return;
      const via: ReceiveInfo = { ifname: socket.ifname, interfaceAddress: socket.localAddress, service, source: rinfo };
      // Most of what a cluster node hears is for another node: dropped without decoding, and
      // before the queue, which then holds only this node's work.
      const peeked = peekRequest(buf);
      const quick = this.options.engine.quickDrop(buf, via, peeked);
      if (quick) {
        this.countReceived(MessageTypeName[quick.type as MessageType] ?? 'unknown');
        return this.drop(quick.reason, { iface: socket.ifname, src: rinfo.address, detail: quick.detail });
      }
      const evicted = this.queue.push({ socket, via, buf, receivedAt: process.hrtime.bigint() }, peeked?.type, this.now());
      if (evicted) this.overloaded(evicted.item, evicted.reason);
      if (!this.drainScheduled) {
        this.drainScheduled = true;
        setImmediate(this.drain);
      }
    });
  }

  /** Answers one slice of the queue; the next slice waits for the next turn's reads. */
  private readonly drain = (): void => {
    this.drainScheduled = false;
    if (this.closing) return;
    const now = this.now();
    for (let i = 0; i < SLICE; i++) {
      const { next, stale } = this.queue.take(now);
      for (const r of stale) this.overloaded(r, 'stale');
      if (!next) break;
      this.inFlight++;
      void this.handle(next).finally(() => {
        if (--this.inFlight === 0) this.idle?.();
      });
    }
    if (this.queue.size > 0) {
      this.drainScheduled = true;
      setImmediate(this.drain);
    }
  };

  private overloaded(r: Received, detail: string): void {
    this.drop(DropReason.OVERLOADED, { iface: r.via.ifname, src: r.via.source.address, detail });
  }

  private drop(reason: DropReason, fields: Record<string, unknown>): void {
    this.options.metrics.dhcpDropped.inc({ reason });
    if (this.options.log.isLevelEnabled('debug')) this.options.log.debug({ ...fields, reason }, 'dhcp drop');
  }

  /** Counter children by message type, bound once: label lookup per packet showed in profiles. */
  private readonly receivedCounters = new Map<string, { inc(): void }>();
  private readonly replyCounters = new Map<string, { inc(): void }>();

  private countReceived(type: string): void {
    let child = this.receivedCounters.get(type);
    if (child === undefined) this.receivedCounters.set(type, (child = this.options.metrics.dhcpReceived.labels({ type })));
    child.inc();
  }

  private countReply(type: string): void {
    let child = this.replyCounters.get(type);
    if (child === undefined) this.replyCounters.set(type, (child = this.options.metrics.dhcpReplies.labels({ type })));
    child.inc();
  }

  private async handle({ socket, via, buf, receivedAt }: Received): Promise<void> {
    const { metrics, log, engine } = this.options;
    const { ifname: iface, service, source: rinfo } = via;
    let request;
    let message;
    try {
      message = decodeDhcp4(buf);
      request = interpretRequest(message);
    } catch (err) {
      this.drop(DropReason.DECODE_ERROR, { iface, src: rinfo.address, err: (err as Error).message });
      return;
    }
    const typeName = request.messageType !== undefined ? MessageTypeName[request.messageType] ?? 'unknown' : 'none';
    this.countReceived(typeName);
    const fields = { iface, mac: request.mac, xid: request.xid, type: typeName };
    try {
      const { decision, context } = await engine.decide(request, via);
      if (decision.kind === 'drop') return this.drop(decision.reason, { ...fields, detail: decision.detail });
      if (decision.kind === 'done') {
        log.info({ ...fields, note: decision.note }, 'dhcp handled');
        return;
      }
      const draft = decision.draft;
      let out: Buffer;
      try {
        const reply = buildReply(message, draft, context);
        out = encodeDhcp4(reply, { maxSize: request.maxMessageSize });
      } catch (err) {
        return this.drop(DropReason.ENCODE_ERROR, { ...fields, err: (err as Error).message });
      }
      const dest = replyDestination({
        giaddr: request.giaddr,
        ciaddr: request.ciaddr,
        yiaddr: draft.yiaddr,
        flags: request.flags,
        mac: request.mac,
        isNak: draft.messageType === 6,
        unicastSource: service === 'pxe' ? rinfo : undefined,
        serverPort: this.options.serverPort,
        clientPort: this.options.clientPort,
      });
      await socket.sendReply(out, dest);
      this.countReply(MessageTypeName[draft.messageType as MessageType]);
      metrics.dhcpDecisionSeconds.observe(Number(process.hrtime.bigint() - receivedAt) / 1e9);
      if (log.isLevelEnabled('debug')) log.debug({ ...fields, reply: MessageTypeName[draft.messageType as MessageType], ip: draft.yiaddr, dest }, 'dhcp reply');
    } catch (err) {
      const reason = err instanceof PxehaError && err.code.startsWith('PXE_ERR_STORE') ? DropReason.STORE_ERROR : DropReason.SEND_ERROR;
      this.drop(reason, { ...fields, err: (err as Error).message });
      if (!(err instanceof PxehaError)) log.error({ ...fields, err }, 'dhcp handler failed');
    }
  }

  /** Stops taking packets, waits for decisions in flight, closes the sockets. */
  async close(): Promise<void> {
    this.closing = true;
    this.queue.clear();
    if (this.inFlight > 0) await new Promise<void>((resolve) => (this.idle = resolve));
    await Promise.all(this.sockets.map((s) => s.socket.close()));
  }
}
