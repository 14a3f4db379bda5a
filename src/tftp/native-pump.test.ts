/**
 * The native pump's own contract (native/tftp_pump.c) on 127.0.0.1: arguments checked, queue
 * rules enforced, the one thing it does alone (ACK of the block in flight → next datagram), the
 * events it hands back, and no descriptor left open after thousands of pumps. Skipped when the
 * addon is not built (the server then keeps its JS path; server.test.ts covers both).
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { readdirSync } from 'node:fs';
import { describe, test } from 'node:test';
import { loadTftpPump, PumpEvent, type TftpPump } from './native-pump.js';

const loaded = loadTftpPump();
const HOST = '127.0.0.1';

/** DATA datagrams for blocks first.. (payload `size` bytes each), back to back. */
function run(first: number, count: number, size: number, lastSize = size): Buffer {
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const length = i === count - 1 ? lastSize : size;
    const d = Buffer.alloc(4 + length, i & 0xff);
    d.writeUInt16BE(3, 0);
    d.writeUInt16BE((first + i) & 0xffff, 2);
    out.push(d);
  }
  return Buffer.concat(out);
}

const ack = (block: number): Buffer => Buffer.from([0, 4, block >> 8, block & 0xff]);

async function client(): Promise<{ socket: dgram.Socket; port: number; next: (ms?: number) => Promise<Buffer | undefined> }> {
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, HOST, resolve));
  const queue: Buffer[] = [];
  let wake: (() => void) | undefined;
  socket.on('message', (m) => {
    queue.push(m);
    wake?.();
  });
  const next = async (ms = 500): Promise<Buffer | undefined> => {
    if (queue.length === 0) await new Promise<void>((resolve) => { const t = setTimeout(resolve, ms); wake = () => { clearTimeout(t); resolve(); }; });
    wake = undefined;
    return queue.shift();
  };
  return { socket, port: socket.address().port, next };
}

describe('native TftpPump', { skip: loaded.ok ? false : `addon not built: ${loaded.ok ? '' : loaded.reason}` }, () => {
  const TftpPump = loaded.ok ? loaded.TftpPump : (undefined as never);
  const events: [PumpEvent, Buffer | undefined, string | undefined, number][] = [];
  const open = (): { pump: TftpPump; counters: Float64Array } => {
    const counters = new Float64Array(2);
    return { pump: new TftpPump(HOST, counters, (...e) => void events.push(e)), counters };
  };

  test('checks its arguments and queue rules, and throws after close', () => {
    assert.throws(() => new TftpPump('not an address', new Float64Array(2), () => {}), TypeError);
    assert.throws(() => new TftpPump(HOST, new Float64Array(1), () => {}), TypeError);
    assert.throws(() => new TftpPump(HOST, new Float64Array(2), 'no' as never), TypeError);
    const { pump } = open();
    try {
      assert.throws(() => pump.setPeer(HOST, 0), TypeError);
      assert.throws(() => pump.setPeer('300.1.1.1', 1000), TypeError);
      assert.throws(() => pump.append(run(1, 2, 512), 516), TypeError, 'nothing in flight yet');
      pump.reset(0);
      assert.throws(() => pump.append(run(2, 2, 512), 516), TypeError, 'must follow block 0');
      assert.throws(() => pump.append(run(1, 2, 512), 3), TypeError, 'packetBytes below a header');
      assert.throws(() => pump.append(Buffer.from([0, 4, 0, 1]), 516), TypeError, 'not DATA');
      assert.throws(() => pump.append(Buffer.from([0, 3, 0]), 516), TypeError, 'shorter than a header');
      assert.throws(() => pump.append('x' as never, 516), TypeError);
      assert.throws(() => pump.reset(65536), TypeError);
      assert.throws(() => pump.notifyWhenLeft(1.5), TypeError);
      pump.append(run(1, 3, 512, 10), 516); // blocks 1..3, the last one short (final)
      assert.equal(pump.queued(), 3);
      assert.throws(() => pump.append(run(4, 1, 512), 516), TypeError, 'nothing after the final block');
      pump.reset(-1);
      assert.equal(pump.queued(), 0);
    } finally {
      pump.close();
      pump.close(); // twice is fine
    }
    assert.throws(() => pump.port());
    assert.throws(() => pump.reset(0));
  });

  test('answers ACKs of the block in flight from its queue; anything else and strangers become events', async () => {
    const c = await client();
    const stranger = await client();
    const { pump, counters } = open();
    events.length = 0;
    try {
      const port = pump.port();
      assert.equal(pump.setPeer(HOST, c.port), true, 'connected socket for the peer');
      pump.reset(1);
      pump.append(run(2, 3, 100, 7), 104); // blocks 2, 3, 4 (final, 7 bytes)
      pump.notifyWhenLeft(1);
      c.socket.send(ack(1), port, HOST);
      const d2 = await c.next();
      assert.equal(d2?.readUInt16BE(2), 2);
      c.socket.send(ack(1), port, HOST); // duplicate: an event, nothing sent
      stranger.socket.send(ack(2), port, HOST); // a stranger's ACK of the block in flight
      assert.equal(await c.next(100), undefined);
      c.socket.send(ack(2), port, HOST);
      assert.equal((await c.next())?.readUInt16BE(2), 3);
      c.socket.send(ack(3), port, HOST);
      const last = await c.next();
      assert.equal(last?.readUInt16BE(2), 4);
      assert.equal(last?.length, 11);
      c.socket.send(ack(4), port, HOST); // queue empty: the final ACK is an event
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(counters[0], 3, 'three ACKs answered');
      assert.ok(Math.abs((counters[1] as number) - Date.now()) < 1000);
      const kinds = events.map((e) => e[0]);
      assert.ok(kinds.includes(PumpEvent.LOW), 'the low mark');
      const packets = events.filter((e) => e[0] === PumpEvent.PACKET).map((e) => (e[1] as Buffer).readUInt16BE(2));
      assert.deepEqual(packets, [1, 4], 'the duplicate ACK 1 and the final ACK 4');
      const strangers = events.filter((e) => e[0] === PumpEvent.STRANGER);
      assert.deepEqual(strangers.map((e) => [e[2], e[3]]), [[HOST, stranger.socket.address().port]]);
      // JS answers strangers through the pump, from the TID port.
      assert.equal(pump.send(Buffer.from([0, 5, 0, 5, 0]), stranger.socket.address().port, HOST), 0);
      const err = await stranger.next();
      assert.equal(err?.readUInt16BE(0), 5);
    } finally {
      pump.close();
      c.socket.close();
      stranger.socket.close();
    }
  });

  test('thousands of pumps opened, fed and closed leave no descriptor open', async () => {
    const fds = () => readdirSync('/proc/self/fd').length;
    const before = fds();
    for (let i = 0; i < 3000; i++) {
      const { pump } = open();
      pump.setPeer(HOST, 9);
      pump.reset(0);
      pump.append(run(1, 8, 512), 516);
      pump.close();
      if (i % 500 === 0) await new Promise((resolve) => setImmediate(resolve)); // let handles close
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.ok(fds() <= before + 2, `descriptors ${before} → ${fds()}`);
  });
});
