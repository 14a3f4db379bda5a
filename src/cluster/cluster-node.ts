/**
 * The cluster side of one node, composed: a store session (lease + connectivity), membership
 * (this node's record and the view of all), and the leader-only jobs. node.ts starts one and
 * closes it before the store: jobs stop and the node resigns first, then the session revokes
 * its lease, so the node leaves the cluster at once instead of one TTL later.
 */
import { loadavg, networkInterfaces } from 'node:os';
import { readClusterConfig } from '../config/cluster-store.js';
import type { Logger } from '../obs/log.js';
import { leader as currentLeader } from '../store/election.js';
import type { Store } from '../store/store.js';
import type { Clock } from '../util/clock.js';
import type { LeaderJob } from './leader-jobs.js';
import { LeaderJobs } from './leader-jobs.js';
import { clusterStatusOf, LEADER_ELECTION, leaderNameOf, type ClusterStatus } from './member-record.js';
import { Membership, type SelfDescription } from './membership.js';
import { StoreSession, withDeadline, type SessionState } from './session.js';
import { PXEHA_VERSION } from './version.js';

export interface ClusterNodeOptions {
  name: string;
  /** Address the node advertises; default every non-loopback IPv4 address it has. */
  advertiseAddress?: string;
  httpPort: number;
  /**
   * Relative share of DHCP clients (published in the membership record); default 100. A
   * function is read at each publish (operator overrides, src/cluster/node-overrides.ts).
   */
  weight?: number | (() => number);
  /** The node is drained by an operator (published in its record; its weight is then 0). */
  drained?: () => boolean;
  memberTtlSeconds: number;
  publishIntervalMs: number;
  clockSkewWarnMs: number;
  jobs: readonly LeaderJob[];
  clock: Clock;
  log: Logger;
  /** Lease records in the node's view, published as load. */
  leaseRecords?: () => number;
  /** Artifacts the node holds (src/artifacts/holdings.ts), published for boot-server choice. */
  artifacts?: () => string[];
  /** Image versions the node holds whole and verified (src/images/replicator.ts), published for peers and boot-server choice. */
  images?: () => string[];
  /** Node labels (node config `labels`), published for image placement. */
  labels?: Record<string, string>;
  /** Called on every change of store connectivity and leadership (metrics). */
  onHealth?: (health: NodeHealth) => void;
}

export interface NodeHealth {
  state: 'ok' | 'degraded';
  leader: boolean;
  /** Why the node is degraded. */
  reason?: string;
}

export class ClusterNode {
  readonly session: StoreSession;
  readonly membership: Membership;
  readonly leaderJobs: LeaderJobs;
  readonly #store: Store;
  readonly #options: ClusterNodeOptions;

  private constructor(store: Store, session: StoreSession, membership: Membership, leaderJobs: LeaderJobs, options: ClusterNodeOptions) {
    this.#store = store;
    this.session = session;
    this.membership = membership;
    this.leaderJobs = leaderJobs;
    this.#options = options;
  }

  static async start(store: Store, options: ClusterNodeOptions, appliedRevision: number): Promise<ClusterNode> {
    const session = await StoreSession.start(store, { ttlSeconds: options.memberTtlSeconds });
    let membership: Membership;
    try {
      membership = await Membership.start(
        store,
        session,
        {
          name: options.name,
          describe: () => describeSelf(options),
          clock: options.clock,
          log: options.log,
          publishIntervalMs: options.publishIntervalMs,
        },
        appliedRevision,
      );
    } catch (err) {
      await session.close();
      throw err;
    }
    const leaderJobs = new LeaderJobs(store, session, { name: options.name, jobs: options.jobs, log: options.log });
    const node = new ClusterNode(store, session, membership, leaderJobs, options);
    const report = (): void => options.onHealth?.(node.health());
    session.on('state', report);
    leaderJobs.on('elected', report);
    leaderJobs.on('deposed', report);
    leaderJobs.start();
    report();
    return node;
  }

  health(): NodeHealth {
    const degraded = this.session.state === 'degraded';
    return {
      state: degraded ? 'degraded' : 'ok',
      leader: this.leaderJobs.isLeader,
      ...(degraded ? { reason: this.session.lastError?.message ?? 'store unreachable' } : {}),
    };
  }

  /** The cluster as this node sees it. Store reads are bounded, so a cut-off node still answers. */
  async status(): Promise<ClusterStatus> {
    const deadlineMs = Math.max(1000, this.session.ttlSeconds * 1000);
    let store: ClusterStatus['store'] = { kind: this.#store.kind, reachable: true };
    let configRevision = this.membership.appliedRevision;
    let leaderName: string | undefined = this.leaderJobs.isLeader ? this.#options.name : undefined;
    try {
      const [revision, config, leaderKv] = await withDeadline(
        Promise.all([this.#store.revision(), readClusterConfig(this.#store), currentLeader(this.#store, LEADER_ELECTION)]),
        deadlineMs,
        'cluster status',
      );
      store = { ...store, revision };
      configRevision = config.revision;
      leaderName = leaderNameOf(leaderKv?.value);
    } catch (err) {
      store = { ...store, reachable: false, error: (err as Error).message };
    }
    return clusterStatusOf({
      observer: this.#options.name,
      observedAtMs: this.#options.clock.now(),
      members: this.membership.members(),
      leaderName,
      configRevision,
      clockSkewThresholdMs: this.#options.clockSkewWarnMs,
      store,
      degraded: this.session.state === 'degraded',
    });
  }

  /** Stops jobs and resigns, stops publishing, then revokes the session lease (the record goes with it). */
  async close(): Promise<void> {
    await this.leaderJobs.close();
    await this.membership.close();
    await this.session.close();
  }
}

export type { SessionState };

function describeSelf(options: ClusterNodeOptions): SelfDescription {
  return {
    addresses: options.advertiseAddress ? [options.advertiseAddress] : localAddresses(),
    httpPort: options.httpPort,
    version: PXEHA_VERSION,
    weight: (typeof options.weight === 'function' ? options.weight() : options.weight) ?? 100,
    ...(options.drained?.() ? { drained: true } : {}),
    images: options.images?.() ?? [],
    ...(options.labels && Object.keys(options.labels).length > 0 ? { labels: options.labels } : {}),
    artifacts: options.artifacts?.() ?? [],
    load: {
      loadAvg1: Math.round(loadavg()[0]! * 100) / 100,
      rssBytes: process.memoryUsage.rss(),
      leaseRecords: options.leaseRecords?.() ?? 0,
    },
  };
}

function localAddresses(): string[] {
  return Object.values(networkInterfaces())
    .flatMap((list) => list ?? [])
    .filter((a) => a.family === 'IPv4' && !a.internal)
    .map((a) => a.address);
}
