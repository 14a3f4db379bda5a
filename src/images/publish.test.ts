import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { PxehaError } from '../errors.js';
import { openStore } from '../store/open.js';
import type { Store } from '../store/store.js';
import { Catalog } from './catalog.js';
import { ChunkStore } from './chunk-store.js';
import { findFile, manifestChunks, paginateManifest, type Manifest } from './manifest.js';
import { loadManifest } from './manifest-store.js';
import { publishDraft } from './publish.js';
import { readWhole } from './reader.js';
import { seededBytes } from './test-support.js';

const isCode = (code: string) => (e: unknown) => e instanceof PxehaError && e.code === code;

async function bytesOf(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of stream) parts.push(p as Buffer);
  return Buffer.concat(parts);
}

describe('publishDraft, end to end', () => {
  let dir: string;
  let draft: string;
  let store: Store;
  let chunks: ChunkStore;
  let catalog: Catalog;
  const initrd = seededBytes(1, 9 * 1024 * 1024 + 123);

  /** Checks every file of a version reads back from the chunk store as it is on disk now. */
  async function assertServes(manifest: Manifest, files: Record<string, Buffer>): Promise<void> {
    assert.deepEqual(manifest.files.map((f) => f.path), Object.keys(files).sort());
    for (const [path, data] of Object.entries(files)) {
      const file = findFile(manifest, path)!;
      assert.equal(file.size, data.length);
      assert.ok((await bytesOf(readWhole(file, chunks))).equals(data), path);
    }
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pxeha-publish-'));
    draft = join(dir, 'draft');
    await mkdir(join(draft, 'boot', 'grub'), { recursive: true });
    await writeFile(join(draft, 'boot', 'vmlinuz'), seededBytes(2, 3 * 1024 * 1024));
    await writeFile(join(draft, 'boot', 'initrd.img'), initrd);
    await writeFile(join(draft, 'boot', 'grub', 'grub.cfg'), 'linux /boot/vmlinuz\n');
    await writeFile(join(draft, 'EMPTY'), '');
    await chmod(join(draft, 'boot', 'vmlinuz'), 0o600);
    store = await openStore({ kind: 'embedded', path: join(dir, 'store.db') });
    chunks = await ChunkStore.open(join(dir, 'node1'));
    catalog = new Catalog(store);
  });
  after(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('publishes, republishes a small change sharing chunks, rolls back, and collects garbage', async () => {
    const v1 = await publishDraft(draft, { catalog, chunks, name: 'debian', channel: 'stable', note: 'first' });
    assert.equal(v1.created, true);
    assert.equal(v1.channel?.record.version, v1.id);
    assert.equal(v1.stats.files, 4);
    assert.equal(v1.stats.newChunks, v1.stats.chunks);
    assert.equal(findFile(v1.manifest, 'boot/vmlinuz')?.mode, 0o600);
    const original = {
      EMPTY: Buffer.alloc(0),
      'boot/grub/grub.cfg': Buffer.from('linux /boot/vmlinuz\n'),
      'boot/initrd.img': initrd,
      'boot/vmlinuz': seededBytes(2, 3 * 1024 * 1024),
    };
    await assertServes(v1.manifest, original);
    assert.deepEqual((await catalog.getVersion('debian', v1.id))?.record.note, 'first');

    // The same tree again: the same version, nothing written, the channel untouched.
    const same = await publishDraft(draft, { catalog, chunks, name: 'debian', channel: 'stable' });
    assert.deepEqual([same.id, same.created, same.stats.newChunks], [v1.id, false, 0]);
    assert.equal(same.channel?.modRevision, v1.channel?.modRevision);

    // 4 KiB changed in the middle of the initrd: only a chunk or two are new.
    const changed = Buffer.from(initrd);
    seededBytes(3, 4096).copy(changed, 5 * 1024 * 1024);
    await writeFile(join(draft, 'boot', 'initrd.img'), changed);
    const v2 = await publishDraft(draft, { catalog, chunks, name: 'debian', channel: 'stable', baseRevision: v1.channel!.modRevision });
    assert.notEqual(v2.id, v1.id);
    assert.ok(v2.stats.newChunks >= 1 && v2.stats.newChunks <= 2, `${v2.stats.newChunks} new chunks of ${v2.stats.chunks}`);
    assert.ok(v2.stats.newBytes < v2.stats.bytes / 2);
    assert.deepEqual(v2.channel?.record.history, [v1.id]);
    await assertServes(v2.manifest, { ...original, 'boot/initrd.img': changed });

    // Roll back: the channel serves v1 again, whose bytes are all still there.
    const back = await catalog.rollbackChannel('debian', 'stable');
    assert.equal(back.record.version, v1.id);
    const recorded = (await catalog.getVersion('debian', back.record.version))!;
    await assertServes((await loadManifest(chunks, recorded.id, recorded.record.manifest))!, original);

    // v2 is in no channel now: remove it, and gc takes exactly its own chunks.
    await catalog.removeVersion('debian', v2.id);
    const referenced = await catalog.referencedChunks(chunks);
    const onlyV2 = [...manifestChunks(v2.manifest)].filter((h) => !manifestChunks(v1.manifest).has(h));
    assert.ok(onlyV2.length >= 1);
    const gc = await chunks.gc(referenced, { graceMs: 0 });
    assert.deepEqual(gc.deleted.sort(), [...onlyV2, ...paginateManifest(v2.manifest).ref.pages].sort(), 'its chunks and its manifest page');
    await assertServes(v1.manifest, original);
  });

  it('publishes a single file as an image of one file', async () => {
    const file = join(dir, 'ipxe.efi');
    await writeFile(file, seededBytes(4, 70_000));
    const r = await publishDraft(file, { catalog, chunks, name: 'ipxe' });
    assert.deepEqual(r.manifest.files.map((f) => f.path), ['ipxe.efi']);
    assert.equal(r.channel, undefined);
    assert.deepEqual(await readFile(file), await bytesOf(readWhole(r.manifest.files[0]!, chunks)));
  });

  it('refuses symbolic links, missing drafts and bad names', async () => {
    const linked = join(dir, 'linked');
    await mkdir(linked);
    await symlink('/etc/passwd', join(linked, 'passwd'));
    await assert.rejects(publishDraft(linked, { catalog, chunks, name: 'x' }), (e: unknown) => isCode('PXE_ERR_PATH_REFUSED')(e) && /passwd/.test(String(e)));
    await assert.rejects(publishDraft(join(dir, 'nope'), { catalog, chunks, name: 'x' }), isCode('PXE_ERR_NOT_FOUND'));
    await assert.rejects(publishDraft(draft, { catalog, chunks, name: 'Bad Name' }), isCode('PXE_ERR_BAD_REQUEST'));
    await assert.rejects(publishDraft(draft, { catalog, chunks, name: 'ok', channel: 'a/b' }), isCode('PXE_ERR_BAD_REQUEST'));
  });
});
