/**
 * The TFTP socket adapter: read-only, one listening socket per bind address (port 69 by
 * default), one ephemeral port per transfer (its own TID, RFC 1350 §4; see
 * openTransferSocket). All protocol decisions
 * are the pure state machine's (transfer.ts); this file turns datagrams, timers and file reads
 * into its events and carries out its actions. Nothing thrown on the packet path escapes: a bad
 * packet is counted and dropped or answered with an ERROR.
 *
 * - RRQ: path rules of src/artifacts/resolve.ts (the same as HTTP's), then open in open-file.ts
 *   (root-relative, `..`/NUL/over-long refused, symlinks out of the root refused, regular files
 *   only); options per negotiate.ts. The file
 *   is read through a FileHandle a window plus a bounded read-ahead at a time, never whole:
 *   policy.largeReadAheadBytes while the server-wide pool (policy.readAheadPoolBytes) has room,
 *   else policy.readAheadBytes.
 * - RRQ of a pinned image path (`images/<name>/<version>/<path>`, with `images` set): served from
 *   the chunk store through one verified stream per transfer (src/images/serve.ts), only while
 *   this node holds the version whole; a chunk that fails its hash ends the transfer with
 *   ERROR 0 before any of its bytes are sent.
 * - WRQ: refused with ERROR 2 "read-only server" (counted as reason write-request).
 * - A request from a client address:port that already has a transfer is a retransmitted RRQ
 *   (our first reply was slow or lost): it is dropped, the transfer's own timer re-sends.
 * - A datagram to a transfer socket from anyone but its client gets ERROR 5 (unknown transfer
 *   ID) and does not disturb the transfer (RFC 1350 §4).
 * - Refusals are answered from the listening socket: every client takes the server's TID from
 *   the first reply, error or not, and a flood of bad requests costs no sockets.
 * - close() stops listening, aborts every transfer with ERROR 0 "server shutting down" sent to its
 *   client, and resolves once every socket and file is closed.
 *
 * - Lock step (windowsize 1) goes through the native fast path when its addon is built
 *   (native/tftp_pump.c, src/tftp/native-pump.ts; option `native`, PXEHA_TFTP_NATIVE=0 turns it
 *   off): the transfer's socket is the addon's, and the ACK of the block in flight is answered
 *   with the next prepared block in C, on the event loop, without entering JS; everything else
 *   comes here as an event and goes through the state machine. Without the addon the JS path
 *   below serves it (said once in the log). Windowsize transfers keep dgram, which queues a
 *   window when the socket buffer is full.
 *
 * Multi-homed hosts should bind each address (address: [...]) rather than 0.0.0.0, so that the
 * transfer socket answers from the address the client asked (Node has no IP_PKTINFO). IPv4 only.
 *
 * Metrics (defined in src/obs/metrics.ts, on the node's registry):
 *   pxeha_tftp_transfers_total{result}   ok | timeout | client-error | aborted | read-error | protocol-error
 *   pxeha_tftp_bytes_total               DATA payload bytes sent, re-sends included (added with
 *                                        each file read and at the end, not per packet)
 *   pxeha_tftp_retransmits_total         DATA/OACK packets sent again
 *   pxeha_tftp_refused_total{reason}     see open-file.ts TftpRefusalReason
 *   pxeha_tftp_dropped_total{reason}     unknown-tid | malformed | not-a-request | duplicate-request
 *   pxeha_tftp_active_transfers
 * Path refusals are also counted in pxeha_artifact_refused_total{protocol="tftp",reason}, next
 * to HTTP's.
 */
import dgram from 'node:dgram';
import { realpath } from 'node:fs/promises';
import type { Registry } from 'prom-client';
import { PxehaError } from '../errors.js';
import { silentLogger, type Logger } from '../obs/log.js';
import { Metrics } from '../obs/metrics.js';
import { DecodeError } from '../protocol/bytes.js';
import { Opcode, TftpErrorCode, TransferMode } from '../protocol/tftp/codes.js';
import { DATA_HEADER_BYTES, decodeTftp, encodeTftp, type RequestPacket, type TftpPacket } from '../protocol/tftp/packet.js';
import { DEFAULT_TFTP_POLICY, negotiateRead, type ReadMode, type TftpPolicy } from './negotiate.js';
import { checkRequestPath } from '../artifacts/resolve.js';
import { findImageFile, ImageFileSource, type ImageFileSources } from '../images/serve.js';
import { filenameToPath, openForRead, refusal, type Refusal, type TftpRefusalReason } from './open-file.js';
import { loadTftpPump, PumpEvent, type TftpPump, type TftpPumpConstructor } from './native-pump.js';
import {
  bufferedBlocks,
  initialTransferState,
  step,
  transferConfig,
  TransferResult,
  type SendData,
  type TransferAction,
  type TransferEvent,
  type TransferState,
  wireBlock,
} from './transfer.js';

export interface TftpServerOptions {
  /** Directory served (the artifacts root). */
  root: string;
  /** UDP port to listen on; default 69, 0 for any free port. */
  port?: number;
  /** Address(es) to bind, one listening socket each; default 0.0.0.0. */
  address?: string | readonly string[];
  /** Where the counting goes (the node's Metrics); a private Metrics when absent. */
  metrics?: Metrics;
  log?: Logger;
  policy?: Partial<TftpPolicy>;
  /** Transfers at once; more are refused with ERROR 0 "server busy". Default 1000. */
  maxTransfers?: number;
  /** Called when a client received a whole file (boot stage `tftp` for the machine at that address). */
  onTransferDone?: (clientAddress: string, file: string) => void;
  /**
   * Pinned image files (`images/<name>/<version>/<path>`, src/images/serve.ts), read straight
   * from the chunk store through one verified stream per transfer; absent: only the root.
   */
  images?: ImageFileSources;
  /**
   * Carry lock-step transfers (windowsize 1) through the native fast path (native/tftp_pump.c)
   * when its addon loads; default true unless the environment has PXEHA_TFTP_NATIVE=0. Without
   * the addon the JS path serves them, and the log says so once.
   */
  native?: boolean;
}

/** What a transfer reads its file through: a FileHandle, or an image file's chunk stream. */
interface ReadSource {
  read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  close(): Promise<void>;
}

export interface TftpServer {
  /** The port bound (the first socket's, when several). */
  readonly port: number;
  readonly addresses: readonly { address: string; port: number }[];
  readonly registry: Registry;
  /** Transfers in progress (including requests whose file is being opened). */
  readonly activeTransfers: number;
  /** Aborts every transfer (ERROR 0 to its client), closes every socket and file. */
  close(): Promise<void>;
}

interface Endpoint {
  address: string;
  port: number;
}

const SHUTDOWN_MESSAGE = 'server shutting down';

/** An ERROR message as one line of printable latin1 (it may quote the client's file name). */
function wireText(message: string): string {
  return message.replace(/[^\x20-\x7e\xa0-\xff]/g, '?');
}

/** Resolves IP literals synchronously: dgram's default lookup costs a tick per send. */
function literalLookup(
  address: string,
  _options: unknown,
  callback: (err: NodeJS.ErrnoException | null, address: string, family: number) => void,
): void {
  callback(null, address, 4);
}

function createUdpSocket(): dgram.Socket {
  return dgram.createSocket({ type: 'udp4', lookup: literalLookup as unknown as dgram.SocketOptions['lookup'] });
}

/**
 * A transfer's socket: an ephemeral port of its own (the TID), unconnected and not shared.
 * Connecting it to the client would spare the kernel a route lookup per datagram (~0.5 µs a
 * block, bench/tftp/RESULTS.md), but a connected socket cannot answer strangers with ERROR 5,
 * and a second socket on the same port for them needs SO_REUSEADDR, which on Linux lets any
 * local process bind that port too and take the client's ACKs. Not worth a hijackable transfer.
 * (dgram offers no SO_REUSEPORT, which only sockets of the same user can share: the native fast
 * path uses it for its connected socket, see native/tftp_pump.c open_peer_socket.)
 */
async function openTransferSocket(localAddress: string): Promise<dgram.Socket> {
  const socket = createUdpSocket();
  try {
    await bindSocket(socket, localAddress, 0);
    return socket;
  } catch (err) {
    await closeSocket(socket);
    throw err;
  }
}

function bindSocket(socket: dgram.Socket, address: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(new PxehaError('PXE_ERR_SOCKET', `tftp: cannot bind ${address}:${port}: ${err.message}`, { cause: err }));
    socket.once('error', onError);
    socket.bind({ address, port, exclusive: true }, () => {
      socket.off('error', onError);
      resolve();
    });
  });
}

function closeSocket(socket: dgram.Socket): Promise<void> {
  return new Promise((resolve) => {
    try {
      socket.close(() => resolve());
    } catch {
      resolve(); // already closed
    }
  });
}

/**
 * A lock-step transfer's socket on the native fast path: the pump (its own port, the TID), the
 * counters it updates, and its events forwarded to whoever listens (the Transfer, once built).
 */
class PumpSocket {
  readonly counters = new Float64Array(2);
  readonly pump: TftpPump;
  /** Whether the pump has a socket connected to the client (native/tftp_pump.c open_peer_socket). */
  readonly connected: boolean;
  onEvent: ((kind: PumpEvent, data: Buffer | undefined, address: string | undefined, number: number) => void) | undefined;

  constructor(TftpPump: TftpPumpConstructor, localAddress: string, client: Endpoint) {
    this.pump = new TftpPump(localAddress, this.counters, (kind, data, address, number) => this.onEvent?.(kind, data, address, number));
    try {
      this.connected = this.pump.setPeer(client.address, client.port);
    } catch (err) {
      this.pump.close();
      throw err;
    }
  }
}

type TransferIo = { kind: 'dgram'; socket: dgram.Socket } | { kind: 'pump'; socket: PumpSocket };

/** The node's TFTP metrics (src/obs/metrics.ts), under the short names this file uses. */
class TftpMetrics {
  readonly transfers: Metrics['tftpTransfers'];
  readonly bytes: Metrics['tftpBytes'];
  readonly retransmits: Metrics['tftpRetransmits'];
  readonly refused: Metrics['tftpRefused'];
  readonly dropped: Metrics['tftpDropped'];
  readonly active: Metrics['tftpActive'];
  /** The node-wide path refusal counter shared with HTTP. */
  readonly artifactRefused: Metrics['artifactRefused'];

  constructor(m: Metrics) {
    this.transfers = m.tftpTransfers;
    this.bytes = m.tftpBytes;
    this.retransmits = m.tftpRetransmits;
    this.refused = m.tftpRefused;
    this.dropped = m.tftpDropped;
    this.active = m.tftpActive;
    this.artifactRefused = m.artifactRefused;
  }
}

const PATH_REASONS = new Set<TftpRefusalReason>(['nul-byte', 'too-long', 'parent-segment', 'absolute', 'outside-root', 'not-found', 'not-a-file', 'access-denied', 'bad-encoding']);

/**
 * One read transfer: its socket, file, timer, and the state machine's state.
 *
 * The retransmission timer is one Node timer per transfer and a deadline: arming it (every
 * block in lock step) only moves `deadlineMs`; the timer, when it fires early, sleeps again
 * until the deadline. A clearTimeout/setTimeout (or refresh) pair per block was a timer-list
 * update per packet.
 *
 * On the native fast path (a PumpSocket, lock step only) the pump answers the ACK of the block in
 * flight with the next block on its own, from the DATA datagrams this class hands it (feedPump):
 * exactly the blocks the state machine holds after the one in flight. Before every event
 * (and when the timer fires) the pump's progress is read from its counters and applied as one
 * `pumped` event (syncPump), so the state, the timer's deadline and the statistics are those of
 * the JS path. Everything the pump does not answer — a stranger, an ERROR, a duplicate or odd ACK,
 * the ACK of the last block it holds — comes back as an event and goes through `step` as on the
 * JS path.
 */
class Transfer {
  private state: TransferState;
  private timer: NodeJS.Timeout | undefined;
  /** When the armed timer is due (Date.now() ms); undefined when none is armed. */
  private deadlineMs: number | undefined;
  /** When the Node timer, if any, fires. */
  private timerDueMs = 0;
  private closed = false;
  private readonly startedMs = Date.now();
  readonly done: Promise<void>;
  private resolveDone!: () => void;

  private readonly socket: dgram.Socket | undefined;
  private readonly pumpSocket: PumpSocket | undefined;
  private readonly pump: TftpPump | undefined;
  /** The pump's counters[0] when last applied. */
  private pumpSeen = 0;
  /** Absolute block the pump holds as in flight; undefined while it answers nothing. */
  private pumpInflight: number | undefined;
  /** Absolute number of the last block queued in the pump. */
  private pumpThrough = 0;
  /** While a `pumped` event is applied: when the pump last made progress (the timer counts from then). */
  private armBaseMs: number | undefined;

  constructor(
    io: TransferIo,
    /** Bytes of the server's read-ahead pool this transfer holds (0 for the default read-ahead). */
    readonly pooledReadAheadBytes: number,
    private readonly client: Endpoint,
    private readonly file: ReadSource,
    state: TransferState,
    private readonly server: Server,
    readonly fields: Record<string, unknown>,
  ) {
    this.state = state;
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
    if (io.kind === 'dgram') {
      this.socket = io.socket;
      const onError = (err: Error) => this.server.log.debug({ ...this.fields, err: err.message }, 'tftp transfer socket error');
      this.socket.on('message', (buf, rinfo) => this.onMessage(buf, rinfo));
      this.socket.on('error', onError);
    } else {
      this.pumpSocket = io.socket;
      this.pump = io.socket.pump;
      io.socket.onEvent = (kind, data, address, number) => this.onPumpEvent(kind, data, address, number);
    }
  }

  start(): void {
    this.dispatch({ type: 'start' });
  }

  abort(reason: string): void {
    this.dispatch({ type: 'abort', reason });
  }

  /** RFC 1350 §4: a datagram to this TID from anyone but the client gets ERROR 5; the transfer goes on. */
  private onStranger(rinfo: Endpoint): void {
    if (this.closed) return;
    this.server.metrics.dropped.inc({ reason: 'unknown-tid' });
    const error = encodeTftp({ opcode: Opcode.ERROR, code: TftpErrorCode.UNKNOWN_TID, message: 'unknown transfer ID' });
    try {
      if (this.pump) this.pump.send(error, rinfo.port, rinfo.address);
      else this.socket?.send(error, rinfo.port, rinfo.address);
    } catch {
      // closing
    }
  }

  private onMessage(buf: Buffer, rinfo: Endpoint): void {
    if (this.closed) return;
    if (rinfo.port !== this.client.port || rinfo.address !== this.client.address) return this.onStranger(rinfo);
    this.onClientDatagram(buf);
  }

  private onClientDatagram(buf: Buffer): void {
    let packet: TftpPacket;
    try {
      // The hot path of a transfer is a 4-byte ACK: read it without the general decoder.
      packet = buf.length === 4 && buf.readUInt16BE(0) === Opcode.ACK ? { opcode: Opcode.ACK, block: buf.readUInt16BE(2) } : decodeTftp(buf);
    } catch (err) {
      this.server.metrics.dropped.inc({ reason: 'malformed' });
      this.server.log.debug({ ...this.fields, err: (err as Error).message }, 'tftp malformed packet dropped');
      return;
    }
    this.dispatch({ type: 'packet', packet });
  }

  private onPumpEvent(kind: PumpEvent, data: Buffer | undefined, address: string | undefined, number: number): void {
    if (this.closed) return;
    try {
      switch (kind) {
        case PumpEvent.PACKET:
          if (data) this.onClientDatagram(data);
          break;
        case PumpEvent.STRANGER:
          if (address !== undefined) this.onStranger({ address, port: number });
          break;
        case PumpEvent.LOW:
          // The pump's queue is low: apply its progress, which asks for the next read.
          this.syncPump();
          this.feedPump();
          break;
        case PumpEvent.RECV_ERROR:
          this.server.log.debug({ ...this.fields, errno: number }, 'tftp transfer socket error');
          break;
      }
    } catch (err) {
      // Nothing thrown on the packet path escapes (it would reach the process from a native callback).
      this.server.log.error({ ...this.fields, err }, 'tftp fast-path event failed');
      try {
        this.dispatch({ type: 'abort', reason: 'internal error' });
      } catch {
        // already logged; the transfer's timer or shutdown ends it
      }
    }
  }

  private dispatch(event: TransferEvent): void {
    if (this.closed) return;
    if (this.pump) this.syncPump();
    this.apply(event);
    if (this.pump) this.feedPump();
  }

  private apply(event: TransferEvent): void {
    if (this.closed) return;
    const { state, actions } = step(this.state, event);
    this.state = state;
    for (const action of actions) this.execute(action, actions);
  }

  /** Applies what the pump answered since the last look as one `pumped` event. */
  private syncPump(): void {
    if (this.closed || !this.pumpSocket) return;
    const counters = this.pumpSocket.counters;
    const count = (counters[0] as number) - this.pumpSeen;
    if (count === 0) return;
    this.pumpSeen = counters[0] as number;
    if (this.pumpInflight !== undefined) this.pumpInflight += count;
    const bytesBefore = this.state.stats.dataBytes;
    this.armBaseMs = counters[1] as number;
    try {
      this.apply({ type: 'pumped', count });
    } finally {
      this.armBaseMs = undefined;
    }
    this.unreportedBytes += this.state.stats.dataBytes - bytesBefore;
  }

  /**
   * Makes the pump hold what the state says: the block in flight (lock step, data phase, one
   * block out) and every block in memory after it; or nothing, so that every ACK comes here.
   */
  private feedPump(): void {
    const pump = this.pump;
    if (!pump || this.closed) return;
    const s = this.state;
    if (s.phase !== 'data' || s.config.windowsize !== 1 || s.sentUpTo !== s.base) {
      if (this.pumpInflight !== undefined) {
        pump.reset(-1);
        this.pumpInflight = undefined;
      }
      return;
    }
    if (this.pumpInflight !== s.base) {
      pump.reset(wireBlock(s.base));
      this.pumpInflight = s.base;
      this.pumpThrough = s.base;
    }
    const last = s.base + bufferedBlocks(s) - 1;
    if (last > this.pumpThrough) {
      const packetBytes = DATA_HEADER_BYTES + s.config.blksize;
      // Hand the blocks over in runs that lie back to back in one buffer (one read's datagrams).
      const end = s.blockIndex + (last - s.base);
      let first = s.blockIndex + (this.pumpThrough + 1 - s.base);
      while (first <= end) {
        const start = (s.blocks[first] as SendData).datagram;
        let next = start.byteOffset + start.length;
        let i = first + 1;
        for (; i <= end; i++) {
          const d = (s.blocks[i] as SendData).datagram;
          if (d.buffer !== start.buffer || d.byteOffset !== next) break;
          next += d.length;
        }
        pump.append(Buffer.from(start.buffer, start.byteOffset, next - start.byteOffset), packetBytes);
        first = i;
      }
      this.pumpThrough = last;
    }
    // maybeRead reads when fewer than 1 + ceil(readAheadBlocks / 2) blocks are left from base.
    const wantsRead = s.pendingRead === undefined && s.finalBlock === undefined;
    let mark = wantsRead ? Math.max(0, Math.ceil(s.config.readAheadBlocks / 2) - 1) : -1;
    // After a backoff the timer is due late; the first progress resets the timeout, so hear of it
    // at once (the next answered ACK) to bring the deadline back in.
    if (s.timeoutMs > s.config.initialTimeoutMs) mark = Math.max(mark, last - s.base - 1);
    pump.notifyWhenLeft(mark);
  }

  private execute(action: TransferAction, batch: readonly TransferAction[]): void {
    switch (action.type) {
      case 'sendData':
        if (action.retransmit) this.server.metrics.retransmits.inc();
        this.sendDatagram(action.datagram);
        this.unreportedBytes += action.payloadBytes;
        break;
      case 'send':
        this.send(action.packet, action.retransmit, batch[batch.length - 1]?.type === 'close');
        break;
      case 'armTimer':
        this.armTimer(action.ms);
        break;
      case 'cancelTimer':
        this.deadlineMs = undefined; // a timer still pending finds nothing armed when it fires
        break;
      case 'read':
        this.reportBytes();
        void this.read(action.offsetBytes, action.lengthBytes);
        break;
      case 'close':
        void this.finish(action);
        break;
    }
  }

  private sendDatagram(datagram: Buffer): void {
    try {
      if (this.pump) {
        const errno = this.pump.send(datagram);
        if (errno !== 0) this.server.log.debug({ ...this.fields, errno }, 'tftp send failed');
      } else {
        this.socket?.send(datagram, this.client.port, this.client.address);
      }
    } catch (err) {
      this.server.log.debug({ ...this.fields, err: (err as Error).message }, 'tftp send failed');
    }
  }

  private armTimer(ms: number): void {
    const now = Date.now();
    const deadlineMs = (this.armBaseMs ?? now) + ms;
    this.deadlineMs = deadlineMs;
    if (this.timer && this.timerDueMs <= deadlineMs) return; // it fires first, then sleeps on
    if (this.timer) clearTimeout(this.timer); // due later than the new deadline (a shorter timeout)
    this.schedule(Math.max(1, deadlineMs - now));
  }

  private schedule(ms: number): void {
    this.timerDueMs = Date.now() + ms;
    this.timer = setTimeout(this.onTimer, ms);
  }

  private readonly onTimer = (): void => {
    this.timer = undefined;
    if (this.closed) return;
    if (this.pump) {
      // Progress the pump made since the last event moves the deadline first.
      this.syncPump();
      this.feedPump();
    }
    if (this.closed || this.deadlineMs === undefined) return;
    const leftMs = this.deadlineMs - Date.now();
    if (leftMs > 0) return this.schedule(leftMs);
    this.deadlineMs = undefined;
    this.dispatch({ type: 'timeout' });
  };

  private lastSend: Promise<void> | undefined;
  /** DATA bytes sent but not yet added to pxeha_tftp_bytes_total (added per read and at the end, not per packet). */
  private unreportedBytes = 0;

  private reportBytes(): void {
    if (this.unreportedBytes === 0) return;
    this.server.metrics.bytes.inc(this.unreportedBytes);
    this.unreportedBytes = 0;
  }

  /** An OACK or ERROR (DATA goes out as the state machine's prepared datagrams). */
  private send(packet: TftpPacket, retransmit: boolean, beforeClose: boolean): void {
    const metrics = this.server.metrics;
    if (retransmit) metrics.retransmits.inc();
    const socket = this.socket;
    if (!socket) return this.sendDatagram(encodeTftp(packet)); // the pump sends at once (or keeps it)
    try {
      if (beforeClose) {
        // The last packet before close (an ERROR): close the socket only once it has gone out.
        this.lastSend = new Promise((resolve) => socket.send(encodeTftp(packet), this.client.port, this.client.address, () => resolve()));
      } else {
        socket.send(encodeTftp(packet), this.client.port, this.client.address);
      }
    } catch (err) {
      this.server.log.debug({ ...this.fields, err: (err as Error).message }, 'tftp send failed');
    }
  }

  /** Reused by every read: the state machine copies what it keeps out of a read's data. */
  private readBuffer: Buffer | undefined;

  private async read(offsetBytes: number, lengthBytes: number): Promise<void> {
    try {
      if (!this.readBuffer || this.readBuffer.length < lengthBytes) this.readBuffer = Buffer.allocUnsafe(lengthBytes);
      const buffer = this.readBuffer.length === lengthBytes ? this.readBuffer : this.readBuffer.subarray(0, lengthBytes);
      let filled = 0;
      // A short read from a regular file means end of file, but keep reading until it says 0.
      for (;;) {
        const { bytesRead } = await this.file.read(buffer, filled, lengthBytes - filled, offsetBytes + filled);
        if (bytesRead === 0) break;
        filled += bytesRead;
        if (filled === lengthBytes || this.closed) break;
      }
      this.dispatch({ type: 'read', offsetBytes, data: filled === lengthBytes ? buffer : buffer.subarray(0, filled) });
    } catch (err) {
      this.dispatch({ type: 'readFailed', message: (err as Error).message });
    }
  }

  private async finish(action: Extract<TransferAction, { type: 'close' }>): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.deadlineMs = undefined;
    // The pump stops answering at once (no event after close): the state's count is final.
    this.pump?.close();
    const metrics = this.server.metrics;
    this.reportBytes();
    metrics.transfers.inc({ result: action.result });
    const { stats } = action;
    this.server.log.info(
      {
        ...this.fields,
        result: action.result,
        detail: action.detail,
        bytes: stats.dataBytes,
        blocks: stats.blocksAcked,
        retransmits: stats.retransmits,
        ms: Date.now() - this.startedMs,
      },
      'tftp transfer finished',
    );
    await this.lastSend;
    await Promise.all([this.socket ? closeSocket(this.socket) : undefined, this.file.close().catch(() => undefined)]);
    if (action.result === TransferResult.OK) this.server.transferDone(this.client.address, String(this.fields['file'] ?? ''));
    this.server.forget(this);
    this.resolveDone();
  }
}

/** Internal: the listening sockets and the table of transfers. */
class Server implements TftpServer {
  readonly metrics: TftpMetrics;
  readonly registry: Registry;
  readonly log: Logger;
  readonly policy: TftpPolicy;
  private readonly listeners: { socket: dgram.Socket; address: string; port: number }[] = [];
  /** client "address:port" → transfer, or 'opening' while its file is being opened. */
  private readonly transfers = new Map<string, Transfer | 'opening'>();
  private readonly openings = new Set<Promise<void>>();
  /** Read-ahead bytes held by transfers with a large read-ahead (policy.readAheadPoolBytes). */
  private pooledReadAheadBytes = 0;
  private closing = false;
  private closed: Promise<void> | undefined;

  constructor(
    private readonly root: string,
    nodeMetrics: Metrics,
    log: Logger,
    policy: TftpPolicy,
    private readonly maxTransfers: number,
    private readonly onTransferDone: TftpServerOptions['onTransferDone'],
    private readonly images: ImageFileSources | undefined,
    /** The native fast path's class, when lock-step transfers use it. */
    private readonly TftpPump: TftpPumpConstructor | undefined,
  ) {
    this.metrics = new TftpMetrics(nodeMetrics);
    this.registry = nodeMetrics.registry;
    this.log = log;
    this.policy = policy;
  }

  get port(): number {
    return this.listeners[0]?.port ?? 0;
  }

  get addresses(): readonly Endpoint[] {
    return this.listeners.map(({ address, port }) => ({ address, port }));
  }

  get activeTransfers(): number {
    return this.transfers.size;
  }

  async listen(address: string, port: number): Promise<number> {
    const socket = createUdpSocket();
    await bindSocket(socket, address, port);
    const bound = socket.address().port;
    this.listeners.push({ socket, address, port: bound });
    socket.on('message', (buf, rinfo) => this.onRequest(socket, address, buf, rinfo));
    socket.on('error', (err) => this.log.warn({ address, err: err.message }, 'tftp listening socket error'));
    return bound;
  }

  forget(transfer: Transfer): void {
    this.pooledReadAheadBytes -= transfer.pooledReadAheadBytes;
    for (const [key, value] of this.transfers) {
      if (value === transfer) {
        this.transfers.delete(key);
        break;
      }
    }
    this.metrics.active.set(this.transfers.size);
  }

  private refuse(listener: dgram.Socket, client: Endpoint, r: Refusal, fields: Record<string, unknown>): void {
    this.metrics.refused.inc({ reason: r.reason });
    if (PATH_REASONS.has(r.reason)) this.metrics.artifactRefused.inc({ protocol: 'tftp', reason: r.reason });
    this.log.info({ ...fields, reason: r.reason, code: r.code, message: r.message }, 'tftp request refused');
    if (this.closing) return;
    try {
      listener.send(encodeTftp({ opcode: Opcode.ERROR, code: r.code, message: wireText(r.message) }), client.port, client.address);
    } catch {
      // The listening socket closed under us: shutdown.
    }
  }

  transferDone(clientAddress: string, file: string): void {
    try {
      this.onTransferDone?.(clientAddress, file);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'tftp transfer-done hook failed');
    }
  }

  private onRequest(listener: dgram.Socket, localAddress: string, buf: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.closing) return;
    const client: Endpoint = { address: rinfo.address, port: rinfo.port };
    const fields: Record<string, unknown> = { client: `${client.address}:${client.port}` };
    let packet: TftpPacket;
    try {
      packet = decodeTftp(buf);
    } catch (err) {
      const opcode = buf.length >= 2 ? buf.readUInt16BE(0) : -1;
      if (opcode === Opcode.RRQ || opcode === Opcode.WRQ) {
        const detail = err instanceof DecodeError ? err.message : String(err);
        this.refuse(listener, client, refusal('malformed', `malformed request: ${detail}`), fields);
      } else {
        this.metrics.dropped.inc({ reason: 'malformed' });
      }
      return;
    }
    if (packet.opcode === Opcode.WRQ) {
      this.refuse(listener, client, refusal('write-request', 'read-only server'), { ...fields, file: packet.filename });
      return;
    }
    if (packet.opcode !== Opcode.RRQ) {
      this.metrics.dropped.inc({ reason: 'not-a-request' });
      return;
    }
    const key = `${client.address}:${client.port}`;
    if (this.transfers.has(key)) {
      this.metrics.dropped.inc({ reason: 'duplicate-request' });
      return;
    }
    Object.assign(fields, { file: packet.filename, mode: packet.mode });
    if (packet.mode !== TransferMode.OCTET && packet.mode !== TransferMode.NETASCII) {
      this.refuse(listener, client, refusal('bad-mode', `mode ${JSON.stringify(packet.mode)} not supported`), fields);
      return;
    }
    if (this.transfers.size >= this.maxTransfers) {
      this.refuse(listener, client, refusal('busy', 'server busy'), fields);
      return;
    }
    this.transfers.set(key, 'opening');
    this.metrics.active.set(this.transfers.size);
    const opening = this.begin(listener, localAddress, client, packet, packet.mode, fields)
      .catch((err: unknown) => {
        this.log.error({ ...fields, err }, 'tftp request failed');
        if (this.transfers.get(key) === 'opening') this.transfers.delete(key);
      })
      .finally(() => {
        this.openings.delete(opening);
        this.metrics.active.set(this.transfers.size);
      });
    this.openings.add(opening);
  }

  private async begin(
    listener: dgram.Socket,
    localAddress: string,
    client: Endpoint,
    request: RequestPacket,
    mode: ReadMode,
    fields: Record<string, unknown>,
  ): Promise<void> {
    const key = `${client.address}:${client.port}`;
    const opened = this.openImage(request.filename) ?? (await openForRead(this.root, request.filename));
    if (!opened.ok) {
      this.transfers.delete(key);
      this.refuse(listener, client, opened, fields);
      return;
    }
    if (this.closing) {
      this.transfers.delete(key);
      await opened.handle.close();
      return;
    }
    const negotiated = negotiateRead(request.options, mode, opened.size, this.policy);
    let io: TransferIo;
    let tid: number;
    try {
      if (this.TftpPump && negotiated.windowsize === 1) {
        // Lock step: the native fast path (a window keeps dgram, which queues a burst when the
        // socket buffer is full).
        const socket = new PumpSocket(this.TftpPump, localAddress, client);
        io = { kind: 'pump', socket };
        tid = socket.pump.port();
        if (!socket.connected) this.log.debug({ ...fields, tid }, 'tftp: fast path without a connected socket');
      } else {
        const socket = await openTransferSocket(localAddress);
        io = { kind: 'dgram', socket };
        tid = socket.address().port;
      }
    } catch (err) {
      this.transfers.delete(key);
      await opened.handle.close();
      this.log.warn({ ...fields, err: (err as Error).message }, 'tftp: no socket for a transfer');
      return;
    }
    const readAheadBytes = this.takeReadAhead(opened.size);
    const pooled = readAheadBytes === this.policy.readAheadBytes ? 0 : readAheadBytes;
    const state = initialTransferState(transferConfig(mode, negotiated, { ...this.policy, readAheadBytes }));
    Object.assign(fields, { blksize: negotiated.blksize, windowsize: negotiated.windowsize, readAheadBytes, tid, io: io.kind });
    const transfer = new Transfer(io, pooled, client, opened.handle, state, this, fields);
    this.transfers.set(key, transfer);
    this.log.debug({ ...fields, size: opened.size, options: Object.fromEntries(request.options) }, 'tftp transfer started');
    transfer.start();
    if (this.closing) transfer.abort(SHUTDOWN_MESSAGE);
  }

  /**
   * The read-ahead of a new transfer of a `sizeBytes` file: the large one while the pool has room
   * for it (and the file is bigger than the default read-ahead), else the default.
   */
  private takeReadAhead(sizeBytes: number): number {
    const { readAheadBytes, largeReadAheadBytes, readAheadPoolBytes } = this.policy;
    if (largeReadAheadBytes <= readAheadBytes || sizeBytes <= readAheadBytes) return readAheadBytes;
    if (this.pooledReadAheadBytes + largeReadAheadBytes > readAheadPoolBytes) return readAheadBytes;
    this.pooledReadAheadBytes += largeReadAheadBytes;
    return largeReadAheadBytes;
  }

  /**
   * A pinned image path opened as one verified chunk stream, a refusal, or undefined for any
   * other path (an artifact under the root). The path rules are the artifacts' (leading `/`,
   * `..`, NUL, length) before the image rules.
   */
  private openImage(filename: string): ({ ok: true; handle: ReadSource; size: number } | ({ ok: false } & Refusal)) | undefined {
    if (!this.images) return undefined;
    const name = filenameToPath(filename);
    const checked = name === undefined ? undefined : checkRequestPath(name);
    if (!checked?.ok) return undefined; // openForRead refuses it with its reason
    const found = findImageFile(checked.relative, this.images);
    if (!found) return undefined;
    if (!found.ok) return { ok: false, ...refusal(found.reason === 'bad-path' ? 'bad-image-path' : found.reason, found.message) };
    const source = new ImageFileSource(found.file, this.images.chunks);
    return { ok: true, handle: source, size: source.size };
  }

  close(): Promise<void> {
    this.closed ??= this.shutdown();
    return this.closed;
  }

  private async shutdown(): Promise<void> {
    this.closing = true;
    await Promise.all(this.listeners.map((l) => closeSocket(l.socket)));
    await Promise.all([...this.openings]);
    const running = [...this.transfers.values()].filter((t): t is Transfer => t !== 'opening');
    for (const transfer of running) transfer.abort(SHUTDOWN_MESSAGE);
    await Promise.all(running.map((t) => t.done));
    this.metrics.active.set(0);
  }
}

/** Starts a read-only TFTP server on `address` (each, when several) and `port`. */
export async function startTftpServer(options: TftpServerOptions): Promise<TftpServer> {
  let root: string;
  try {
    root = await realpath(options.root);
  } catch (err) {
    throw new PxehaError('PXE_ERR_CONFIG_INVALID', `tftp root ${options.root}: ${(err as Error).message}`, { cause: err });
  }
  const policy: TftpPolicy = { ...DEFAULT_TFTP_POLICY, ...options.policy };
  const log = options.log ?? silentLogger();
  let TftpPump: TftpPumpConstructor | undefined;
  if (options.native ?? process.env['PXEHA_TFTP_NATIVE'] !== '0') {
    const loaded = loadTftpPump();
    if (loaded.ok) TftpPump = loaded.TftpPump;
    else log.warn({ reason: loaded.reason }, 'tftp: native fast path unavailable; lock-step transfers take the JS path');
  }
  const server = new Server(root, options.metrics ?? new Metrics(), log, policy, options.maxTransfers ?? 1000, options.onTransferDone, options.images, TftpPump);
  const addresses = options.address === undefined ? ['0.0.0.0'] : typeof options.address === 'string' ? [options.address] : [...options.address];
  let port = options.port ?? 69;
  try {
    for (const address of addresses) {
      // With port 0 the first socket picks a port and the others take the same one.
      port = await server.listen(address, port);
    }
  } catch (err) {
    await server.close();
    throw err;
  }
  return server;
}
