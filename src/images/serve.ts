/**
 * Serving published image files straight from the chunk store, for HTTP and TFTP alike: the one
 * rule for which pinned path a node serves (`findImageFile`, pure) and a sequential reader for
 * TFTP over one verified stream (`ImageFileSource`).
 *
 * A node serves a file of a version only while it holds that version whole (the replicator's
 * `held()`, the list it publishes in its membership record): a version still being copied, or
 * one that lost a chunk to quarantine, is refused (PXE_ERR_IMAGE_NOT_HELD) and clients go to the
 * next holder their script names. Bytes come from readRange, which verifies each chunk before
 * any of its bytes leave; there is no second copy on disk.
 */
import type { Readable } from 'node:stream';
import { PxehaError } from '../errors.js';
import type { ChunkStore } from './chunk-store.js';
import { parsePinnedPath, type PinnedPath } from './image-ref.js';
import { findFile, type Manifest, type ManifestFile } from './manifest.js';
import { readWhole } from './reader.js';

export interface ImageFileSources {
  /** Version ids this node holds whole and verified. */
  held: () => ReadonlySet<string> | readonly string[];
  /** The manifest of a recorded version, as loaded on this node (src/images/manifest-store.ts). */
  manifestOf: (name: string, version: string) => Manifest | undefined;
  /**
   * Whether a version is recorded (the node's watch of the catalog): one whose manifest is not
   * loaded here yet is then answered as not held (503), not as unknown (404). Default: recorded
   * only when manifestOf knows it.
   */
  recorded?: (name: string, version: string) => boolean;
  chunks: ChunkStore;
}

export type ImageFileLookup =
  { ok: true; pinned: PinnedPath; file: ManifestFile } | { ok: false; reason: 'bad-path' | 'not-found' | 'not-held'; message: string };

/**
 * What a relative request path names: undefined for a path outside `images/` (an ordinary
 * artifact), else the file, or why it is not served.
 */
export function findImageFile(relative: string, sources: Pick<ImageFileSources, 'held' | 'manifestOf' | 'recorded'>): ImageFileLookup | undefined {
  const pinned = parsePinnedPath(relative);
  if (pinned === undefined) return undefined;
  if ('refused' in pinned) return { ok: false, reason: 'bad-path', message: pinned.refused };
  const manifest = sources.manifestOf(pinned.name, pinned.version);
  if (!manifest) {
    if (sources.recorded?.(pinned.name, pinned.version)) {
      return { ok: false, reason: 'not-held', message: `this node does not hold version ${pinned.version.slice(0, 12)} of image ${pinned.name} yet (its manifest is not here)` };
    }
    return { ok: false, reason: 'not-found', message: `version ${pinned.version} of image ${pinned.name} is not recorded` };
  }
  const file = findFile(manifest, pinned.path);
  if (!file)
    return {
      ok: false,
      reason: 'not-found',
      message: `${pinned.path} is not in version ${pinned.version.slice(0, 12)} of image ${pinned.name}`,
    };
  const held = sources.held();
  if (!(Array.isArray(held) ? held.includes(pinned.version) : (held as ReadonlySet<string>).has(pinned.version))) {
    return {
      ok: false,
      reason: 'not-held',
      message: `this node does not hold version ${pinned.version.slice(0, 12)} of image ${pinned.name} whole yet`,
    };
  }
  return { ok: true, pinned, file };
}

/**
 * A file of a version read front to back through one readWhole stream, in the shape of a
 * FileHandle's read (what a TFTP transfer calls): every chunk is read and verified once per
 * transfer, not once per block. Reads must be sequential (a TFTP transfer's are: one in
 * flight, each starting where the last ended); a read elsewhere fails rather than seek.
 */
export class ImageFileSource {
  readonly size: number;
  readonly #stream: Readable;
  readonly #iter: AsyncIterator<Buffer>;
  #pending: Buffer = Buffer.alloc(0);
  #position = 0;
  #ended = false;

  constructor(file: ManifestFile, chunks: ChunkStore) {
    this.size = file.size;
    this.#stream = readWhole(file, chunks);
    this.#iter = this.#stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  }

  async read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }> {
    if (position !== this.#position) {
      throw new PxehaError('PXE_ERR_INTERNAL', `image file read at ${position}, expected ${this.#position} (reads are sequential)`);
    }
    let filled = 0;
    while (filled < length) {
      if (this.#pending.length === 0) {
        if (this.#ended) break;
        const next = await this.#iter.next(); // a corrupt or missing chunk rejects here
        if (next.done) {
          this.#ended = true;
          break;
        }
        this.#pending = next.value;
        continue;
      }
      const n = Math.min(length - filled, this.#pending.length);
      this.#pending.copy(buffer, offset + filled, 0, n);
      this.#pending = this.#pending.subarray(n);
      filled += n;
    }
    this.#position += filled;
    return { bytesRead: filled };
  }

  async close(): Promise<void> {
    this.#stream.destroy();
  }
}
