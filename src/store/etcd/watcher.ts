/**
 * A watch on etcd, on its own gRPC Watch stream, written against the raw stream rather than
 * etcd3's WatchManager because that manager, in 1.1.2:
 * - resumes after a reconnect from the response header's revision + 1, which skips events
 *   when the stream drops while a long history replay is still catching up (etcd sends
 *   history in batches of at most 1000 revisions, each stamped with the *current* revision);
 * - reports a compacted start revision as a generic "Watcher canceled" error, dropping the
 *   compact_revision that tells it apart;
 * - cannot send the `hasleader` metadata, so a watch on a member cut off from the quorum
 *   would silently deliver nothing instead of failing over.
 *
 * Here the resume point is the revision after the last event delivered, so a reconnect
 * neither skips nor repeats a revision. Every stream carries `hasleader: true` (etcd's
 * clientv3.WithRequireLeader): a member that loses its leader cancels the stream and the
 * watcher reconnects, to another member if need be. Transient failures never end the watch;
 * it retries with capped backoff until cancel() or the store closes. Only compaction (the
 * events it needs are gone), a refused request or close() end it with 'error'.
 *
 * etcd delivers all events of one revision in one response (we never ask for fragments), and a
 * response may hold several revisions; they are split into one 'events' emit per revision.
 * Deliveries wait until a listener is attached (BufferedWatcher, shared with the embedded store).
 */
import type { IWatchResponse } from 'etcd3';
import { PxehaError } from '../../errors.js';
import { BufferedWatcher } from '../buffered-watcher.js';
import type { WatchEvent } from '../store.js';
import { watchEvent } from './codec.js';
import { isExpiredToken, isUnavailable, toStoreError } from './errors.js';

/** The part of a grpc-js ClientDuplexStream we use. */
export interface WatchStream {
  write(request: unknown): boolean;
  cancel(): void;
  on(event: 'data', listener: (response: IWatchResponse) => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
  on(event: 'end', listener: () => void): this;
}

/** Where a stream's responses and failure go; `generation` tells old streams from the current one. */
export interface WatchStreamHandlers {
  onResponse(response: IWatchResponse): void;
  onError(err: unknown): void;
}

/** What a watcher needs from its store. */
export interface WatchHost {
  /**
   * Opens a Watch stream on some member, sends `createRequest` and resolves once etcd answers
   * it (so a member that accepts the stream and dies counts as a failure, not a success, in its
   * circuit breaker). Every response, the first included, goes to `handlers.onResponse`.
   */
  openStream(createRequest: object, handlers: WatchStreamHandlers): Promise<WatchStream>;
  /** The store learns that a stream broke (it checks the cluster's health). */
  reportFailure(err: unknown): void;
  /** Forgets the auth token, after etcd called it invalid (expired). */
  renewAuth(): void;
  detach(watcher: EtcdWatcher): void;
  /** Deadline for the first creation, so watch() fails instead of hanging when etcd is down. */
  readonly requestTimeoutMs: number;
}

export interface WatchSpec {
  key: Buffer;
  rangeEnd: Buffer | undefined;
  startRevision: number;
  prevKv: boolean;
}

const INITIAL_BACKOFF_MS = 50;
const MAX_BACKOFF_MS = 2000;

export class EtcdWatcher extends BufferedWatcher {
  readonly #host: WatchHost;
  readonly #spec: WatchSpec;
  #nextRevision: number;
  #stream: WatchStream | undefined;
  /** Counts connections; callbacks of an older one are ignored. */
  #generation = 0;
  #ended = false;
  #backoffMs = INITIAL_BACKOFF_MS;
  #retryTimer: NodeJS.Timeout | undefined;
  /** Settles the first creation: watch() resolves only once etcd has the watch. */
  #created: { resolve: () => void; reject: (err: Error) => void; deadline: number } | undefined;

  constructor(host: WatchHost, spec: WatchSpec) {
    super();
    this.#host = host;
    this.#spec = spec;
    this.#nextRevision = spec.startRevision;
  }

  /** Resolves once etcd has created the watch, so later writes are certain to be seen. */
  start(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#created = { resolve, reject, deadline: Date.now() + this.#host.requestTimeoutMs };
      void this.#connect();
    });
  }

  async cancel(): Promise<void> {
    if (this.#ended) return;
    this.#end();
    this.discardDeliveries();
  }

  /** Ends the watch with an error (compaction, refused request, store closed). */
  fail(error: Error): void {
    if (this.#ended) return;
    this.#end();
    if (this.#created) {
      this.#created.reject(error);
      this.#created = undefined;
      return;
    }
    this.deliverError(error);
  }

  #end(): void {
    this.#ended = true;
    clearTimeout(this.#retryTimer);
    const stream = this.#stream;
    this.#stream = undefined;
    // Cancel, not end: grpc-js keeps a stream open after its channel is closed, and an open
    // Watch stream would keep the process (and etcd's watcher) alive.
    stream?.cancel();
    this.#host.detach(this);
  }

  async #connect(): Promise<void> {
    if (this.#ended) return;
    const generation = ++this.#generation;
    const current = () => generation === this.#generation && !this.#ended;
    let stream: WatchStream;
    try {
      stream = await this.#host.openStream(
        {
          create_request: {
            key: this.#spec.key,
            range_end: this.#spec.rangeEnd,
            start_revision: this.#nextRevision,
            prev_kv: this.#spec.prevKv,
          },
        },
        {
          onResponse: (response) => {
            if (current()) this.#onResponse(response);
          },
          onError: (err) => {
            if (current()) this.#onStreamError(err);
          },
        },
      );
    } catch (err) {
      if (current()) this.#onStreamError(err);
      return;
    }
    if (current()) this.#stream = stream;
    else stream.cancel();
  }

  #onResponse(response: IWatchResponse): void {
    if (response.canceled) {
      this.#onCanceled(response);
      return;
    }
    if (response.created) {
      this.#backoffMs = INITIAL_BACKOFF_MS;
      this.#created?.resolve();
      this.#created = undefined;
    }
    const events = response.events ?? [];
    let batch: WatchEvent[] = [];
    let batchRevision = 0;
    for (const event of events) {
      const revision = Number(event.kv.mod_revision);
      if (revision < this.#nextRevision) continue; // never deliver a revision twice
      if (revision !== batchRevision && batch.length > 0) this.#enqueue(batch, batchRevision);
      if (revision !== batchRevision) batch = [];
      batchRevision = revision;
      batch.push(watchEvent(event, this.#spec.prevKv));
    }
    if (batch.length > 0) this.#enqueue(batch, batchRevision);
  }

  #onCanceled(response: IWatchResponse): void {
    const compactRevision = Number(response.compact_revision ?? 0);
    if (compactRevision > 0) {
      this.fail(
        new PxehaError(
          'PXE_ERR_STORE_COMPACTED',
          `watch needs revision ${this.#nextRevision} but etcd compacted history before ${compactRevision}`,
        ),
      );
      return;
    }
    const reason = String(response.cancel_reason ?? '');
    // A member that lost its leader cancels `hasleader` watches: go find another one.
    if (reason === '' || /no leader|leader changed/.test(reason)) {
      this.#onStreamError(new PxehaError('PXE_ERR_STORE_UNAVAILABLE', `etcd cancelled the watch: ${reason || 'no reason given'}`));
      return;
    }
    if (isExpiredToken(new Error(reason))) {
      this.#onStreamError(new Error(reason));
      return;
    }
    this.fail(toStoreError(new Error(reason), 'watch'));
  }

  #onStreamError(err: unknown): void {
    if (this.#ended) return;
    this.#generation += 1; // whatever the broken stream still says is ignored
    this.#stream?.cancel();
    this.#stream = undefined;
    const error = toStoreError(err, 'watch');
    if (isExpiredToken(err)) {
      this.#host.renewAuth();
    } else if (isUnavailable(err) || error.code === 'PXE_ERR_STORE_UNAVAILABLE') {
      this.#host.reportFailure(err);
    } else {
      this.fail(error);
      return;
    }
    if (this.#created && Date.now() + this.#backoffMs > this.#created.deadline) {
      this.fail(new PxehaError('PXE_ERR_STORE_UNAVAILABLE', `watch could not be created within ${this.#host.requestTimeoutMs} ms: ${error.message}`, { cause: err }));
      return;
    }
    this.#retryTimer = setTimeout(() => void this.#connect(), this.#backoffMs);
    this.#backoffMs = Math.min(this.#backoffMs * 2, MAX_BACKOFF_MS);
  }

  #enqueue(events: WatchEvent[], revision: number): void {
    this.#nextRevision = revision + 1;
    this.deliverEvents(events, revision);
  }
}
