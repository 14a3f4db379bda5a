/**
 * An image version's manifest: its files, each with its size, optional mode and the ordered
 * list of chunks that make it up. The version's id is the SHA-256 of the manifest's canonical
 * JSON, so the same tree always gets the same id on every node, and a manifest read back from
 * the store proves it is the one its key names.
 *
 * The manifest holds content only (no name, no date): publishing the same tree twice is the same
 * version, and who published it when lives beside it in the catalog's version record.
 */
import { createHash } from 'node:crypto';
import { Type, type Static } from '@sinclair/typebox';
import { validate } from '../config/load.js';
import { ConfigError, PxehaError, type ValidationIssue } from '../errors.js';

export const MANIFEST_FORMAT = 1;

/** Longest file path in an image (bytes). */
export const MAX_IMAGE_PATH_BYTES = 1024;

const Hash = Type.String({ pattern: '^[0-9a-f]{64}$' });
const Uint = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });

export const ChunkRefSchema = Type.Object(
  {
    hash: Hash,
    size: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }),
    offset: Uint,
  },
  { additionalProperties: false },
);

export const ManifestFileSchema = Type.Object(
  {
    /** Relative, '/'-separated, no '.', '..' or empty segments (checked below). */
    path: Type.String({ minLength: 1, maxLength: MAX_IMAGE_PATH_BYTES }),
    size: Uint,
    /** Permission bits (e.g. 0o644), informational: serving does not depend on them. */
    mode: Type.Optional(Type.Integer({ minimum: 0, maximum: 0o7777 })),
    chunks: Type.Array(ChunkRefSchema),
  },
  { additionalProperties: false },
);

export const ManifestSchema = Type.Object(
  {
    format: Type.Literal(MANIFEST_FORMAT),
    /** Sorted by path (bytewise), unique. */
    files: Type.Array(ManifestFileSchema),
  },
  { additionalProperties: false },
);

export type ChunkRef = Static<typeof ChunkRefSchema>;
export type ManifestFile = Static<typeof ManifestFileSchema>;
export type Manifest = Static<typeof ManifestSchema>;

/** Bytewise UTF-8 order, the store's key order, so sorting is the same on every node. */
export function comparePaths(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** Why `path` is not a valid image path, or undefined. */
export function imagePathProblem(path: string): string | undefined {
  if (path.includes('\0')) return 'contains a NUL byte';
  if (path.includes('\\')) return 'contains a backslash';
  if (Buffer.byteLength(path) > MAX_IMAGE_PATH_BYTES) return `is longer than ${MAX_IMAGE_PATH_BYTES} bytes`;
  const segments = path.split('/');
  if (segments.some((s) => s === '' || s === '.' || s === '..')) return "must be relative, with no empty, '.' or '..' segments";
  return undefined;
}

/** What the schema cannot say: paths, order, and chunk lists that tile the file exactly. */
export function checkManifestSemantics(m: Manifest): ValidationIssue[] {
  const issues: ValidationIssue[] = [];
  m.files.forEach((f, fi) => {
    const base = `/files/${fi}`;
    const problem = imagePathProblem(f.path);
    if (problem) issues.push({ path: `${base}/path`, message: problem });
    if (fi > 0 && comparePaths(m.files[fi - 1]!.path, f.path) >= 0) {
      issues.push({ path: `${base}/path`, message: 'files must be sorted by path with no duplicates' });
    }
    let offset = 0;
    f.chunks.forEach((c, ci) => {
      if (c.offset !== offset) issues.push({ path: `${base}/chunks/${ci}/offset`, message: `must be ${offset} (the end of the previous chunk)` });
      offset = c.offset + c.size;
    });
    if (offset !== f.size) issues.push({ path: `${base}/size`, message: `is ${f.size} but the chunks cover ${offset} bytes` });
  });
  return issues;
}

/** Validates an untrusted manifest (from the store, an API body) or throws ConfigError. */
export function parseManifest(input: unknown, what = 'manifest'): Manifest {
  const m = validate<Manifest>(ManifestSchema, input, what);
  const issues = checkManifestSemantics(m);
  if (issues.length > 0) throw new ConfigError(what, issues);
  return m;
}

/**
 * Canonical JSON: object keys sorted, no white space; arrays keep their order. For manifests
 * (integers and strings only) this is RFC 8785's JSON Canonicalization Scheme.
 */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** The version id: SHA-256 (hex) of the manifest's canonical JSON. */
export function manifestId(m: Manifest): string {
  return createHash('sha256').update(canonicalJson(m)).digest('hex');
}

/** Builds a valid manifest from files in any order (sorts them; checks everything). */
export function buildManifest(files: readonly ManifestFile[]): Manifest {
  const sorted = [...files].sort((a, b) => comparePaths(a.path, b.path));
  return parseManifest({ format: MANIFEST_FORMAT, files: sorted });
}

/** Every chunk hash a manifest references. */
export function manifestChunks(m: Manifest): Set<string> {
  const hashes = new Set<string>();
  for (const f of m.files) for (const c of f.chunks) hashes.add(c.hash);
  return hashes;
}

/** A file's entry by path, or undefined. */
export function findFile(m: Manifest, path: string): ManifestFile | undefined {
  return m.files.find((f) => f.path === path);
}

// ---- manifests as pages in the chunk store --------------------------------------------------

/**
 * A manifest is kept out of the store: its canonical JSON is cut into pages of this many bytes
 * (the last one shorter), each stored in the chunk store under its SHA-256 like any chunk, and the
 * version record lists the page hashes. 1 MiB pages hold ~9 500 chunk references (~2.3 GiB of
 * image at 256 KiB chunks), so one page covers most boot images and the record grows by one
 * 64-digit hash per page, not by 110 bytes per chunk (docs/design.md, "Manifests as pages").
 */
export const MANIFEST_PAGE_BYTES = 1024 * 1024;

/** Where a version's manifest is: the record's `manifest` field. */
export const ManifestRefSchema = Type.Object(
  {
    /** Length of the manifest's canonical JSON (UTF-8 bytes); fixes every page's size. */
    bytes: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }),
    /** SHA-256 of each page, in order; their concatenation hashes to the version id. */
    pages: Type.Array(Hash, { minItems: 1 }),
  },
  { additionalProperties: false },
);
export type ManifestRef = Static<typeof ManifestRefSchema>;

/** A page of a manifest: what the replicator fetches and the chunk store keeps. */
export interface ManifestPage {
  hash: string;
  size: number;
}

/** The pages a reference names, with their sizes (all MANIFEST_PAGE_BYTES but the last). */
export function manifestPages(ref: ManifestRef): ManifestPage[] {
  return ref.pages.map((hash, i) => ({ hash, size: Math.min(MANIFEST_PAGE_BYTES, ref.bytes - i * MANIFEST_PAGE_BYTES) }));
}

/** Whether a reference's page count fits its byte count (a page of 0 or more than a page's bytes cannot be). */
export function manifestRefProblem(ref: ManifestRef): string | undefined {
  const want = Math.ceil(ref.bytes / MANIFEST_PAGE_BYTES);
  return ref.pages.length === want ? undefined : `${ref.pages.length} manifest pages for ${ref.bytes} bytes (must be ${want})`;
}

/** A manifest cut into pages: its id, its reference and the pages' bytes (to store). */
export function paginateManifest(m: Manifest): { id: string; ref: ManifestRef; pages: Buffer[] } {
  const bytes = Buffer.from(canonicalJson(m), 'utf8');
  const pages: Buffer[] = [];
  for (let o = 0; o < bytes.length; o += MANIFEST_PAGE_BYTES) pages.push(bytes.subarray(o, Math.min(bytes.length, o + MANIFEST_PAGE_BYTES)));
  return {
    id: createHash('sha256').update(bytes).digest('hex'),
    ref: { bytes: bytes.length, pages: pages.map((p) => createHash('sha256').update(p).digest('hex')) },
    pages,
  };
}

/**
 * The manifest whose pages are `pages` (each already verified against its hash by the chunk
 * store), proven to be version `id`: their concatenation must hash to it, be canonical JSON and a
 * valid manifest. Throws PXE_ERR_CHUNK_CORRUPT otherwise: a record that names pages of another
 * manifest is refused here, whatever its key says.
 */
export function assembleManifest(id: string, ref: ManifestRef, pages: readonly Uint8Array[]): Manifest {
  const bytes = Buffer.concat(pages);
  const actual = createHash('sha256').update(bytes).digest('hex');
  if (bytes.length !== ref.bytes || actual !== id) {
    throw new PxehaError('PXE_ERR_CHUNK_CORRUPT', `manifest pages of version ${id} are ${bytes.length} bytes hashing to ${actual}, not the version`);
  }
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new PxehaError('PXE_ERR_CHUNK_CORRUPT', `manifest of version ${id} is not JSON`);
  }
  return parseManifest(json, `manifest ${id}`);
}

/** Totals a version record carries, so lists and the matrix need no manifest. */
export function manifestTotals(m: Manifest): { bytes: number; files: number; chunks: number } {
  return { bytes: m.files.reduce((n, f) => n + f.size, 0), files: m.files.length, chunks: manifestChunks(m).size };
}
