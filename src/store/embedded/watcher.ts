/**
 * A watch on the embedded store. It first replays history from its start revision, a page of
 * revisions per event-loop turn so a long replay never blocks the loop, then switches to live
 * events handed over by the store once each commit is durable. Replays stop at the store's
 * durable revision (a commit whose sync is in flight is not delivered yet, not even from
 * history). The switch happens in the same synchronous step that finds the history exhausted,
 * and the store publishes a commit in the same step that advances the durable revision, so no
 * revision is skipped or delivered twice.
 *
 * Deliveries wait until a listener is attached (BufferedWatcher).
 */
import { PxehaError } from '../../errors.js';
import { BufferedWatcher } from '../buffered-watcher.js';
import type { WatchEvent } from '../store.js';
import { type KeySpan, spanContains } from './key-span.js';
import type { RevisionChanges } from './kv-tables.js';

/** Revisions read from history per event-loop turn during a replay. */
const REPLAY_PAGE_REVISIONS = 500;

/** What a watcher needs from its store. */
export interface WatchSource {
  currentRevision(): number;
  compactRevision(): number;
  readHistory(span: KeySpan, fromRevision: number, toRevision: number): RevisionChanges[];
  detach(watcher: EmbeddedWatcher): void;
}

export class EmbeddedWatcher extends BufferedWatcher {
  readonly #source: WatchSource;
  readonly #span: KeySpan;
  readonly #withPrevKv: boolean;
  #nextRevision: number;
  #live = false;
  #ended = false;

  constructor(source: WatchSource, span: KeySpan, startRevision: number, withPrevKv: boolean) {
    super();
    this.#source = source;
    this.#span = span;
    this.#nextRevision = startRevision;
    this.#withPrevKv = withPrevKv;
  }

  /** Starts the replay; a start revision older than the compact revision fails at once. */
  start(): void {
    this.#replayPage();
  }

  /** Called by the store right after a commit becomes durable. */
  publish(changes: readonly RevisionChanges[]): void {
    if (!this.#live || this.#ended) return;
    for (const change of changes) {
      if (change.revision < this.#nextRevision) continue;
      this.#enqueue(change);
      this.#nextRevision = change.revision + 1;
    }
  }

  /** Ends the watch with an error (compaction, store closed). */
  fail(error: Error): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#source.detach(this);
    this.deliverError(error);
  }

  async cancel(): Promise<void> {
    this.#ended = true;
    this.discardDeliveries();
    this.#source.detach(this);
  }

  #replayPage(): void {
    if (this.#ended) return;
    const source = this.#source;
    if (this.#nextRevision < source.compactRevision()) {
      this.fail(
        new PxehaError(
          'PXE_ERR_STORE_COMPACTED',
          `watch needs revision ${this.#nextRevision} but history before ${source.compactRevision()} is compacted`,
        ),
      );
      return;
    }
    const lastRevision = source.currentRevision();
    if (this.#nextRevision > lastRevision) {
      this.#live = true;
      return;
    }
    const toRevision = Math.min(lastRevision, this.#nextRevision + REPLAY_PAGE_REVISIONS - 1);
    let changes: RevisionChanges[];
    try {
      changes = source.readHistory(this.#span, this.#nextRevision, toRevision);
    } catch (err) {
      this.fail(new PxehaError('PXE_ERR_STORE_UNAVAILABLE', 'watch could not read store history', { cause: err }));
      return;
    }
    for (const change of changes) this.#enqueue(change);
    this.#nextRevision = toRevision + 1;
    setImmediate(() => this.#replayPage());
  }

  #enqueue(change: RevisionChanges): void {
    const events: WatchEvent[] = [];
    for (const { keyBytes, event } of change.events) {
      if (!spanContains(this.#span, keyBytes)) continue;
      events.push(this.#withPrevKv || !event.prevKv ? event : { type: event.type, kv: event.kv });
    }
    if (events.length > 0) this.deliverEvents(events, change.revision);
  }
}
