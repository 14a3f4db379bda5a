/**
 * Server policy for a read request's options (RFC 2347 §2): which options pxeha acknowledges
 * and with which values. Pure: the socket adapter supplies the file size, the transfer state
 * machine (transfer.ts) takes the result.
 *
 * | option     | pxeha grants                                                               |
 * | ---        | ---                                                                        |
 * | blksize    | min(requested, maxBlksize) (RFC 2348 §2 lets the server answer smaller)     |
 * | tsize      | the file size, octet mode only; in netascii the size on the wire is only    |
 * |            | known after converting the whole file, so the option is not acknowledged;  |
 * |            | nor for an empty file (curl refuses an OACK with tsize 0)                  |
 * | timeout    | the requested value exactly, or not at all (RFC 2349 §2: must match)        |
 * | windowsize | min(requested, maxWindowsize) (RFC 7440 §3 lets the server answer smaller)  |
 *
 * Unknown options and values outside the RFC ranges are left out of the OACK, as RFC 2347 §2
 * allows. When nothing is acknowledged there is no OACK and the transfer starts with DATA 1
 * (RFC 2347 §2: "If the server does not support option negotiation ... DATA").
 * The OACK lists options in the order the client sent them, so it is deterministic.
 */
import { DEFAULT_BLOCK_SIZE_BYTES, TransferMode } from '../protocol/tftp/codes.js';
import { OptionName, formatOptionValue, isKnownOption, parseOptionValue } from '../protocol/tftp/options.js';

/** Server-side limits and timing, the same for every transfer of one server. */
export interface TftpPolicy {
  /** Largest blksize granted (RFC 2348 allows up to 65464). */
  maxBlksize: number;
  /** Largest windowsize granted (RFC 7440 allows up to 65535). */
  maxWindowsize: number;
  /** First retransmission timeout when the client did not negotiate one. */
  initialTimeoutMs: number;
  /** Cap of the exponential backoff. */
  maxTimeoutMs: number;
  /** Retransmissions of one window (or OACK) before the transfer is given up as timed out. */
  maxRetries: number;
  /**
   * File bytes read ahead of the window, so the next window is in memory when its ACK comes
   * (reads go to the libuv thread pool, which would otherwise add its latency to every
   * lock-step round trip). 0 keeps at most one window buffered. The read-ahead of a transfer
   * that does not get a large one (below).
   */
  readAheadBytes: number;
  /**
   * Read-ahead of a transfer that gets a large one: while the transfers holding one take at most
   * `readAheadPoolBytes` together, a new transfer reads `largeReadAheadBytes` ahead, else
   * `readAheadBytes`. A lock-step transfer is then one read (a thread-pool round trip, ≈ 6 %
   * of the server's CPU at 64 KiB) per ≈ 350 blocks of 1468 bytes instead of per ≈ 22, which
   * was worth ≈ 20 % of lock-step throughput (bench/tftp/RESULTS.md, 2026-11-24, second
   * section); the pool keeps hundreds of transfers at once to readAheadBytes each.
   */
  largeReadAheadBytes: number;
  readAheadPoolBytes: number;
}

export const DEFAULT_TFTP_POLICY: Readonly<TftpPolicy> = Object.freeze({
  maxBlksize: 65464,
  maxWindowsize: 64,
  initialTimeoutMs: 1000,
  maxTimeoutMs: 8000,
  maxRetries: 5,
  readAheadBytes: 64 * 1024,
  largeReadAheadBytes: 1024 * 1024,
  readAheadPoolBytes: 16 * 1024 * 1024,
});

export type ReadMode = typeof TransferMode.OCTET | typeof TransferMode.NETASCII;

export interface Negotiated {
  blksize: number;
  windowsize: number;
  /** The client's timeout option in ms, when acknowledged. */
  timeoutMs: number | undefined;
  /** Options to acknowledge, in request order; undefined when none is (then no OACK is sent). */
  oack: ReadonlyMap<string, string> | undefined;
}

/** Decides the OACK for a read request of a file of `fileSizeBytes` in `mode`. */
export function negotiateRead(
  requested: ReadonlyMap<string, string>,
  mode: ReadMode,
  fileSizeBytes: number,
  policy: Pick<TftpPolicy, 'maxBlksize' | 'maxWindowsize'>,
): Negotiated {
  const oack = new Map<string, string>();
  let blksize = DEFAULT_BLOCK_SIZE_BYTES;
  let windowsize = 1;
  let timeoutMs: number | undefined;
  for (const [name, text] of requested) {
    if (!isKnownOption(name)) continue;
    const value = parseOptionValue(name, text);
    if (value === undefined) continue;
    switch (name) {
      case OptionName.BLKSIZE:
        blksize = Math.min(value, policy.maxBlksize);
        oack.set(name, formatOptionValue(blksize));
        break;
      case OptionName.TSIZE:
        // Not for an empty file: curl (lib/tftp.c, through 7.88 at least) rejects "tsize 0" in
        // an OACK as invalid and gives up, while every client takes the plain transfer.
        if (mode === TransferMode.OCTET && fileSizeBytes > 0) oack.set(name, formatOptionValue(fileSizeBytes));
        break;
      case OptionName.TIMEOUT:
        timeoutMs = value * 1000;
        oack.set(name, formatOptionValue(value));
        break;
      case OptionName.WINDOWSIZE:
        windowsize = Math.min(value, policy.maxWindowsize);
        oack.set(name, formatOptionValue(windowsize));
        break;
    }
  }
  return { blksize, windowsize, timeoutMs, oack: oack.size > 0 ? oack : undefined };
}
