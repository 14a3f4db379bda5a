/**
 * The DHCP socket adapter: bytes in, decision, bytes out. It decodes, asks the engine,
 * encodes and sends to the RFC 2131 §4.1 destination, and counts everything. Nothing thrown
 * on the packet path escapes: a bad packet or a failed store write is a counted drop.
 */
import { PxehaError } from '../errors.js';
import type { Logger } from '../obs/log.js';
import type { Metrics } from '../obs/metrics.js';
import { decodeDhcp4, encodeDhcp4 } from '../protocol/dhcp4/message.js';
import { MessageTypeName, type MessageType } from '../protocol/dhcp4/types.js';
import { DropReason, type ReceiveInfo } from './chain.js';
import { replyDestination } from './destination.js';
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
}

export class DhcpServer {
  private readonly sockets: { socket: UdpSocket; service: ReceiveInfo['service'] }[] = [];
  private inFlight = 0;
  private closing = false;
  private idle: (() => void) | undefined;

  constructor(private readonly options: DhcpServerOptions) {}

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
      this.inFlight++;
      void this.handle(socket, service, buf, rinfo).finally(() => {
        if (--this.inFlight === 0) this.idle?.();
      });
    });
  }

  private drop(reason: DropReason, fields: Record<string, unknown>): void {
    this.options.metrics.dhcpDropped.inc({ reason });
    this.options.log.debug({ ...fields, reason }, 'dhcp drop');
  }

  private async handle(
    socket: UdpSocket,
    service: ReceiveInfo['service'],
    buf: Buffer,
    rinfo: { address: string; port: number },
  ): Promise<void> {
    const { metrics, log, engine } = this.options;
    const started = process.hrtime.bigint();
    const iface = socket.ifname;
    const via: ReceiveInfo = { ifname: iface, interfaceAddress: socket.localAddress, service, source: rinfo };
    // Most of what a cluster node hears is for another node: dropped without decoding.
    const quick = engine.quickDrop(buf, via);
    if (quick) {
      metrics.dhcpReceived.inc({ type: MessageTypeName[quick.type as MessageType] ?? 'unknown' });
      return this.drop(quick.reason, { iface, src: rinfo.address, detail: quick.detail });
    }
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
    metrics.dhcpReceived.inc({ type: typeName });
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
      metrics.dhcpReplies.inc({ type: MessageTypeName[draft.messageType as MessageType] });
      metrics.dhcpDecisionSeconds.observe(Number(process.hrtime.bigint() - started) / 1e9);
      log.debug({ ...fields, reply: MessageTypeName[draft.messageType as MessageType], ip: draft.yiaddr, dest }, 'dhcp reply');
    } catch (err) {
      const reason = err instanceof PxehaError && err.code.startsWith('PXE_ERR_STORE') ? DropReason.STORE_ERROR : DropReason.SEND_ERROR;
      this.drop(reason, { ...fields, err: (err as Error).message });
      if (!(err instanceof PxehaError)) log.error({ ...fields, err }, 'dhcp handler failed');
    }
  }

  /** Stops taking packets, waits for decisions in flight, closes the sockets. */
  async close(): Promise<void> {
    this.closing = true;
    if (this.inFlight > 0) await new Promise<void>((resolve) => (this.idle = resolve));
    await Promise.all(this.sockets.map((s) => s.socket.close()));
  }
}
