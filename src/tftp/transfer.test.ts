/**
 * Decision tables for the read-transfer state machine, driven by a fake clock: a harness plays
 * the adapter (answers reads from an in-memory file, keeps the one timer, records what was
 * sent) and each case scripts the client's side. No sockets and no real time.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Opcode, TftpErrorCode } from '../protocol/tftp/codes.js';
import { toNetascii } from '../protocol/tftp/netascii.js';
import { decodeTftp, encodeTftp, type TftpPacket } from '../protocol/tftp/packet.js';
import { FakeClock } from '../util/clock.js';
import { DEFAULT_TFTP_POLICY, negotiateRead, type ReadMode, type TftpPolicy } from './negotiate.js';
import {
  bufferedBlocks,
  initialTransferState,
  step,
  transferConfig,
  TransferResult,
  type TransferAction,
  type TransferEvent,
  type TransferState,
} from './transfer.js';

interface Sent {
  atMs: number;
  packet: TftpPacket;
  retransmit: boolean;
}

/** The adapter's part, in memory: reads served from `file`, one timer on a fake clock. */
class Harness {
  readonly clock = new FakeClock(0);
  state: TransferState;
  sent: Sent[] = [];
  reads: { offsetBytes: number; lengthBytes: number }[] = [];
  /** Reads not yet answered when `autoRead` is off. */
  heldReads: { offsetBytes: number; lengthBytes: number }[] = [];
  closed: Extract<TransferAction, { type: 'close' }> | undefined;
  timerDeadlineMs: number | undefined;
  /** Largest number of blocks the state ever held (the memory bound). */
  maxBufferedBlocks = 0;
  autoRead = true;
  failReads = false;

  constructor(
    readonly file: Buffer,
    options: Map<string, string> = new Map(),
    readonly mode: ReadMode = 'octet',
    policy: Partial<TftpPolicy> = {},
  ) {
    const fullPolicy = { ...DEFAULT_TFTP_POLICY, ...policy };
    const negotiated = negotiateRead(options, mode, file.length, fullPolicy);
    this.state = initialTransferState(transferConfig(mode, negotiated, fullPolicy));
  }

  dispatch(event: TransferEvent): void {
    const { state, actions } = step(this.state, event);
    this.state = state;
    this.maxBufferedBlocks = Math.max(this.maxBufferedBlocks, bufferedBlocks(state));
    const reads: { offsetBytes: number; lengthBytes: number }[] = [];
    for (const action of actions) {
      assert.equal(this.closed, undefined, `action ${action.type} after close`);
      switch (action.type) {
        case 'send':
          this.sent.push({ atMs: this.clock.now(), packet: action.packet, retransmit: action.retransmit });
          break;
        case 'sendData': {
          // The prepared datagram is exactly what goes on the wire: check it, then record it decoded.
          const packet = decodeTftp(action.datagram);
          assert.ok(packet.opcode === Opcode.DATA && packet.block === action.block && packet.data.length === action.payloadBytes);
          assert.deepStrictEqual(encodeTftp(packet), action.datagram);
          this.sent.push({ atMs: this.clock.now(), packet, retransmit: action.retransmit });
          break;
        }
        case 'armTimer':
          this.timerDeadlineMs = this.clock.now() + action.ms;
          break;
        case 'cancelTimer':
          this.timerDeadlineMs = undefined;
          break;
        case 'read':
          this.reads.push(action);
          reads.push(action);
          break;
        case 'close':
          this.closed = action;
          this.timerDeadlineMs = undefined;
          break;
      }
    }
    for (const read of reads) {
      if (this.autoRead) this.answerRead(read);
      else this.heldReads.push(read);
    }
  }

  answerRead(read: { offsetBytes: number; lengthBytes: number }): void {
    if (this.failReads) return this.dispatch({ type: 'readFailed', message: 'EIO' });
    const data = this.file.subarray(read.offsetBytes, read.offsetBytes + read.lengthBytes);
    this.dispatch({ type: 'read', offsetBytes: read.offsetBytes, data });
  }

  releaseReads(): void {
    const held = this.heldReads;
    this.heldReads = [];
    for (const read of held) this.answerRead(read);
  }

  start(): this {
    this.dispatch({ type: 'start' });
    return this;
  }

  ack(block: number): void {
    this.dispatch({ type: 'packet', packet: { opcode: Opcode.ACK, block } });
  }

  /** Acknowledges the last DATA of every batch sent until the transfer closes; the DATA sizes sent. */
  ackEachBatchToEnd(): number[] {
    const sent: number[] = [];
    while (!this.closed) {
      const batch = this.take();
      sent.push(...sizes(batch));
      const last = batch.at(-1)?.packet;
      if (last?.opcode === Opcode.DATA) this.ack(last.block);
      else break; // nothing to acknowledge: the test drives the rest
    }
    return sent;
  }

  /** Moves the fake clock, firing the timer if its deadline passes. */
  advance(ms: number): void {
    const target = this.clock.now() + ms;
    while (this.timerDeadlineMs !== undefined && this.timerDeadlineMs <= target) {
      this.clock.advance(this.timerDeadlineMs - this.clock.now());
      this.timerDeadlineMs = undefined;
      this.dispatch({ type: 'timeout' });
    }
    this.clock.advance(target - this.clock.now());
  }

  /** Everything sent since the last call. */
  take(): Sent[] {
    const out = this.sent;
    this.sent = [];
    return out;
  }

  /** A client that ACKs the last block of each window, until close; returns the received bytes. */
  runLockstepClient(maxSteps = 1_000_000): Buffer {
    const received: Buffer[] = [];
    let expected = 1;
    for (let i = 0; i < maxSteps && !this.closed; i++) {
      const batch = this.take();
      assert.ok(batch.length > 0, 'server went quiet');
      let last: number | undefined;
      for (const s of batch) {
        if (s.packet.opcode === Opcode.OACK) {
          last = 0;
          continue;
        }
        assert.equal(s.packet.opcode, Opcode.DATA);
        if (s.packet.opcode !== Opcode.DATA) continue;
        assert.equal(s.packet.block, expected % 65536, 'blocks arrive in order');
        received.push(s.packet.data);
        expected++;
        last = s.packet.block;
      }
      if (last !== undefined) this.ack(last);
    }
    return Buffer.concat(received);
  }
}

const pattern = (bytes: number): Buffer => {
  const b = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) b[i] = (i * 7 + (i >> 9)) & 0xff;
  return b;
};
const opts = (...pairs: [string, string][]) => new Map(pairs);
const blocks = (sent: Sent[]) => sent.map((s) => (s.packet.opcode === Opcode.DATA ? s.packet.block : `op${s.packet.opcode}`));
const sizes = (sent: Sent[]) => sent.map((s) => (s.packet.opcode === Opcode.DATA ? s.packet.data.length : -1));

describe('transfer: plain RFC 1350 lock step (no options)', () => {
  test('small file: DATA 1 short, ACK 1 → ok', () => {
    const h = new Harness(Buffer.from('hello')).start();
    const first = h.take();
    assert.deepStrictEqual(blocks(first), [1]);
    assert.deepStrictEqual(first[0]?.packet, { opcode: Opcode.DATA, block: 1, data: Buffer.from('hello') });
    assert.equal(h.timerDeadlineMs, 1000);
    h.ack(1);
    assert.equal(h.closed?.result, TransferResult.OK);
    assert.deepStrictEqual(h.take(), []);
  });

  test('0-byte file: a single empty DATA 1', () => {
    const h = new Harness(Buffer.alloc(0)).start();
    assert.deepStrictEqual(sizes(h.take()), [0]);
    h.ack(1);
    assert.equal(h.closed?.result, TransferResult.OK);
  });

  test('exact multiple of the block size ends with an empty block', () => {
    const file = pattern(512 * 3);
    const h = new Harness(file).start();
    assert.deepStrictEqual(h.runLockstepClient(), file);
    assert.equal(h.closed?.result, TransferResult.OK);
    assert.equal(h.closed?.stats.dataPackets, 4, 'three full blocks and an empty one');
  });

  test('one byte short of a multiple: the last block is 511 bytes, no empty block', () => {
    const h = new Harness(pattern(512 * 3 - 1)).start();
    const sent = h.ackEachBatchToEnd();
    assert.deepStrictEqual(sent, [512, 512, 511]);
  });

  test('an ACK for a block not yet sent, or long past, is ignored', () => {
    const h = new Harness(pattern(2000)).start();
    h.take();
    h.ack(2);
    h.ack(40000);
    assert.deepStrictEqual(h.take(), []);
    assert.equal(h.closed, undefined);
    h.ack(1);
    assert.deepStrictEqual(blocks(h.take()), [2]);
  });
});

describe('transfer: option negotiation (RFC 2347/2348/2349/7440)', () => {
  test('OACK first, in request order, then DATA 1 only after ACK 0', () => {
    const file = pattern(3000);
    const h = new Harness(file, opts(['tsize', '0'], ['blksize', '1468'], ['timeout', '3'], ['windowsize', '4'], ['multicast', ''])).start();
    const first = h.take();
    assert.deepStrictEqual(first.map((s) => s.packet), [
      {
        opcode: Opcode.OACK,
        options: opts(['tsize', '3000'], ['blksize', '1468'], ['timeout', '3'], ['windowsize', '4']),
      },
    ]);
    assert.equal(h.timerDeadlineMs, 3000, 'the negotiated timeout is the first retransmission timeout');
    h.ack(1); // not an answer to an OACK
    assert.deepStrictEqual(h.take(), []);
    h.ack(0);
    assert.deepStrictEqual(sizes(h.take()), [1468, 1468, 64]);
  });

  test('blksize and windowsize above the server limits are lowered; out-of-range values are not acknowledged', () => {
    const h = new Harness(pattern(10), opts(['blksize', '65464'], ['windowsize', '1000'], ['timeout', '0']), 'octet', {
      maxBlksize: 1468,
      maxWindowsize: 16,
    }).start();
    assert.deepStrictEqual(h.take()[0]?.packet, { opcode: Opcode.OACK, options: opts(['blksize', '1468'], ['windowsize', '16']) });
  });

  test('only unknown or invalid options: no OACK, DATA 1 with 512 bytes', () => {
    const h = new Harness(pattern(600), opts(['blksize', '4'], ['rollover', '0'])).start();
    assert.deepStrictEqual(sizes(h.take()), [512]);
  });

  test('client answers the OACK with ERROR 8: stop, send nothing', () => {
    const h = new Harness(pattern(600), opts(['blksize', '1024'])).start();
    h.take();
    h.dispatch({ type: 'packet', packet: { opcode: Opcode.ERROR, code: TftpErrorCode.OPTION_REFUSED, message: 'no' } });
    assert.deepStrictEqual(h.take(), []);
    assert.equal(h.closed?.result, TransferResult.CLIENT_ERROR);
    assert.match(h.closed?.detail ?? '', /ERROR 8 \(option negotiation refused\)/);
    assert.equal(h.timerDeadlineMs, undefined);
  });

  test('a lost OACK is re-sent with backoff', () => {
    const h = new Harness(pattern(600), opts(['tsize', '0'])).start();
    h.take();
    h.advance(1000);
    const again = h.take();
    assert.equal(again[0]?.packet.opcode, Opcode.OACK);
    assert.equal(again[0]?.retransmit, true);
    assert.equal(h.timerDeadlineMs, 1000 + 2000);
    h.ack(0);
    assert.deepStrictEqual(blocks(h.take()), [1]);
    assert.equal(h.timerDeadlineMs, 1000 + 1000, 'progress resets the timeout');
  });

  test('empty file: tsize is not acknowledged (curl refuses tsize 0), blksize is', () => {
    const h = new Harness(Buffer.alloc(0), opts(['tsize', '0'], ['blksize', '1468'])).start();
    assert.deepStrictEqual(h.take()[0]?.packet, { opcode: Opcode.OACK, options: opts(['blksize', '1468']) });
    h.ack(0);
    assert.deepStrictEqual(sizes(h.take()), [0]);
  });

  test('netascii: tsize is not acknowledged (the converted size is unknown up front)', () => {
    const h = new Harness(Buffer.from('a\n'), opts(['tsize', '0'], ['blksize', '512']), 'netascii').start();
    assert.deepStrictEqual(h.take()[0]?.packet, { opcode: Opcode.OACK, options: opts(['blksize', '512']) });
  });
});

describe('transfer: retransmission and timeouts', () => {
  test('exponential backoff 1, 2, 4, 8, 8, 8 s (capped), then close with timeout', () => {
    const h = new Harness(pattern(100)).start();
    h.take();
    const resendTimes: number[] = [];
    h.advance(60_000);
    for (const s of h.take()) {
      assert.equal(s.retransmit, true);
      resendTimes.push(s.atMs);
    }
    assert.deepStrictEqual(resendTimes, [1000, 3000, 7000, 15000, 23000]);
    assert.equal(h.closed?.result, TransferResult.TIMEOUT);
    assert.equal(h.clock.now(), 60_000);
    assert.equal(h.closed?.stats.timeouts, 6);
  });

  test('a lost DATA block: the timer re-sends it, and an ACK resets the backoff', () => {
    const h = new Harness(pattern(2000)).start();
    h.take();
    h.advance(1000);
    assert.deepStrictEqual(blocks(h.take()), [1]);
    h.advance(2000);
    assert.deepStrictEqual(blocks(h.take()), [1]);
    h.ack(1);
    assert.deepStrictEqual(blocks(h.take()), [2]);
    assert.equal(h.timerDeadlineMs, h.clock.now() + 1000);
    assert.equal(h.state.retries, 0);
  });

  test('the final ACK lost: the last block is re-sent until the retries run out', () => {
    const h = new Harness(pattern(10)).start();
    h.take();
    h.advance(100_000);
    assert.equal(h.take().length, 5);
    assert.equal(h.closed?.result, TransferResult.TIMEOUT);
  });

  test('a timeout event with no timer armed is ignored', () => {
    const h = new Harness(pattern(10));
    h.dispatch({ type: 'timeout' });
    assert.deepStrictEqual(h.take(), []);
    assert.equal(h.closed, undefined);
  });
});

describe('transfer: duplicate ACKs (Sorcerer\'s Apprentice)', () => {
  test('a duplicate ACK never triggers a re-send', () => {
    const h = new Harness(pattern(3000)).start();
    h.take();
    h.ack(1);
    assert.deepStrictEqual(blocks(h.take()), [2]);
    for (let i = 0; i < 5; i++) h.ack(1); // the client's own timer re-sent its ACK
    assert.deepStrictEqual(h.take(), [], 'nothing sent on duplicates');
    assert.equal(h.state.stats.duplicateAcks, 5);
    h.ack(2);
    assert.deepStrictEqual(blocks(h.take()), [3], 'exactly one DATA per new ACK');
  });

  test('a duplicate ACK 0 after the OACK is ignored too', () => {
    const h = new Harness(pattern(3000), opts(['blksize', '1024'])).start();
    h.take();
    h.ack(0);
    assert.deepStrictEqual(blocks(h.take()), [1]);
    h.ack(0);
    assert.deepStrictEqual(h.take(), []);
  });
});

describe('transfer: windowsize (RFC 7440 §4)', () => {
  const windowed = (file: Buffer, windowsize: number, blksize = 512) =>
    new Harness(file, opts(['blksize', String(blksize)], ['windowsize', String(windowsize)])).start();

  test('a whole window goes out, the ACK of its last block slides it', () => {
    const h = windowed(pattern(512 * 10), 4);
    h.take();
    h.ack(0);
    assert.deepStrictEqual(blocks(h.take()), [1, 2, 3, 4]);
    h.ack(4);
    assert.deepStrictEqual(blocks(h.take()), [5, 6, 7, 8]);
    h.ack(8);
    assert.deepStrictEqual(sizes(h.take()), [512, 512, 0]);
    h.ack(11);
    assert.equal(h.closed?.result, TransferResult.OK);
  });

  test('a partial ACK (block 6 of 5–8 lost): resume from 7, re-sending 7 and 8', () => {
    const h = windowed(pattern(512 * 20), 4);
    h.take();
    h.ack(0);
    h.take();
    h.ack(4);
    assert.deepStrictEqual(blocks(h.take()), [5, 6, 7, 8]);
    h.ack(6);
    const resent = h.take();
    assert.deepStrictEqual(blocks(resent), [7, 8, 9, 10]);
    assert.deepStrictEqual(resent.map((s) => s.retransmit), [true, true, false, false]);
    h.ack(6); // the client acks its last in-order block again as the old 7, 8 arrive: ignored
    assert.deepStrictEqual(h.take(), []);
    h.ack(10);
    assert.deepStrictEqual(blocks(h.take()), [11, 12, 13, 14]);
  });

  test('timeout re-sends the whole window from the first unacknowledged block', () => {
    const h = windowed(pattern(512 * 20), 4);
    h.take();
    h.ack(0);
    h.take();
    h.advance(1000);
    const resent = h.take();
    assert.deepStrictEqual(blocks(resent), [1, 2, 3, 4]);
    assert.ok(resent.every((s) => s.retransmit));
  });

  test('the final short block inside a window; the transfer ends when it is acked', () => {
    const file = pattern(512 * 5 + 100);
    const h = windowed(file, 8);
    assert.deepStrictEqual(h.runLockstepClient(), file);
    assert.equal(h.closed?.result, TransferResult.OK);
    assert.equal(h.closed?.stats.dataPackets, 6);
  });

  test('memory: the state never holds more than window + read-ahead blocks', () => {
    const file = pattern(1468 * 500);
    const h = windowed(file, 16, 1468);
    assert.deepStrictEqual(h.runLockstepClient(), file);
    const readAheadBlocks = Math.ceil(DEFAULT_TFTP_POLICY.readAheadBytes / 1468);
    assert.ok(h.maxBufferedBlocks <= 16 + readAheadBlocks, `held ${h.maxBufferedBlocks} blocks`);
    assert.ok(h.reads.length > 10, 'the file is read in pieces');
    assert.ok(h.reads.every((r) => r.lengthBytes <= (16 + readAheadBlocks) * 1468));
  });

  test('readAheadBytes 0: at most one window is ever buffered', () => {
    const file = pattern(512 * 40 + 3);
    const h = new Harness(file, opts(['windowsize', '4']), 'octet', { readAheadBytes: 0 }).start();
    assert.deepStrictEqual(h.runLockstepClient(), file);
    assert.equal(h.maxBufferedBlocks, 4);
  });
});

describe('transfer: block number rollover past 65535', () => {
  test('65536 and later blocks go out as 0, 1, …; ACKs of wrapped numbers match', () => {
    const file = pattern(512 * 65537 + 10); // absolute blocks 1..65538
    const h = new Harness(file, new Map(), 'octet').start();
    const received = h.runLockstepClient(200_000);
    assert.equal(h.closed?.result, TransferResult.OK);
    assert.equal(received.length, file.length);
    assert.ok(received.equals(file));
    assert.equal(h.closed?.stats.dataPackets, 65538);
  });

  test('windows straddle the wrap: 65534..1 then a partial ACK of 0', () => {
    const h = new Harness(pattern(512 * 65600), opts(['windowsize', '4']), 'octet', { readAheadBytes: 0 }).start();
    h.take();
    h.ack(0);
    let last = 0;
    while (last < 65532) {
      const batch = h.take();
      const b = batch.at(-1)?.packet;
      assert.ok(b?.opcode === Opcode.DATA);
      last = (last + batch.length);
      h.ack(b.block);
    }
    assert.equal(last, 65532);
    assert.deepStrictEqual(blocks(h.take()), [65533, 65534, 65535, 0]);
    h.ack(0); // absolute 65536
    assert.deepStrictEqual(blocks(h.take()), [1, 2, 3, 4]);
    h.ack(2); // partial, absolute 65538
    assert.deepStrictEqual(blocks(h.take()), [3, 4, 5, 6]);
    h.ack(65535); // long past: ignored
    assert.deepStrictEqual(h.take(), []);
  });
});

describe('transfer: netascii', () => {
  test('LF → CR LF and CR → CR NUL on the fly, cut at block boundaries of the converted bytes', () => {
    const raw = Buffer.from('line one\nline two\r\n'.repeat(100) + 'bare\rcr');
    const h = new Harness(raw, new Map(), 'netascii').start();
    const received = h.runLockstepClient();
    assert.deepStrictEqual(received, toNetascii(raw));
    assert.equal(h.closed?.result, TransferResult.OK);
  });

  test('a block boundary in the middle of an expansion (CR NUL split across blocks) is fine', () => {
    const raw = Buffer.concat([Buffer.alloc(511, 0x61), Buffer.from('\r\n\n')]); // converted: 511 + 2 + 2 + 2
    const h = new Harness(raw, new Map(), 'netascii', { readAheadBytes: 0 }).start();
    const received = h.runLockstepClient();
    assert.deepStrictEqual(received, toNetascii(raw));
    assert.equal(received.length, 517);
  });

  test('converted size an exact multiple of blksize ends with an empty block', () => {
    const raw = Buffer.concat([Buffer.alloc(510, 0x61), Buffer.from('\n')]); // converted: 512
    const h = new Harness(raw, new Map(), 'netascii').start();
    const sent = h.ackEachBatchToEnd();
    assert.deepStrictEqual(sent, [512, 0]);
  });
});

describe('transfer: reads are asynchronous', () => {
  test('nothing is sent until the read comes back; a late read fills the window', () => {
    const h = new Harness(pattern(5000), opts(['windowsize', '4']));
    h.autoRead = false;
    h.start();
    assert.deepStrictEqual(blocks(h.take()), ['op6']);
    h.ack(0);
    assert.deepStrictEqual(h.take(), [], 'no data yet');
    assert.equal(h.timerDeadlineMs, undefined, 'no timer while nothing is in flight');
    h.releaseReads();
    assert.deepStrictEqual(blocks(h.take()), [1, 2, 3, 4]);
  });

  test('a read result for another offset is ignored', () => {
    const h = new Harness(pattern(5000));
    h.autoRead = false;
    h.start();
    h.dispatch({ type: 'read', offsetBytes: 12345, data: Buffer.alloc(10) });
    assert.deepStrictEqual(h.take(), []);
    h.releaseReads();
    assert.deepStrictEqual(blocks(h.take()), [1]);
  });

  test('a failed read: ERROR 0 to the client and close with read-error', () => {
    const h = new Harness(pattern(5000));
    h.failReads = true;
    h.start();
    assert.deepStrictEqual(h.take().map((s) => s.packet), [{ opcode: Opcode.ERROR, code: TftpErrorCode.NOT_DEFINED, message: 'read error' }]);
    assert.equal(h.closed?.result, TransferResult.READ_ERROR);
  });
});

describe('transfer: errors and aborts', () => {
  test('clean abort mid-transfer: ERROR 0 with the reason, timer cancelled, then nothing more', () => {
    const h = new Harness(pattern(5000)).start();
    h.take();
    h.ack(1);
    h.take();
    h.dispatch({ type: 'abort', reason: 'server shutting down' });
    assert.deepStrictEqual(h.take().map((s) => s.packet), [
      { opcode: Opcode.ERROR, code: TftpErrorCode.NOT_DEFINED, message: 'server shutting down' },
    ]);
    assert.equal(h.closed?.result, TransferResult.ABORTED);
    assert.equal(h.timerDeadlineMs, undefined);
    const after = step(h.state, { type: 'packet', packet: { opcode: Opcode.ACK, block: 2 } });
    assert.deepStrictEqual(after.actions, [], 'a closed transfer does nothing');
  });

  test('client ERROR mid-transfer: close, no reply', () => {
    const h = new Harness(pattern(5000)).start();
    h.take();
    h.dispatch({ type: 'packet', packet: { opcode: Opcode.ERROR, code: 0, message: 'disk full' } });
    assert.deepStrictEqual(h.take(), []);
    assert.equal(h.closed?.result, TransferResult.CLIENT_ERROR);
  });

  const illegal: TftpPacket[] = [
    { opcode: Opcode.DATA, block: 1, data: Buffer.from('x') },
    { opcode: Opcode.RRQ, filename: 'x', mode: 'octet', options: new Map() },
    { opcode: Opcode.WRQ, filename: 'x', mode: 'octet', options: new Map() },
    { opcode: Opcode.OACK, options: new Map() },
  ];
  for (const packet of illegal) {
    test(`opcode ${packet.opcode} from the client: ERROR 4 and close`, () => {
      const h = new Harness(pattern(5000)).start();
      h.take();
      h.dispatch({ type: 'packet', packet });
      const sent = h.take();
      assert.equal(sent.length, 1);
      assert.equal(sent[0]?.packet.opcode, Opcode.ERROR);
      assert.equal(sent[0]?.packet.opcode === Opcode.ERROR && sent[0].packet.code, TftpErrorCode.ILLEGAL_OPERATION);
      assert.equal(h.closed?.result, TransferResult.PROTOCOL_ERROR);
    });
  }

  test('DATA goes out as datagrams prepared once per read: a re-send is the same bytes object, an ACK copies no block list', () => {
    const h = new Harness(pattern(512 * 8), opts(['windowsize', '2'])).start();
    h.ack(0);
    const first = step(h.state, { type: 'timeout' }).actions.filter((a) => a.type === 'sendData');
    const firstBlocks = h.state.blocks;
    const { state, actions } = step(h.state, { type: 'packet', packet: { opcode: Opcode.ACK, block: 2 } });
    assert.equal(state.blocks, firstBlocks, 'an ACK moves an index, the array is shared');
    assert.equal(state.blockIndex, h.state.blockIndex + 2);
    const sent = actions.filter((a) => a.type === 'sendData');
    assert.deepEqual(sent.map((a) => a.type === 'sendData' && a.block), [3, 4]);
    // The timeout's re-sends carry the very datagrams prepared for the first sends.
    const prepared = h.state.blocks.slice(h.state.blockIndex, h.state.blockIndex + 2);
    assert.deepEqual(first.map((a) => a.type === 'sendData' && a.retransmit), [true, true]);
    for (const [i, a] of first.entries()) assert.ok(a.type === 'sendData' && a.datagram === prepared[i]?.datagram);
  });

  test('a read buffer may be reused once step returns: the state keeps copies, not views of it', () => {
    const file = pattern(512 * 20 + 9);
    const h = new Harness(file, opts(['windowsize', '4']));
    h.autoRead = false;
    const reused = Buffer.alloc(file.length);
    const received: Buffer[] = [];
    h.start();
    while (!h.closed) {
      for (const read of h.heldReads.splice(0)) {
        const data = reused.subarray(0, Math.min(read.lengthBytes, file.length - read.offsetBytes));
        file.copy(data, 0, read.offsetBytes);
        h.dispatch({ type: 'read', offsetBytes: read.offsetBytes, data });
        reused.fill(0xee); // the adapter's next read overwrites the buffer
      }
      const batch = h.take();
      for (const s of batch) if (s.packet.opcode === Opcode.DATA) received.push(s.packet.data);
      const last = batch.at(-1)?.packet;
      if (last?.opcode === Opcode.DATA) h.ack(last.block);
      else if (last?.opcode === Opcode.OACK) h.ack(0);
      else assert.ok(h.heldReads.length > 0 || h.closed, 'server went quiet');
    }
    assert.deepStrictEqual(Buffer.concat(received), file);
  });

  test('step is pure: the old state is unchanged and replaying gives the same result', () => {
    const h = new Harness(pattern(5000), opts(['windowsize', '2'])).start();
    h.ack(0);
    const before = h.state;
    const snapshot = JSON.stringify({ ...before, blocks: before.blocks.length, tail: before.tail.length });
    const a = step(before, { type: 'packet', packet: { opcode: Opcode.ACK, block: 2 } });
    const b = step(before, { type: 'packet', packet: { opcode: Opcode.ACK, block: 2 } });
    assert.deepStrictEqual(a, b);
    assert.equal(JSON.stringify({ ...before, blocks: before.blocks.length, tail: before.tail.length }), snapshot);
  });
});

describe('transfer: the adapter fast path reports ACKs it answered (pumped)', () => {
  /** Two harnesses over the same file: one ACKed packet by packet, the other told `pumped`. */
  const pair = (file: Buffer, options = opts(), policy: Partial<TftpPolicy> = { readAheadBytes: 4096 }) => {
    const slow = new Harness(file, options, 'octet', policy).start();
    const fast = new Harness(file, options, 'octet', policy).start();
    return { slow, fast };
  };

  test('pumped n is n ACKs of the block in flight, each answered by the next: same state, statistics and reads, no sends', () => {
    const file = pattern(512 * 40 + 9);
    const { slow, fast } = pair(file);
    assert.deepEqual(blocks(slow.take()), [1]);
    assert.deepEqual(blocks(fast.take()), [1]);
    for (let block = 1; block <= 5; block++) slow.ack(block);
    assert.deepEqual(blocks(slow.take()), [2, 3, 4, 5, 6]);
    fast.clock.advance(0);
    fast.dispatch({ type: 'pumped', count: 5 });
    assert.deepEqual(fast.take(), [], 'the fast path sent them');
    const pick = (s: TransferState) => ({ base: s.base, sentUpTo: s.sentUpTo, highestSent: s.highestSent, buffered: bufferedBlocks(s), stats: s.stats, retries: s.retries, timerArmed: s.timerArmed });
    assert.deepEqual(pick(fast.state), pick(slow.state));
    assert.deepEqual(fast.reads, slow.reads, 'the same reads asked for');
    // From there on, the transfer goes on as usual.
    fast.ack(6);
    assert.deepEqual(blocks(fast.take()), [7]);
  });

  test('pumped counts no further than the blocks in memory after the one in flight; the final ACK still ends the transfer', () => {
    const file = pattern(512 * 3 + 1); // blocks 1..4, all in memory after the first read
    const h = new Harness(file, opts(), 'octet').start();
    assert.deepEqual(blocks(h.take()), [1]);
    h.dispatch({ type: 'pumped', count: 99 });
    assert.equal(h.state.base, 4, 'blocks 2..4 went out; 4 is in flight');
    assert.equal(h.state.stats.blocksAcked, 3);
    assert.equal(h.state.stats.dataPackets, 4);
    assert.equal(h.closed, undefined, 'the final ACK never comes as pumped');
    h.ack(4);
    const closed = (h as Harness).closed as Harness['closed']; // (the assert above narrowed it)
    assert.equal(closed?.result, TransferResult.OK);
    assert.equal(closed?.stats.dataBytes, file.length);
  });

  test('pumped is ignored in the OACK phase, with a window, and with nothing in flight', () => {
    const withOack = new Harness(pattern(5000), opts(['blksize', '512'])).start();
    const before = withOack.state;
    withOack.dispatch({ type: 'pumped', count: 3 });
    assert.equal(withOack.state.base, before.base);
    assert.deepEqual(withOack.state.stats, before.stats);
    const windowed = new Harness(pattern(5000), opts(['windowsize', '4'])).start();
    windowed.take();
    windowed.ack(0);
    const w = windowed.state;
    windowed.dispatch({ type: 'pumped', count: 2 });
    assert.deepEqual(windowed.state.stats, w.stats);
    const fresh = new Harness(pattern(5000));
    fresh.dispatch({ type: 'pumped', count: 2 });
    assert.equal(fresh.state.phase, 'new');
  });

  test('pumped after a backoff resets the timeout and retries, like the ACK it stands for', () => {
    const h = new Harness(pattern(512 * 10)).start();
    h.take();
    h.advance(1000);
    h.advance(2000);
    assert.equal(h.state.retries, 2);
    h.dispatch({ type: 'pumped', count: 1 });
    assert.equal(h.state.retries, 0);
    assert.equal(h.state.timeoutMs, h.state.config.initialTimeoutMs);
    assert.equal(h.timerDeadlineMs, h.clock.now() + h.state.config.initialTimeoutMs);
  });
});
