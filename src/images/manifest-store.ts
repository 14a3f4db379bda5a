/**
 * Manifests live in the chunk store, not in the cluster store: a version record names its
 * manifest's pages (ManifestRef), and the pages are content-addressed blobs next to the chunks,
 * written, verified, replicated, served and kept by garbage collection like chunks. So an
 * image's size is not bounded by etcd's value size (docs/design.md, "Manifests as pages").
 *
 * - `storeManifest` writes a manifest's pages (each verified and written atomically; a page
 *   already held is only touched) before anyone records the version: a record never names a
 *   page its recording node lacks.
 * - `loadManifest` reads the pages back, each verified against its hash by ChunkStore.get, and
 *   proves their concatenation is the version (its SHA-256 is the version id): a record that
 *   names another manifest's pages fails here (PXE_ERR_CHUNK_CORRUPT), whatever its key says.
 * - `ManifestCache` keeps the manifests a node has loaded (they never change: a version id names
 *   one manifest forever), so serving and replication passes do not re-read them.
 */
import { PxehaError } from '../errors.js';
import type { ChunkStore } from './chunk-store.js';
import {
  assembleManifest,
  checkManifestSemantics,
  manifestPages,
  manifestRefProblem,
  paginateManifest,
  type Manifest,
  type ManifestRef,
} from './manifest.js';

/** Stores a manifest's pages in the chunk store; returns the version id and the record's reference. */
export async function storeManifest(chunks: ChunkStore, manifest: Manifest): Promise<{ id: string; ref: ManifestRef }> {
  const issues = checkManifestSemantics(manifest);
  if (issues.length > 0) throw new PxehaError('PXE_ERR_BAD_REQUEST', `manifest is invalid: ${issues.map((i) => `${i.path} ${i.message}`).join('; ')}`);
  const { id, ref, pages } = paginateManifest(manifest);
  for (let i = 0; i < pages.length; i++) await chunks.put(ref.pages[i]!, pages[i]!);
  return { id, ref };
}

/**
 * The manifest of version `id` from this node's chunk store, or undefined when a page is not
 * held here (fetch it from a holder). Throws PXE_ERR_CHUNK_CORRUPT when the pages are not the
 * version (a forged or mistaken record) and when a page fails its hash (it is quarantined, so
 * the next pass fetches it again).
 */
export async function loadManifest(chunks: ChunkStore, id: string, ref: ManifestRef): Promise<Manifest | undefined> {
  const problem = manifestRefProblem(ref);
  if (problem) throw new PxehaError('PXE_ERR_CHUNK_CORRUPT', `record of version ${id}: ${problem}`);
  const pages: Buffer[] = [];
  for (const page of manifestPages(ref)) {
    try {
      pages.push(await chunks.get(page.hash, page.size));
    } catch (err) {
      if (err instanceof PxehaError && err.code === 'PXE_ERR_NOT_FOUND') return undefined;
      throw err;
    }
  }
  return assembleManifest(id, ref, pages);
}

function sameRef(a: ManifestRef, b: ManifestRef): boolean {
  return a.bytes === b.bytes && a.pages.length === b.pages.length && a.pages.every((p, i) => p === b.pages[i]);
}

/** The manifests a node has loaded, by version id (immutable, so never stale). */
export class ManifestCache {
  readonly #chunks: ChunkStore;
  readonly #byId = new Map<string, { ref: ManifestRef; manifest: Manifest }>();

  constructor(chunks: ChunkStore) {
    this.#chunks = chunks;
  }

  /** A manifest loaded before (synchronous: for serving), or undefined. */
  get(id: string): Manifest | undefined {
    return this.#byId.get(id)?.manifest;
  }

  /**
   * The manifest of `id`, from memory or the chunk store (see loadManifest). A record whose
   * reference differs from the one the cached manifest was proven with is refused the same way
   * as its pages would be: only one reference can be the version's.
   */
  async load(id: string, ref: ManifestRef): Promise<Manifest | undefined> {
    const cached = this.#byId.get(id);
    if (cached) {
      if (!sameRef(cached.ref, ref)) throw new PxehaError('PXE_ERR_CHUNK_CORRUPT', `record of version ${id} names other manifest pages than the version's`);
      return cached.manifest;
    }
    const manifest = await loadManifest(this.#chunks, id, ref);
    if (manifest) this.#byId.set(id, { ref, manifest });
    return manifest;
  }

  /** Stores a manifest's pages (storeManifest) and keeps it loaded. */
  async store(manifest: Manifest): Promise<{ id: string; ref: ManifestRef }> {
    const stored = await storeManifest(this.#chunks, manifest);
    this.#byId.set(stored.id, { ref: stored.ref, manifest });
    return stored;
  }

  /** Forgets manifests of versions no longer recorded. */
  retain(ids: ReadonlySet<string>): void {
    for (const id of this.#byId.keys()) if (!ids.has(id)) this.#byId.delete(id);
  }
}
