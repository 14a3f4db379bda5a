import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError } from '../errors.js';
import { PxehaError } from '../errors.js';
import {
  MANIFEST_PAGE_BYTES,
  assembleManifest,
  buildManifest,
  canonicalJson,
  imagePathProblem,
  manifestChunks,
  manifestId,
  manifestPages,
  manifestRefProblem,
  paginateManifest,
  parseManifest,
  type Manifest,
} from './manifest.js';

const h = (c: string) => c.repeat(64);

const sample: Manifest = {
  format: 1,
  files: [
    { path: 'boot/initrd.img', size: 7, mode: 0o644, chunks: [{ hash: h('a'), size: 4, offset: 0 }, { hash: h('b'), size: 3, offset: 4 }] },
    { path: 'boot/vmlinuz', size: 0, chunks: [] },
  ],
};

function issuesOf(input: unknown): { path: string; message: string }[] {
  try {
    parseManifest(input);
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return [...e.issues];
  }
  assert.fail('expected the manifest to be refused');
}

describe('manifest', () => {
  it('has an id that is the SHA-256 of its canonical JSON, independent of key order', () => {
    assert.equal(
      canonicalJson(sample),
      '{"files":[{"chunks":[{"hash":"' + h('a') + '","offset":0,"size":4},{"hash":"' + h('b') + '","offset":4,"size":3}],"mode":420,"path":"boot/initrd.img","size":7},{"chunks":[],"path":"boot/vmlinuz","size":0}],"format":1}',
    );
    const reordered = JSON.parse('{"files":' + JSON.stringify(sample.files.map((f) => ({ chunks: f.chunks, size: f.size, path: f.path, ...(f.mode !== undefined ? { mode: f.mode } : {}) }))) + ',"format":1}');
    assert.equal(manifestId(reordered), manifestId(sample));
    assert.match(manifestId(sample), /^[0-9a-f]{64}$/);
    const changed = structuredClone(sample);
    changed.files[0]!.mode = 0o600;
    assert.notEqual(manifestId(changed), manifestId(sample));
  });

  it('accepts a valid manifest and sorts files when building one', () => {
    assert.deepEqual(parseManifest(sample), sample);
    assert.deepEqual(buildManifest([...sample.files].reverse()), sample);
    assert.deepEqual([...manifestChunks(sample)], [h('a'), h('b')]);
  });

  it('reports the JSON pointer of each bad field', () => {
    const bad = structuredClone(sample) as unknown as { files: Record<string, unknown>[] };
    (bad.files[0]!.chunks as Record<string, unknown>[])[1]!.hash = 'xyz';
    assert.deepEqual(issuesOf(bad).map((i) => i.path), ['/files/0/chunks/1/hash']);

    const extra = structuredClone(sample) as unknown as { files: Record<string, unknown>[] };
    extra.files[1]!.owner = 'root';
    assert.deepEqual(issuesOf(extra), [{ path: '/files/1/owner', message: 'is not a known field' }]);

    assert.deepEqual(issuesOf({ ...sample, format: 2 }).map((i) => i.path), ['/format']);
  });

  it('checks that chunks tile each file and paths are relative, sorted and unique', () => {
    const gap = structuredClone(sample);
    gap.files[0]!.chunks[1]!.offset = 5;
    assert.deepEqual(issuesOf(gap), [
      { path: '/files/0/chunks/1/offset', message: 'must be 4 (the end of the previous chunk)' },
      { path: '/files/0/size', message: 'is 7 but the chunks cover 8 bytes' },
    ]);
    const unsorted = structuredClone(sample);
    unsorted.files.reverse();
    assert.deepEqual(issuesOf(unsorted).map((i) => i.path), ['/files/1/path']);
    const dup = structuredClone(sample);
    dup.files[1]!.path = dup.files[0]!.path;
    assert.deepEqual(issuesOf(dup).map((i) => i.path), ['/files/1/path']);
    for (const path of ['/etc/passwd', '../x', 'a//b', 'a/./b', 'a\\b', 'a/']) {
      assert.ok(imagePathProblem(path), path);
      const m = structuredClone(sample);
      m.files[1]!.path = path.startsWith('/') || path.startsWith('.') ? path : `boot/z${path}`;
      assert.ok(issuesOf(m).some((i) => i.path === '/files/1/path'), path);
    }
    assert.equal(imagePathProblem('EFI/BOOT/BOOTX64.EFI'), undefined);
  });
});

describe('manifest pages', () => {
  /** A manifest of `n` 1-byte chunks: ~110 bytes of JSON each. */
  const big = (n: number): Manifest => ({
    format: 1,
    files: [{ path: 'disk.img', size: n, chunks: Array.from({ length: n }, (_, i) => ({ hash: (i % 7).toString(16).padStart(64, '0'), size: 1, offset: i })) }],
  });

  it('cuts the canonical JSON into 1 MiB pages whose concatenation is the version', () => {
    const m = big(20_000);
    const { id, ref, pages } = paginateManifest(m);
    assert.equal(id, manifestId(m));
    assert.equal(ref.bytes, Buffer.byteLength(canonicalJson(m)));
    assert.equal(pages.length, Math.ceil(ref.bytes / MANIFEST_PAGE_BYTES));
    assert.ok(pages.length >= 2);
    assert.deepEqual(manifestPages(ref).map((p) => p.size), pages.map((p) => p.length));
    assert.equal(manifestRefProblem(ref), undefined);
    assert.match(manifestRefProblem({ bytes: ref.bytes, pages: ref.pages.slice(1) }) ?? '', /must be/);
    assert.deepEqual(assembleManifest(id, ref, pages), m);
    // One page: the page is the blob whose hash is the version id.
    const small = paginateManifest(sample);
    assert.deepEqual(small.ref.pages, [small.id]);
  });

  it('refuses pages that are not the version the id names', () => {
    const a = paginateManifest(big(3));
    const b = paginateManifest(big(4));
    const corrupt = (e: unknown) => e instanceof PxehaError && e.code === 'PXE_ERR_CHUNK_CORRUPT';
    assert.throws(() => assembleManifest(a.id, b.ref, b.pages), corrupt);
    const flipped = Buffer.from(a.pages[0]!);
    flipped[10] = flipped[10]! ^ 1;
    assert.throws(() => assembleManifest(a.id, a.ref, [flipped]), corrupt);
  });
});
