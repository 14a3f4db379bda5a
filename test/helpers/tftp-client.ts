/**
 * A small TFTP read client for tests and benches, for what the packaged clients cannot do:
 * RFC 7440 windowsize (neither curl, atftp nor tftp-hpa 5.2 ask for it), raw probes (malformed
 * packets, a stranger's ACK to a transfer port), and stopping mid-transfer on purpose.
 *
 * `fetch` is bounded: every wait has a timeout, retries are counted, and the file is hashed as
 * it arrives, never kept. Run as a script (inside a namespace) it prints one JSON line; with
 * `parallel` it runs that many fetches at once (`fetchMany`):
 *
 *   node --import tsx test/helpers/tftp-client.ts '{"host":"10.99.0.1","file":"big.bin","blksize":1468,"windowsize":16}'
 */
import { createHash } from 'node:crypto';
import dgram from 'node:dgram';
import { fileURLToPath } from 'node:url';
import { Opcode } from '../../src/protocol/tftp/codes.js';
import { decodeTftp, encodeTftp, type TftpPacket } from '../../src/protocol/tftp/packet.js';

export interface FetchOptions {
  host: string;
  port?: number;
  file: string;
  mode?: 'octet' | 'netascii';
  blksize?: number;
  windowsize?: number;
  tsize?: boolean;
  /** Per-wait timeout; default 1000 ms. */
  timeoutMs?: number;
  /** Waits without progress before giving up; default 5. */
  maxRetries?: number;
  /**
   * Holds every ACK this long before sending it: a round-trip time, for a loopback that has
   * none (this machine has no netem). TFTP is ACK-clocked, so this is what a LAN's RTT costs.
   */
  ackDelayMs?: number;
}

export interface FetchResult {
  bytes: number;
  sha256: string;
  ms: number;
  /** Options the server acknowledged (empty when it sent DATA 1 directly). */
  oack: Record<string, string>;
  /** ACKs sent again after a timeout or an out-of-order block. */
  reAcks: number;
}

export class TftpClientError extends Error {
  constructor(
    message: string,
    readonly code?: number,
  ) {
    super(message);
    this.name = 'TftpClientError';
  }
}

/** The RRQ bytes for a file and options (built with the codec under test). */
export function rrq(file: string, options: Record<string, string | number> = {}, mode = 'octet'): Buffer {
  return encodeTftp({
    opcode: Opcode.RRQ,
    filename: file,
    mode,
    options: new Map(Object.entries(options).map(([k, v]) => [k, String(v)])),
  });
}

/** One UDP socket and a queue of the datagrams it received, with bounded waits. */
export class Probe {
  readonly socket = dgram.createSocket('udp4');
  private readonly queue: { packet: TftpPacket | Buffer; port: number; address: string }[] = [];
  private waiter: (() => void) | undefined;

  private constructor() {
    this.socket.on('message', (buf, rinfo) => {
      let packet: TftpPacket | Buffer;
      try {
        packet = decodeTftp(buf);
      } catch {
        packet = buf;
      }
      this.queue.push({ packet, port: rinfo.port, address: rinfo.address });
      this.waiter?.();
    });
  }

  static async open(): Promise<Probe> {
    const probe = new Probe();
    await new Promise<void>((resolve) => probe.socket.bind(0, resolve));
    return probe;
  }

  /** Resolves once the datagram has left (close() right after a plain send may drop it). */
  send(buf: Buffer, port: number, address: string): Promise<void> {
    return new Promise((resolve, reject) => this.socket.send(buf, port, address, (err) => (err ? reject(err) : resolve())));
  }

  /** The next datagram, or undefined after timeoutMs. */
  async receive(timeoutMs: number): Promise<{ packet: TftpPacket | Buffer; port: number; address: string } | undefined> {
    if (this.queue.length === 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        this.waiter = () => {
          clearTimeout(timer);
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

/**
 * Reads a file. ACKs the last block of each window received in order (RFC 7440 §4); on a gap or
 * a timeout it ACKs the last in-order block again so the server resumes from there. Driven by
 * the socket's events with one timer, so the client costs little next to the server it measures.
 */
export function fetch(options: FetchOptions): Promise<FetchResult> {
  const { host, file } = options;
  const port = options.port ?? 69;
  const timeoutMs = options.timeoutMs ?? 1000;
  const maxRetries = options.maxRetries ?? 5;
  const windowsize = options.windowsize ?? 1;
  const requested: Record<string, string | number> = {};
  if (options.blksize !== undefined) requested['blksize'] = options.blksize;
  if (options.tsize) requested['tsize'] = 0;
  if (windowsize > 1) requested['windowsize'] = windowsize;
  const request = rrq(file, requested, options.mode ?? 'octet');
  const started = performance.now();
  const socket = dgram.createSocket('udp4');
  const hash = createHash('sha256');
  const ackBuf = Buffer.alloc(4);
  ackBuf.writeUInt16BE(Opcode.ACK, 0);
  let bytes = 0;
  let reAcks = 0;
  let blksize = 512;
  let window = 1;
  let oack: Record<string, string> = {};
  let tid: number | undefined;
  let expected = 1; // absolute number of the block awaited
  let inWindow = 0; // in-order blocks since the last ACK; -1 after a gap was answered
  let retries = 0;

  return new Promise<FetchResult>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    let done = false;
    let closed = false;
    const finish = (err: Error | undefined, result?: FetchResult) => {
      done = true;
      if (timer) clearTimeout(timer);
      if (closed) return;
      closed = true;
      socket.close();
      if (err) reject(err);
      else resolve(result as FetchResult);
    };
    const sendAck = (block: number) => {
      ackBuf.writeUInt16BE(block & 0xffff, 2);
      socket.send(ackBuf, tid as number, host);
    };
    const delayMs = options.ackDelayMs ?? 0;
    const ack = delayMs > 0 ? (block: number) => void setTimeout(() => done || sendAck(block), delayMs) : sendAck;
    const onTimeout = () => {
      if (++retries > maxRetries) return finish(new TftpClientError(`timed out waiting for block ${expected}`));
      if (tid === undefined) socket.send(request, port, host);
      else {
        ack(expected - 1);
        reAcks++;
      }
      inWindow = 0;
      timer?.refresh();
    };
    socket.on('error', (err) => finish(err));
    socket.on('message', (buf, rinfo) => {
      if (done) return;
      if (tid === undefined) tid = rinfo.port;
      else if (rinfo.port !== tid) return;
      const opcode = buf.length >= 4 ? buf.readUInt16BE(0) : 0;
      if (opcode === Opcode.DATA) {
        // The hot path, without a decode: opcode, block, payload.
        if (buf.readUInt16BE(2) !== (expected & 0xffff)) {
          // A gap (or a duplicate): ask again from the last block received in order, once per window.
          if (inWindow !== -1) {
            ack(expected - 1);
            reAcks++;
            inWindow = -1;
          }
          return;
        }
        retries = 0;
        timer?.refresh();
        const length = buf.length - 4;
        hash.update(buf.subarray(4));
        bytes += length;
        const last = length < blksize;
        inWindow = inWindow === -1 ? 1 : inWindow + 1;
        if (last) {
          // The final ACK goes at once, and the socket closes only once it has left: dgram sends
          // after an address lookup, so a close() right after send() drops it, and the server
          // then keeps the transfer (and this port) until its timeout.
          const result = { bytes, sha256: hash.digest('hex'), ms: performance.now() - started, oack, reAcks };
          done = true;
          if (timer) clearTimeout(timer);
          ackBuf.writeUInt16BE(expected & 0xffff, 2);
          socket.send(ackBuf, tid as number, host, () => finish(undefined, result));
          return;
        }
        if (inWindow >= window) {
          ack(expected);
          inWindow = 0;
        }
        expected++;
        return;
      }
      let p: TftpPacket;
      try {
        p = decodeTftp(buf);
      } catch {
        return finish(new TftpClientError('malformed packet from the server'));
      }
      if (p.opcode === Opcode.ERROR) return finish(new TftpClientError(`ERROR ${p.code}: ${p.message}`, p.code));
      if (p.opcode !== Opcode.OACK) return finish(new TftpClientError(`unexpected opcode ${p.opcode}`));
      oack = Object.fromEntries(p.options);
      blksize = Number(oack['blksize'] ?? 512);
      window = Number(oack['windowsize'] ?? 1);
      retries = 0;
      timer?.refresh();
      ack(0);
    });
    socket.bind(0, () => {
      timer = setTimeout(function tick() {
        onTimeout();
      }, timeoutMs);
      socket.send(request, port, host);
    });
  });
}

/** `parallel` fetches of the same file at once: every one must match `sha256` when given. */
export async function fetchMany(options: FetchOptions & { parallel: number; sha256?: string }): Promise<Record<string, unknown>> {
  const started = performance.now();
  const results = await Promise.allSettled(Array.from({ length: options.parallel }, () => fetch(options)));
  const failures = results.flatMap((r) => (r.status === 'rejected' ? [(r.reason as Error).message] : []));
  const done = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const corrupt = options.sha256 === undefined ? 0 : done.filter((r) => r.sha256 !== options.sha256).length;
  return {
    transfers: options.parallel,
    ok: done.length - corrupt,
    corrupt,
    bytes: done.reduce((sum, r) => sum + r.bytes, 0),
    ms: performance.now() - started,
    reAcks: done.reduce((sum, r) => sum + r.reAcks, 0),
    failures: failures.slice(0, 5),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const options = JSON.parse(process.argv[2] ?? '{}') as FetchOptions & { parallel?: number; sha256?: string };
  const parallel = options.parallel;
  (parallel === undefined ? fetch(options) : fetchMany({ ...options, parallel })).then(
    (result) => console.log(JSON.stringify(result)),
    (err: unknown) => {
      console.log(JSON.stringify({ error: (err as Error).message, code: (err as TftpClientError).code }));
      process.exitCode = 1;
    },
  );
}
