/**
 * Cluster membership: this node's record under `/pxeha/nodes/<name>`, attached to its session
 * lease, and a watch-fed view of every member's record.
 *
 * - The record is written when the session gets a lease (at start and again after a lost
 *   lease, so a node that was cut off re-registers as soon as the store answers), every
 *   `publishIntervalMs` (fresh load and clock), and at once when the node applies a new
 *   configuration revision (setAppliedRevision).
 * - A node that stops renewing its lease disappears for everyone within the lease TTL: etcd
 *   (or the embedded store) deletes the key and every view sees the delete.
 * - The view is a snapshot plus a watch from the revision after it; a watch that ends (store
 *   closed, history compacted) is reopened from a fresh snapshot.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from '../obs/log.js';
import type { Store, Watcher } from '../store/store.js';
import type { Clock } from '../util/clock.js';
import { MEMBERS_PREFIX, OFFSET_SAMPLES, memberKey, parseMemberRecord, type MemberRecord, type MemberView } from './member-record.js';
import type { SessionState, StoreSession } from './session.js';

/** What the node says about itself besides its name, applied revision and clock. */
export type SelfDescription = Omit<MemberRecord, 'name' | 'configRevision' | 'clockMs' | 'startedAtMs'>;

export interface MembershipOptions {
  name: string;
  describe: () => SelfDescription;
  clock: Clock;
  log: Logger;
  /** How often the record is rewritten with fresh load and clock; default 5000. */
  publishIntervalMs?: number;
  /** Delay before a failed watch is reopened; default 500. */
  retryDelayMs?: number;
}

type EmitterListener = Parameters<EventEmitter['on']>[1];

export class Membership extends EventEmitter {
  readonly name: string;
  readonly #store: Store;
  readonly #session: StoreSession;
  readonly #options: MembershipOptions;
  readonly #startedAtMs: number;
  readonly #members = new Map<string, MemberView>();
  #appliedRevision = 0;
  #watcher: Watcher | undefined;
  #publishTimer: NodeJS.Timeout | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #publishing: Promise<void> | undefined;
  #publishAgain = false;
  #closed = false;
  readonly #onLease = (): void => void this.publish();
  readonly #onState = (state: SessionState, reason?: Error): void => {
    if (state === 'degraded') this.#options.log.warn({ err: reason?.message }, 'store unreachable: node degraded');
    else this.#options.log.info('store reachable again: node healthy');
    this.emit('state', state);
  };

  private constructor(store: Store, session: StoreSession, options: MembershipOptions, appliedRevision: number) {
    super();
    this.name = options.name;
    this.#store = store;
    this.#session = session;
    this.#options = options;
    this.#startedAtMs = options.clock.now();
    this.#appliedRevision = appliedRevision;
  }

  /** Registers the node and opens the view; fails as the store does when it cannot. */
  static async start(store: Store, session: StoreSession, options: MembershipOptions, appliedRevision = 0): Promise<Membership> {
    const membership = new Membership(store, session, options, appliedRevision);
    await membership.#write();
    await membership.#openView();
    session.on('lease', membership.#onLease);
    session.on('state', membership.#onState);
    membership.#schedulePublish();
    return membership;
  }

  /** Every registered member, this node included once it is registered. */
  members(): MemberView[] {
    return [...this.#members.values()];
  }

  get appliedRevision(): number {
    return this.#appliedRevision;
  }

  /** The store cannot be reached: the node serves from what it has and says so. */
  get degraded(): boolean {
    return this.#session.state === 'degraded';
  }

  /** Records the configuration revision the node applied and publishes it at once. */
  setAppliedRevision(revision: number): void {
    if (revision === this.#appliedRevision) return;
    this.#appliedRevision = revision;
    void this.publish();
  }

  /** A member joined or left, or its record changed. */
  override on(event: 'change', listener: (members: MemberView[]) => void): this;
  /** The session's store connectivity changed. */
  override on(event: 'state', listener: (state: SessionState) => void): this;
  override on(event: string | symbol, listener: EmitterListener): this {
    return super.on(event, listener);
  }

  /** Writes the record now; overlapping calls are coalesced into one more write. Never rejects. */
  publish(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    if (this.#publishing) {
      this.#publishAgain = true;
      return this.#publishing;
    }
    this.#publishing = (async () => {
      do {
        this.#publishAgain = false;
        try {
          await this.#write();
        } catch (err) {
          // The session notices an unreachable store or a lost lease and re-registers.
          this.#options.log.debug({ err: (err as Error).message }, 'membership record not written');
        }
      } while (this.#publishAgain && !this.#closed);
    })().finally(() => (this.#publishing = undefined));
    return this.#publishing;
  }

  /** Stops publishing and watching. The record goes with the session's lease (StoreSession.close). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#publishTimer);
    clearTimeout(this.#retryTimer);
    this.#session.off('lease', this.#onLease);
    this.#session.off('state', this.#onState);
    await this.#publishing;
    await this.#watcher?.cancel().catch(() => undefined);
  }

  #record(): MemberRecord {
    return {
      name: this.name,
      ...this.#options.describe(),
      configRevision: this.#appliedRevision,
      clockMs: this.#options.clock.now(),
      startedAtMs: this.#startedAtMs,
    };
  }

  async #write(): Promise<void> {
    const lease = this.#session.leaseId;
    if (lease === undefined) return; // re-registered when the session gets its next lease
    await this.#store.put(memberKey(this.name), JSON.stringify(this.#record()), { lease });
  }

  #schedulePublish(): void {
    if (this.#closed) return;
    this.#publishTimer = setTimeout(() => {
      void this.publish().finally(() => this.#schedulePublish());
    }, this.#options.publishIntervalMs ?? 5000);
  }

  async #openView(): Promise<void> {
    const snapshot = await this.#store.range(MEMBERS_PREFIX, { prefix: true });
    const seen = new Set<string>();
    for (const kv of snapshot.kvs) {
      const record = parseMemberRecord(kv.value);
      if (!record) continue;
      seen.add(record.name);
      const known = this.#members.get(record.name);
      // Keep the clock samples of a member we already followed; a new record's age is unknown.
      this.#members.set(record.name, {
        record,
        modRevision: kv.modRevision,
        ...(known?.receivedAtMs !== undefined ? { receivedAtMs: known.receivedAtMs } : {}),
        ...(known?.offsetSamplesMs !== undefined ? { offsetSamplesMs: known.offsetSamplesMs } : {}),
      });
    }
    for (const name of [...this.#members.keys()]) if (!seen.has(name)) this.#members.delete(name);
    const watcher = await this.#store.watch(MEMBERS_PREFIX, { prefix: true, startRevision: snapshot.revision + 1 });
    if (this.#closed) {
      await watcher.cancel();
      return;
    }
    this.#watcher = watcher;
    watcher.on('events', (events) => {
      const now = this.#options.clock.now();
      for (const e of events) {
        const name = e.kv.key.slice(MEMBERS_PREFIX.length);
        if (e.type === 'delete') {
          if (this.#members.delete(name)) this.#options.log.info({ member: name }, 'member left (lease ended or node stopped)');
          continue;
        }
        const record = parseMemberRecord(e.kv.value);
        if (!record) continue;
        if (!this.#members.has(record.name)) this.#options.log.info({ member: record.name, addresses: record.addresses }, 'member joined');
        const samples = [...(this.#members.get(record.name)?.offsetSamplesMs ?? []), record.clockMs - now].slice(-OFFSET_SAMPLES);
        this.#members.set(record.name, { record, modRevision: e.kv.modRevision, receivedAtMs: now, offsetSamplesMs: samples });
      }
      this.emit('change', this.members());
    });
    watcher.on('error', (err) => {
      this.#options.log.warn({ err: err.message }, 'membership watch ended; reopening');
      this.#reopenView();
    });
    this.emit('change', this.members());
  }

  #reopenView(): void {
    if (this.#closed) return;
    void this.#watcher?.cancel().catch(() => undefined);
    this.#watcher = undefined;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => {
      this.#openView().catch(() => this.#reopenView());
    }, this.#options.retryDelayMs ?? 500);
  }
}
