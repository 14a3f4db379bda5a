import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sha256Hex } from './chunker.js';
import { ChunkStore } from './chunk-store.js';
import { buildManifest, manifestId, type ChunkRef, type Manifest } from './manifest.js';
import { findImageFile, ImageFileSource } from './serve.js';
import { seededBytes } from './test-support.js';

describe('serving image files', () => {
  let dir: string;
  let chunks: ChunkStore;
  let manifest: Manifest;
  let id: string;
  const data = seededBytes(3, 10_000);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pxeha-serve-'));
    chunks = await ChunkStore.open(dir);
    const refs: ChunkRef[] = [];
    for (let offset = 0; offset < data.length; offset += 3000) {
      const bytes = data.subarray(offset, Math.min(data.length, offset + 3000));
      await chunks.put(sha256Hex(bytes), bytes);
      refs.push({ hash: sha256Hex(bytes), size: bytes.length, offset });
    }
    manifest = buildManifest([{ path: 'boot/vmlinuz', size: data.length, chunks: refs }]);
    id = manifestId(manifest);
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it('findImageFile: the file of a held version; why not otherwise; undefined outside images/', () => {
    const sources = { held: () => [id], manifestOf: (name: string, v: string) => (name === 'demo' && v === id ? manifest : undefined) };
    const found = findImageFile(`images/demo/${id}/boot/vmlinuz`, sources);
    assert.ok(found?.ok);
    assert.equal(found.file.size, data.length);
    assert.equal(findImageFile('debian/linux', sources), undefined);
    assert.equal((findImageFile(`images/demo/${id}/boot/other`, sources) as { reason: string }).reason, 'not-found');
    assert.equal((findImageFile(`images/demo/${'0'.repeat(64)}/boot/vmlinuz`, sources) as { reason: string }).reason, 'not-found');
    assert.equal((findImageFile('images/demo/stable/boot/vmlinuz', sources) as { reason: string }).reason, 'bad-path');
    assert.equal(
      (findImageFile(`images/demo/${id}/boot/vmlinuz`, { ...sources, held: () => new Set<string>() }) as { reason: string }).reason,
      'not-held',
    );
  });

  it('ImageFileSource: sequential reads of any length give the file; a seek is refused', async () => {
    const source = new ImageFileSource(manifest.files[0]!, chunks);
    const out = Buffer.alloc(data.length + 100);
    let position = 0;
    for (const length of [1, 511, 4096, 2999, 7000]) {
      const { bytesRead } = await source.read(out, position, length, position);
      position += bytesRead;
      if (bytesRead < length) break;
    }
    assert.equal(position, data.length);
    assert.ok(out.subarray(0, position).equals(data));
    assert.deepEqual(await source.read(out, 0, 10, position), { bytesRead: 0 });
    await assert.rejects(source.read(out, 0, 10, 0), { code: 'PXE_ERR_INTERNAL' });
    await source.close();
  });
});
