/**
 * Image replication: a node pulls the chunks it lacks from peers that hold them, so that it holds
 * every recorded version whole, and says which versions it holds whole (its membership record's
 * `images`, version ids), which is what peers pull from and what serving and boot-server choice
 * may count on.
 *
 * - What to hold: the versions placed on this node (`wanted`: every recorded version unless an
 *   image is placed on k nodes or by labels, src/images/placement.ts). Versions not placed here
 *   but held whole anyway (`offered`: this node published them) are advertised, never fetched,
 *   so the placed nodes can pull them.
 * - When: only while `mayFetch()` (the node's time window, src/images/window.ts); checked
 *   before each chunk, so a closing window pauses a pass between chunks, and the next pass
 *   comes after `waitMs()`.
 * - Manifests first: a version record names its manifest's pages (manifest-store.ts). Each pass
 *   first fetches the pages it lacks of every recorded version (`known`, placed here or not: a
 *   node's gc and `images show` need every chunk list, and they are ~0.04% of the image), like
 *   chunks and from the same holders, then loads each manifest, which proves the pages are the
 *   version; only then are its chunks known. A version counts as held whole when its pages and
 *   its chunks are all on disk.
 * - Where from: peers whose record says they hold, whole, a version that contains the chunk.
 *   A node holds a version whole only once every chunk is on its disk, verified, so a peer
 *   never advertises a chunk it lacks (a chunk quarantined since is a failed fetch, and the
 *   next peer is asked). Chunks are spread over the peers that hold them (chunk i starts at
 *   peer i mod n) and fetched by `parallel` workers.
 * - Verified: ChunkStore.put / putStream hash the bytes before anything is under the chunk's
 *   name; a peer that sends other bytes (or a wrong size) is a failure for that chunk, and the
 *   next peer is tried.
 * - Durable before counted: a chunk from a batch is renamed into place only once its bytes are
 *   fsynced, and the directories it landed in are fsynced (ChunkStore.syncDirs, one fsync per
 *   directory for a whole pass) before any report of the versions held whole.
 * - Resumable by construction: a chunk is on disk whole (atomic rename) or not at all; each pass
 *   recomputes what is missing from the disk, so a crash, a restart or a dropped connection
 *   costs at most the chunks in flight.
 * - Throttled: every fetch first takes its size from a token bucket (TokenBucket) when the node
 *   has a bandwidth limit.
 */
import http from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import { MAX_BATCH_CHUNKS, readChunkBatch, type BatchWant } from './chunk-batch.js';
import type { ChunkStore } from './chunk-store.js';
import { manifestPages, type Manifest, type ManifestRef } from './manifest.js';
import type { ManifestCache } from './manifest-store.js';
import type { TokenBucket } from './throttle.js';

export interface WantedVersion {
  /** Version id (manifest id). */
  id: string;
  /** Its record's reference to the manifest's pages. */
  manifest: ManifestRef;
}

export interface ReplicaPeer {
  name: string;
  /** e.g. http://10.99.0.1:8080 */
  baseUrl: string;
  /** Version ids the peer holds whole. */
  versions: ReadonlySet<string>;
}

/**
 * Fetches one chunk from a peer (unverified: the replicator verifies): its bytes, or a stream of
 * them (a response body), which ChunkStore.putStream hashes and writes as it arrives.
 */
export type ChunkFetcher = (peer: ReplicaPeer, hash: string, size: number, signal: AbortSignal) => Promise<Uint8Array | Readable>;

/**
 * Asks a peer for several chunks at once (POST /api/v1/chunks/batch): the response body, framed
 * as src/images/chunk-batch.ts says, which the replicator parses, verifies and stores chunk by
 * chunk as it arrives.
 */
export type BatchFetcher = (peer: ReplicaPeer, wants: readonly BatchWant[], signal: AbortSignal) => Promise<Readable>;

/**
 * A peer that has no batch endpoint (404/405: a node of an older version during a rolling
 * upgrade). Not a bad fetch: the replicator asks that peer chunk by chunk for a while instead.
 */
export class BatchUnsupportedError extends Error {
  constructor(peer: string, status: number) {
    super(`${peer} has no chunk batch endpoint (HTTP ${status}); fetching from it chunk by chunk`);
    this.name = 'BatchUnsupportedError';
  }
}

/** How long a peer without the batch endpoint is asked chunk by chunk before batches are tried again. */
export const NO_BATCH_RETRY_MS = 10 * 60 * 1000;

/** How long a chunk seen on disk is taken as present without another stat (see #present). */
export const PRESENT_RECHECK_MS = 60_000;

/**
 * Batches one fetch worker may have read and not yet seen settled (stored durably or failed)
 * when it asks for the next: 2 lets it receive one batch while the one before is fsynced.
 */
export const BATCHES_SETTLING = 2;

/** Bytes asked for in one batch (default): ~16 chunks at the 256 KiB average. */
export const DEFAULT_BATCH_BYTES = 4 * 1024 * 1024;

export interface VersionProgress {
  id: string;
  chunks: number;
  heldChunks: number;
  bytes: number;
  heldBytes: number;
}

export interface SyncResult {
  /** Chunks fetched and stored in this pass. */
  fetched: number;
  fetchedBytes: number;
  /** Chunks no peer could supply (none holds them, or every holder failed). */
  failed: number;
  /** Fetch attempts refused: transport errors and bad bytes. */
  rejected: number;
  held: string[];
  /** Chunks were left missing because mayFetch() said no (outside the time window). */
  waiting: boolean;
}

/** What this replicator has moved since it started (every pass): what a transfer cost. */
export interface ReplicationTotals {
  /** Chunks fetched from peers, verified and stored. */
  fetchedChunks: number;
  /** Their bytes (chunk payloads; HTTP framing not counted). */
  fetchedBytes: number;
  /** Fetch attempts refused: transport errors, HTTP errors, bad bytes. */
  rejected: number;
}

export interface ReplicatorOptions {
  chunks: ChunkStore;
  /** Loads (and keeps) manifests from `chunks`; shared with serving. */
  manifests: ManifestCache;
  wanted: () => readonly WantedVersion[];
  /** Every recorded version: their manifests are fetched even where their chunks are not (default: wanted and offered only). */
  known?: () => readonly WantedVersion[];
  /** A version's manifest could not be loaded: its pages are not the version (logged by the node). */
  onBadManifest?: (id: string, err: Error) => void;
  peers: () => readonly ReplicaPeer[];
  fetchChunk: ChunkFetcher;
  /**
   * Several chunks per request (the nodes' fetcher); without it, one request per chunk. A chunk
   * a batch did not deliver is asked for again alone, from each holder in turn.
   */
  fetchBatch?: BatchFetcher;
  /** Most bytes per batch (default DEFAULT_BATCH_BYTES; at most MAX_BATCH_CHUNKS chunks). */
  batchBytes?: number;
  throttle?: TokenBucket;
  /** Chunks fetched at once (default 4). */
  parallel?: number;
  /** Called when the set of versions held whole changes (publish it). */
  onHeldChange?: (held: string[]) => void;
  /** A fetch from a peer failed (logged by the node). */
  onReject?: (peer: string, hash: string, err: Error) => void;
  /** A peer turned out to have no batch endpoint (told the first time; logged by the node). */
  onBatchUnsupported?: (peer: string, err: BatchUnsupportedError) => void;
  /** A chunk was fetched from a peer, verified and stored (counted by the node's metrics). */
  onFetched?: (peer: string, hash: string, bytes: number) => void;
  /** Pause between passes while something is still missing (default 2000 ms). */
  retryMs?: number;
  /** Versions not wanted here: advertised while held whole (every chunk on disk), never fetched. */
  offered?: () => readonly WantedVersion[];
  /** Whether chunks may be fetched now (the replication window); default always. */
  mayFetch?: () => boolean;
  /** Pause before the next pass while mayFetch() says no (default retryMs). */
  waitMs?: () => number;
}

interface ChunkNeed {
  hash: string;
  size: number;
  /** Versions that contain it. */
  versions: string[];
}

export class Replicator {
  readonly #o: ReplicatorOptions;
  #held: string[] = [];
  #progress = new Map<string, VersionProgress>();
  /**
   * Chunks known to be on disk, kept from pass to pass: a pass runs on every membership change
   * (heartbeats included) and would otherwise stat every chunk of every version each time
   * (4 096 per GiB). Forgotten when the chunk store removes or quarantines a chunk, and every
   * PRESENT_RECHECK_MS anyway (a chunk removed behind the store's back).
   */
  #present = new Set<string>();
  #presentSince = { removals: -1, atMs: 0 };
  readonly #totals: ReplicationTotals = { fetchedChunks: 0, fetchedBytes: 0, rejected: 0 };
  #running: Promise<void> | undefined;
  #waiting = false;
  #kicked = false;
  #wake: (() => void) | undefined;
  readonly #abort = new AbortController();
  /** Peers without the batch endpoint, and until when they are asked chunk by chunk. */
  readonly #noBatchUntil = new Map<string, number>();

  constructor(options: ReplicatorOptions) {
    this.#o = options;
  }

  /** Version ids held whole, sorted. */
  held(): string[] {
    return [...this.#held];
  }

  /** Per wanted version: chunks and bytes held (as of the last pass, updated while fetching). */
  progress(): VersionProgress[] {
    return [...this.#progress.values()].map((p) => ({ ...p }));
  }

  /** True while the last pass left chunks missing because mayFetch() said no. */
  waiting(): boolean {
    return this.#waiting;
  }

  /** Chunks and bytes fetched, and fetches refused, since this replicator was made. */
  totals(): ReplicationTotals {
    return { ...this.#totals };
  }

  /** One pass: fetch missing manifest pages, load the manifests, fetch missing chunks, report what is held whole. */
  async syncOnce(signal: AbortSignal = this.#abort.signal): Promise<SyncResult> {
    const wanted = dedupe(this.#o.wanted());
    const wantedIds = new Set(wanted.map((v) => v.id));
    const offered = dedupe(this.#o.offered?.() ?? []).filter((v) => !wantedIds.has(v.id));
    const known = dedupe([...wanted, ...offered, ...(this.#o.known?.() ?? [])]);
    const result: SyncResult = { fetched: 0, fetchedBytes: 0, failed: 0, rejected: 0, held: this.#held, waiting: false };
    this.#waiting = false;
    const peers = this.#o.peers();
    const chunks = this.#o.chunks;
    if (chunks.removals !== this.#presentSince.removals || Date.now() - this.#presentSince.atMs > PRESENT_RECHECK_MS) {
      this.#present = new Set();
      this.#presentSince = { removals: chunks.removals, atMs: Date.now() };
    }
    const present = this.#present;

    // 1. Manifest pages of every known version, then the manifests themselves.
    const pageNeeds = new Map<string, ChunkNeed>();
    for (const v of known) for (const page of manifestPages(v.manifest)) addNeed(pageNeeds, page.hash, page.size, v.id);
    for (const hash of pageNeeds.keys()) if (!present.has(hash) && (await this.#o.chunks.has(hash))) present.add(hash);
    await this.#fetchAll([...pageNeeds.values()].filter((n) => !present.has(n.hash)), peers, present, result, signal);
    const manifests = new Map<string, Manifest>();
    for (const v of known) {
      try {
        const m = await this.#o.manifests.load(v.id, v.manifest);
        if (m) manifests.set(v.id, m);
      } catch (err) {
        // Pages that are not the version (a lying record), or one that failed its hash since it
        // was fetched (quarantined: fetched again next pass). Either way no chunk of it is known.
        result.failed++;
        this.#o.onBadManifest?.(v.id, err as Error);
      }
    }
    this.#o.manifests.retain(new Set(known.map((v) => v.id)));

    // 2. Chunks of the wanted versions whose manifests are loaded.
    const needs = new Map<string, ChunkNeed>();
    for (const v of wanted) {
      const m = manifests.get(v.id);
      if (m) for (const f of m.files) for (const c of f.chunks) addNeed(needs, c.hash, c.size, v.id);
    }
    for (const hash of needs.keys()) if (!present.has(hash) && (await this.#o.chunks.has(hash))) present.add(hash);
    this.#progress = new Map(wanted.map((v) => [v.id, progressOf(v.id, manifests.get(v.id), present)]));
    const advertised: Loaded[] = wanted.flatMap((v) => (manifests.has(v.id) ? [{ ...v, files: manifests.get(v.id)!.files }] : []));
    for (const v of offered) {
      const m = manifests.get(v.id);
      if (m && (await holdsWhole(m, present, this.#o.chunks))) advertised.push({ ...v, files: m.files });
    }
    await this.#o.chunks.syncDirs(); // names of chunks received in batches: durable before counted
    this.#report(advertised, present);

    const missing = [...needs.values()].filter((n) => !present.has(n.hash));
    await this.#fetchAll(missing, peers, present, result, signal, (need) => {
      for (const id of need.versions) {
        const p = this.#progress.get(id);
        if (p) {
          p.heldChunks++;
          p.heldBytes += need.size;
        }
      }
    });
    // Only versions each of whose pages and chunks is on disk now count; one that was there at
    // the start of the pass and was quarantined since is found missing by the next pass.
    await this.#o.chunks.syncDirs(); // names of chunks received in batches: durable before counted
    this.#report(advertised, present);
    result.held = this.#held;
    this.#waiting = result.waiting;
    return result;
  }

  /**
   * Fetches `missing` from the peers that hold a version containing each (chunk i starts at
   * holder i mod n), `parallel` at once; every one stored joins `present`.
   */
  async #fetchAll(
    missing: readonly ChunkNeed[],
    peers: readonly ReplicaPeer[],
    present: Set<string>,
    result: SyncResult,
    signal: AbortSignal,
    onStored?: (need: ChunkNeed) => void,
  ): Promise<void> {
    if (missing.length === 0 || result.waiting) return;
    const holdersOf = (need: ChunkNeed): ReplicaPeer[] => peers.filter((p) => need.versions.some((v) => p.versions.has(v)));
    const stored = (peer: ReplicaPeer, need: ChunkNeed): void => {
      this.#totals.fetchedChunks++;
      this.#totals.fetchedBytes += need.size;
      this.#o.onFetched?.(peer.name, need.hash, need.size);
      present.add(need.hash);
      result.fetched++;
      result.fetchedBytes += need.size;
      onStored?.(need);
    };
    const rejected = (peer: ReplicaPeer, need: ChunkNeed, err: Error): void => {
      result.rejected++;
      this.#totals.rejected++;
      this.#o.onReject?.(peer.name, need.hash, err);
    };
    /**
     * One chunk alone, from each holder in turn (chunk i starts at holder i mod n), `skip` last,
     * or `prefer` first.
     */
    const fetchOne = async (i: number, need: ChunkNeed, skip?: ReplicaPeer, prefer?: ReplicaPeer): Promise<void> => {
      const all = holdersOf(need);
      const first = all.filter((p) => p !== skip && p !== prefer);
      const holders = [...(prefer && all.includes(prefer) ? [prefer] : []), ...first, ...(skip && all.includes(skip) ? [skip] : [])];
      const ordered = skip !== undefined || prefer !== undefined;
      for (let k = 0; k < holders.length && !signal.aborted; k++) {
        const peer = ordered ? holders[k]! : holders[(i + k) % holders.length]!;
        try {
          await this.#o.throttle?.take(need.size, signal);
          const data = await this.#o.fetchChunk(peer, need.hash, need.size, signal);
          if (data instanceof Uint8Array) {
            if (data.length !== need.size) throw new Error(`chunk ${need.hash} from ${peer.name}: ${data.length} bytes, the manifest says ${need.size}`);
            await this.#o.chunks.put(need.hash, data); // re-hashes: bad bytes are refused here
          } else {
            // Hashed as it is written to a temp file; renamed into place only if it is the chunk.
            await this.#o.chunks.putStream(need.hash, need.size, data);
          }
          stored(peer, need);
          return;
        } catch (err) {
          if (signal.aborted) return;
          rejected(peer, need, err as Error);
        }
      }
      result.failed++;
    };
    const fetchBatch = this.#o.fetchBatch;
    const batchBytes = this.#o.batchBytes ?? DEFAULT_BATCH_BYTES;
    let next = 0;
    let batchNo = 0;
    const worker = async (): Promise<void> => {
      /** This worker's batches whose body is read and whose chunks are not all settled yet. */
      const settling = new Set<Promise<void>>();
      while (next < missing.length && !signal.aborted) {
        if (this.#o.mayFetch && !this.#o.mayFetch()) {
          result.waiting = true;
          break;
        }
        if (!fetchBatch) {
          const i = next++;
          await fetchOne(i, missing[i]!);
          continue;
        }
        // A batch: the next chunks (up to batchBytes), asked of one holder of the first (batches
        // spread over the holders as chunks did); those it does not hold go alone.
        const start = next;
        const first = missing[start]!;
        const holders = holdersOf(first);
        if (holders.length === 0) {
          next++;
          result.failed++;
          continue;
        }
        const peer = holders[batchNo++ % holders.length]!;
        if ((this.#noBatchUntil.get(peer.name) ?? 0) > Date.now()) {
          // This holder answers chunk by chunk only (BatchUnsupportedError): the first chunk alone.
          next++;
          await fetchOne(start, first, undefined, peer);
          continue;
        }
        const batch: { i: number; need: ChunkNeed }[] = [];
        const alone: { i: number; need: ChunkNeed }[] = [];
        let bytes = 0;
        while (next < missing.length && batch.length < MAX_BATCH_CHUNKS) {
          const need = missing[next]!;
          if (batch.length > 0 && bytes + need.size > batchBytes) break;
          if (need.versions.some((v) => peer.versions.has(v))) {
            batch.push({ i: next, need });
            bytes += need.size;
          } else {
            alone.push({ i: next, need });
          }
          next++;
        }
        const retry: { i: number; need: ChunkNeed }[] = [];
        /** Settles once every chunk of the batch is stored durably or failed (after the body is read). */
        let settled: Promise<void> | undefined;
        try {
          await this.#o.throttle?.take(bytes, signal);
          const body = await fetchBatch(peer, batch.map((b) => b.need), signal);
          const byHash = new Map(batch.map((b) => [b.need.hash, b]));
          ({ settled } = await readChunkBatch(body, batch.map((b) => b.need), this.#o.chunks, {
            stored: (want) => stored(peer, byHash.get(want.hash)!.need),
            failed: (want, err) => {
              if (signal.aborted) return;
              rejected(peer, byHash.get(want.hash)!.need, err);
              retry.push(byHash.get(want.hash)!);
            },
            // One directory fsync per directory before the next report of held versions, not
            // one per chunk: syncOnce calls chunks.syncDirs() before each #report.
          }, { dirSync: 'deferred' }));
        } catch (err) {
          // The request itself failed: no chunk of the batch arrived.
          if (signal.aborted) break;
          if (err instanceof BatchUnsupportedError) {
            // Not the chunks' fault: the same holder is asked for each alone, first.
            if (!this.#noBatchUntil.has(peer.name)) this.#o.onBatchUnsupported?.(peer.name, err);
            this.#noBatchUntil.set(peer.name, Date.now() + NO_BATCH_RETRY_MS);
            for (const b of batch) await fetchOne(b.i, b.need, undefined, peer);
            batch.length = 0;
          } else {
            for (const b of batch) {
              rejected(peer, b.need, err as Error);
              retry.push(b);
            }
          }
        }
        // The next batch is asked for while this one's chunks are made durable (their fsyncs
        // wait on the disk, not on the link); its failures and the chunks the holder lacks are
        // fetched alone once it has settled. At most BATCHES_SETTLING per worker wait so.
        const finish = async (): Promise<void> => {
          await settled;
          for (const b of [...retry, ...alone]) {
            if (signal.aborted) break;
            await fetchOne(b.i, b.need, retry.includes(b) ? peer : undefined);
          }
        };
        const done: Promise<void> = finish().finally(() => settling.delete(done));
        settling.add(done);
        if (settling.size >= BATCHES_SETTLING) await Promise.race(settling);
      }
      await Promise.all(settling);
    };
    await Promise.all(Array.from({ length: Math.min(this.#o.parallel ?? 4, missing.length) }, worker));
  }

  /** Runs passes until closed: at once, on kick(), and every retryMs while anything is missing. */
  start(onError: (err: Error) => void): void {
    if (this.#running) return;
    const signal = this.#abort.signal;
    this.#running = (async () => {
      while (!signal.aborted) {
        this.#kicked = false;
        let incomplete = false;
        let waitMs = this.#o.retryMs ?? 2000;
        try {
          const r = await this.syncOnce(signal);
          incomplete = r.failed > 0 || r.waiting;
          if (r.waiting && this.#o.waitMs) waitMs = this.#o.waitMs();
        } catch (err) {
          if (!signal.aborted) onError(err as Error);
          incomplete = true;
        }
        if (signal.aborted) break;
        if (this.#kicked) continue;
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
          if (incomplete) setTimeout(resolve, waitMs).unref();
        });
        this.#wake = undefined;
      }
    })();
  }

  /** Something changed (a version recorded, a peer's holdings): run a pass soon. */
  kick(): void {
    this.#kicked = true;
    this.#wake?.();
  }

  async close(): Promise<void> {
    this.#abort.abort(new Error('replicator closed'));
    this.#wake?.();
    await this.#running;
  }

  #report(versions: readonly Loaded[], present: ReadonlySet<string>): void {
    const held = versions
      .filter((v) => v.manifest.pages.every((p) => present.has(p)) && v.files.every((f) => f.chunks.every((c) => present.has(c.hash))))
      .map((v) => v.id)
      .sort();
    if (held.length === this.#held.length && held.every((id, i) => id === this.#held[i])) return;
    this.#held = held;
    this.#o.onHeldChange?.(held);
  }
}

/** A version with its manifest loaded. */
interface Loaded extends WantedVersion {
  files: Manifest['files'];
}

function addNeed(needs: Map<string, ChunkNeed>, hash: string, size: number, version: string): void {
  const need = needs.get(hash);
  if (!need) needs.set(hash, { hash, size, versions: [version] });
  else if (!need.versions.includes(version)) need.versions.push(version);
}

function dedupe(wanted: readonly WantedVersion[]): WantedVersion[] {
  const byId = new Map<string, WantedVersion>();
  for (const v of wanted) if (!byId.has(v.id)) byId.set(v.id, v);
  return [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
}

/** Whether every chunk of `m` is on disk (stops at the first missing); found chunks join `present`. */
async function holdsWhole(m: Manifest, present: Set<string>, chunks: ChunkStore): Promise<boolean> {
  for (const f of m.files) {
    for (const c of f.chunks) {
      if (present.has(c.hash)) continue;
      if (!(await chunks.has(c.hash))) return false;
      present.add(c.hash);
    }
  }
  return true;
}

/** Chunks and bytes of a version held (none known until its manifest is loaded). */
function progressOf(id: string, m: Manifest | undefined, present: ReadonlySet<string>): VersionProgress {
  const p: VersionProgress = { id, chunks: 0, heldChunks: 0, bytes: 0, heldBytes: 0 };
  const seen = new Set<string>();
  for (const f of m?.files ?? []) {
    for (const c of f.chunks) {
      if (seen.has(c.hash)) continue;
      seen.add(c.hash);
      p.chunks++;
      p.bytes += c.size;
      if (present.has(c.hash)) {
        p.heldChunks++;
        p.heldBytes += c.size;
      }
    }
  }
  return p;
}

/**
 * The fetcher nodes use: GET <peer>/api/v1/chunks/<hash> with the node's bearer, over node:http
 * with keep-alive connections; it returns the response body as a stream once the status and the
 * announced length are right, and the replicator hands it to ChunkStore.putStream, which hashes
 * each socket read as it arrives and writes it to the temp file (no buffer per chunk, no second
 * pass over the bytes: bench/replication). Not fetch(): its body goes through WHATWG streams,
 * which on 1 MiB chunks measured ~150 MiB/s against ~250 MiB/s for node:http on this 2-core
 * machine, and replication here is bound by CPU, not by the link.
 */
export function httpChunkFetcher(bearer: () => Promise<string>, timeoutMs = 60_000): ChunkFetcher {
  const agents = { http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) };
  return async (peer, hash, size, signal) => {
    const token = await bearer();
    const url = `${peer.baseUrl}/api/v1/chunks/${hash}`;
    const tls = url.startsWith('https:');
    return new Promise<Readable>((resolve, reject) => {
      const req = (tls ? https : http).get(
        url,
        { agent: tls ? agents.https : agents.http, headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]) },
        (res) => {
          if (res.statusCode !== 200) {
            res.resume();
            reject(new Error(`GET chunk ${hash} from ${peer.name}: HTTP ${res.statusCode}`));
            return;
          }
          const length = Number(res.headers['content-length'] ?? size);
          if (length !== size) {
            res.destroy();
            reject(new Error(`chunk ${hash} from ${peer.name}: ${length} bytes announced, the manifest says ${size}`));
            return;
          }
          // Short bodies (a dropped connection), long ones and wrong bytes are refused by putStream
          // (which also sees errors; this listener only keeps a late one from being unhandled).
          res.on('error', () => {});
          resolve(res);
        },
      );
      req.on('error', reject);
    });
  };
}

/**
 * The batch fetcher nodes use: POST <peer>/api/v1/chunks/batch with the hashes asked for, over
 * the same kind of keep-alive agent; the response body once the status is right (its framing,
 * lengths and bytes are checked as it is parsed: receiveChunkBatch).
 */
export function httpBatchFetcher(bearer: () => Promise<string>, timeoutMs = 120_000): BatchFetcher {
  const agents = { http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) };
  return async (peer, wants, signal) => {
    const token = await bearer();
    const url = `${peer.baseUrl}/api/v1/chunks/batch`;
    const tls = url.startsWith('https:');
    const payload = Buffer.from(JSON.stringify({ hashes: wants.map((w) => w.hash) }));
    return new Promise<Readable>((resolve, reject) => {
      const req = (tls ? https : http).request(
        url,
        {
          method: 'POST',
          agent: tls ? agents.https : agents.http,
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': payload.length },
          signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
        },
        (res) => {
          if (res.statusCode === 404 || res.statusCode === 405) {
            res.resume();
            reject(new BatchUnsupportedError(peer.name, res.statusCode));
            return;
          }
          if (res.statusCode !== 200) {
            res.resume();
            reject(new Error(`POST chunks/batch (${wants.length}) to ${peer.name}: HTTP ${res.statusCode}`));
            return;
          }
          // A late error (a dropped connection) surfaces in receiveChunkBatch's iteration.
          res.on('error', () => {});
          resolve(res);
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  };
}
