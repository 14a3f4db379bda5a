/**
 * A node's session with the store: one store lease, kept alive, that the node's membership key
 * and its election candidacy hang on (etcd's clientv3/concurrency Session). The session is the
 * node's one judge of store connectivity:
 *
 * - Every `keepAliveIntervalMs` (a quarter of the TTL) it renews the lease, each renewal
 *   bounded by a deadline of half the TTL, so a store that accepts connections and never
 *   answers still counts as down. Renewing four times per TTL (not three) keeps the last
 *   renewal that worked close to any outage that follows: with the 2 s default a node survives
 *   a store that answers nothing for up to 1.5 s (an etcd leader election at etcd's default
 *   1000 ms election timeout) without presuming its lease lost; a slow answer (up to 1 s)
 *   still counts.
 * - A failed renewal is retried soon (retryDelayMs) rather than one period later. etcd cannot
 *   renew leases while it elects a Raft leader (up to about two election timeouts), so a
 *   renewal or two may fail in a healthy cluster; that must not show.
 * - Once no renewal has worked for `overdueAfterMs` (2/3 of the TTL) the session is
 *   'overdue': the lease may lapse before the node hears of it, so a leader stops acting
 *   (LeaderJobs) while there is still a third of the TTL left. It is invisible otherwise, and
 *   'recovered' follows the first renewal that works.
 * - Once the last successful renewal is a whole TTL ago, or the store says the lease is gone,
 *   the lease is taken as lost ('expired'), even while the store cannot confirm it (a node cut
 *   off from the store cannot see its own key expire, election.ts): the node has dropped out of
 *   the cluster for everyone else too, and the session is `degraded` ('state', once per
 *   change) until a new lease is granted ('lease') or the old one renewed.
 *
 * Timers are bounded: one pending renewal and two watchdogs (overdue, TTL) at a time, all
 * stopped by close(). The watchdogs make 'overdue' and 'expired' fire on time even while a
 * renewal hangs until its deadline.
 */
import { EventEmitter } from 'node:events';
import { PxehaError } from '../errors.js';
import type { LeaseId, Store } from '../store/store.js';

export type SessionState = 'connected' | 'degraded';

export interface SessionOptions {
  /** Lease TTL; the node disappears for everyone this long after its last renewal. */
  ttlSeconds: number;
  /** Renewal period; default a quarter of the TTL. */
  keepAliveIntervalMs?: number;
  /** Deadline of one store call made by the session; default half the TTL (two periods). */
  requestTimeoutMs?: number;
  /** No successful renewal for this long makes the session overdue (leaders stop); default 2/3 of the TTL. */
  overdueAfterMs?: number;
  /** Pause before retrying a failed renewal; default a quarter of the period. */
  retryDelayMs?: number;
  /** Monotonic clock in ms (performance.now by default), for tests. */
  monotonicMs?: () => number;
}

type EmitterListener = Parameters<EventEmitter['on']>[1];

export class StoreSession extends EventEmitter {
  readonly ttlSeconds: number;
  readonly keepAliveIntervalMs: number;
  readonly #requestTimeoutMs: number;
  readonly #overdueAfterMs: number;
  #overdue = false;
  readonly #retryDelayMs: number;
  #nextDelayMs: number;
  readonly #store: Store;
  readonly #now: () => number;
  #leaseId: LeaseId | undefined;
  #lastRenewedMs = 0;
  #state: SessionState = 'connected';
  #lastError: Error | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #ticking: Promise<void> = Promise.resolve();
  /** Fire when the last renewal gets overdue and when it is a TTL old, even while a renewal hangs. */
  #watchdogs: NodeJS.Timeout[] = [];

  private constructor(store: Store, options: SessionOptions) {
    super();
    this.#store = store;
    this.ttlSeconds = options.ttlSeconds;
    this.keepAliveIntervalMs = options.keepAliveIntervalMs ?? Math.max(100, Math.floor((options.ttlSeconds * 1000) / 4));
    this.#requestTimeoutMs = options.requestTimeoutMs ?? Math.max(this.keepAliveIntervalMs, Math.floor((options.ttlSeconds * 1000) / 2));
    this.#overdueAfterMs = options.overdueAfterMs ?? (options.ttlSeconds * 1000 * 2) / 3;
    this.#retryDelayMs = options.retryDelayMs ?? Math.max(50, Math.floor(this.keepAliveIntervalMs / 4));
    this.#nextDelayMs = this.keepAliveIntervalMs;
    this.#now = options.monotonicMs ?? (() => performance.now());
  }

  /** Grants the first lease (failing like the store does when it cannot) and starts renewing. */
  static async start(store: Store, options: SessionOptions): Promise<StoreSession> {
    const session = new StoreSession(store, options);
    await session.#grant();
    session.#schedule();
    return session;
  }

  /** The live lease, or undefined while the session has none (lost, not yet re-granted). */
  get leaseId(): LeaseId | undefined {
    return this.#leaseId;
  }

  get state(): SessionState {
    return this.#state;
  }

  /** A live lease renewed recently enough to act on: what leading needs. */
  get sound(): boolean {
    return this.#leaseId !== undefined && !this.#overdue && this.#state === 'connected';
  }

  /** Why the session is degraded, when it is. */
  get lastError(): Error | undefined {
    return this.#state === 'degraded' ? this.#lastError : undefined;
  }

  /** A new lease was granted (the first one is granted by start(), before any listener, and not emitted). */
  override on(event: 'lease', listener: (leaseId: LeaseId) => void): this;
  /** The lease is gone, or presumed gone (no renewal for a whole TTL): whatever hung on it is lost. */
  override on(event: 'expired', listener: (leaseId: LeaseId) => void): this;
  /** Store connectivity changed, once per change. */
  override on(event: 'state', listener: (state: SessionState, reason?: Error) => void): this;
  /** Renewals have failed for overdueAfterMs: the lease may lapse unseen; stop acting on it. */
  override on(event: 'overdue', listener: () => void): this;
  /** A renewal worked again after 'overdue'. */
  override on(event: 'recovered', listener: () => void): this;
  override on(event: string | symbol, listener: EmitterListener): this {
    return super.on(event, listener);
  }

  /** Stops renewing and revokes the lease (its keys go at once). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    for (const t of this.#watchdogs) clearTimeout(t);
    await this.#ticking;
    const id = this.#leaseId;
    this.#leaseId = undefined;
    if (id !== undefined) await withDeadline(this.#store.leaseRevoke(id), this.#requestTimeoutMs, 'lease revoke').catch(() => undefined);
  }

  #schedule(): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#ticking = this.#tick().finally(() => this.#schedule());
    }, this.#nextDelayMs);
  }

  async #tick(): Promise<void> {
    const id = this.#leaseId;
    if (id === undefined) {
      await this.#grant().then(
        () => {
          this.#nextDelayMs = this.keepAliveIntervalMs;
          if (this.#leaseId !== undefined) this.emit('lease', this.#leaseId);
        },
        (err: unknown) => {
          this.#nextDelayMs = this.#retryDelayMs;
          this.#setState('degraded', asError(err));
        },
      );
      return;
    }
    // The store restarts the TTL when the request reaches it, after we sent it: count from the send.
    const sentMs = this.#now();
    try {
      await withDeadline(this.#store.leaseKeepAlive(id), this.#requestTimeoutMs, 'lease keep-alive');
      if (this.#closed) return;
      if (this.#leaseId !== id) {
        // The watchdog gave the lease up while this renewal was under way: let it go for good,
        // or its election key would hold leadership nobody exercises for one more TTL.
        void this.#store.leaseRevoke(id).catch(() => undefined);
        return;
      }
      this.#renewed(sentMs);
    } catch (err) {
      if (this.#closed) return;
      const error = asError(err);
      if (error instanceof PxehaError && error.code === 'PXE_ERR_LEASE_NOT_FOUND') {
        // The store answered: it is reachable, but our lease is gone (we were cut off too long).
        this.#setState('connected');
        this.#expire();
        await this.#tick();
        return;
      }
      if (this.#leaseId === undefined) return; // expired meanwhile
      this.#lastError = error;
      this.#nextDelayMs = this.#retryDelayMs;
      this.#checkSilence();
    }
  }

  /** Overdue after overdueAfterMs without a renewal; lease presumed lost, and degraded, after a TTL. */
  #checkSilence(): void {
    if (this.#closed || this.#leaseId === undefined) return;
    const silentMs = this.#now() - this.#lastRenewedMs;
    if (silentMs >= this.#overdueAfterMs && !this.#overdue) {
      this.#overdue = true;
      this.emit('overdue');
    }
    if (silentMs >= this.ttlSeconds * 1000) {
      this.#setState('degraded', this.#lastError ?? new PxehaError('PXE_ERR_STORE_UNAVAILABLE', 'no lease renewal for a whole TTL'));
      this.#expire();
    }
  }

  #armWatchdogs(): void {
    for (const t of this.#watchdogs) clearTimeout(t);
    const elapsed = this.#now() - this.#lastRenewedMs;
    this.#watchdogs = [this.#overdueAfterMs, this.ttlSeconds * 1000].map((at) =>
      setTimeout(() => this.#checkSilence(), Math.max(0, at - elapsed) + 1),
    );
  }

  async #grant(): Promise<void> {
    const sentMs = this.#now();
    const grant = await withDeadline(this.#store.leaseGrant(this.ttlSeconds), this.#requestTimeoutMs, 'lease grant');
    if (this.#closed) {
      await this.#store.leaseRevoke(grant.id).catch(() => undefined);
      return;
    }
    this.#leaseId = grant.id;
    this.#renewed(sentMs);
  }

  #renewed(sentMs: number): void {
    this.#lastRenewedMs = sentMs;
    this.#lastError = undefined;
    this.#armWatchdogs();
    this.#nextDelayMs = this.keepAliveIntervalMs;
    this.#setState('connected');
    if (this.#overdue) {
      this.#overdue = false;
      this.emit('recovered');
    }
  }

  #expire(): void {
    const id = this.#leaseId;
    if (id === undefined) return;
    this.#leaseId = undefined;
    this.emit('expired', id);
  }

  #setState(state: SessionState, reason?: Error): void {
    if (state === 'degraded') this.#lastError = reason;
    if (state === this.#state) return;
    this.#state = state;
    this.emit('state', state, reason);
  }
}

/** Rejects with PXE_ERR_STORE_UNAVAILABLE when `promise` takes longer than `ms`. */
export function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new PxehaError('PXE_ERR_STORE_UNAVAILABLE', `${what}: no answer from the store within ${ms} ms`)), ms);
  });
  promise.catch(() => undefined); // a late failure after the deadline is not unhandled
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
