/**
 * What the DHCP server answers first when requests arrive faster than it can answer them (a
 * boot storm after a power cut). Pure: the adapter (server.ts) reads every datagram at once
 * into this queue and takes work out of it in small slices, so the choice of what to drop is
 * ours, not the kernel's when a socket buffer overflows (which drops REQUESTs of exchanges
 * already half done as readily as new DISCOVERs).
 *
 * - Exchanges in progress first: REQUEST, DECLINE, RELEASE, INFORM and anything whose type is
 *   not plain to see go in `finishing`, served in arrival order before any DISCOVER. An OFFER
 *   the client never gets to REQUEST was wasted work; a lease completed is what a booting
 *   machine needs.
 * - DISCOVERs newest first: under overload the freshest DISCOVER is answered while its client
 *   still listens, and its REQUEST follows within a round trip. A DISCOVER that has waited
 *   `maxDiscoverAgeMs` is dropped as stale: its client has retransmitted by then (PXE ROMs after
 *   4 s, iPXE and dhclient after 1-2 s), and the retransmission is newer in this queue.
 * - Both bounded: past `capacity` a class drops its oldest entry, so memory stays bounded
 *   whatever arrives; every drop is returned for the caller to count.
 */
import { MessageType } from '../protocol/dhcp4/types.js';

export interface QueuedDatagram<T> {
  item: T;
  receivedAtMs: number;
}

export interface ReceiveQueueOptions {
  /** Most entries per class (finishing, discover). Default 4096. */
  capacity?: number;
  /** A DISCOVER older than this is dropped instead of answered. Default 1000 ms. */
  maxDiscoverAgeMs?: number;
}

export type OverloadDrop = 'queue-full' | 'stale';

export const DEFAULT_QUEUE_CAPACITY = 4096;
export const DEFAULT_MAX_DISCOVER_AGE_MS = 1000;

/** Fixed-size ring: push at the tail, take from either end, O(1) each. */
class Ring<T> {
  private readonly slots: Array<QueuedDatagram<T> | undefined>;
  private head = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    this.slots = new Array<QueuedDatagram<T> | undefined>(capacity);
  }

  get size(): number {
    return this.count;
  }

  /** Appends; when full, the oldest entry makes room and is returned. */
  push(entry: QueuedDatagram<T>): QueuedDatagram<T> | undefined {
    let evicted: QueuedDatagram<T> | undefined;
    if (this.count === this.capacity) evicted = this.shift();
    this.slots[(this.head + this.count) % this.capacity] = entry;
    this.count++;
    return evicted;
  }

  /** The oldest entry. */
  shift(): QueuedDatagram<T> | undefined {
    if (this.count === 0) return undefined;
    const entry = this.slots[this.head];
    this.slots[this.head] = undefined;
    this.head = (this.head + 1) % this.capacity;
    this.count--;
    return entry;
  }

  /** The newest entry. */
  pop(): QueuedDatagram<T> | undefined {
    if (this.count === 0) return undefined;
    const i = (this.head + this.count - 1) % this.capacity;
    const entry = this.slots[i];
    this.slots[i] = undefined;
    this.count--;
    return entry;
  }

  /** Drops entries from the oldest end while `old` says so; returns them. */
  dropOldestWhile(old: (entry: QueuedDatagram<T>) => boolean): QueuedDatagram<T>[] {
    const dropped: QueuedDatagram<T>[] = [];
    while (this.count > 0 && old(this.slots[this.head]!)) dropped.push(this.shift()!);
    return dropped;
  }
}

export class ReceiveQueue<T> {
  private readonly finishing: Ring<T>;
  private readonly discovers: Ring<T>;
  private readonly maxDiscoverAgeMs: number;

  constructor(options: ReceiveQueueOptions = {}) {
    const capacity = options.capacity ?? DEFAULT_QUEUE_CAPACITY;
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`capacity must be a positive integer, got ${capacity}`);
    this.finishing = new Ring(capacity);
    this.discovers = new Ring(capacity);
    this.maxDiscoverAgeMs = options.maxDiscoverAgeMs ?? DEFAULT_MAX_DISCOVER_AGE_MS;
  }

  get size(): number {
    return this.finishing.size + this.discovers.size;
  }

  /**
   * Queues a datagram of the given DHCP message type (undefined: not plain from the bytes).
   * Returns the entry that made room for it, if the class was full.
   */
  push(item: T, messageType: number | undefined, nowMs: number): { item: T; reason: OverloadDrop } | undefined {
    const ring = messageType === MessageType.DISCOVER ? this.discovers : this.finishing;
    const evicted = ring.push({ item, receivedAtMs: nowMs });
    return evicted ? { item: evicted.item, reason: 'queue-full' } : undefined;
  }

  /**
   * The next datagram to answer, and the DISCOVERs dropped as stale on the way (for the caller
   * to count). Undefined when nothing is left.
   */
  take(nowMs: number): { next: T | undefined; stale: T[] } {
    const first = this.finishing.shift();
    if (first) return { next: first.item, stale: [] };
    const stale = this.discovers.dropOldestWhile((e) => nowMs - e.receivedAtMs > this.maxDiscoverAgeMs).map((e) => e.item);
    return { next: this.discovers.pop()?.item, stale };
  }

  /** Empties the queue (the server is closing); returns what was left. */
  clear(): T[] {
    const left: T[] = [];
    for (let e = this.finishing.shift(); e; e = this.finishing.shift()) left.push(e.item);
    for (let e = this.discovers.shift(); e; e = this.discovers.shift()) left.push(e.item);
    return left;
  }
}
