/**
 * The Store on a real etcd v3 cluster (3.4+), through the etcd3 client's connection pool and
 * its raw RPC clients. Every Store operation is one etcd RPC, so revisions, compares, leases
 * and compaction are etcd's own; codec.ts maps the messages and errors.ts the failures.
 *
 * What this adds to the etcd3 client, and why:
 * - Deadlines. Every unary call carries `requestTimeoutMs`, and open() fails within
 *   `dialTimeoutMs` when no endpoint answers. etcd3 1.1.2 documents a `dialTimeout` option but
 *   never reads it, and a call to a member that accepts TCP but never answers hangs for ever.
 * - Retries that cannot apply a write twice. etcd3's default global policy retries every
 *   "recoverable" error three times, writes included, so a txn whose reply was lost can run
 *   again and report `succeeded: false` for a change it made. We turn that policy off and
 *   retry here: reads on any unavailability until the call's deadline, writes at once when the
 *   request surely never reached etcd (errors.ts surelyNotSent). A write whose reply was lost
 *   (its member died under it, or a leader change outlasted its deadline) is settled from
 *   etcd's own history: found applied, it is reported done; found absent once the cluster has
 *   settled, it is sent again (write-outcome.ts, #settleUnknownWrite). So losing one member of
 *   three fails no call. Each member sits behind a circuit breaker, so calls skip a dead member
 *   after a few failures.
 * - One connection state. During an outage etcd3's Lease emits `keepaliveFailed` about every
 *   100 ms; this store uses no etcd3 Lease at all (keep-alives are single requests made by the
 *   caller), and reports connectivity as one 'state' event per change instead.
 * - A clean close. grpc-js does not end open streams when etcd3 closes its channels, so a
 *   watch or keep-alive stream left open would keep a closed store's lease (and a dead
 *   node's leadership) alive. close() cancels every stream it opened before closing the client.
 * - Linearizable "now". watch() without a start revision first reads the current revision
 *   with a linearizable read, so it never replays writes that finished before the call even
 *   when the member it watches on lags behind the leader.
 */
import { EventEmitter } from 'node:events';
import { readFile } from 'node:fs/promises';
import { circuitBreaker, ConsecutiveBreaker, handleWhen, isBrokenCircuitError, noop } from 'cockatiel';
import {
  castGrpcError, Etcd3, GRPCDeadlineExceededError, GRPCUnavailableError, type ICallable, type IOptions, isRecoverableError,
} from 'etcd3';
import { ConfigError, PxehaError, type ValidationIssue } from '../../errors.js';
import type {
  KeyValue, LeaseGrant, LeaseId, RangeOptions, RangeResult, Store, TxnRequest, TxnResult, WatchOptions, Watcher,
} from '../store.js';
import {
  checkTtl, deleteRequest, keyRange, keyValue, leaseNumber, opResult, putRequest, rangeRequest, rangeResult, revisionOf, txnRequest,
} from './codec.js';
import { encodeKey } from '../keys.js';
import { isExpiredToken, isUnavailable, messageOf, surelyNotSent, toStoreError } from './errors.js';
import { EtcdWatcher, type WatchHost, type WatchStream, type WatchStreamHandlers } from './watcher.js';
import { findWriteOutcome, type HistoryReader } from './write-outcome.js';

/** How a node reaches etcd; the shape of the `store` section with `kind: etcd`. */
export interface EtcdStoreOptions {
  /** Client URLs, `http://host:port` or `https://host:port` (all the same scheme). */
  endpoints: string[];
  /** PEM files. caFile verifies the members; certFile and keyFile authenticate this client. */
  tls?: { caFile?: string; certFile?: string; keyFile?: string };
  /** etcd user (RBAC); needs a password or passwordFile. */
  username?: string;
  password?: string;
  /** File whose first line is the password, so it need not sit in the node config. */
  passwordFile?: string;
  /** How long open() tries to reach a member before failing. Default 5000. */
  dialTimeoutMs?: number;
  /** Deadline of each call to etcd. Default 5000. */
  requestTimeoutMs?: number;
  /** How often connectivity is checked without traffic. Default 2000. */
  healthCheckIntervalMs?: number;
}

export type ConnectionState = 'connected' | 'disconnected';

const DEFAULT_DIAL_TIMEOUT_MS = 5000;
const DEFAULT_REQUEST_TIMEOUT_MS = 5000;
const DEFAULT_HEALTH_CHECK_INTERVAL_MS = 2000;
/** Backoff between retries of a call: RETRY_DELAY_MS × attempt, at most MAX_RETRY_DELAY_MS. */
const RETRY_DELAY_MS = 25;
const MAX_RETRY_DELAY_MS = 250;
/** The least deadline a retry gets, even when the call's budget is nearly spent. */
const MIN_ATTEMPT_MS = 200;
/** Times an expired auth token is renewed within one call. */
const MAX_AUTH_RENEWALS = 2;
/** Times a write whose reply was lost, and found not applied, is sent again. */
const MAX_RESENDS = 3;
/** Grace for a proposal a dying follower had just forwarded to the leader (a few heartbeats). */
const SETTLE_MS = 250;
/** A member's circuit opens after this many consecutive failures... */
const BREAKER_FAILURES = 3;
/** ...and lets one probe call through after this long. */
const BREAKER_HALF_OPEN_MS = 1000;
/**
 * The key revision() and the health check read. Any key gives the cluster's revision in its
 * response header; this one lies under pxeha's own prefix so a user restricted to it may
 * read it. Permission denied still proves the cluster is reachable (etcdctl endpoint health
 * reads "health" and counts that as healthy).
 */
const PROBE_KEY = '/pxeha/';

/** The grpc-js service clients we call streams on (etcd3 exposes only their base type). */
interface StreamingServices {
  watch(metadata: unknown, options?: object): WatchStream;
  leaseKeepAlive(metadata: unknown, options?: object): KeepAliveStream;
}

interface KeepAliveStream {
  write(request: { ID: string }): boolean;
  cancel(): void;
  on(event: 'data', listener: (response: { ID: string; TTL: string }) => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
  on(event: 'end', listener: () => void): this;
}

/** etcd3's client with its connection pool reachable, to open streams with extra metadata. */
class EtcdClient extends Etcd3 {
  get connections(): ICallable<unknown> {
    return this.pool as unknown as ICallable<unknown>;
  }

  /**
   * Drops the cached auth token so the next call authenticates again. etcd3 does this itself
   * for unary calls that meet "invalid auth token", but not for streams.
   */
  renewAuth(): void {
    (this.pool as unknown as { authenticator?: { invalidateMetadata(): void } }).authenticator?.invalidateMetadata();
  }
}

export async function openEtcdStore(options: EtcdStoreOptions): Promise<EtcdStore> {
  return EtcdStore.open(options);
}

export class EtcdStore extends EventEmitter implements Store {
  readonly kind = 'etcd';
  readonly endpoints: readonly string[];
  readonly requestTimeoutMs: number;

  readonly #client: EtcdClient;
  readonly #healthCheckIntervalMs: number;
  readonly #recovered = { applied: 0, resent: 0 };
  /** When etcd last answered a call (Date.now()); see #reportFailure. */
  #lastAnsweredAt = 0;
  /** When a failure first made the state suspect; a later call's failure confirms it. */
  #suspectedAt: number | undefined;
  /** Highest revision seen in any response: a lower bound for the revision of the next write. */
  #revisionSeen = 0;
  #healthCheckRunning = false;
  #state: ConnectionState = 'connected';
  #closed = false;
  #healthTimer: NodeJS.Timeout | undefined;
  readonly #watchers = new Set<EtcdWatcher>();
  readonly #streams = new Set<{ cancel(): void }>();
  readonly #watchHost: WatchHost;

  /** Connects, checks that the cluster answers within dialTimeoutMs, and starts health checks. */
  static async open(options: EtcdStoreOptions): Promise<EtcdStore> {
    const clientOptions = await clientOptionsOf(options);
    const store = new EtcdStore(options, clientOptions);
    const dialTimeoutMs = options.dialTimeoutMs ?? DEFAULT_DIAL_TIMEOUT_MS;
    const deadline = Date.now() + dialTimeoutMs;
    let reason: string | undefined;
    for (;;) {
      try {
        const remainingMs = Math.max(1, deadline - Date.now());
        await store.#rpc(
          'read',
          'connect',
          (callOptions) => store.#client.kv.range({ key: encodeKey(PROBE_KEY), count_only: true }, callOptions(Math.max(1, deadline - Date.now()))),
          undefined,
          remainingMs,
        );
        break;
      } catch (err) {
        const error = err as PxehaError;
        // Keep the most telling reason: later attempts often only say "circuit open" or "deadline".
        const message = rootMessage(error);
        if (reason === undefined || !/circuit breaker is open|Deadline exceeded/i.test(message)) reason = message;
        // Permission denied on the probe key still shows a working, authenticated connection.
        if (error.code === 'PXE_ERR_STORE_AUTH' && /permission denied/.test(error.message)) break;
        if (error.code === 'PXE_ERR_STORE_AUTH' || Date.now() + RETRY_DELAY_MS >= deadline) {
          await store.close();
          const where = store.endpoints.join(', ');
          if (error.code === 'PXE_ERR_STORE_AUTH') throw new PxehaError('PXE_ERR_STORE_AUTH', `etcd at ${where} refused the credentials: ${reason}`, { cause: err });
          throw new PxehaError('PXE_ERR_STORE_UNAVAILABLE', `cannot reach etcd at ${where} within ${dialTimeoutMs} ms: ${reason}`, { cause: err });
        }
        await delay(RETRY_DELAY_MS * 4);
      }
    }
    store.#scheduleHealthCheck();
    return store;
  }

  private constructor(options: EtcdStoreOptions, clientOptions: IOptions) {
    super();
    this.endpoints = [...options.endpoints];
    this.requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.#healthCheckIntervalMs = options.healthCheckIntervalMs ?? DEFAULT_HEALTH_CHECK_INTERVAL_MS;
    this.#watchHost = {
      openStream: (createRequest, handlers) => this.#openWatchStream(createRequest, handlers),
      // A broken stream may be one member's trouble: let a health check judge the cluster.
      reportFailure: () => this.#checkHealthSoon(),
      renewAuth: () => this.#client.renewAuth(),
      detach: (watcher) => this.#watchers.delete(watcher),
      requestTimeoutMs: this.requestTimeoutMs,
    };
    try {
      this.#client = new EtcdClient(clientOptions);
    } catch (err) {
      throw new PxehaError('PXE_ERR_STORE_BAD_REQUEST', `etcd client: ${messageOf(err)}`, { cause: err });
    }
  }

  /**
   * Writes whose reply was lost and that were settled from history instead of failing: found
   * applied, or found absent and sent again (see #settleUnknownWrite). For logs and tests.
   */
  get recoveredWrites(): { applied: number; resent: number } {
    return { ...this.#recovered };
  }

  /** Whether the cluster answered the last call or health check. */
  get state(): ConnectionState {
    return this.#state;
  }

  /**
   * The cluster became unreachable ('disconnected', with the error that showed it) or
   * reachable again ('connected'). Emitted once per change, however many calls fail meanwhile;
   * the store starts connected (open() fails otherwise).
   */
  override on(event: 'state', listener: (state: ConnectionState, reason?: Error) => void): this;
  override on(event: string | symbol, listener: (...args: any[]) => void): this {
    return super.on(event, listener);
  }

  async get(key: string): Promise<KeyValue | undefined> {
    return (await this.range(key)).kvs[0];
  }

  async range(key: string, options: RangeOptions = {}): Promise<RangeResult> {
    const request = this.#build(() => rangeRequest(key, options));
    const response = await this.#rpc('read', 'range', (callOptions) => this.#client.kv.range(request, callOptions()));
    return rangeResult(response, revisionOf(response.header));
  }

  async put(key: string, value: string, options: { lease?: LeaseId } = {}): Promise<{ revision: number; prevKv?: KeyValue }> {
    const op = { type: 'put', key, value, lease: options.lease, prevKv: true } as const;
    const request = this.#build(() => putRequest(op));
    const toResult = (revision: number, prevKv: KeyValue | undefined) => (prevKv ? { revision, prevKv } : { revision });
    return this.#rpc(
      'write',
      'put',
      async (callOptions) => {
        const response = await this.#client.kv.put(request, callOptions());
        return toResult(revisionOf(response.header), response.prev_kv ? keyValue(response.prev_kv) : undefined);
      },
      async (afterRevision) => {
        const outcome = await findWriteOutcome(this.#historyReader(), { success: [op] }, afterRevision);
        if (typeof outcome !== 'object') return outcome;
        const response = outcome.applied.responses[0];
        return { applied: toResult(outcome.applied.revision, response?.type === 'put' ? response.prevKv : undefined) };
      },
    );
  }

  /**
   * A delete whose reply was lost is sent again once the cluster has settled: its effect is
   * the same either way (the keys are gone), but `deleted` then counts only what the second
   * one removed.
   */
  async delete(key: string, options: { prefix?: boolean; end?: string } = {}): Promise<{ revision: number; deleted: number }> {
    const request = this.#build(() => deleteRequest(key, options));
    return this.#rpc(
      'write',
      'delete',
      async (callOptions) => {
        const response = await this.#client.kv.deleteRange(request, callOptions());
        return { revision: revisionOf(response.header), deleted: Number(response.deleted) };
      },
      async () => 'absent',
    );
  }

  async txn(request: TxnRequest): Promise<TxnResult> {
    const message = this.#build(() => txnRequest(request));
    const readOnly = [...(request.success ?? []), ...(request.failure ?? [])].every((op) => op.type === 'range');
    return this.#rpc(
      readOnly ? 'read' : 'write',
      'txn',
      async (callOptions) => {
        const response = await this.#client.kv.txn(message, callOptions());
        const revision = revisionOf(response.header);
        const ops = (response.succeeded ? request.success : request.failure) ?? [];
        return {
          succeeded: response.succeeded,
          revision,
          responses: ops.map((op, i) => opResult(op, response.responses[i], revision)),
        };
      },
      (afterRevision) => findWriteOutcome(this.#historyReader(), request, afterRevision),
    );
  }

  /** A linearizable read: the revision of the latest write the cluster committed. */
  async revision(): Promise<number> {
    const response = await this.#rpc('read', 'revision', (callOptions) =>
      this.#client.kv.range({ key: encodeKey(PROBE_KEY), count_only: true }, callOptions()),
    );
    return revisionOf(response.header);
  }

  async watch(key: string, options: WatchOptions = {}): Promise<Watcher> {
    const range = this.#build(() => keyRange(key, { prefix: options.prefix }));
    const start = options.startRevision ?? 0;
    if (!Number.isSafeInteger(start) || start < 0) {
      throw new PxehaError('PXE_ERR_STORE_BAD_REQUEST', `watch start revision must be a non-negative integer, got ${start}`);
    }
    // "Changes after now", where now is linearizable (see the file comment).
    const startRevision = start > 0 ? start : (await this.revision()) + 1;
    this.#ensureOpen();
    const watcher = new EtcdWatcher(this.#watchHost, { key: range.key, rangeEnd: range.range_end, startRevision, prevKv: options.prevKv ?? false });
    this.#watchers.add(watcher);
    await watcher.start();
    return watcher;
  }

  async leaseGrant(ttlSeconds: number): Promise<LeaseGrant> {
    this.#build(() => checkTtl(ttlSeconds));
    // A grant lost with its connection is sent again: a first grant that did happen leaves an
    // unused lease, which expires on its own.
    const response = await this.#rpc(
      'write',
      'lease grant',
      (callOptions) => this.#client.leaseClient.leaseGrant({ TTL: ttlSeconds, ID: 0 }, callOptions()),
      async () => 'absent',
    );
    if (response.error) throw new PxehaError('PXE_ERR_STORE_UNAVAILABLE', `lease grant: ${response.error}`);
    return { id: String(response.ID), ttlSeconds: Number(response.TTL) };
  }

  /**
   * One renewal, on a Lease keep-alive stream opened for it and cancelled after the reply.
   * etcd answers an unknown or expired lease with TTL 0 rather than an error.
   */
  async leaseKeepAlive(id: LeaseId): Promise<{ ttlSeconds: number }> {
    const ID = this.#build(() => leaseNumber(id));
    const response = await this.#rpc('read', 'lease keep-alive', (callOptions) => this.#keepAliveOnce(ID, callOptions()));
    const ttlSeconds = Number(response.TTL);
    if (!(ttlSeconds > 0)) throw new PxehaError('PXE_ERR_LEASE_NOT_FOUND', `lease ${id} not found (expired or revoked)`);
    return { ttlSeconds };
  }

  async leaseRevoke(id: LeaseId): Promise<void> {
    const ID = this.#build(() => leaseNumber(id));
    try {
      // Revoking twice is harmless, so a revoke lost with its connection is sent again.
      await this.#rpc('write', 'lease revoke', (callOptions) => this.#client.leaseClient.leaseRevoke({ ID }, callOptions()), async () => 'absent');
    } catch (err) {
      // Revoking an unknown lease is not an error (Store contract); etcd says "lease not found".
      if (err instanceof PxehaError && err.code === 'PXE_ERR_LEASE_NOT_FOUND') return;
      throw err;
    }
  }

  async leaseTimeToLive(id: LeaseId): Promise<number> {
    const ID = this.#build(() => leaseNumber(id));
    const response = await this.#rpc('read', 'lease time-to-live', (callOptions) =>
      this.#client.leaseClient.leaseTimeToLive({ ID, keys: false }, callOptions()),
    );
    const ttl = Number(response.TTL);
    return ttl < 0 ? -1 : ttl;
  }

  async compact(revision: number): Promise<void> {
    if (!Number.isSafeInteger(revision) || revision < 1) {
      throw new PxehaError('PXE_ERR_STORE_BAD_REQUEST', `compact revision must be a positive integer, got ${revision}`);
    }
    await this.#rpc('write', 'compact', (callOptions) => this.#client.kv.compact({ revision, physical: false }, callOptions()));
  }

  /**
   * Ends every watch (with PXE_ERR_STORE_UNAVAILABLE) and every stream this store opened, stops
   * health checks and closes the client. Leases are left alone: they expire on their own
   * unless someone else renews them, as when the node dies.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#healthTimer);
    const closed = new PxehaError('PXE_ERR_STORE_UNAVAILABLE', 'etcd store is closed');
    for (const watcher of [...this.#watchers]) watcher.fail(closed);
    this.#watchers.clear();
    for (const stream of this.#streams) stream.cancel();
    this.#streams.clear();
    this.#client.close();
  }

  /**
   * Runs one RPC with a deadline, retrying where that is safe, and translates its failure.
   * Reads, and writes that surely never reached etcd, are tried again (on whichever member's
   * circuit is closed) until `timeoutMs` is spent. A write whose outcome is unknown is settled
   * from etcd's history when the caller can say what to look for (`settle`; see
   * write-outcome.ts; writes harmless to repeat simply answer 'absent'): reported as done if
   * it was applied, sent again if it was not, and
   * reported as an error (outcome unknown) when history cannot tell or the cluster stays
   * unreachable.
   */
  async #rpc<T>(
    kind: 'read' | 'write',
    what: string,
    call: (callOptions: (timeoutMs?: number) => { deadline: number }) => Promise<T>,
    settle?: (afterRevision: number) => Promise<{ applied: T } | 'absent' | 'unknown'>,
    timeoutMs = this.requestTimeoutMs,
  ): Promise<T> {
    this.#ensureOpen();
    const startedAt = Date.now();
    let budgetEnd = startedAt + timeoutMs;
    const callOptions = (timeoutMs?: number) => ({
      deadline: Date.now() + (timeoutMs ?? Math.max(MIN_ATTEMPT_MS, budgetEnd - Date.now())),
    });
    // A write, if applied, gets a revision above every revision seen committed before it is sent.
    let afterRevision = this.#revisionSeen;
    let resends = 0;
    // What actually went wrong, rather than "circuit open" or "deadline exceeded" that follow it.
    let cause: unknown;
    for (let attempt = 1; ; attempt++) {
      try {
        const result = await call(callOptions);
        this.#noteRevision(result);
        this.#answered();
        return result;
      } catch (err) {
        if (this.#closed) throw new PxehaError('PXE_ERR_STORE_UNAVAILABLE', `${what}: etcd store is closed`, { cause: err });
        if (!isUninformative(err)) cause = err;
        if (isExpiredToken(err) && attempt <= MAX_AUTH_RENEWALS) {
          // A simple token expired (etcd --auth-token-ttl): nothing was done, authenticate again.
          this.#client.renewAuth();
          continue;
        }
        const unavailable = isUnavailable(err);
        const notSent = surelyNotSent(err);
        if (unavailable && (kind === 'read' || notSent) && Date.now() < budgetEnd) {
          // A refused connection costs nothing: try the next member at once, then back off.
          await delay(attempt <= this.endpoints.length && notSent ? 0 : Math.min(RETRY_DELAY_MS * attempt, MAX_RETRY_DELAY_MS));
          continue;
        }
        if (unavailable && kind === 'write' && !notSent && settle && resends < MAX_RESENDS) {
          const outcome = await this.#settleUnknownWrite(afterRevision, settle);
          if (typeof outcome === 'object') {
            this.#recovered.applied += 1;
            return outcome.applied;
          }
          if (outcome === 'resend') {
            this.#recovered.resent += 1;
            resends += 1;
            afterRevision = this.#revisionSeen;
            budgetEnd = Date.now() + this.requestTimeoutMs;
            attempt = 0;
            continue;
          }
        }
        if (unavailable) this.#reportFailure(err, startedAt);
        else this.#answered(); // if only to refuse
        throw toStoreError(isUninformative(err) && cause !== undefined ? cause : err, what, { outcomeUnknown: kind === 'write' && unavailable && !notSent });
      }
    }
  }

  /**
   * After a write's reply was lost (its member died, its connection dropped, or its deadline
   * passed while a leader was being elected): waits until the cluster serves a linearizable
   * read, then SETTLE_MS more, and looks in history (write-outcome.ts). By then nothing sent
   * before can still commit: etcd stops waiting for a request when its gRPC deadline passes
   * or its connection goes, a proposal already in the Raft log of the current leader is
   * committed before that leader serves a linearizable read, and one that a dying follower had
   * just forwarded arrives within a few heartbeats. So "not in history" means not applied, and
   * the write is sent again.
   *
   * The one exception is a request that a partition held in the network for longer than its
   * deadline and then delivered: etcd would apply that late copy too. A compare-and-set whose
   * success branch writes the key it compares (modRevision or version ==) is immune, since the
   * late copy fails its compare; a blind put could then be applied twice.
   */
  async #settleUnknownWrite<T>(
    afterRevision: number,
    settle: (afterRevision: number) => Promise<{ applied: T } | 'absent' | 'unknown'>,
  ): Promise<{ applied: T } | 'resend' | 'unknown'> {
    try {
      await this.revision();
      await delay(SETTLE_MS);
      const outcome = await settle(afterRevision);
      return outcome === 'absent' ? 'resend' : outcome;
    } catch {
      return 'unknown';
    }
  }

  /** Reads from history for write-outcome.ts. */
  #historyReader(): HistoryReader {
    return {
      range: async (key, options, revision) => {
        const request = { ...rangeRequest(key, options), revision };
        const response = await this.#rpc('read', 'range', (callOptions) => this.#client.kv.range(request, callOptions()));
        return rangeResult(response, revisionOf(response.header));
      },
    };
  }

  #noteRevision(response: unknown): void {
    const value = response as { header?: { revision?: string }; revision?: number } | null;
    const revision = Number(value?.header?.revision ?? value?.revision);
    if (Number.isSafeInteger(revision) && revision > this.#revisionSeen) this.#revisionSeen = revision;
  }

  async #openWatchStream(createRequest: object, handlers: WatchStreamHandlers): Promise<WatchStream> {
    this.#ensureOpen();
    const pool = this.#client.connections;
    const stream = await pool.withConnection('Watch', ({ client, metadata, resource }) =>
      new Promise<WatchStream>((resolve, reject) => {
        const withLeader = (metadata as { clone(): { set(key: string, value: string): void } }).clone();
        // etcd's clientv3.WithRequireLeader: fail the stream when the member loses its leader.
        withLeader.set('hasleader', 'true');
        const opened = (client as unknown as StreamingServices).watch(withLeader);
        let answered = false;
        const fail = (err: Error) => {
          clearTimeout(timer);
          if (!answered) {
            answered = true;
            opened.cancel();
            reject(err); // counted by this member's circuit breaker
            return;
          }
          pool.markFailed(resource, err);
          handlers.onError(err);
        };
        const timer = setTimeout(() => fail(new GRPCDeadlineExceededError(`no answer to watch creation within ${this.requestTimeoutMs} ms`)), this.requestTimeoutMs);
        opened.on('data', (response) => {
          if (!answered) {
            answered = true;
            clearTimeout(timer);
            resolve(opened);
          }
          handlers.onResponse(response);
        });
        opened.on('error', (err) => fail(castGrpcError(err)));
        opened.on('end', () => fail(new GRPCUnavailableError('etcd ended the watch stream')));
        opened.write(createRequest);
      }),
    );
    if (this.#closed) {
      stream.cancel();
      throw new PxehaError('PXE_ERR_STORE_UNAVAILABLE', 'etcd store is closed');
    }
    return stream;
  }

  #keepAliveOnce(ID: string, callOptions: { deadline: number }): Promise<{ ID: string; TTL: string }> {
    return this.#client.connections.withConnection('Lease', ({ client, metadata }) =>
      new Promise<{ ID: string; TTL: string }>((resolve, reject) => {
        const stream = (client as unknown as StreamingServices).leaseKeepAlive(metadata, callOptions);
        this.#streams.add(stream);
        let settled = false;
        const settle = (error: Error | undefined, response?: { ID: string; TTL: string }) => {
          if (settled) return;
          settled = true;
          this.#streams.delete(stream);
          stream.cancel();
          if (error) reject(error);
          else resolve(response!);
        };
        stream.on('data', (response) => settle(undefined, response));
        stream.on('error', (err) => settle(castGrpcError(err)));
        stream.on('end', () => settle(new GRPCUnavailableError('etcd ended the keep-alive stream')));
        stream.write({ ID });
      }),
    );
  }

  /**
   * A call that began at `since` failed for want of etcd. One failure is only a suspicion: it
   * may be one member's trouble or a leader election (a restarted etcd 3.4 member without
   * --pre-vote=true forces one; docs/configuration.md), over in well under a request timeout. The store turns
   * disconnected when a second call, begun after the first failed, fails too with nothing
   * answered meanwhile; a health check is sent at once to be that call. Calls that were
   * already failing when the cluster came back count for nothing.
   */
  #reportFailure(err: unknown, since: number): void {
    if (this.#lastAnsweredAt >= since) {
      this.#checkHealthSoon();
      return;
    }
    const suspected = this.#suspectedAt;
    if (suspected !== undefined && this.#lastAnsweredAt < suspected && since >= suspected) {
      this.#setState('disconnected', err instanceof Error ? err : new Error(String(err)));
      return;
    }
    if (suspected === undefined || this.#lastAnsweredAt >= suspected) this.#suspectedAt = Date.now();
    this.#checkHealthSoon();
  }

  /** etcd answered a call (if only to refuse it). */
  #answered(): void {
    this.#lastAnsweredAt = Date.now();
    this.#suspectedAt = undefined;
    this.#setState('connected');
  }

  #setState(state: ConnectionState, reason?: Error): void {
    if (this.#closed || state === this.#state) return;
    this.#state = state;
    this.emit('state', state, reason);
  }

  /** Keeps the state current without traffic; a failure flips it to disconnected. */
  #scheduleHealthCheck(delayMs = this.#healthCheckIntervalMs): void {
    if (this.#closed) return;
    clearTimeout(this.#healthTimer);
    this.#healthTimer = setTimeout(() => void this.#checkHealth(), delayMs);
    this.#healthTimer.unref();
  }

  #checkHealthSoon(): void {
    if (!this.#healthCheckRunning) this.#scheduleHealthCheck(0);
  }

  async #checkHealth(): Promise<void> {
    this.#healthCheckRunning = true;
    try {
      await this.revision();
    } catch (err) {
      // Refused for lack of permission on the probe key: etcd answered, so it is reachable.
      if (err instanceof PxehaError && err.code === 'PXE_ERR_STORE_AUTH') this.#answered();
    } finally {
      this.#healthCheckRunning = false;
      // A suspicion raised while this check was under way needs a check begun after it.
      this.#scheduleHealthCheck(this.#suspectedAt !== undefined && this.#state === 'connected' ? 0 : undefined);
    }
  }

  #ensureOpen(): void {
    if (this.#closed) throw new PxehaError('PXE_ERR_STORE_UNAVAILABLE', 'etcd store is closed');
  }

  #build<T>(build: () => T): T {
    this.#ensureOpen();
    return build();
  }
}

/** Validates the options and turns them into etcd3's, reading the TLS and password files. */
async function clientOptionsOf(options: EtcdStoreOptions): Promise<IOptions> {
  const issues: ValidationIssue[] = [];
  const endpoints = options.endpoints ?? [];
  if (endpoints.length === 0) issues.push({ path: '/store/endpoints', message: 'must list at least one etcd client URL' });
  for (const [i, endpoint] of endpoints.entries()) {
    if (!/^https?:\/\/[^\s/]+\/?$/.test(endpoint)) issues.push({ path: `/store/endpoints/${i}`, message: `must be http://host:port or https://host:port, got ${JSON.stringify(endpoint)}` });
  }
  const schemes = new Set(endpoints.map((e) => e.split(':')[0]));
  if (schemes.size > 1) issues.push({ path: '/store/endpoints', message: 'must all be http or all be https' });
  const tls = options.tls;
  if (tls && schemes.has('http')) issues.push({ path: '/store/tls', message: 'TLS needs https:// endpoints' });
  if (tls && (tls.certFile === undefined) !== (tls.keyFile === undefined)) {
    issues.push({ path: tls.certFile === undefined ? '/store/tls/certFile' : '/store/tls/keyFile', message: 'a client certificate needs both certFile and keyFile' });
  }
  if (options.username !== undefined && options.password === undefined && options.passwordFile === undefined) {
    issues.push({ path: '/store/password', message: 'a username needs a password or passwordFile' });
  }
  if ((options.password !== undefined || options.passwordFile !== undefined) && options.username === undefined) {
    issues.push({ path: '/store/username', message: 'a password needs a username' });
  }
  if (options.password !== undefined && options.passwordFile !== undefined) {
    issues.push({ path: '/store/passwordFile', message: 'give password or passwordFile, not both' });
  }
  for (const [name, value] of [['dialTimeoutMs', options.dialTimeoutMs], ['requestTimeoutMs', options.requestTimeoutMs], ['healthCheckIntervalMs', options.healthCheckIntervalMs]] as const) {
    if (value !== undefined && (!Number.isInteger(value) || value < 1)) issues.push({ path: `/store/${name}`, message: 'must be a positive integer' });
  }
  if (issues.length > 0) throw new ConfigError('etcd store configuration', issues);

  const read = async (file: string, pointer: string) => {
    try {
      return await readFile(file);
    } catch (err) {
      throw new ConfigError('etcd store configuration', [{ path: pointer, message: `cannot read ${file}: ${messageOf(err)}` }]);
    }
  };
  const clientOptions: IOptions = {
    hosts: endpoints,
    // Our retries (#rpc) replace etcd3's global retry policy; see the file comment.
    faultHandling: {
      global: noop,
      host: () => circuitBreaker(handleWhen((err) => isRecoverableError(err)), {
        halfOpenAfter: BREAKER_HALF_OPEN_MS,
        breaker: new ConsecutiveBreaker(BREAKER_FAILURES),
      }),
    },
    grpcOptions: {
      // Reconnect quickly to a member that comes back.
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 2000,
      // Notice a silent member under an open stream; etcd refuses pings more often than every 5 s.
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5000,
      // A start-up range of 100 000 lease records is ~23 MB; grpc-js refuses replies over 4 MiB
      // by default, which kept a node with that many leases from starting (test/faults figures).
      'grpc.max_receive_message_length': 256 * 1024 * 1024,
    },
  };
  if (tls) {
    clientOptions.credentials = {
      rootCertificate: tls.caFile !== undefined ? await read(tls.caFile, '/store/tls/caFile') : (undefined as unknown as Buffer),
      ...(tls.certFile !== undefined ? { certChain: await read(tls.certFile, '/store/tls/certFile') } : {}),
      ...(tls.keyFile !== undefined ? { privateKey: await read(tls.keyFile, '/store/tls/keyFile') } : {}),
    };
  }
  if (options.username !== undefined) {
    const password = options.passwordFile !== undefined
      ? (await read(options.passwordFile, '/store/passwordFile')).toString('utf8').split('\n')[0]!
      : options.password!;
    clientOptions.auth = { username: options.username, password };
  }
  return clientOptions;
}

/** A broken circuit or an expired deadline only repeats an earlier, more telling failure. */
function isUninformative(err: unknown): boolean {
  return isBrokenCircuitError(err) || /Deadline exceeded/i.test(messageOf(err));
}

/** The foreign error under our translations, without its class or status prefix. */
function rootMessage(err: unknown): string {
  let inner = err;
  while (inner instanceof PxehaError && inner.cause !== undefined) inner = inner.cause;
  return messageOf(inner).replace(/^[A-Za-z]+Error: /, '').replace(/^\d+ [A-Z_]+: /, '');
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
