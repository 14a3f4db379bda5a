import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openStore } from '../store/open.js';
import type { Store } from '../store/store.js';
import { Catalog } from './catalog.js';
import { makeCutter } from './chunker.js';
import { ChunkStore } from './chunk-store.js';
import { manifestChunks } from './manifest.js';
import { loadManifest } from './manifest-store.js';
import { publishDraft } from './publish.js';
import { seededBytes } from './test-support.js';
import { progressLine, uploadDraft, type RecordRequest, type UploadApi } from './upload.js';

describe('uploadDraft (remote push)', () => {
  let dir: string;
  let store: Store;
  const cutter = makeCutter({ minBytes: 4096, avgBytes: 16384, maxBytes: 65536 });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pxeha-upload-'));
    store = await openStore({ kind: 'embedded', path: join(dir, 'store.db') });
    await mkdir(join(dir, 'draft', 'boot'), { recursive: true });
    await writeFile(join(dir, 'draft', 'rootfs.img'), seededBytes(21, 1024 * 1024));
    await writeFile(join(dir, 'draft', 'boot', 'vmlinuz'), seededBytes(22, 100_000));
  });
  after(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** What the node's API does, in process; `failAfter` puts make the connection drop. */
  function nodeApi(chunks: ChunkStore, catalog: Catalog, failAfter = Infinity): UploadApi & { puts: number } {
    const api = {
      puts: 0,
      missing: async (hashes: string[]) => {
        const out: string[] = [];
        for (const h of hashes) if (!(await chunks.has(h))) out.push(h);
        return out;
      },
      putChunk: async (hash: string, data: Uint8Array) => {
        if (api.puts >= failAfter) throw new Error('connection reset');
        api.puts++;
        await chunks.put(hash, data);
      },
      record: async (name: string, body: RecordRequest) => {
        // What the node's route does: the manifest from the uploaded pages, proven to be the version.
        const { id, ...ref } = body.manifestRef;
        const manifest = await loadManifest(chunks, id, ref);
        assert.ok(manifest, 'the manifest pages were uploaded before the record');
        for (const h of manifestChunks(manifest)) assert.ok(await chunks.has(h), 'recorded only once every chunk is on the node');
        const r = await catalog.recordVersion(name, manifest, chunks);
        if (body.channel) await catalog.setChannel(name, body.channel, r.id);
        return r;
      },
    };
    return api;
  }

  it('sends only what the node lacks, resumes after an interruption, and records the same version a local publish would', async () => {
    const chunks = await ChunkStore.open(join(dir, 'node'));
    const catalog = new Catalog(store);
    const first = nodeApi(chunks, catalog, 10);
    await assert.rejects(uploadDraft(join(dir, 'draft'), { api: first, name: 'demo', cutter, batchChunks: 4 }), /connection reset/);
    assert.equal(first.puts, 10);
    assert.deepEqual(await catalog.listVersions('demo'), [], 'nothing recorded by the interrupted push');

    const seen: number[] = [];
    const second = nodeApi(chunks, catalog);
    const r = await uploadDraft(join(dir, 'draft'), {
      api: second,
      name: 'demo',
      channel: 'test',
      cutter,
      batchChunks: 4,
      onProgress: (p) => seen.push(p.doneBytes),
    });
    assert.equal(r.progress.skippedChunks, 10, 'the chunks of the first push are not sent again');
    assert.equal(r.progress.sentChunks, r.chunks - 10);
    assert.equal(second.puts, r.chunks - 10 + 1, 'and the one manifest page');
    assert.equal(r.progress.doneBytes, r.progress.totalBytes);
    assert.equal(r.progress.totalBytes, 1024 * 1024 + 100_000);
    assert.ok(
      seen.every((b, i) => i === 0 || b >= seen[i - 1]!),
      'progress only grows',
    );
    assert.equal((await catalog.getChannel('demo', 'test'))?.record.version, r.id);

    const local = await publishDraft(join(dir, 'draft'), {
      catalog,
      chunks: await ChunkStore.open(join(dir, 'local')),
      name: 'demo',
      cutter,
    });
    assert.equal(local.id, r.id, 'same tree, same version id, local or remote');
    assert.equal(local.created, false);

    const third = nodeApi(chunks, catalog);
    const again = await uploadDraft(join(dir, 'draft'), { api: third, name: 'demo', cutter });
    assert.equal(third.puts, 0, 'a complete push sends nothing');
    assert.equal(again.created, false);
  });

  it('formats a progress line', () => {
    const line = progressLine(
      { totalBytes: 200e6, doneBytes: 100e6, sentBytes: 50e6, sentChunks: 50, skippedChunks: 48, skippedBytes: 50e6 },
      2000,
      10,
    );
    assert.equal(line, '[#####-----]  50%  100.0/200.0 MB, sent 50.0 MB at 25.0 MB/s, 48 chunks already there');
  });
});
