/**
 * The optional native fast path of lock-step transfers: `TftpPump` from native/tftp_pump.c
 * (build/Release/pxeha_tftp.node, built with the other addon by scripts/install-deps.sh --native
 * or `npm_config_nodedir=/usr npx node-gyp rebuild`). See that file for what the pump does on
 * its own (an ACK of the block in flight answered with the next prepared DATA datagram) and
 * what it hands back as events; server.ts drives it, transfer.ts decides.
 *
 * Loading never throws: without the addon (not built, another platform) the server keeps its
 * JS path and says so once in its log.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Event kinds passed to a pump's onEvent (native/tftp_pump.c). */
export const PumpEvent = {
  /** A datagram from the peer the pump did not answer itself (`data`). */
  PACKET: 1,
  /** A datagram from anyone but the peer (`address`, `number` = port). */
  STRANGER: 2,
  /** The queue fell to the notifyWhenLeft mark (`number` = the mark). */
  LOW: 3,
  /** recvmmsg failed (`number` = errno). */
  RECV_ERROR: 4,
} as const;
export type PumpEvent = (typeof PumpEvent)[keyof typeof PumpEvent];

export type PumpEventHandler = (kind: PumpEvent, data: Buffer | undefined, address: string | undefined, number: number) => void;

/** One transfer's socket with its fast path (methods as documented in native/tftp_pump.c). */
export interface TftpPump {
  port(): number;
  /** The client's TID; true when the pump has its socket connected to it (see native/tftp_pump.c). */
  setPeer(address: string, port: number): boolean;
  /** 0, or the errno of a datagram that could not be sent (lost, as on the wire). */
  send(datagram: Buffer, port?: number, address?: string): number;
  /** Empties the queue; `expectBlock` is the wire block in flight, -1 for none. */
  reset(expectBlock: number): void;
  /** Queues DATA datagrams laid out back to back, `packetBytes` each (the last may be shorter). */
  append(run: Buffer, packetBytes: number): void;
  notifyWhenLeft(left: number): void;
  queued(): number;
  close(): void;
}

export interface TftpPumpConstructor {
  /** `counters[0]`: ACKs the pump answered (cumulative); `counters[1]`: Date.now() ms of the last. */
  new (localAddress: string, counters: Float64Array, onEvent: PumpEventHandler): TftpPump;
}

const ADDON = path.join('build', 'Release', 'pxeha_tftp.node');

let loaded: { ok: true; TftpPump: TftpPumpConstructor } | { ok: false; reason: string } | undefined;

/**
 * The TftpPump class, or why it is not available. Looks for the addon in the package root's
 * build/Release, walking up from this file (src/ under tsx, dist/ after tsc). Cached.
 */
export function loadTftpPump(): { ok: true; TftpPump: TftpPumpConstructor } | { ok: false; reason: string } {
  if (loaded) return loaded;
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (let dir = here; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, ADDON);
    if (existsSync(candidate)) {
      try {
        const binding = createRequire(import.meta.url)(candidate) as { TftpPump?: TftpPumpConstructor };
        loaded = typeof binding.TftpPump === 'function' ? { ok: true, TftpPump: binding.TftpPump } : { ok: false, reason: `${candidate} has no TftpPump (not Linux?)` };
      } catch (err) {
        loaded = { ok: false, reason: `cannot load ${candidate}: ${(err as Error).message}` };
      }
      return loaded;
    }
    if (path.dirname(dir) === dir) break;
  }
  loaded = { ok: false, reason: `${ADDON} is not built (scripts/install-deps.sh --native)` };
  return loaded;
}
