/**
 * Publishing a draft: every file of a directory (or one file) is chunked into the local chunk
 * store, the manifest is built and recorded as a version (create-only), and optionally a
 * channel is pointed at it. Chunks go in first and the record last, so a version in the store
 * never names a chunk its publishing node lacks; a crash before the record leaves only
 * unreferenced chunks, which gc collects after its grace period.
 *
 * Memory stays bounded by the chunker's buffer: files are streamed, one chunk at a time.
 */
import { lstat, readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { PxehaError } from '../errors.js';
import { checkName, type Catalog, type ChannelState } from './catalog.js';
import { chunkFile, makeCutter, type Cutter } from './chunker.js';
import type { ChunkStore } from './chunk-store.js';
import { buildManifest, comparePaths, imagePathProblem, type ChunkRef, type Manifest, type ManifestFile } from './manifest.js';

export interface PublishOptions {
  catalog: Catalog;
  chunks: ChunkStore;
  /** Image name (catalog keys). */
  name: string;
  /** Point this channel at the new version once it is recorded. */
  channel?: string;
  /** With `channel`: switch only if the channel is still at this modRevision (0 = absent). */
  baseRevision?: number;
  note?: string;
  cutter?: Cutter;
}

export interface PublishResult {
  id: string;
  manifest: Manifest;
  /** False when this exact version was recorded already. */
  created: boolean;
  channel?: ChannelState;
  stats: {
    files: number;
    bytes: number;
    chunks: number;
    /** Chunks this publish wrote: the rest were held already (shared with other versions). */
    newChunks: number;
    newBytes: number;
  };
}

interface DraftFile {
  /** Path inside the image. */
  path: string;
  /** Path on disk. */
  source: string;
}

/**
 * Regular files of a draft, sorted by image path. Symbolic links and special files are refused
 * rather than followed or skipped: an image is served by path, and silently dropping or
 * resolving a link out of the draft would publish something other than what was there.
 */
export async function listDraft(source: string): Promise<DraftFile[]> {
  const st = await stat(source).catch(() => undefined);
  if (!st) throw new PxehaError('PXE_ERR_NOT_FOUND', `draft ${source} does not exist`);
  if (st.isFile()) return [{ path: basename(source), source }];
  if (!st.isDirectory()) throw new PxehaError('PXE_ERR_PATH_REFUSED', `draft ${source} is neither a file nor a directory`);
  const files: DraftFile[] = [];
  async function walk(dir: string, prefix: string): Promise<void> {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = prefix ? `${prefix}/${entry.name}` : entry.name;
      const full = join(dir, entry.name);
      if (entry.isDirectory()) await walk(full, path);
      else if (entry.isFile()) files.push({ path, source: full });
      else throw new PxehaError('PXE_ERR_PATH_REFUSED', `draft entry ${path} is not a regular file or directory (symbolic links are not followed)`);
    }
  }
  await walk(source, '');
  for (const f of files) {
    const problem = imagePathProblem(f.path);
    if (problem) throw new PxehaError('PXE_ERR_PATH_REFUSED', `draft entry ${f.path} ${problem}`);
  }
  return files.sort((a, b) => comparePaths(a.path, b.path));
}

/** Chunks one file into the store; fails if the file changes while it is read. */
async function storeFile(file: DraftFile, chunks: ChunkStore, cutter: Cutter, stats: PublishResult['stats']): Promise<ManifestFile> {
  const before = await lstat(file.source);
  const refs: ChunkRef[] = [];
  for await (const chunk of chunkFile(file.source, cutter)) {
    // Awaited before the next chunk is asked for: chunk.data is a view into the chunker's buffer.
    if (await chunks.put(chunk.hash, chunk.data)) {
      stats.newChunks++;
      stats.newBytes += chunk.size;
    }
    refs.push({ hash: chunk.hash, size: chunk.size, offset: chunk.offset });
  }
  const after = await lstat(file.source);
  const size = refs.reduce((n, c) => n + c.size, 0);
  if (after.size !== before.size || after.mtimeMs !== before.mtimeMs || size !== after.size) {
    throw new PxehaError('PXE_ERR_CONFLICT', `draft file ${file.path} changed while it was being published; publish again`);
  }
  stats.files++;
  stats.bytes += size;
  stats.chunks += refs.length;
  return { path: file.path, size, mode: before.mode & 0o7777, chunks: refs };
}

export async function publishDraft(source: string, options: PublishOptions): Promise<PublishResult> {
  // Names first: a bad one should fail before minutes of chunking, not after.
  checkName('image', options.name);
  if (options.channel !== undefined) checkName('channel', options.channel);
  const cutter = options.cutter ?? makeCutter();
  const stats: PublishResult['stats'] = { files: 0, bytes: 0, chunks: 0, newChunks: 0, newBytes: 0 };
  const files: ManifestFile[] = [];
  for (const file of await listDraft(source)) files.push(await storeFile(file, options.chunks, cutter, stats));
  const manifest = buildManifest(files);
  const recorded = await options.catalog.recordVersion(options.name, manifest, options.note !== undefined ? { note: options.note } : {});
  const result: PublishResult = { id: recorded.id, manifest, created: recorded.created, stats };
  if (options.channel !== undefined) {
    result.channel = await options.catalog.setChannel(
      options.name,
      options.channel,
      recorded.id,
      options.baseRevision !== undefined ? { baseRevision: options.baseRevision } : {},
    );
  }
  return result;
}
