/**
 * The socket adapter's own mechanics, with real sockets on 127.0.0.1:0 and a short policy
 * timeout: the one deadline timer per transfer (re-sends with backoff, a shorter timeout after
 * progress), the transfer socket answering a stranger with ERROR 5 from the same port,
 * and DATA going out as the state machine's prepared datagrams. The protocol decisions
 * themselves are transfer.test.ts's; real clients are test/integration/tftp.test.ts's.
 *
 * Every adapter test runs twice: on the native lock-step fast path (native/tftp_pump.c, when its
 * addon is built) and on the JS path (`native: false`). The fast path's own cases (blocks the
 * pump answers between events: duplicate ACKs, strangers, lost ACKs, client ERRORs, counters,
 * the socket released on every end) run on both as well.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Opcode, TftpErrorCode } from '../protocol/tftp/codes.js';
import { decodeTftp, encodeTftp, type TftpPacket } from '../protocol/tftp/packet.js';
import { createLogger } from '../obs/log.js';
import { Metrics } from '../obs/metrics.js';
import { loadTftpPump } from './native-pump.js';
import { startTftpServer, type TftpServer } from './server.js';

const NATIVE = loadTftpPump();
/** The I/O paths to test: the JS one always, the native one when its addon is built. */
const PATHS: readonly { name: string; native: boolean }[] = [
  ...(NATIVE.ok ? [{ name: 'native fast path', native: true }] : []),
  { name: 'JS path', native: false },
];
if (!NATIVE.ok && process.env['PXEHA_REQUIRE_NATIVE'] === '1') throw new Error(`native fast path required: ${NATIVE.reason}`);

const HOST = '127.0.0.1';
const INITIAL_TIMEOUT_MS = 60;

interface Received {
  packet: TftpPacket;
  port: number;
  atMs: number;
}

/** A UDP client that queues what it receives. */
class Probe {
  private readonly queue: Received[] = [];
  private waiter: (() => void) | undefined;
  private constructor(readonly socket: dgram.Socket) {
    socket.on('message', (buf, rinfo) => {
      this.queue.push({ packet: decodeTftp(buf), port: rinfo.port, atMs: performance.now() });
      this.waiter?.();
    });
  }

  static async open(): Promise<Probe> {
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, HOST, resolve));
    return new Probe(socket);
  }

  send(packet: TftpPacket, port: number): void {
    this.socket.send(encodeTftp(packet), port, HOST);
  }

  async receive(timeoutMs = 2000): Promise<Received | undefined> {
    const deadline = performance.now() + timeoutMs;
    while (this.queue.length === 0) {
      const left = deadline - performance.now();
      if (left <= 0) return undefined;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.waiter = undefined;
    }
    return this.queue.shift();
  }

  close(): void {
    this.socket.close();
  }
}

const rrq = (filename: string, options: Record<string, string> = {}): TftpPacket => ({
  opcode: Opcode.RRQ,
  filename,
  mode: 'octet',
  options: new Map(Object.entries(options)),
});
const dataBlock = (r: Received | undefined): number | undefined => (r?.packet.opcode === Opcode.DATA ? r.packet.block : undefined);

for (const { name, native } of PATHS) describe(`tftp server adapter (real sockets on 127.0.0.1, ${name})`, () => {
  let root: string;
  let server: TftpServer;
  let metrics: Metrics;
  const file = Buffer.alloc(512 * 3 + 7, 0x5a); // blocks 1..4 at blksize 512
  // 100 blocks at blksize 512, read 8 blocks at a time: many reads, many hand-overs to the pump.
  const long = Buffer.from(Array.from({ length: 512 * 99 + 100 }, (_, i) => (i * 7 + (i >> 9)) & 0xff));

  before(async () => {
    root = mkdtempSync(path.join(os.tmpdir(), 'pxeha-tftp-server-test-'));
    writeFileSync(path.join(root, 'four-blocks.bin'), file);
    writeFileSync(path.join(root, 'long.bin'), long);
    metrics = new Metrics();
    server = await startTftpServer({
      root,
      address: HOST,
      port: 0,
      native,
      metrics,
      policy: {
        initialTimeoutMs: INITIAL_TIMEOUT_MS,
        maxTimeoutMs: 4 * INITIAL_TIMEOUT_MS,
        maxRetries: 3,
        readAheadBytes: 4096,
        largeReadAheadBytes: 4096,
      },
    });
  });

  /** A counter's value from the server's registry (labels matched exactly when given). */
  const counter = async (metric: string, labels: Record<string, string> = {}): Promise<number> => {
    const m = await metrics.registry.getSingleMetric(metric)?.get();
    const entry = m?.values.find((v) => Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want));
    return entry?.value ?? 0;
  };

  /** Downloads long.bin in lock step from `tid` on, starting by ACKing `block`; returns the blocks' data. */
  const lockStep = async (p: Probe, tid: number, fromBlock: number, collect: Buffer[]): Promise<number> => {
    let block = fromBlock;
    for (;;) {
      p.send({ opcode: Opcode.ACK, block }, tid);
      const r = await p.receive();
      assert.ok(r?.packet.opcode === Opcode.DATA, `DATA after ACK ${block}`);
      assert.equal(r.packet.block, (block + 1) % 65536);
      collect.push(r.packet.data);
      block = r.packet.block;
      if (r.packet.data.length < 512) return block;
    }
  };

  /** Whether `port` on 127.0.0.1 is free again (the transfer socket was closed). */
  const portIsFree = async (port: number): Promise<boolean> => {
    const s = dgram.createSocket('udp4');
    try {
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.bind(port, HOST, () => resolve());
      });
      return true;
    } catch {
      return false;
    } finally {
      s.close();
    }
  };

  after(async () => {
    await server.close();
    rmSync(root, { recursive: true, force: true });
  });

  test('an unanswered block is re-sent with backoff from the one deadline timer, then the transfer times out', async () => {
    const p = await Probe.open();
    try {
      p.send(rrq('four-blocks.bin'), server.port);
      const sends: Received[] = [];
      for (let r; (r = await p.receive(1500)); ) sends.push(r);
      assert.deepEqual(sends.map(dataBlock), [1, 1, 1, 1], 'DATA 1 and three re-sends (maxRetries 3)');
      const gaps = sends.slice(1).map((r, i) => r.atMs - (sends[i] as Received).atMs);
      const expected = [1, 2, 4].map((f) => f * INITIAL_TIMEOUT_MS); // doubled, capped at 4x
      for (const [i, gap] of gaps.entries()) {
        assert.ok(gap >= (expected[i] as number) - 5, `re-send ${i + 1} after ${gap.toFixed(0)} ms, want >= ${expected[i]}`);
      }
      assert.equal(new Set(sends.map((r) => r.port)).size, 1, 'one TID');
    } finally {
      p.close();
    }
    await waitFor(() => server.activeTransfers === 0);
  });

  test('after backoff, progress brings the timeout back down: the pending longer timer does not delay the next re-send', async () => {
    const p = await Probe.open();
    try {
      p.send(rrq('four-blocks.bin'), server.port);
      const first = await p.receive();
      assert.equal(dataBlock(first), 1);
      assert.equal(dataBlock(await p.receive()), 1, 're-send after the initial timeout');
      assert.equal(dataBlock(await p.receive()), 1, 're-send after twice the timeout');
      // The next timeout would be 4x; an ACK now resets it to 1x.
      p.send({ opcode: Opcode.ACK, block: 1 }, (first as Received).port);
      const d2 = await p.receive();
      assert.equal(dataBlock(d2), 2);
      const again = await p.receive();
      assert.equal(dataBlock(again), 2);
      const gap = (again as Received).atMs - (d2 as Received).atMs;
      assert.ok(gap < 3 * INITIAL_TIMEOUT_MS, `DATA 2 re-sent after ${gap.toFixed(0)} ms, want about ${INITIAL_TIMEOUT_MS}`);
      p.send({ opcode: Opcode.ERROR, code: TftpErrorCode.NOT_DEFINED, message: 'enough' }, (first as Received).port);
    } finally {
      p.close();
    }
    await waitFor(() => server.activeTransfers === 0);
  });

  test('lock step to the end over the transfer socket; a stranger to the TID gets ERROR 5 from that same port', async () => {
    const p = await Probe.open();
    const stranger = await Probe.open();
    try {
      p.send(rrq('four-blocks.bin', { blksize: '512' }), server.port);
      const oack = await p.receive();
      assert.equal(oack?.packet.opcode, Opcode.OACK);
      const tid = (oack as Received).port;
      stranger.send({ opcode: Opcode.ACK, block: 0 }, tid);
      const e = await stranger.receive();
      assert.ok(e?.packet.opcode === Opcode.ERROR && e.packet.code === TftpErrorCode.UNKNOWN_TID, 'ERROR 5');
      assert.equal(e?.port, tid, 'answered from the transfer port');
      const received: Buffer[] = [];
      let block = 0;
      for (;;) {
        p.send({ opcode: Opcode.ACK, block }, tid);
        const r = await p.receive();
        assert.ok(r?.packet.opcode === Opcode.DATA, `DATA after ACK ${block}`);
        assert.equal(r.port, tid);
        assert.equal(r.packet.block, block + 1);
        received.push(r.packet.data);
        block = r.packet.block;
        if (r.packet.data.length < 512) break;
      }
      p.send({ opcode: Opcode.ACK, block }, tid);
      assert.deepEqual(Buffer.concat(received), file);
      assert.equal(await stranger.receive(100), undefined, 'the stranger got one answer only');
    } finally {
      p.close();
      stranger.close();
    }
    await waitFor(() => server.activeTransfers === 0);
  });

  test('a long lock-step transfer arrives whole; blocks, bytes and the result are counted; the TID is released', async () => {
    const p = await Probe.open();
    const bytesBefore = await counter('pxeha_tftp_bytes_total');
    const okBefore = await counter('pxeha_tftp_transfers_total', { result: 'ok' });
    try {
      p.send(rrq('long.bin'), server.port);
      const first = await p.receive();
      assert.equal(dataBlock(first), 1);
      const tid = (first as Received).port;
      const got: Buffer[] = [(first as Received).packet.opcode === Opcode.DATA ? ((first as Received).packet as { data: Buffer }).data : Buffer.alloc(0)];
      const last = await lockStep(p, tid, 1, got);
      assert.equal(last, 100);
      p.send({ opcode: Opcode.ACK, block: last }, tid);
      assert.deepEqual(Buffer.concat(got), long);
      await waitFor(() => server.activeTransfers === 0);
      assert.equal((await counter('pxeha_tftp_bytes_total')) - bytesBefore, long.length, 'every DATA byte counted once');
      assert.equal((await counter('pxeha_tftp_transfers_total', { result: 'ok' })) - okBefore, 1);
      assert.ok(await portIsFree(tid), 'transfer socket closed');
    } finally {
      p.close();
    }
  });

  test("a duplicate ACK mid-transfer sends nothing (Sorcerer's Apprentice); a stranger's ACK gets ERROR 5 and moves nothing", async () => {
    const p = await Probe.open();
    const stranger = await Probe.open();
    try {
      p.send(rrq('long.bin'), server.port);
      const first = await p.receive();
      const tid = (first as Received).port;
      const got: Buffer[] = [];
      for (let block = 1; block < 20; block++) {
        p.send({ opcode: Opcode.ACK, block }, tid);
        const r = await p.receive();
        assert.equal(dataBlock(r), block + 1);
      }
      // DATA 20 is in flight. The ACK of 19 again must not send DATA 20 again before the timer does.
      p.send({ opcode: Opcode.ACK, block: 19 }, tid);
      stranger.send({ opcode: Opcode.ACK, block: 20 }, tid);
      const e = await stranger.receive();
      assert.ok(e?.packet.opcode === Opcode.ERROR && e.packet.code === TftpErrorCode.UNKNOWN_TID, 'ERROR 5 to the stranger');
      assert.equal(e?.port, tid);
      assert.equal(await p.receive(INITIAL_TIMEOUT_MS / 2), undefined, 'no DATA for a duplicate ACK or a stranger');
      // The timer re-sends DATA 20; then the transfer goes on from there.
      assert.equal(dataBlock(await p.receive()), 20, 're-sent by the timer');
      const last = await lockStep(p, tid, 20, got);
      assert.equal(last, 100);
      p.send({ opcode: Opcode.ACK, block: last }, tid);
      assert.deepEqual(Buffer.concat(got), long.subarray(20 * 512));
      await waitFor(() => server.activeTransfers === 0);
      assert.ok(await portIsFree(tid), 'transfer socket closed');
    } finally {
      p.close();
      stranger.close();
    }
  });

  test('a lost ACK mid-transfer: the block in flight is re-sent by the timer, and the transfer resumes', async () => {
    const p = await Probe.open();
    const retransmitsBefore = await counter('pxeha_tftp_retransmits_total');
    try {
      p.send(rrq('long.bin'), server.port);
      const first = await p.receive();
      const tid = (first as Received).port;
      for (let block = 1; block < 30; block++) {
        p.send({ opcode: Opcode.ACK, block }, tid);
        assert.equal(dataBlock(await p.receive()), block + 1);
      }
      // ACK 30 "lost": DATA 30 comes again after about the initial timeout, then twice that.
      const again = await p.receive();
      assert.equal(dataBlock(again), 30);
      assert.equal(dataBlock(await p.receive()), 30);
      assert.ok((await counter('pxeha_tftp_retransmits_total')) - retransmitsBefore >= 2);
      const got: Buffer[] = [];
      const last = await lockStep(p, tid, 30, got);
      p.send({ opcode: Opcode.ACK, block: last }, tid);
      assert.deepEqual(Buffer.concat(got), long.subarray(30 * 512));
      await waitFor(() => server.activeTransfers === 0);
    } finally {
      p.close();
    }
  });

  test('a client ERROR mid-transfer ends it (client-error), nothing more is sent, and the TID is released', async () => {
    const p = await Probe.open();
    const before = await counter('pxeha_tftp_transfers_total', { result: 'client-error' });
    try {
      p.send(rrq('long.bin'), server.port);
      const first = await p.receive();
      const tid = (first as Received).port;
      for (let block = 1; block < 40; block++) {
        p.send({ opcode: Opcode.ACK, block }, tid);
        assert.equal(dataBlock(await p.receive()), block + 1);
      }
      p.send({ opcode: Opcode.ERROR, code: TftpErrorCode.NOT_DEFINED, message: 'cancelled' }, tid);
      await waitFor(() => server.activeTransfers === 0);
      assert.equal((await counter('pxeha_tftp_transfers_total', { result: 'client-error' })) - before, 1);
      p.send({ opcode: Opcode.ACK, block: 40 }, tid);
      assert.equal(await p.receive(3 * INITIAL_TIMEOUT_MS), undefined, 'nothing after the end');
      assert.ok(await portIsFree(tid), 'transfer socket closed');
    } finally {
      p.close();
    }
  });

  test('a transfer that times out mid-way and one aborted by shutdown both release their TID', async () => {
    const p = await Probe.open();
    try {
      const tid = await tenBlocksOfLongBin(p, server.port);
      await waitFor(() => server.activeTransfers === 0, 5000); // 4 sends of DATA 10, then timeout
      assert.ok(await portIsFree(tid), 'transfer socket closed after the timeout');
    } finally {
      p.close();
    }
    const own = await startTftpServer({ root, address: HOST, port: 0, native, policy: { readAheadBytes: 4096, largeReadAheadBytes: 4096 } });
    const q = await Probe.open();
    try {
      const tid = await tenBlocksOfLongBin(q, own.port);
      await own.close();
      const e = await q.receive();
      assert.ok(e?.packet.opcode === Opcode.ERROR && e.packet.code === TftpErrorCode.NOT_DEFINED, 'ERROR 0 on shutdown');
      assert.ok(await portIsFree(tid), 'transfer socket closed on shutdown');
    } finally {
      q.close();
      await own.close();
    }
  });
});

describe('tftp server read-ahead pool', () => {
  test('large read-ahead while the pool has room, the default read-ahead beyond it, room back when a transfer ends', async () => {
    const root = mkdtempSync(path.join(os.tmpdir(), 'pxeha-tftp-server-test-'));
    writeFileSync(path.join(root, 'big.bin'), Buffer.alloc(1024 * 1024, 1));
    writeFileSync(path.join(root, 'small.bin'), Buffer.alloc(1000, 2));
    const started: Record<string, unknown>[] = [];
    const log = createLogger({
      level: 'debug',
      destination: {
        write: (line: string) => {
          const entry = JSON.parse(line) as Record<string, unknown>;
          if (entry['msg'] === 'tftp transfer started') started.push(entry);
        },
      },
    });
    const KiB = 1024;
    const server = await startTftpServer({
      root,
      address: HOST,
      port: 0,
      log,
      policy: { readAheadBytes: 64 * KiB, largeReadAheadBytes: 256 * KiB, readAheadPoolBytes: 256 * KiB },
    });
    const probes: Probe[] = [];
    const open = async (file: string): Promise<{ probe: Probe; first: Received }> => {
      const probe = await Probe.open();
      probes.push(probe);
      probe.send(rrq(file), server.port);
      const first = await probe.receive();
      assert.equal(dataBlock(first), 1);
      return { probe, first: first as Received };
    };
    try {
      const a = await open('big.bin');
      await open('big.bin');
      await open('small.bin'); // no larger than the default read-ahead: never pooled
      a.probe.send({ opcode: Opcode.ERROR, code: TftpErrorCode.NOT_DEFINED, message: 'enough' }, a.first.port);
      await waitFor(() => server.activeTransfers === 2);
      await open('big.bin');
      assert.deepEqual(
        started.map((e) => e['readAheadBytes']),
        [256 * KiB, 64 * KiB, 64 * KiB, 256 * KiB],
      );
    } finally {
      for (const p of probes) p.close();
      await server.close();
      rmSync(root, { recursive: true, force: true });
    }
  });
});

/** Asks for long.bin and ACKs blocks 1-9, checking each next DATA; returns the transfer's TID. */
async function tenBlocksOfLongBin(probe: Probe, port: number): Promise<number> {
  probe.send(rrq('long.bin'), port);
  const tid = ((await probe.receive()) as Received).port;
  for (let block = 1; block < 10; block++) {
    probe.send({ opcode: Opcode.ACK, block }, tid);
    assert.equal(dataBlock(await probe.receive()), block + 1);
  }
  return tid;
}

async function waitFor(condition: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
