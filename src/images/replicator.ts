/**
 * Image replication: a node pulls the chunks it lacks from peers that hold them, so that it holds
 * every recorded version whole, and says which versions it holds whole (its membership record's
 * `images`, version ids), which is what peers pull from and what serving and boot-server choice
 * may count on.
 *
 * - What to hold: every version recorded in the store, all nodes (`wanted`). TODO(issue 7):
 *   placement on k nodes (the leader planning which node holds which versions) would narrow
 *   `wanted` per node; nothing else here changes.
 * - Where from: peers whose record says they hold, whole, a version that contains the chunk.
 *   A node holds a version whole only once every chunk is on its disk, verified, so a peer
 *   never advertises a chunk it lacks (a chunk quarantined since is a failed fetch, and the
 *   next peer is asked). Chunks are spread over the peers that hold them (chunk i starts at
 *   peer i mod n) and fetched by `parallel` workers.
 * - Verified: ChunkStore.put re-hashes the bytes before anything is written; a peer that sends
 *   other bytes (or a wrong size) is a failure for that chunk, and the next peer is tried.
 * - Resumable by construction: a chunk is on disk whole (atomic rename) or not at all; each pass
 *   recomputes what is missing from the disk, so a crash, a restart or a dropped connection
 *   costs at most the chunks in flight.
 * - Throttled: every fetch first takes its size from a token bucket (TokenBucket) when the node
 *   has a bandwidth limit.
 */
import type { ChunkStore } from './chunk-store.js';
import type { Manifest } from './manifest.js';
import type { TokenBucket } from './throttle.js';

export interface WantedVersion {
  /** Version id (manifest id). */
  id: string;
  manifest: Manifest;
}

export interface ReplicaPeer {
  name: string;
  /** e.g. http://10.99.0.1:8080 */
  baseUrl: string;
  /** Version ids the peer holds whole. */
  versions: ReadonlySet<string>;
}

/** Fetches one chunk's bytes from a peer (unverified: the replicator verifies). */
export type ChunkFetcher = (peer: ReplicaPeer, hash: string, size: number, signal: AbortSignal) => Promise<Uint8Array>;

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
}

export interface ReplicatorOptions {
  chunks: ChunkStore;
  wanted: () => readonly WantedVersion[];
  peers: () => readonly ReplicaPeer[];
  fetchChunk: ChunkFetcher;
  throttle?: TokenBucket;
  /** Chunks fetched at once (default 4). */
  parallel?: number;
  /** Called when the set of versions held whole changes (publish it). */
  onHeldChange?: (held: string[]) => void;
  /** A fetch from a peer failed (logged by the node). */
  onReject?: (peer: string, hash: string, err: Error) => void;
  /** Pause between passes while something is still missing (default 2000 ms). */
  retryMs?: number;
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
  #running: Promise<void> | undefined;
  #kicked = false;
  #wake: (() => void) | undefined;
  readonly #abort = new AbortController();

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

  /** One pass: find what is missing, fetch it, report what is held whole. */
  async syncOnce(signal: AbortSignal = this.#abort.signal): Promise<SyncResult> {
    const wanted = dedupe(this.#o.wanted());
    const needs = new Map<string, ChunkNeed>();
    for (const v of wanted) {
      for (const f of v.manifest.files) {
        for (const c of f.chunks) {
          const need = needs.get(c.hash);
          if (need) {
            if (!need.versions.includes(v.id)) need.versions.push(v.id);
          } else needs.set(c.hash, { hash: c.hash, size: c.size, versions: [v.id] });
        }
      }
    }
    const present = new Set<string>();
    for (const hash of needs.keys()) if (await this.#o.chunks.has(hash)) present.add(hash);
    this.#progress = new Map(wanted.map((v) => [v.id, progressOf(v, present)]));
    this.#report(wanted, present);

    const missing = [...needs.values()].filter((n) => !present.has(n.hash));
    const result: SyncResult = { fetched: 0, fetchedBytes: 0, failed: 0, rejected: 0, held: this.#held };
    if (missing.length === 0) return result;
    const peers = this.#o.peers();
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < missing.length && !signal.aborted) {
        const i = next++;
        const need = missing[i]!;
        const holders = peers.filter((p) => need.versions.some((v) => p.versions.has(v)));
        let ok = false;
        for (let k = 0; k < holders.length && !ok && !signal.aborted; k++) {
          const peer = holders[(i + k) % holders.length]!;
          try {
            await this.#o.throttle?.take(need.size, signal);
            const data = await this.#o.fetchChunk(peer, need.hash, need.size, signal);
            if (data.length !== need.size) throw new Error(`chunk ${need.hash} from ${peer.name}: ${data.length} bytes, the manifest says ${need.size}`);
            await this.#o.chunks.put(need.hash, data); // re-hashes: bad bytes are refused here
            ok = true;
          } catch (err) {
            if (signal.aborted) break;
            result.rejected++;
            this.#o.onReject?.(peer.name, need.hash, err as Error);
          }
        }
        if (!ok) {
          result.failed++;
          continue;
        }
        present.add(need.hash);
        result.fetched++;
        result.fetchedBytes += need.size;
        for (const id of need.versions) {
          const p = this.#progress.get(id);
          if (p) {
            p.heldChunks++;
            p.heldBytes += need.size;
          }
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#o.parallel ?? 4, missing.length) }, worker));
    // Only versions each of whose chunks is on disk now count; a chunk that was there at the
    // start of the pass and was quarantined since is found missing by the next pass.
    this.#report(wanted, present);
    result.held = this.#held;
    return result;
  }

  /** Runs passes until closed: at once, on kick(), and every retryMs while anything is missing. */
  start(onError: (err: Error) => void): void {
    if (this.#running) return;
    const signal = this.#abort.signal;
    this.#running = (async () => {
      while (!signal.aborted) {
        this.#kicked = false;
        let incomplete = false;
        try {
          const r = await this.syncOnce(signal);
          incomplete = r.failed > 0;
        } catch (err) {
          if (!signal.aborted) onError(err as Error);
          incomplete = true;
        }
        if (signal.aborted) break;
        if (this.#kicked) continue;
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
          if (incomplete) setTimeout(resolve, this.#o.retryMs ?? 2000).unref();
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

  #report(wanted: readonly WantedVersion[], present: ReadonlySet<string>): void {
    const held = wanted
      .filter((v) => v.manifest.files.every((f) => f.chunks.every((c) => present.has(c.hash))))
      .map((v) => v.id)
      .sort();
    if (held.length === this.#held.length && held.every((id, i) => id === this.#held[i])) return;
    this.#held = held;
    this.#o.onHeldChange?.(held);
  }
}

function dedupe(wanted: readonly WantedVersion[]): WantedVersion[] {
  const byId = new Map<string, WantedVersion>();
  for (const v of wanted) if (!byId.has(v.id)) byId.set(v.id, v);
  return [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
}

function progressOf(v: WantedVersion, present: ReadonlySet<string>): VersionProgress {
  const p: VersionProgress = { id: v.id, chunks: 0, heldChunks: 0, bytes: 0, heldBytes: 0 };
  const seen = new Set<string>();
  for (const f of v.manifest.files) {
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

/** The fetcher nodes use: GET <peer>/api/v1/chunks/<hash> with the node's bearer. */
export function httpChunkFetcher(bearer: () => Promise<string>, timeoutMs = 60_000): ChunkFetcher {
  return async (peer, hash, size, signal) => {
    const res = await fetch(`${peer.baseUrl}/api/v1/chunks/${hash}`, {
      headers: { authorization: `Bearer ${await bearer()}` },
      signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
    });
    if (res.status !== 200) {
      await res.body?.cancel().catch(() => {});
      throw new Error(`GET chunk ${hash} from ${peer.name}: HTTP ${res.status}`);
    }
    const length = Number(res.headers.get('content-length') ?? size);
    if (length !== size) {
      await res.body?.cancel().catch(() => {});
      throw new Error(`chunk ${hash} from ${peer.name}: ${length} bytes announced, the manifest says ${size}`);
    }
    return new Uint8Array(await res.arrayBuffer());
  };
}
