import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PxehaError } from '../errors.js';
import { openStore } from '../store/open.js';
import type { Store, TxnRequest, TxnResult } from '../store/store.js';
import { takeBackup, restoreBackup } from '../cluster/backup.js';
import { ChunkStore } from './chunk-store.js';
import {
  Catalog,
  MAX_VERSION_RECORD_BYTES,
  channelKey,
  channelsUsing,
  parseImageKey,
  planRollback,
  planSwitch,
  versionKey,
  type ChannelRecord,
} from './catalog.js';
import { canonicalJson, manifestId, paginateManifest, type Manifest } from './manifest.js';
import { loadManifest } from './manifest-store.js';

const isCode = (code: string) => (e: unknown) => e instanceof PxehaError && e.code === code;

/** A one-file manifest whose content is told apart by `n`. */
function manifest(n: number): Manifest {
  const hash = n.toString(16).padStart(64, '0');
  return { format: 1, files: [{ path: 'vmlinuz', size: 10 + n, chunks: [{ hash, size: 10 + n, offset: 0 }] }] };
}

const A = 'a'.repeat(64);
const B = 'b'.repeat(64);
const C = 'c'.repeat(64);

describe('channel decisions (pure)', () => {
  it('switching pushes the old version on the history, bounded, never the current one', () => {
    const r1 = planSwitch(undefined, A, 1, 2)!;
    assert.deepEqual(r1, { version: A, history: [], changedAtMs: 1, change: 'set' });
    const r2 = planSwitch(r1, B, 2, 2)!;
    assert.deepEqual(r2.history, [A]);
    const r3 = planSwitch(r2, C, 3, 2)!;
    assert.deepEqual(r3.history, [B, A]);
    const back = planSwitch(r3, A, 4, 2)!;
    assert.deepEqual([back.version, back.history], [A, [C, B]]);
    assert.equal(planSwitch(r3, C, 5, 2), undefined, 'already there: no change');
  });

  it('rollback walks back through the history and stops at its end', () => {
    const r: ChannelRecord = { version: C, history: [B, A], changedAtMs: 1, change: 'set' };
    const b1 = planRollback(r, 2)!;
    assert.deepEqual(b1, { version: B, history: [A], changedAtMs: 2, change: 'rollback' });
    const b2 = planRollback(b1, 3)!;
    assert.deepEqual([b2.version, b2.history], [A, []]);
    assert.equal(planRollback(b2, 4), undefined);
  });

  it('a version is in use by channels that serve it or can roll back to it', () => {
    const channels = new Map<string, ChannelRecord>([
      ['stable', { version: A, history: [B], changedAtMs: 1, change: 'set' }],
      ['beta', { version: B, history: [], changedAtMs: 1, change: 'set' }],
    ]);
    assert.deepEqual(channelsUsing(channels, A), ['stable']);
    assert.deepEqual(channelsUsing(channels, B), ['beta', 'stable']);
    assert.deepEqual(channelsUsing(channels, C), []);
  });

  it('parses the keys it writes and nothing else', () => {
    assert.deepEqual(parseImageKey(versionKey('ubuntu-24.04', A)), { kind: 'version', name: 'ubuntu-24.04', id: A });
    assert.deepEqual(parseImageKey(channelKey('ubuntu-24.04', 'stable')), { kind: 'channel', name: 'ubuntu-24.04', channel: 'stable' });
    assert.deepEqual(parseImageKey('/pxeha/images/x/fence'), { kind: 'fence', name: 'x' });
    for (const k of ['/pxeha/images/x/versions/abc', '/pxeha/images/X/fence', '/pxeha/images/x/channels/a/b', '/pxeha/leases/x']) {
      assert.equal(parseImageKey(k), undefined, k);
    }
  });
});

describe('Catalog on the embedded store', () => {
  let dir: string;
  let inner: Store;
  /** Runs before a matching txn reaches the store, once (to interleave a concurrent change). */
  let beforeTxn: { when: (r: TxnRequest) => boolean; run: () => Promise<unknown> } | undefined;
  /** Holds channel reads until this many have been made (to make two callers read the same state). */
  let readBarrier: { count: number; waiting: Array<() => void> } | undefined;
  let store: Store;
  let catalog: Catalog;
  let chunks: ChunkStore;
  let now = 1_000;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pxeha-catalog-'));
    inner = await openStore({ kind: 'embedded', path: join(dir, 'store.db') });
    store = new Proxy(inner, {
      get(target, prop) {
        if (prop === 'txn') {
          return async (r: TxnRequest): Promise<TxnResult> => {
            const hook = beforeTxn;
            if (hook?.when(r)) {
              beforeTxn = undefined;
              await hook.run();
            }
            return target.txn(r);
          };
        }
        if (prop === 'get') {
          return async (key: string) => {
            const kv = await target.get(key);
            const barrier = readBarrier;
            if (barrier && key.includes('/channels/')) {
              await new Promise<void>((resolve) => {
                barrier.waiting.push(resolve);
                if (barrier.waiting.length >= barrier.count) for (const w of barrier.waiting) w();
              });
            }
            return kv;
          };
        }
        const v = Reflect.get(target, prop, target) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    catalog = new Catalog(store, { nowMs: () => now, historyLimit: 2 });
    chunks = await ChunkStore.open(join(dir, 'node'));
  });
  after(async () => {
    await inner.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('records a version create-only, keyed by its manifest id, its manifest stored as pages first', async () => {
    const first = await catalog.recordVersion('debian', manifest(1), chunks, { note: 'first' });
    assert.equal(first.id, manifestId(manifest(1)));
    assert.equal(first.created, true);
    const again = await catalog.recordVersion('debian', manifest(1), chunks);
    assert.equal(again.created, false);
    assert.equal(again.revision, first.revision, 'nothing written');
    const got = await catalog.getVersion('debian', first.id);
    const { ref } = paginateManifest(manifest(1));
    assert.deepEqual(got?.record, { manifest: ref, totals: { bytes: 11, files: 1, chunks: 1 }, publishedAtMs: 1_000, note: 'first' });
    assert.equal(ref.pages.length, 1);
    assert.equal(ref.pages[0], first.id, 'a one-page manifest is the blob whose hash is the version id');
    assert.deepEqual(await loadManifest(chunks, first.id, got!.record.manifest), manifest(1));
    assert.equal(await catalog.getVersion('debian', manifestId(manifest(99))), undefined);
    await catalog.recordVersion('debian', manifest(2), chunks);
    assert.deepEqual((await catalog.listVersions('debian')).map((v) => v.id), [manifestId(manifest(1)), manifestId(manifest(2))]);
    assert.deepEqual(await catalog.listImages(), ['debian']);
  });

  it('refuses a record whose manifest pages are not the version its key names', async () => {
    const id = manifestId(manifest(3));
    // A record under 3's key that names the (stored, sound) pages of manifest 4.
    const other = paginateManifest(manifest(4));
    await chunks.put(other.ref.pages[0]!, other.pages[0]!);
    await inner.put(versionKey('tampered', id), JSON.stringify({ manifest: other.ref, totals: { bytes: 14, files: 1, chunks: 1 }, publishedAtMs: 1 }));
    const got = await catalog.getVersion('tampered', id);
    await assert.rejects(loadManifest(chunks, id, got!.record.manifest), (e: unknown) => isCode('PXE_ERR_CHUNK_CORRUPT')(e) && /not the version/.test(String(e)));
    // A page count that does not fit the byte count is refused as soon as the record is read.
    await inner.put(versionKey('tampered', id), JSON.stringify({ manifest: { bytes: 10, pages: [A, B] }, totals: { bytes: 14, files: 1, chunks: 1 }, publishedAtMs: 1 }));
    await assert.rejects(catalog.getVersion('tampered', id), isCode('PXE_ERR_INTERNAL'));
    await inner.delete(versionKey('tampered', id));
  });

  it('records a version whose chunk list would not fit one store value, as several pages', async () => {
    // 12 000 references to 3 distinct 100-byte chunks: ~1.3 MB of chunk list, over the old
    // record limit, in a record of a few hundred bytes.
    const refs = Array.from({ length: 12_000 }, (_, i) => ({ hash: (i % 3).toString(16).padStart(64, 'c'), size: 100, offset: i * 100 }));
    const big: Manifest = { format: 1, files: [{ path: 'disk.img', size: 1_200_000, chunks: refs }] };
    assert.ok(canonicalJson(big).length > MAX_VERSION_RECORD_BYTES);
    const r = await catalog.recordVersion('huge', big, chunks);
    const kv = await inner.get(versionKey('huge', r.id));
    assert.ok(kv!.value.length < 1000, `record of ${kv!.value.length} bytes`);
    const got = await catalog.getVersion('huge', r.id);
    assert.equal(got!.record.manifest.pages.length, 2);
    assert.deepEqual(got!.record.totals, { bytes: 1_200_000, files: 1, chunks: 3 });
    assert.deepEqual(await loadManifest(chunks, r.id, got!.record.manifest), big);
    await catalog.removeVersion('huge', r.id);
  });

  it('refuses bad names and ids', async () => {
    await assert.rejects(catalog.recordVersion('../etc', manifest(1), chunks), isCode('PXE_ERR_BAD_REQUEST'));
    await assert.rejects(catalog.setChannel('debian', 'Stable/x', A), isCode('PXE_ERR_BAD_REQUEST'));
    await assert.rejects(catalog.getVersion('debian', 'abc'), isCode('PXE_ERR_BAD_REQUEST'));
  });

  it('publishes to a channel and rolls back through a short history', async () => {
    const ids = [];
    for (const n of [10, 11, 12]) ids.push((await catalog.recordVersion('alma', manifest(n), chunks)).id);
    const [v1, v2, v3] = ids as [string, string, string];
    now = 2_000;
    const s1 = await catalog.setChannel('alma', 'stable', v1, { baseRevision: 0 });
    assert.deepEqual(s1.record, { version: v1, history: [], changedAtMs: 2_000, change: 'set' });
    assert.equal((await catalog.getChannel('alma', 'stable'))?.modRevision, s1.modRevision);
    await catalog.setChannel('alma', 'stable', v2);
    const s3 = await catalog.setChannel('alma', 'stable', v3);
    assert.deepEqual(s3.record.history, [v2, v1]);
    assert.equal((await catalog.setChannel('alma', 'stable', v3)).modRevision, s3.modRevision, 'same version: no write');

    const r1 = await catalog.rollbackChannel('alma', 'stable', { baseRevision: s3.modRevision });
    assert.deepEqual([r1.record.version, r1.record.history, r1.record.change], [v2, [v1], 'rollback']);
    const r2 = await catalog.rollbackChannel('alma', 'stable');
    assert.deepEqual([r2.record.version, r2.record.history], [v1, []]);
    await assert.rejects(catalog.rollbackChannel('alma', 'stable'), isCode('PXE_ERR_NOT_FOUND'));
    await assert.rejects(catalog.rollbackChannel('alma', 'nope'), isCode('PXE_ERR_NOT_FOUND'));
  });

  it('promotes: points `to` at what `from` serves, refusing if either changed meanwhile', async () => {
    const p1 = (await catalog.recordVersion('stage', manifest(50), chunks)).id;
    const p2 = (await catalog.recordVersion('stage', manifest(51), chunks)).id;
    await catalog.setChannel('stage', 'test', p1);
    const first = await catalog.promoteChannel('stage', 'test', 'production', { baseRevision: 0 });
    assert.deepEqual([first.record.version, first.record.history, first.from.channel], [p1, [], 'test']);
    await catalog.setChannel('stage', 'test', p2);
    const prod = (await catalog.getChannel('stage', 'production'))!;
    // A stale base revision for `to`: refused, nothing written.
    await assert.rejects(catalog.promoteChannel('stage', 'test', 'production', { baseRevision: prod.modRevision - 1 }), isCode('PXE_ERR_CONFLICT'));
    // `from` moves between the read and the commit: refused.
    beforeTxn = { when: (r) => (r.success ?? []).some((op) => op.type === 'put' && op.key === channelKey('stage', 'production')), run: () => catalog.setChannel('stage', 'test', p1) };
    await assert.rejects(catalog.promoteChannel('stage', 'test', 'production'), isCode('PXE_ERR_CONFLICT'));
    assert.equal((await catalog.getChannel('stage', 'production'))!.modRevision, prod.modRevision);
    await catalog.setChannel('stage', 'test', p2);
    const second = await catalog.promoteChannel('stage', 'test', 'production');
    assert.deepEqual([second.record.version, second.record.history], [p2, [p1]]);
    assert.equal((await catalog.promoteChannel('stage', 'test', 'production')).modRevision, second.modRevision, 'already there: no write');
    await assert.rejects(catalog.promoteChannel('stage', 'nope', 'production'), isCode('PXE_ERR_NOT_FOUND'));
    await assert.rejects(catalog.promoteChannel('stage', 'test', 'test'), isCode('PXE_ERR_BAD_REQUEST'));
  });

  it('refuses to point a channel at a version that is not recorded, writing nothing', async () => {
    const before = await store.revision();
    await assert.rejects(catalog.setChannel('alma', 'edge', manifestId(manifest(404))), isCode('PXE_ERR_NOT_FOUND'));
    assert.equal(await catalog.getChannel('alma', 'edge'), undefined);
    assert.equal(await store.revision(), before);
  });

  it('lets only one of two switches from the same base revision win', async () => {
    const v4 = (await catalog.recordVersion('rocky', manifest(20), chunks)).id;
    const v5 = (await catalog.recordVersion('rocky', manifest(21), chunks)).id;
    const v6 = (await catalog.recordVersion('rocky', manifest(22), chunks)).id;
    const base = await catalog.setChannel('rocky', 'stable', v4);

    // Given base: both callers decided on the same state.
    const results = await Promise.allSettled([
      catalog.setChannel('rocky', 'stable', v5, { baseRevision: base.modRevision }),
      catalog.setChannel('rocky', 'stable', v6, { baseRevision: base.modRevision }),
    ]);
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    assert.equal(won.length, 1);
    assert.equal(lost.length, 1);
    assert.ok(isCode('PXE_ERR_CONFLICT')(lost[0]!.reason), String(lost[0]!.reason));
    const winner = (won[0] as PromiseFulfilledResult<{ record: ChannelRecord }>).value.record;
    const now1 = (await catalog.getChannel('rocky', 'stable'))!.record;
    assert.deepEqual(now1, winner);
    assert.deepEqual(now1.history, [v4], 'the loser left no trace');

    // No base, both read the same state before either writes: the txn compare decides.
    const state = await catalog.getChannel('rocky', 'stable');
    readBarrier = { count: 2, waiting: [] };
    const other = now1.version === v5 ? v6 : v5;
    const raced = await Promise.allSettled([catalog.setChannel('rocky', 'stable', v4), catalog.setChannel('rocky', 'stable', other)]);
    readBarrier = undefined;
    assert.deepEqual(raced.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
    const reason = (raced.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason as PxehaError;
    assert.equal(reason.code, 'PXE_ERR_CONFLICT');
    assert.match(reason.message, new RegExp(`expected it at revision ${state!.modRevision}, now at revision \\d+`));
    const final = (await catalog.getChannel('rocky', 'stable'))!.record;
    assert.equal(final.version, raced[0]!.status === 'fulfilled' ? v4 : other);
    assert.equal(final.history[0], now1.version, 'switched from the state both read');
  });

  it('will not remove a version a channel serves or can roll back to', async () => {
    const v1 = (await catalog.recordVersion('fedora', manifest(30), chunks)).id;
    const v2 = (await catalog.recordVersion('fedora', manifest(31), chunks)).id;
    const v3 = (await catalog.recordVersion('fedora', manifest(32), chunks)).id;
    const v4 = (await catalog.recordVersion('fedora', manifest(33), chunks)).id;
    await catalog.setChannel('fedora', 'stable', v1);
    await assert.rejects(catalog.removeVersion('fedora', v1), (e: unknown) => isCode('PXE_ERR_CONFLICT')(e) && /in use by channel\(s\) stable/.test(String(e)));
    await catalog.setChannel('fedora', 'stable', v2);
    await assert.rejects(catalog.removeVersion('fedora', v1), isCode('PXE_ERR_CONFLICT'), 'still in the rollback history');
    await catalog.setChannel('fedora', 'stable', v3);
    await catalog.setChannel('fedora', 'stable', v4); // history [v3, v2]: v1 has fallen off (limit 2)
    await catalog.removeVersion('fedora', v1);
    assert.equal(await catalog.getVersion('fedora', v1), undefined);
    await assert.rejects(catalog.removeVersion('fedora', v1), isCode('PXE_ERR_NOT_FOUND'));
    await catalog.removeChannel('fedora', 'stable');
    await catalog.removeVersion('fedora', v2);
  });

  it('removal and a concurrent channel switch to the same version cannot both win', async () => {
    const v = (await catalog.recordVersion('arch', manifest(40), chunks)).id;
    // A channel created between the removal's check and its delete: the fence fails the delete.
    beforeTxn = {
      when: (r) => r.success?.some((op) => op.type === 'delete' && op.key === versionKey('arch', v)) ?? false,
      run: () => catalog.setChannel('arch', 'beta', v),
    };
    await assert.rejects(catalog.removeVersion('arch', v), isCode('PXE_ERR_CONFLICT'));
    assert.ok(await catalog.getVersion('arch', v), 'version kept');
    assert.equal((await catalog.getChannel('arch', 'beta'))?.record.version, v);

    // The other order: removed between the switch's read and its write: the switch fails.
    await catalog.removeChannel('arch', 'beta');
    beforeTxn = {
      when: (r) => r.success?.some((op) => op.type === 'put' && op.key === channelKey('arch', 'gamma')) ?? false,
      run: () => catalog.removeVersion('arch', v),
    };
    await assert.rejects(catalog.setChannel('arch', 'gamma', v), isCode('PXE_ERR_NOT_FOUND'));
    assert.equal(await catalog.getChannel('arch', 'gamma'), undefined);
    assert.equal(await catalog.getVersion('arch', v), undefined);
  });

  it('lists every chunk and manifest page any recorded version references (what gc must keep)', async () => {
    const referenced = await catalog.referencedChunks(chunks);
    for (const v of await catalog.listVersions('rocky')) for (const p of v.record.manifest.pages) assert.ok(referenced.has(p), 'manifest pages are kept');
    for (const n of [1, 2, 10, 11, 12, 20, 21, 22, 32, 33]) assert.ok(referenced.has(manifest(n).files[0]!.chunks[0]!.hash), `manifest ${n}`);
    for (const n of [30, 31, 40]) assert.ok(!referenced.has(manifest(n).files[0]!.chunks[0]!.hash), `removed version ${n}`);
    // gc with no grace period keeps the pages of recorded versions, drops those of removed ones.
    const removed = paginateManifest(manifest(40)).ref.pages[0]!;
    assert.ok(await chunks.has(removed));
    const gc = await chunks.gc(referenced, { graceMs: 0 });
    assert.ok(gc.deleted.includes(removed));
    for (const n of [1, 2, 10, 22, 33]) assert.ok(await chunks.has(paginateManifest(manifest(n)).ref.pages[0]!), `pages of version ${n} kept`);
    // A node that lacks a recorded version's manifest cannot list its chunks: refused, not guessed.
    await inner.put(versionKey('elsewhere', manifestId(manifest(77))), JSON.stringify({ manifest: paginateManifest(manifest(77)).ref, totals: { bytes: 87, files: 1, chunks: 1 }, publishedAtMs: 1 }));
    await assert.rejects(catalog.referencedChunks(chunks), isCode('PXE_ERR_CONFLICT'));
    await inner.delete(versionKey('elsewhere', manifestId(manifest(77))));
  });

  it('restores from a backup on a node that holds the chunks: the records name pages it has', async () => {
    const backup = await takeBackup(inner);
    const other = await openStore({ kind: 'embedded', path: join(dir, 'restored.db') });
    try {
      await restoreBackup(other, backup);
      const restored = new Catalog(other);
      const versions = await restored.listVersions('debian');
      assert.equal(versions.length, 2);
      for (const v of versions) assert.equal((await loadManifest(chunks, v.id, v.record.manifest))?.files.length, 1);
    } finally {
      await other.close();
    }
  });
});
