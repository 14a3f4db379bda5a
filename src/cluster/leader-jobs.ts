/**
 * Cluster-wide jobs that exactly one node runs: the leader of the store election `leader`
 * (src/store/election.ts), campaigning with the node's session lease.
 *
 * - Winning starts every job with a Fence and an AbortSignal; losing (the candidate key is
 *   gone, the session lease expired or is presumed expired, the store is unreachable, or the
 *   node closes) aborts them at once.
 * - Fencing: an old leader may still be running a step when it loses, or may not know yet
 *   (paused process, cut off from the store). So every write a job makes is a transaction that
 *   also compares the leader key's createRevision with the one this leadership created
 *   (fencedTxn). A key that was deleted and re-created, by this node or another, has a new
 *   createRevision, so a stale leader's write fails in the store, whatever the clocks say.
 * - On close the node resigns before the store closes, so the next candidate leads at once
 *   instead of one TTL later (and etcd3's close() does not stop a campaign's keep-alive).
 */
import { EventEmitter } from 'node:events';
import { PxehaError } from '../errors.js';
import type { Logger } from '../obs/log.js';
import { campaign, type Leadership } from '../store/election.js';
import type { Compare, LeaseId, Store, TxnRequest, TxnResult } from '../store/store.js';
import { LEADER_ELECTION, leaderValue } from './member-record.js';
import type { StoreSession } from './session.js';

/** Proof of one leadership: writes guarded by it fail once that leadership is over. */
export interface Fence {
  /** The leader's candidate key. */
  readonly key: string;
  /** Its createRevision: unique to this leadership. */
  readonly createRevision: number;
  readonly leaseId: LeaseId;
}

export function fenceCompare(fence: Fence): Compare {
  return { key: fence.key, target: 'createRevision', op: '==', value: fence.createRevision };
}

/**
 * Runs `request` only while `fence` still holds: its compares plus the fence's, and a failure
 * branch that reads the leader key so a lost leadership is told apart from a failed compare
 * of the caller's own. Rejects with PXE_ERR_NOT_LEADER when the fence no longer holds;
 * otherwise resolves like store.txn (succeeded false: one of the caller's compares failed).
 */
export async function fencedTxn(store: Store, fence: Fence, request: TxnRequest): Promise<TxnResult> {
  const failure = request.failure ?? [];
  const result = await store.txn({
    compare: [fenceCompare(fence), ...(request.compare ?? [])],
    success: request.success ?? [],
    failure: [...failure, { type: 'range', key: fence.key }],
  });
  if (result.succeeded) return result;
  const probe = result.responses[result.responses.length - 1];
  const leaderKv = probe?.type === 'range' ? probe.result.kvs[0] : undefined;
  if (leaderKv?.createRevision !== fence.createRevision) {
    throw new PxehaError('PXE_ERR_NOT_LEADER', `leadership ${fence.key}@${fence.createRevision} is over; write refused`);
  }
  return { ...result, responses: result.responses.slice(0, failure.length) };
}

export interface LeaderJobContext {
  store: Store;
  fence: Fence;
  /** Aborted the moment leadership ends. */
  signal: AbortSignal;
  log: Logger;
}

export interface LeaderJob {
  readonly name: string;
  /** Runs until `signal` aborts (then settles promptly); a rejection is logged and the job restarted after a pause. */
  run(context: LeaderJobContext): Promise<void>;
}

/** A job made of one step repeated every `intervalMs` while leading. */
export function periodicJob(name: string, intervalMs: number, step: (context: LeaderJobContext) => Promise<void>): LeaderJob {
  return {
    name,
    async run(context) {
      while (!context.signal.aborted) {
        await step(context);
        await sleep(intervalMs, context.signal);
      }
    },
  };
}

export interface LeaderJobsOptions {
  name: string;
  jobs: readonly LeaderJob[];
  log: Logger;
  /** Pause before campaigning again after a failure, and before restarting a failed job; default 1000. */
  retryDelayMs?: number;
}

type EmitterListener = Parameters<EventEmitter['on']>[1];

export class LeaderJobs extends EventEmitter {
  readonly #store: Store;
  readonly #session: StoreSession;
  readonly #options: LeaderJobsOptions;
  #leadership: Leadership | undefined;
  /** Ends the current term: campaign or leadership. */
  #term: AbortController | undefined;
  #closed = false;
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  #leadingSinceMs: number | undefined;
  readonly #onExpired = (): void => this.#endTerm('session lease expired');
  readonly #onOverdue = (): void => this.#endTerm('store unreachable: lease renewals overdue');
  readonly #onWake = (): void => this.#wake?.();

  constructor(store: Store, session: StoreSession, options: LeaderJobsOptions) {
    super();
    this.#store = store;
    this.#session = session;
    this.#options = options;
  }

  /** Starts campaigning in the background. */
  start(): void {
    if (this.#loop) return;
    this.#session.on('expired', this.#onExpired);
    this.#session.on('overdue', this.#onOverdue);
    this.#session.on('recovered', this.#onWake);
    this.#session.on('lease', this.#onWake);
    this.#loop = this.#run();
  }

  get isLeader(): boolean {
    return this.#leadership?.isLeader === true && this.#term?.signal.aborted === false;
  }

  /** The current fence while leading. */
  get fence(): Fence | undefined {
    const l = this.#leadership;
    return l && this.isLeader ? { key: l.key, createRevision: l.createRevision, leaseId: l.leaseId } : undefined;
  }

  /** Became leader (jobs started). */
  override on(event: 'elected', listener: (fence: Fence) => void): this;
  /** Stopped leading (jobs aborted). */
  override on(event: 'deposed', listener: (reason: string) => void): this;
  override on(event: string | symbol, listener: EmitterListener): this {
    return super.on(event, listener);
  }

  /** Stops the jobs, resigns (while the store is still open) and stops campaigning. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#session.off('expired', this.#onExpired);
    this.#session.off('overdue', this.#onOverdue);
    this.#session.off('recovered', this.#onWake);
    this.#session.off('lease', this.#onWake);
    this.#endTerm('node closing');
    this.#wake?.();
    await this.#loop;
  }

  async #run(): Promise<void> {
    const retryMs = this.#options.retryDelayMs ?? 1000;
    while (!this.#closed) {
      const leaseId = this.#session.leaseId;
      if (leaseId === undefined || !this.#session.sound) {
        await this.#sleepUntilWoken(retryMs);
        continue;
      }
      const term = new AbortController();
      this.#term = term;
      let leadership: Leadership;
      try {
        leadership = await campaign(this.#store, LEADER_ELECTION, leaderValue(this.#options.name), leaseId, { signal: term.signal });
      } catch (err) {
        if (!this.#closed && !term.signal.aborted) {
          this.#options.log.warn({ err: (err as Error).message }, 'leader campaign failed; retrying');
        }
        term.abort();
        if (!this.#closed) await this.#sleepUntilWoken(retryMs);
        continue;
      }
      if (term.signal.aborted) {
        // Closed or lost the lease while the campaign resolved.
        await leadership.resign().catch(() => undefined);
        continue;
      }
      this.#leadership = leadership;
      await this.#lead(leadership, term);
      this.#leadership = undefined;
    }
  }

  async #lead(leadership: Leadership, term: AbortController): Promise<void> {
    const fence: Fence = { key: leadership.key, createRevision: leadership.createRevision, leaseId: leadership.leaseId };
    let reason = 'unknown';
    const ended = new Promise<void>((resolve) => {
      term.signal.addEventListener('abort', () => resolve(), { once: true });
    });
    leadership.on('lost', (err) => {
      reason = err.message;
      this.#endTerm(err.message);
    });
    if (!leadership.isLeader) this.#endTerm('candidate key lost before the jobs started');
    term.signal.addEventListener(
      'abort',
      () => {
        if (typeof term.signal.reason === 'string') reason = term.signal.reason;
      },
      { once: true },
    );
    this.#leadingSinceMs = performance.now();
    this.#options.log.info({ key: fence.key, revision: fence.createRevision }, 'elected leader: cluster jobs started');
    this.emit('elected', fence);
    const runs = this.#options.jobs.map((job) => this.#runJob(job, fence, term.signal));
    await ended;
    // Jobs see the abort at once; their writes are fenced, so waiting for them is only tidiness.
    await Promise.all(runs);
    if (this.#closed) await leadership.resign().catch(() => undefined);
    this.#options.log.info(
      { reason, ledMs: Math.round(performance.now() - (this.#leadingSinceMs ?? 0)) },
      'no longer leader: cluster jobs stopped',
    );
    this.#leadingSinceMs = undefined;
    this.emit('deposed', reason);
  }

  async #runJob(job: LeaderJob, fence: Fence, signal: AbortSignal): Promise<void> {
    const log = this.#options.log;
    while (!signal.aborted) {
      try {
        await job.run({ store: this.#store, fence, signal, log });
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof PxehaError && err.code === 'PXE_ERR_NOT_LEADER') {
          // The store says we no longer lead, before our own watch did.
          this.#endTerm(err.message);
          return;
        }
        log.warn({ job: job.name, err: (err as Error).message }, 'leader job failed; restarting it');
        await sleep(this.#options.retryDelayMs ?? 1000, signal);
      }
    }
  }

  #endTerm(reason: string): void {
    const term = this.#term;
    if (term && !term.signal.aborted) term.abort(reason);
  }

  #sleepUntilWoken(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      const self = this;
      function done(): void {
        clearTimeout(timer);
        if (self.#wake === done) self.#wake = undefined;
        resolve();
      }
      this.#wake = done;
    });
  }
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(finish, ms);
    signal?.addEventListener('abort', finish, { once: true });
    function finish(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', finish);
      resolve();
    }
  });
}
