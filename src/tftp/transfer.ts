/**
 * One TFTP read transfer (server → client) as a pure state machine:
 *
 *   step(state, event) → { state, actions }
 *
 * No sockets, no timers, no file system, no clock. The adapter (server.ts) turns datagrams,
 * timer expiries and read results into events and carries out the actions: send a packet, arm
 * or cancel the one retransmission timer, read a range of the file, close. File data is asked
 * for with `read` actions and comes back as `read` events, so the file is streamed: the state
 * holds at most the blocks of the current window plus `readAheadBlocks` (and, in netascii, less
 * than one block of converted bytes; acknowledged blocks are dropped when the next read is
 * absorbed) — never the file. Blocks are held as ready DATA datagrams (SendData), so the hot path
 * — an ACK in, the next block out — encodes and copies nothing.
 *
 * Protocol behaviour, with the rule each follows:
 * - Options (RFC 2347 §2): with anything acknowledged, send OACK and wait for ACK 0; an ERROR
 *   instead (code 8 "option negotiation refused", or any other) ends the transfer silently.
 *   Without options, DATA 1 goes first (RFC 1350 §6).
 * - Window (RFC 7440 §4): up to `windowsize` DATA blocks are sent without waiting; an ACK of any
 *   block in flight acknowledges it and every block before it, and sending resumes from the block
 *   after it — which re-sends the rest of the window when the ACK was partial (the client saw a
 *   gap). Windowsize 1 is RFC 1350 lock step.
 * - Duplicate ACKs (the ACK of the block before the window) are ignored: re-sending on them is
 *   the Sorcerer's Apprentice bug (RFC 1123 §4.2.3.1). Only the timer re-sends.
 * - Retransmission: when the timer expires the window (or OACK) is sent again and the timeout
 *   doubles, up to `maxTimeoutMs`; after `maxRetries` re-sends with no progress the transfer
 *   closes with 'timeout'. Any ACK that moves the window resets both.
 * - Block numbers are 16 bits on the wire and wrap from 65535 to 0 (RFC 1350 sets no limit; this
 *   is what tftp-hpa, curl and iPXE expect). Internally blocks are absolute (1, 2, … past 65535).
 * - End: a DATA block shorter than blksize is the last one (RFC 1350 §6). When the (converted)
 *   size is an exact multiple of blksize — including an empty file — the last block is empty.
 *   The transfer succeeds when that block is acknowledged.
 * - Netascii (RFC 1350 §5, see netascii.ts): converted while streaming; block boundaries fall
 *   on converted bytes, so reads carry a tail of less than one block to the next read.
 * - Lock step may be carried by the adapter's native fast path between events: it answers the
 *   ACK of the block in flight with the next block in memory, then reports how many it answered
 *   as one `pumped` event, which this machine applies exactly as those ACKs (no send).
 * - Any other packet from the client (DATA, OACK, a request) is an illegal operation: ERROR 4 and
 *   close. An abort (server shutdown) sends ERROR 0 with the reason; a failed read sends ERROR 0.
 */
import { BLOCK_NUMBER_MODULUS, Opcode, OpcodeName, TftpErrorCode, TransferMode, tftpErrorName } from '../protocol/tftp/codes.js';
import { toNetascii } from '../protocol/tftp/netascii.js';
import { DATA_HEADER_BYTES, writeDataPacket, type TftpPacket } from '../protocol/tftp/packet.js';
import type { Negotiated, ReadMode, TftpPolicy } from './negotiate.js';

export const TransferResult = {
  OK: 'ok',
  /** No progress after maxRetries re-sends. */
  TIMEOUT: 'timeout',
  /** The client sent an ERROR (e.g. 8 to refuse the OACK, or a PXE ROM's size-only probe). */
  CLIENT_ERROR: 'client-error',
  /** Stopped by the server (shutdown). */
  ABORTED: 'aborted',
  READ_ERROR: 'read-error',
  /** The client sent something that makes no sense here. */
  PROTOCOL_ERROR: 'protocol-error',
} as const;
export type TransferResult = (typeof TransferResult)[keyof typeof TransferResult];

export interface TransferConfig {
  readonly mode: ReadMode;
  readonly blksize: number;
  readonly windowsize: number;
  /** The OACK to send first; undefined to start with DATA 1. */
  readonly oack: ReadonlyMap<string, string> | undefined;
  readonly initialTimeoutMs: number;
  readonly maxTimeoutMs: number;
  readonly maxRetries: number;
  /** Blocks read ahead of the window (policy.readAheadBytes in blocks). */
  readonly readAheadBlocks: number;
}

export interface TransferStats {
  /** DATA packets sent, re-sends included. */
  readonly dataPackets: number;
  /** DATA payload bytes sent, re-sends included. */
  readonly dataBytes: number;
  /** Packets (DATA or OACK) sent again. */
  readonly retransmits: number;
  readonly timeouts: number;
  /** ACKs ignored because they acknowledged nothing new. */
  readonly duplicateAcks: number;
  /** Blocks the client acknowledged. */
  readonly blocksAcked: number;
}

export type Phase = 'new' | 'oack' | 'data' | 'closed';

/**
 * A block ready to go out, and the action that sends it: its whole DATA datagram (header and
 * payload, as `encodeTftp` would write it), laid out once when the block is read. Sending it
 * again, or the next block in lock step, costs no encoding and no allocation: the hot path of
 * a transfer is one ACK in, one of these out.
 */
export interface SendData {
  readonly type: 'sendData';
  /** The 16-bit wire block number. */
  readonly block: number;
  /** The DATA datagram: 4-byte header, then the payload. */
  readonly datagram: Buffer;
  /** Payload bytes (datagram length − 4). */
  readonly payloadBytes: number;
  readonly retransmit: boolean;
}

export interface TransferState {
  readonly config: TransferConfig;
  readonly phase: Phase;
  /** Absolute number (from 1) of the first block not yet acknowledged. */
  readonly base: number;
  /** Highest block sent since the window last (re)started; base − 1 when none. */
  readonly sentUpTo: number;
  /** Highest block ever sent, to tell re-sends apart. */
  readonly highestSent: number;
  /**
   * Blocks in memory as ready DATA datagrams: `blocks[blockIndex]` is block `base`, and those
   * after it follow (blksize payload bytes each, the final one shorter). Entries before
   * `blockIndex` are acknowledged ones not yet dropped: an ACK moves the index instead of
   * copying the array, which is rebuilt (live blocks only) when a read is absorbed. The array is
   * never changed once a state holds it, so states stay immutable.
   */
  readonly blocks: readonly SendData[];
  readonly blockIndex: number;
  /** Absolute number of the final (short) block, once the end of the file has been read. */
  readonly finalBlock: number | undefined;
  /** Converted bytes read but not yet a whole block (netascii, or a short read). */
  readonly tail: Buffer;
  /** File offset of the next read. */
  readonly readOffsetBytes: number;
  /** The read in flight (at most one). */
  readonly pendingRead: { readonly offsetBytes: number; readonly lengthBytes: number } | undefined;
  readonly retries: number;
  readonly timeoutMs: number;
  readonly timerArmed: boolean;
  readonly stats: TransferStats;
}

export type TransferEvent =
  | { type: 'start' }
  /** A decoded datagram from the client's TID (the adapter answers strangers itself). */
  | { type: 'packet'; packet: TftpPacket }
  /**
   * Result of a `read` action; fewer bytes than asked for means end of file. `step` copies what
   * it keeps (into its prepared datagrams), so the adapter may reuse `data`'s memory afterwards.
   */
  | { type: 'read'; offsetBytes: number; data: Buffer }
  | { type: 'readFailed'; message: string }
  /** The timer armed last has expired. */
  | { type: 'timeout' }
  /**
   * The adapter's lock-step fast path (native/tftp_pump.c) answered `count` ACKs on its own: each
   * the ACK of the block then in flight, each answered with the next block in memory, in order.
   * Applied as those ACKs and sends would have been: blocks acknowledged, DATA counted, base moved,
   * retries and timeout reset, the timer re-armed, more file asked for. Sends nothing (the blocks
   * went out). Ignored outside lock step with one block in flight; never more than the blocks in
   * memory after it (the fast path never answers the ACK of the final block: that one is a packet).
   */
  | { type: 'pumped'; count: number }
  | { type: 'abort'; reason: string };

export type TransferAction =
  /** A DATA block (see SendData). */
  | SendData
  /** Any other packet (OACK, ERROR): encoded by the adapter. */
  | { type: 'send'; packet: TftpPacket; retransmit: boolean }
  /** (Re)arm the transfer's single timer; replaces any armed one. */
  | { type: 'armTimer'; ms: number }
  | { type: 'cancelTimer' }
  /** Read up to `lengthBytes` at `offsetBytes`; answer with a `read` event (short = EOF). */
  | { type: 'read'; offsetBytes: number; lengthBytes: number }
  /** Final action: release the socket and file. Sends listed before it still go out. */
  | { type: 'close'; result: TransferResult; detail: string; stats: TransferStats };

export interface StepResult {
  state: TransferState;
  actions: TransferAction[];
}

const EMPTY = Buffer.alloc(0);

/** The transfer configuration for negotiated options under a server policy. */
export function transferConfig(mode: ReadMode, negotiated: Negotiated, policy: TftpPolicy): TransferConfig {
  const initialTimeoutMs = negotiated.timeoutMs ?? policy.initialTimeoutMs;
  return {
    mode,
    blksize: negotiated.blksize,
    windowsize: negotiated.windowsize,
    oack: negotiated.oack,
    initialTimeoutMs,
    maxTimeoutMs: Math.max(policy.maxTimeoutMs, initialTimeoutMs),
    maxRetries: policy.maxRetries,
    readAheadBlocks: Math.ceil(policy.readAheadBytes / negotiated.blksize),
  };
}

export function initialTransferState(config: TransferConfig): TransferState {
  return copyState({
    config,
    phase: 'new',
    base: 1,
    sentUpTo: 0,
    highestSent: 0,
    blocks: [],
    blockIndex: 0,
    finalBlock: undefined,
    tail: EMPTY,
    readOffsetBytes: 0,
    pendingRead: undefined,
    retries: 0,
    timeoutMs: config.initialTimeoutMs,
    timerArmed: false,
    stats: { dataPackets: 0, dataBytes: 0, retransmits: 0, timeouts: 0, duplicateAcks: 0, blocksAcked: 0 },
  });
}

/** Blocks held in memory from `base` on (the memory bound: at most window + read-ahead). */
export function bufferedBlocks(state: TransferState): number {
  return state.blocks.length - state.blockIndex;
}

/** The 16-bit wire number of an absolute block number. */
export function wireBlock(block: number): number {
  return block % BLOCK_NUMBER_MODULUS;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

function copyStats(t: TransferStats): Mutable<TransferStats> {
  return {
    dataPackets: t.dataPackets,
    dataBytes: t.dataBytes,
    retransmits: t.retransmits,
    timeouts: t.timeouts,
    duplicateAcks: t.duplicateAcks,
    blocksAcked: t.blocksAcked,
  };
}

/**
 * A copy of a state, every field written out in one fixed order: V8 gives every state the same
 * hidden class and copies it on its fast path (a `{...state}` spread of this object went
 * through CloneObjectIC_Slow, and Object.assign through map transitions, in the profile of
 * every ACK).
 */
function copyState(s: TransferState): Mutable<TransferState> {
  return {
    config: s.config,
    phase: s.phase,
    base: s.base,
    sentUpTo: s.sentUpTo,
    highestSent: s.highestSent,
    blocks: s.blocks,
    blockIndex: s.blockIndex,
    finalBlock: s.finalBlock,
    tail: s.tail,
    readOffsetBytes: s.readOffsetBytes,
    pendingRead: s.pendingRead,
    retries: s.retries,
    timeoutMs: s.timeoutMs,
    timerArmed: s.timerArmed,
    stats: copyStats(s.stats),
  };
}

/**
 * Builds the next state of one step: a copy of the old state (and of its stats) made once, then
 * updated in place, so `step` stays pure without copying the state for every field it changes.
 */
class Step {
  readonly actions: TransferAction[] = [];
  readonly s: Mutable<TransferState>;
  readonly stats: Mutable<TransferStats>;

  constructor(state: TransferState) {
    this.s = copyState(state);
    this.stats = this.s.stats as Mutable<TransferStats>;
  }

  arm(): void {
    this.actions.push({ type: 'armTimer', ms: this.s.timeoutMs });
    this.s.timerArmed = true;
  }

  disarm(): void {
    if (!this.s.timerArmed) return;
    this.actions.push({ type: 'cancelTimer' });
    this.s.timerArmed = false;
  }

  close(result: TransferResult, detail: string, error?: { code: TftpErrorCode; message: string }): void {
    if (error) this.actions.push({ type: 'send', packet: { opcode: Opcode.ERROR, ...error }, retransmit: false });
    this.disarm();
    const s = this.s;
    s.phase = 'closed';
    s.blocks = [];
    s.blockIndex = 0;
    s.tail = EMPTY;
    s.pendingRead = undefined;
    this.actions.push({ type: 'close', result, detail, stats: copyStats(this.stats) });
  }

  sendOack(retransmit: boolean): void {
    const oack = this.s.config.oack;
    if (!oack) return;
    this.actions.push({ type: 'send', packet: { opcode: Opcode.OACK, options: new Map(oack) }, retransmit });
    if (retransmit) this.stats.retransmits++;
    this.arm();
  }

  /** Sends the window's blocks after sentUpTo that are in memory; arms or cancels the timer. */
  fill(): void {
    const s = this.s;
    const { base, blocks, blockIndex, config } = s;
    const windowEnd = Math.min(base + config.windowsize - 1, base + blocks.length - blockIndex - 1);
    const firstToSend = s.sentUpTo + 1;
    for (let block = firstToSend; block <= windowEnd; block++) {
      const prepared = blocks[blockIndex + block - base] as SendData;
      const retransmit = block <= s.highestSent;
      this.actions.push(
        retransmit
          ? { type: 'sendData', block: prepared.block, datagram: prepared.datagram, payloadBytes: prepared.payloadBytes, retransmit: true }
          : prepared,
      );
      this.stats.dataPackets++;
      this.stats.dataBytes += prepared.payloadBytes;
      if (retransmit) this.stats.retransmits++;
      s.sentUpTo = block;
    }
    s.highestSent = Math.max(s.highestSent, s.sentUpTo);
    if (s.sentUpTo >= base) {
      if (windowEnd >= firstToSend) this.arm();
    } else {
      // Nothing in flight: the window's data is still being read. The read's event resumes.
      this.disarm();
    }
  }

  /** Asks for more file data when the buffer has fallen below the window plus half the read-ahead. */
  maybeRead(): void {
    const { pendingRead, finalBlock, config, tail, readOffsetBytes } = this.s;
    if (pendingRead || finalBlock !== undefined) return;
    const buffered = bufferedBlocks(this.s);
    const lowWater = config.windowsize + Math.ceil(config.readAheadBlocks / 2);
    if (buffered >= lowWater) return;
    const wantBlocks = config.windowsize + config.readAheadBlocks - buffered;
    const lengthBytes = wantBlocks * config.blksize - tail.length;
    this.actions.push({ type: 'read', offsetBytes: readOffsetBytes, lengthBytes });
    this.s.pendingRead = { offsetBytes: readOffsetBytes, lengthBytes };
  }

  /**
   * Appends a read result to the buffered blocks, laid out as DATA datagrams in one new buffer
   * (header, payload, header, payload, …): one copy per read, none per send.
   */
  absorb(data: Buffer, lengthBytes: number): void {
    const s = this.s;
    const { blksize, mode } = s.config;
    const converted = mode === TransferMode.NETASCII ? toNetascii(data) : data;
    const joined = s.tail.length === 0 ? converted : Buffer.concat([s.tail, converted]);
    const eof = data.length < lengthBytes;
    const whole = Math.floor(joined.length / blksize);
    const restBytes = joined.length - whole * blksize;
    // With the end of the file read, the rest is the final block: shorter than blksize, possibly empty.
    const count = eof ? whole + 1 : whole;
    const blocks = s.blocks.slice(s.blockIndex);
    const first = s.base + blocks.length; // absolute number of the first new block
    const packed = Buffer.allocUnsafe(whole * (DATA_HEADER_BYTES + blksize) + (eof ? DATA_HEADER_BYTES + restBytes : 0));
    let at = 0;
    for (let i = 0; i < count; i++) {
      const payload = joined.subarray(i * blksize, Math.min((i + 1) * blksize, joined.length));
      const block = wireBlock(first + i);
      const length = writeDataPacket(packed, at, block, payload);
      blocks.push({ type: 'sendData', block, datagram: packed.subarray(at, at + length), payloadBytes: payload.length, retransmit: false });
      at += length;
    }
    s.blocks = blocks;
    s.blockIndex = 0;
    if (eof) {
      s.tail = EMPTY;
      s.finalBlock = first + count - 1;
    } else {
      // A copy: a view would keep the whole read buffer alive for less than one block.
      s.tail = restBytes === 0 ? EMPTY : Buffer.from(joined.subarray(whole * blksize));
    }
    s.pendingRead = undefined;
    s.readOffsetBytes += data.length;
  }

  /** Restarts the window at `base` after a timeout. */
  retransmit(): boolean {
    const s = this.s;
    this.stats.timeouts++;
    s.timerArmed = false;
    if (s.retries >= s.config.maxRetries) {
      this.close(TransferResult.TIMEOUT, `no ACK after ${s.retries + 1} sends of ${s.phase === 'oack' ? 'the OACK' : `block ${s.base}`}`);
      return false;
    }
    s.retries++;
    s.timeoutMs = Math.min(s.timeoutMs * 2, s.config.maxTimeoutMs);
    return true;
  }
}

/** Absolute block in [base − 1, sentUpTo] whose wire number is `wire`, if any. */
function matchAck(s: TransferState, wire: number): number | undefined {
  // sentUpTo − (base − 1) ≤ windowsize ≤ 65535, so at most one block in range has this number.
  const offset = (wire - wireBlock(s.base - 1) + BLOCK_NUMBER_MODULUS) % BLOCK_NUMBER_MODULUS;
  const block = s.base - 1 + offset;
  return block <= s.sentUpTo ? block : undefined;
}

function onAck(step: Step, wire: number): void {
  const s = step.s;
  if (s.phase === 'oack') {
    if (wire !== 0) return; // nothing but ACK 0 answers an OACK (RFC 2347 §2)
    s.phase = 'data';
    s.retries = 0;
    s.timeoutMs = s.config.initialTimeoutMs;
    step.fill();
    step.maybeRead();
    return;
  }
  const block = matchAck(s, wire);
  if (block === undefined) return; // not in flight: a stray or very late ACK
  if (block === s.base - 1) {
    step.stats.duplicateAcks++;
    return; // no re-send on a duplicate ACK: Sorcerer's Apprentice
  }
  step.stats.blocksAcked += block - s.base + 1;
  if (block === s.finalBlock) {
    step.close(TransferResult.OK, `${block} blocks acknowledged`);
    return;
  }
  // RFC 7440 §4: resume from the block after the one acknowledged.
  s.blockIndex += block - s.base + 1;
  s.base = block + 1;
  s.sentUpTo = block;
  s.retries = 0;
  s.timeoutMs = s.config.initialTimeoutMs;
  step.fill();
  step.maybeRead();
}

function onPumped(step: Step, count: number): void {
  const s = step.s;
  if (s.phase !== 'data' || s.config.windowsize !== 1 || s.sentUpTo !== s.base || !(count > 0)) return;
  // Blocks after the one in flight that are in memory; the final block's own ACK never counts here.
  const after = bufferedBlocks(s) - 1;
  const n = Math.min(Math.floor(count), s.finalBlock === undefined ? after : Math.min(after, s.finalBlock - s.base));
  if (n <= 0) return;
  const stats = step.stats;
  for (let i = 1; i <= n; i++) {
    const prepared = s.blocks[s.blockIndex + i] as SendData;
    stats.dataPackets++;
    stats.dataBytes += prepared.payloadBytes;
    if (s.base + i <= s.highestSent) stats.retransmits++;
  }
  stats.blocksAcked += n;
  s.blockIndex += n;
  s.base += n;
  s.sentUpTo = s.base;
  s.highestSent = Math.max(s.highestSent, s.sentUpTo);
  s.retries = 0;
  s.timeoutMs = s.config.initialTimeoutMs;
  step.arm();
  step.maybeRead();
}

/** The transfer's next state and the actions to carry out, in order. */
export function step(state: TransferState, event: TransferEvent): StepResult {
  if (state.phase === 'closed') return { state, actions: [] };
  const step = new Step(state);
  switch (event.type) {
    case 'start':
      if (state.phase !== 'new') break;
      if (state.config.oack) {
        step.s.phase = 'oack';
        step.sendOack(false);
      } else {
        step.s.phase = 'data';
      }
      step.maybeRead(); // in the OACK phase this reads ahead while the client answers
      break;
    case 'packet': {
      const packet = event.packet;
      if (state.phase === 'new') break;
      if (packet.opcode === Opcode.ACK) onAck(step, packet.block);
      else if (packet.opcode === Opcode.ERROR) {
        step.close(
          TransferResult.CLIENT_ERROR,
          `client sent ERROR ${packet.code} (${tftpErrorName(packet.code)}): ${packet.message}`,
        );
      } else {
        const name = OpcodeName[packet.opcode];
        step.close(TransferResult.PROTOCOL_ERROR, `client sent ${name} during a read transfer`, {
          code: TftpErrorCode.ILLEGAL_OPERATION,
          message: `unexpected ${name}`,
        });
      }
      break;
    }
    case 'read': {
      const pending = state.pendingRead;
      if (!pending || pending.offsetBytes !== event.offsetBytes) break; // not the read we asked for
      step.absorb(event.data, pending.lengthBytes);
      if (state.phase === 'data') step.fill();
      step.maybeRead();
      break;
    }
    case 'readFailed':
      step.close(TransferResult.READ_ERROR, `read failed: ${event.message}`, {
        code: TftpErrorCode.NOT_DEFINED,
        message: 'read error',
      });
      break;
    case 'timeout':
      if (!state.timerArmed) break; // a timer already cancelled or replaced
      if (!step.retransmit()) break;
      if (state.phase === 'oack') step.sendOack(true);
      else {
        step.s.sentUpTo = state.base - 1;
        step.fill();
      }
      break;
    case 'pumped':
      onPumped(step, event.count);
      break;
    case 'abort':
      step.close(TransferResult.ABORTED, event.reason, { code: TftpErrorCode.NOT_DEFINED, message: event.reason });
      break;
  }
  return { state: step.s, actions: step.actions };
}
