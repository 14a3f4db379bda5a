/**
 * Small artifacts (iPXE scripts, menus, configs: a few KiB each, fetched by every machine of a
 * boot storm) kept in memory with the response headers @fastify/send computed for them, so a
 * plain GET or HEAD of an unchanged file costs no open/stat/read/close on top of the path
 * check. The path check (src/artifacts/resolve.ts: an lstat per segment, or realpath and stat
 * through symlinks) still runs on every request, and its stat is the key: a file that changed
 * or was replaced (device, inode, size, mtime or ctime) misses and is read again. Requests with Range or conditional headers always go through send.
 * Hits are answered by the artifacts route and, before Fastify, by src/http/artifact-fast-path.ts.
 */
import type { Stats } from 'node:fs';

export interface CachedFile {
  /** Response headers as send() gave them for a 200 (ETag, Last-Modified, Content-Type …). */
  headers: Readonly<Record<string, string>>;
  body: Buffer;
}

/** A cache hit: the file, and the headers of its 200 ready for `writeHead`. */
export interface CachedResponse extends CachedFile {
  /**
   * `headers` as Fastify writes them for this body: names in lower case, in the same order,
   * and Content-Length the body's length (fastify lib/reply.js onSendEnd). Built once per entry.
   */
  responseHeaders: Readonly<Record<string, string>>;
}

/** The stat fields that change when a file's content can have changed. */
interface Identity {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
}

interface Entry extends CachedResponse {
  identity: Identity;
}

function identityOf({ dev, ino, size, mtimeMs, ctimeMs }: Stats): Identity {
  return { dev, ino, size, mtimeMs, ctimeMs };
}

/** Compared field by field: this runs on every request, where a string key cost a float-to-text conversion. */
function sameFile(a: Identity, b: Stats): boolean {
  return a.ino === b.ino && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs && a.size === b.size && a.dev === b.dev;
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
  get(realPath: string, stats: Stats): CachedResponse | undefined {
    const entry = this.#entries.get(realPath);
    if (!entry) return undefined;
    if (sameFile(entry.identity, stats)) return entry;
    this.#delete(realPath, entry);
    return undefined;
  }

  /** Keeps a response whose body was read while the file had `stats`. */
  set(realPath: string, stats: Stats, file: CachedFile): void {
    if (file.body.length !== stats.size || stats.size > this.maxFileBytes) return;
    const old = this.#entries.get(realPath);
    if (old) this.#delete(realPath, old);
    const responseHeaders: Record<string, string> = {};
    for (const [name, value] of Object.entries(file.headers)) responseHeaders[name.toLowerCase()] = value;
    responseHeaders['content-length'] = String(file.body.length);
    this.#entries.set(realPath, { headers: file.headers, body: file.body, responseHeaders, identity: identityOf(stats) });
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
