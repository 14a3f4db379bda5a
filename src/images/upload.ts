/**
 * Remote publishing (`pxeha images push PATH --name N --server URL`): the draft is chunked here
 * and only the chunks the node lacks cross the network, then the manifest is recorded there.
 *
 * - Batches: every `batchChunks` chunks (or 16 MiB) the node is asked which of them it lacks
 *   (POST /api/v1/chunks/missing) and those are sent (PUT /api/v1/chunks/:hash). The file is
 *   read once; memory is one batch.
 * - Resumable by construction, as replication: the node stores a chunk whole or not at all
 *   and checks its hash, so after an interruption a second push re-reads the draft but sends
 *   only what never arrived.
 * - Recorded last: the manifest's pages (src/images/manifest-store.ts) are uploaded like chunks,
 *   then the record is asked for by id and pages (POST /api/v1/images/:name/versions with
 *   `manifestRef`), so a manifest of any size fits in small requests. The node refuses a
 *   manifest naming a chunk or page it lacks, so a version is never recorded half-uploaded.
 */
import { lstat } from 'node:fs/promises';
import { PxehaError } from '../errors.js';
import { checkName } from './catalog.js';
import { chunkFile, makeCutter, type Cutter } from './chunker.js';
import { buildManifest, paginateManifest, type ChunkRef, type Manifest, type ManifestFile, type ManifestRef } from './manifest.js';
import { listDraft } from './publish.js';
import type { TokenBucket } from './throttle.js';

/** Body of POST /api/v1/images/:name/versions as push sends it: the pages are on the node already. */
export interface RecordRequest {
  manifestRef: ManifestRef & { id: string };
  channel?: string;
  note?: string;
}

export interface UploadApi {
  /** Which of these hashes the node lacks. */
  missing(hashes: string[]): Promise<string[]>;
  putChunk(hash: string, data: Uint8Array): Promise<void>;
  record(name: string, body: RecordRequest): Promise<{ id: string; created: boolean }>;
}

export interface UploadProgress {
  /** Bytes of the draft (all files). */
  totalBytes: number;
  /** Bytes chunked so far (sent or found on the node). */
  doneBytes: number;
  sentChunks: number;
  sentBytes: number;
  /** Chunks the node already held (an earlier, interrupted push; shared with other versions). */
  skippedChunks: number;
  skippedBytes: number;
}

export interface UploadOptions {
  api: UploadApi;
  name: string;
  channel?: string;
  note?: string;
  cutter?: Cutter;
  /** Chunks per missing-query (default 64: 16 MiB at the 256 KiB average, as 16 were at 1 MiB). */
  batchChunks?: number;
  /** Caps the bytes sent per second. */
  throttle?: TokenBucket;
  onProgress?: (p: Readonly<UploadProgress>) => void;
}

export interface UploadResult {
  id: string;
  created: boolean;
  manifest: Manifest;
  files: number;
  chunks: number;
  progress: UploadProgress;
}

const BATCH_BYTES = 16 * 1024 * 1024;
/** Chunk uploads in flight at once. */
const PUT_CONCURRENCY = 4;

export async function uploadDraft(source: string, options: UploadOptions): Promise<UploadResult> {
  checkName('image', options.name);
  if (options.channel !== undefined) checkName('channel', options.channel);
  const cutter = options.cutter ?? makeCutter();
  const draft = await listDraft(source);
  const sizes = await Promise.all(draft.map(async (f) => (await lstat(f.source)).size));
  const progress: UploadProgress = {
    totalBytes: sizes.reduce((a, b) => a + b, 0),
    doneBytes: 0,
    sentChunks: 0,
    sentBytes: 0,
    skippedChunks: 0,
    skippedBytes: 0,
  };
  /** Hashes the node is known to hold (sent, or reported held) during this push. */
  const onNode = new Set<string>();
  let batch: { hash: string; data: Buffer }[] = [];
  let batchBytes = 0;

  const flush = async (): Promise<void> => {
    const unknown = [...new Set(batch.map((c) => c.hash))].filter((h) => !onNode.has(h));
    const missing = new Set(unknown.length > 0 ? await options.api.missing(unknown) : []);
    // Up to PUT_CONCURRENCY uploads in flight: each is a request and, on the node, a durable
    // write (fsyncs), which one at a time left both the link and the node's disk idle.
    let next = 0;
    const sender = async (): Promise<void> => {
      while (next < batch.length) {
        const c = batch[next++]!;
        if (!onNode.has(c.hash) && missing.has(c.hash)) {
          onNode.add(c.hash); // a repeat of it later in this batch is not sent again
          await options.throttle?.take(c.data.length);
          await options.api.putChunk(c.hash, c.data);
          progress.sentChunks++;
          progress.sentBytes += c.data.length;
        } else {
          progress.skippedChunks++;
          progress.skippedBytes += c.data.length;
        }
        progress.doneBytes += c.data.length;
        options.onProgress?.(progress);
      }
    };
    await Promise.all(Array.from({ length: Math.min(PUT_CONCURRENCY, batch.length) }, sender));
    for (const c of batch) onNode.add(c.hash);
    batch = [];
    batchBytes = 0;
  };

  const files: ManifestFile[] = [];
  let chunks = 0;
  for (const file of draft) {
    const before = await lstat(file.source);
    const refs: ChunkRef[] = [];
    for await (const chunk of chunkFile(file.source, cutter)) {
      // chunk.data is a view into the chunker's buffer: copied to outlive the next chunk.
      batch.push({ hash: chunk.hash, data: Buffer.from(chunk.data) });
      batchBytes += chunk.size;
      refs.push({ hash: chunk.hash, size: chunk.size, offset: chunk.offset });
      if (batch.length >= (options.batchChunks ?? 64) || batchBytes >= BATCH_BYTES) await flush();
    }
    const after = await lstat(file.source);
    const size = refs.reduce((n, c) => n + c.size, 0);
    if (after.size !== before.size || after.mtimeMs !== before.mtimeMs || size !== after.size) {
      throw new PxehaError('PXE_ERR_CONFLICT', `draft file ${file.path} changed while it was being pushed; push again`);
    }
    chunks += refs.length;
    files.push({ path: file.path, size, mode: before.mode & 0o7777, chunks: refs });
  }
  await flush();
  const manifest = buildManifest(files);
  // The manifest's pages, sent like chunks (only those the node lacks; not counted as draft bytes).
  const { id, ref, pages } = paginateManifest(manifest);
  const lacking = new Set(await options.api.missing(ref.pages));
  for (let i = 0; i < pages.length; i++) if (lacking.has(ref.pages[i]!)) await options.api.putChunk(ref.pages[i]!, pages[i]!);
  const recorded = await options.api.record(options.name, {
    manifestRef: { id, ...ref },
    ...(options.channel !== undefined ? { channel: options.channel } : {}),
    ...(options.note !== undefined ? { note: options.note } : {}),
  });
  return { id: recorded.id, created: recorded.created, manifest, files: files.length, chunks, progress };
}

/** One line of progress: `[#####-----]  45%  120.0/270.0 MB, sent 80.0 MB at 37.2 MB/s`. */
export function progressLine(p: Readonly<UploadProgress>, elapsedMs: number, barWidth = 20): string {
  const fraction = p.totalBytes === 0 ? 1 : p.doneBytes / p.totalBytes;
  const filled = Math.round(fraction * barWidth);
  const mb = (n: number): string => (n / 1e6).toFixed(1);
  const rate = elapsedMs > 0 ? p.sentBytes / 1e6 / (elapsedMs / 1000) : 0;
  return `[${'#'.repeat(filled)}${'-'.repeat(barWidth - filled)}] ${String(Math.floor(fraction * 100)).padStart(3)}%  ${mb(p.doneBytes)}/${mb(p.totalBytes)} MB, sent ${mb(p.sentBytes)} MB at ${rate.toFixed(1)} MB/s, ${p.skippedChunks} chunks already there`;
}
