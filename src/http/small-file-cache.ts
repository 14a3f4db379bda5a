/**
 * Small artifacts (iPXE scripts, menus, configs: a few KiB each, fetched by every machine of a
 * boot storm) kept in memory with the response headers @fastify/send computed for them, so a
 * plain GET or HEAD of an unchanged file costs no open/stat/read/close on top of the path
 * check. The path check (realpath + stat, src/artifacts/resolve.ts) still runs on every
 * request, and its stat is the key: a file that changed (inode, size, mtime or ctime) misses
 * and is read again. Requests with Range or conditional headers always go through send.
 */
import type { Stats } from 'node:fs';

export interface CachedFile {
  /** Response headers as send() gave them for a 200 (ETag, Last-Modified, Content-Type …). */
  headers: Readonly<Record<string, string>>;
  body: Buffer;
}

interface Entry extends CachedFile {
  identity: string;
}

/** The stat fields that change when a file's content can have changed. */
function identityOf(stats: Stats): string {
  return `${stats.dev}:${stats.ino}:${stats.size}:${stats.mtimeMs}:${stats.ctimeMs}`;
}

export class SmallFileCache {
  readonly #entries = new Map<string, Entry>();
  #bytes = 0;

  /**
   * @param maxFileBytes files larger than this are never cached
   * @param maxTotalBytes the cache drops its oldest entries beyond this
   */
  constructor(
    readonly maxFileBytes = 64 * 1024,
    readonly maxTotalBytes = 16 * 1024 * 1024,
  ) {}

  /** Whether a request may be answered from the cache: no Range, no conditional header. */
  static plainRequest(headers: Readonly<Record<string, string | string[] | undefined>>): boolean {
    return (
      headers['range'] === undefined &&
      headers['if-none-match'] === undefined &&
      headers['if-modified-since'] === undefined &&
      headers['if-match'] === undefined &&
      headers['if-unmodified-since'] === undefined
    );
  }

  fits(stats: Stats): boolean {
    return stats.isFile() && stats.size <= this.maxFileBytes;
  }

  /** The cached response for realPath if the file is still the one cached. */
  get(realPath: string, stats: Stats): CachedFile | undefined {
    const entry = this.#entries.get(realPath);
    if (!entry) return undefined;
    if (entry.identity === identityOf(stats)) return entry;
    this.#delete(realPath, entry);
    return undefined;
  }

  /** Keeps a response whose body was read while the file had `stats`. */
  set(realPath: string, stats: Stats, file: CachedFile): void {
    if (file.body.length !== stats.size || stats.size > this.maxFileBytes) return;
    const old = this.#entries.get(realPath);
    if (old) this.#delete(realPath, old);
    this.#entries.set(realPath, { ...file, identity: identityOf(stats) });
    this.#bytes += file.body.length;
    // Map iteration is insertion order: the first entries are the oldest.
    for (const [key, entry] of this.#entries) {
      if (this.#bytes <= this.maxTotalBytes) break;
      this.#delete(key, entry);
    }
  }

  get size(): number {
    return this.#entries.size;
  }

  #delete(key: string, entry: Entry): void {
    this.#entries.delete(key);
    this.#bytes -= entry.body.length;
  }
}
