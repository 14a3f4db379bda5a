import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ImageEntry } from './image-watch.js';
import { imageEtag, parseImageRef, parsePinnedPath, pinnedImagePath, resolveImageRef } from './image-ref.js';

const V1 = '1'.repeat(64);
const V2 = '2'.repeat(64);
const manifest = { bytes: 1, pages: ['f'.repeat(64)] };
const totals = { bytes: 0, files: 0, chunks: 0 };
const entries: ImageEntry[] = [
  { kind: 'version', name: 'demo', id: V1, record: { manifest, totals, publishedAtMs: 1 } },
  { kind: 'version', name: 'demo', id: V2, record: { manifest, totals, publishedAtMs: 2 } },
  { kind: 'channel', name: 'demo', channel: 'stable', record: { version: V2, history: [V1], changedAtMs: 2, change: 'set' } },
  { kind: 'channel', name: 'demo', channel: 'orphan', record: { version: '3'.repeat(64), history: [], changedAtMs: 2, change: 'set' } },
];

describe('image references', () => {
  it('parses name@channel and name@version id, refusing anything else', () => {
    assert.deepEqual(parseImageRef('demo@stable'), { name: 'demo', channel: 'stable' });
    assert.deepEqual(parseImageRef(`demo@${V1}`), { name: 'demo', version: V1 });
    for (const bad of ['demo', 'demo@', '@x', 'demo@Stable', 'de mo@x', `demo@${V1}0`]) {
      assert.throws(() => parseImageRef(bad), { code: 'PXE_ERR_BAD_REQUEST' });
    }
  });

  it('resolves a channel to its current version, a version id to itself, the unknown to nothing', () => {
    assert.deepEqual(resolveImageRef('demo@stable', entries), { name: 'demo', version: V2, channel: 'stable' });
    assert.deepEqual(resolveImageRef(`demo@${V1}`, entries), { name: 'demo', version: V1 });
    assert.equal(resolveImageRef('demo@beta', entries), undefined);
    assert.equal(resolveImageRef('other@stable', entries), undefined);
    assert.equal(resolveImageRef(`demo@${'4'.repeat(64)}`, entries), undefined);
    // A channel naming a version this node cannot see (removal delivered first) is not served.
    assert.equal(resolveImageRef('demo@orphan', entries), undefined);
  });

  it('pinned paths: built and parsed back; channels and bad paths refused', () => {
    const p = pinnedImagePath({ name: 'demo', version: V1 }, '/boot/vmlinuz');
    assert.equal(p, `images/demo/${V1}/boot/vmlinuz`);
    assert.deepEqual(parsePinnedPath(p), { name: 'demo', version: V1, path: 'boot/vmlinuz' });
    assert.equal(parsePinnedPath('debian/linux'), undefined);
    assert.equal(parsePinnedPath('imagesx/a'), undefined);
    assert.match((parsePinnedPath('images/demo/stable/boot/vmlinuz') as { refused: string }).refused, /version id/);
    assert.match((parsePinnedPath(`images/demo/${V1}`) as { refused: string }).refused, /empty/);
    assert.match((parsePinnedPath(`images/Demo/${V1}/x`) as { refused: string }).refused, /image name/);
    assert.equal(imageEtag({ name: 'demo', version: V1, path: 'boot/a b' }), `"${V1}/boot%2Fa%20b"`);
  });
});
