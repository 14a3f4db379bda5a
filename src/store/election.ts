/**
 * Leader election built only on the Store interface, so it runs unchanged on the embedded
 * store and on etcd. It follows etcd's clientv3/concurrency Election:
 *
 * - A candidate puts `<prefix>/<name>/<leaseId>` attached to its lease; the leader is the
 *   candidate whose key has the lowest createRevision, so leadership passes in campaign order.
 * - A candidate waits until every older candidate key is gone. Keys vanish when their holder
 *   resigns or when its lease ends (revoked, or expired because the holder stopped renewing),
 *   so a crashed leader is replaced one TTL after its last keep-alive.
 * - A leader whose key disappears has lost leadership and is told through 'lost'.
 *
 * Unlike etcd, which watches only the next older key, every candidate follows the whole
 * election directory with one range plus one prefix watch from the revision after it. That
 * wakes all candidates on every change, which costs nothing at the handful of nodes a pxeha
 * cluster has, and it lets one watch serve both the wait and the loss detection without gaps.
 *
 * The lease belongs to the caller: keep it alive, and treat a failed keep-alive as lost
 * leadership, since a leader cut off from the store cannot see its own key expire.
 */
import { EventEmitter } from 'node:events';
import { PxehaError } from '../errors.js';
import type { KeyValue, LeaseId, Store, WatchEvent, Watcher } from './store.js';

type EmitterListener = Parameters<EventEmitter['on']>[1];

export const DEFAULT_ELECTION_PREFIX = '/pxeha/election';

export interface ElectionOptions {
  /** Key prefix of all elections; default '/pxeha/election'. */
  prefix?: string;
}

export interface CampaignOptions extends ElectionOptions {
  /** Gives up the campaign: the candidate key is deleted and campaign() rejects with the reason. */
  signal?: AbortSignal;
}

/**
 * Becomes a candidate in election `name` and resolves once it leads. Campaigning again with a
 * lease that is already a candidate resumes that candidacy (and proclaims `value`), as etcd does.
 * Rejects with PXE_ERR_NOT_LEADER if the candidate key disappears while waiting.
 */
export function campaign(store: Store, name: string, value: string, leaseId: LeaseId, options: CampaignOptions = {}): Promise<Leadership> {
  return Leadership.campaign(store, name, value, leaseId, options);
}

/** The current leader's key-value (its value is what the leader proclaimed), or undefined. */
export async function leader(store: Store, name: string, options: ElectionOptions = {}): Promise<KeyValue | undefined> {
  const snapshot = await store.range(electionDirectory(name, options), { prefix: true });
  return new Candidates(snapshot.kvs).leader();
}

/** Follows who leads election `name`. */
export function observe(store: Store, name: string, options: ElectionOptions = {}): Promise<LeaderObserver> {
  return LeaderObserver.open(store, electionDirectory(name, options));
}

type LeadershipState = 'campaigning' | 'leading' | 'ended';

/** One candidacy, from campaign() until it resigns or loses its key. */
export class Leadership extends EventEmitter {
  readonly name: string;
  /** The candidate key, `<prefix>/<name>/<leaseId>`. */
  readonly key: string;
  readonly leaseId: LeaseId;
  /** Revision that created the candidate key; it orders the candidates. */
  readonly createRevision: number;
  readonly #store: Store;
  #state: LeadershipState = 'campaigning';
  #watcher: Watcher | undefined;
  #settleCampaign: ((error?: Error) => void) | undefined;

  private constructor(store: Store, name: string, key: string, leaseId: LeaseId, createRevision: number) {
    super();
    this.#store = store;
    this.name = name;
    this.key = key;
    this.leaseId = leaseId;
    this.createRevision = createRevision;
  }

  static async campaign(store: Store, name: string, value: string, leaseId: LeaseId, options: CampaignOptions): Promise<Leadership> {
    const directory = electionDirectory(name, options);
    if (leaseId === '' || leaseId === '0') {
      throw new PxehaError('PXE_ERR_STORE_BAD_REQUEST', 'a campaign needs a lease, so the key goes away with its holder');
    }
    options.signal?.throwIfAborted();
    const key = directory + leaseId;
    const created = await store.txn({
      compare: [{ key, target: 'createRevision', op: '==', value: 0 }],
      success: [{ type: 'put', key, value, lease: leaseId }],
      failure: [{ type: 'range', key }],
    });
    let createRevision = created.revision;
    if (!created.succeeded) {
      const response = created.responses[0];
      const existing = response?.type === 'range' ? response.result.kvs[0] : undefined;
      if (!existing) throw new PxehaError('PXE_ERR_NOT_LEADER', `candidate key ${key} vanished while campaigning`);
      createRevision = existing.createRevision;
    }
    const leadership = new Leadership(store, name, key, leaseId, createRevision);
    try {
      if (!created.succeeded) await leadership.#putIfOwned(value);
      await leadership.#waitToLead(directory, options.signal);
    } catch (err) {
      // Best effort: if the store is unreachable the lease removes the key in the end.
      await leadership.#withdraw().catch(() => undefined);
      throw err;
    }
    return leadership;
  }

  get isLeader(): boolean {
    return this.#state === 'leading';
  }

  /** Publishes a new value under the leader key. PXE_ERR_NOT_LEADER unless this still leads. */
  async proclaim(value: string): Promise<void> {
    if (this.#state !== 'leading') throw this.#notLeader('proclaim');
    await this.#putIfOwned(value);
  }

  /** Steps down (or stops campaigning): deletes the candidate key if it is still ours. Emits no 'lost'. */
  async resign(): Promise<void> {
    await this.#withdraw();
  }

  /**
   * Leadership ended without resign(): the key was deleted (lease expired or revoked) or the
   * watch that guards it failed. Emitted once; `isLeader` is already false.
   */
  override on(event: 'lost', listener: (reason: Error) => void): this;
  override on(event: string | symbol, listener: EmitterListener): this {
    return super.on(event, listener);
  }

  #waitToLead(directory: string, signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => settle(signal?.reason instanceof Error ? signal.reason : new Error('campaign aborted'));
      const settle = (error?: Error) => {
        this.#settleCampaign = undefined;
        signal?.removeEventListener('abort', onAbort);
        if (error) reject(error);
        else resolve();
      };
      this.#settleCampaign = settle;
      signal?.addEventListener('abort', onAbort, { once: true });
      followElection(this.#store, directory, (candidates) => this.#evaluate(candidates), (err) => this.#lose(err)).then(
        ({ candidates, watcher }) => {
          this.#watcher = watcher;
          if (this.#state === 'ended') void watcher.cancel();
          else this.#evaluate(candidates);
        },
        (err: unknown) => this.#lose(err instanceof Error ? err : new Error(String(err))),
      );
    });
  }

  #evaluate(candidates: Candidates): void {
    if (this.#state === 'ended') return;
    if (candidates.get(this.key)?.createRevision !== this.createRevision) {
      this.#lose(this.#notLeader('candidate key was deleted (lease expired or revoked)'));
      return;
    }
    if (this.#state === 'campaigning' && candidates.leader()?.key === this.key) {
      this.#state = 'leading';
      this.#settleCampaign?.();
    }
  }

  #lose(reason: Error): void {
    if (this.#state === 'ended') return;
    const wasLeading = this.#state === 'leading';
    this.#state = 'ended';
    void this.#watcher?.cancel();
    if (wasLeading) this.emit('lost', reason);
    else this.#settleCampaign?.(reason);
  }

  async #withdraw(): Promise<void> {
    this.#state = 'ended';
    await this.#watcher?.cancel();
    // Only our own candidacy: a newer one of the same lease has a different createRevision.
    await this.#store.txn({
      compare: [{ key: this.key, target: 'createRevision', op: '==', value: this.createRevision }],
      success: [{ type: 'delete', key: this.key }],
    });
  }

  async #putIfOwned(value: string): Promise<void> {
    const result = await this.#store.txn({
      compare: [{ key: this.key, target: 'createRevision', op: '==', value: this.createRevision }],
      success: [{ type: 'put', key: this.key, value, lease: this.leaseId }],
    });
    if (!result.succeeded) {
      const error = this.#notLeader('candidate key is gone');
      this.#lose(error);
      throw error;
    }
  }

  #notLeader(why: string): PxehaError {
    return new PxehaError('PXE_ERR_NOT_LEADER', `election ${this.name}: ${why}`);
  }
}

/** Who leads one election, kept current by a watch. */
export class LeaderObserver extends EventEmitter {
  #leader: KeyValue | undefined;
  #watcher: Watcher | undefined;

  private constructor() {
    super();
  }

  static async open(store: Store, directory: string): Promise<LeaderObserver> {
    const observer = new LeaderObserver();
    const { candidates, watcher } = await followElection(
      store,
      directory,
      (current) => observer.#update(current.leader()),
      (err) => observer.emit('error', err),
    );
    observer.#leader = candidates.leader();
    observer.#watcher = watcher;
    return observer;
  }

  /** The current leader's key-value, or undefined when nobody campaigns. */
  get leader(): KeyValue | undefined {
    return this.#leader;
  }

  /** A different candidate leads, the leader proclaimed a new value, or the election emptied (undefined). */
  override on(event: 'change', listener: (leader: KeyValue | undefined) => void): this;
  /** The watch behind the observer failed; no more 'change' events follow. */
  override on(event: 'error', listener: (err: Error) => void): this;
  override on(event: string | symbol, listener: EmitterListener): this {
    return super.on(event, listener);
  }

  async cancel(): Promise<void> {
    await this.#watcher?.cancel();
  }

  #update(leader: KeyValue | undefined): void {
    const before = this.#leader;
    this.#leader = leader;
    if (before?.key !== leader?.key || before?.modRevision !== leader?.modRevision) this.emit('change', leader);
  }
}

/** The candidate keys of one election. */
class Candidates {
  readonly #byKey = new Map<string, KeyValue>();

  constructor(kvs: readonly KeyValue[]) {
    for (const kv of kvs) this.#byKey.set(kv.key, kv);
  }

  apply(events: readonly WatchEvent[]): void {
    for (const { type, kv } of events) {
      if (type === 'put') this.#byKey.set(kv.key, kv);
      else this.#byKey.delete(kv.key);
    }
  }

  get(key: string): KeyValue | undefined {
    return this.#byKey.get(key);
  }

  leader(): KeyValue | undefined {
    let first: KeyValue | undefined;
    for (const kv of this.#byKey.values()) if (!first || kv.createRevision < first.createRevision) first = kv;
    return first;
  }
}

/** A snapshot of the election directory and a watch that continues right after it. */
async function followElection(
  store: Store,
  directory: string,
  onChange: (candidates: Candidates) => void,
  onError: (err: Error) => void,
): Promise<{ candidates: Candidates; watcher: Watcher }> {
  const snapshot = await store.range(directory, { prefix: true });
  const candidates = new Candidates(snapshot.kvs);
  const watcher = await store.watch(directory, { prefix: true, startRevision: snapshot.revision + 1 });
  watcher.on('events', (events) => {
    candidates.apply(events);
    onChange(candidates);
  });
  watcher.on('error', onError);
  return { candidates, watcher };
}

function electionDirectory(name: string, options: ElectionOptions): string {
  if (name === '' || name.includes('/')) {
    // A '/' would let election "a" see the candidates of election "a/b".
    throw new PxehaError('PXE_ERR_STORE_BAD_REQUEST', `election name must be non-empty and contain no '/', got ${JSON.stringify(name)}`);
  }
  return `${options.prefix ?? DEFAULT_ELECTION_PREFIX}/${name}/`;
}
