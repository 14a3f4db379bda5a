/**
 * What both store implementations' watchers share: deliveries are queued and handed to
 * listeners on a microtask, and wait until a listener is attached, so events and errors raised
 * between `await store.watch()` and `on()` are not lost. A subclass decides what to queue
 * (history, live changes, a failure) and when the watch ends.
 */
import { EventEmitter } from 'node:events';
import type { WatchEvent, Watcher } from './store.js';

type Delivery = { events: WatchEvent[]; revision: number } | { error: Error };

export abstract class BufferedWatcher extends EventEmitter implements Watcher {
  readonly #queue: Delivery[] = [];
  #drainScheduled = false;
  #discarded = false;

  constructor() {
    super();
    this.on('newListener', (event: string | symbol) => {
      if (event === 'events' || event === 'error') this.#scheduleDrain();
    });
  }

  abstract cancel(): Promise<void>;

  /** Queues the events of one revision. */
  protected deliverEvents(events: WatchEvent[], revision: number): void {
    if (this.#discarded) return;
    this.#queue.push({ events, revision });
    this.#scheduleDrain();
  }

  /** Queues the error that ends the watch, after whatever is already queued. */
  protected deliverError(error: Error): void {
    if (this.#discarded) return;
    this.#queue.push({ error });
    this.#scheduleDrain();
  }

  /** Drops every queued delivery and accepts no more (the watch was cancelled). */
  protected discardDeliveries(): void {
    this.#discarded = true;
    this.#queue.length = 0;
  }

  #scheduleDrain(): void {
    if (this.#drainScheduled) return;
    this.#drainScheduled = true;
    queueMicrotask(() => {
      this.#drainScheduled = false;
      this.#drain();
    });
  }

  #drain(): void {
    while (!this.#discarded) {
      const head = this.#queue[0];
      if (!head) return;
      const channel = 'error' in head ? 'error' : 'events';
      if (this.listenerCount(channel) === 0) return;
      this.#queue.shift();
      if ('error' in head) this.emit('error', head.error);
      else this.emit('events', head.events, head.revision);
    }
  }
}
