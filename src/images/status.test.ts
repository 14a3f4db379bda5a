import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { holdingText, imagesStatusOf } from './status.js';

describe('imagesStatusOf', () => {
  it('marks each version × node held (record), copying n% (own progress) or missing', () => {
    const a = 'a'.repeat(64);
    const b = 'b'.repeat(64);
    const s = imagesStatusOf({
      observer: 'n2',
      versions: [
        { name: 'demo', id: b, publishedAtMs: 2, bytes: 100, files: 1, channels: ['stable'] },
        { name: 'demo', id: a, publishedAtMs: 1, bytes: 100, files: 1, channels: [] },
      ],
      members: [
        { name: 'n2', images: [a] },
        { name: 'n1', images: [a, b] },
        { name: 'n3', images: [] },
      ],
      progress: [{ id: b, chunks: 4, heldChunks: 1, bytes: 400, heldBytes: 130 }],
    });
    assert.deepEqual(s.nodes, ['n1', 'n2', 'n3']);
    assert.deepEqual(s.versions.map((v) => v.id), [a, b]);
    assert.deepEqual(s.versions[1]!.holders, { n1: { state: 'held' }, n2: { state: 'copying', percent: 32 }, n3: { state: 'missing' } });
    assert.deepEqual(Object.values(s.versions[0]!.holders).map(holdingText), ['held', 'held', 'missing']);
  });

  it('marks nodes an image is not placed on, unless they hold it (the publisher)', () => {
    const a = 'a'.repeat(64);
    const s = imagesStatusOf({
      observer: 'n1',
      versions: [{ name: 'big', id: a, publishedAtMs: 1, bytes: 100, files: 1, channels: [] }],
      members: [
        { name: 'n1', images: [a] },
        { name: 'n2', images: [] },
        { name: 'n3', images: [] },
      ],
      progress: [],
      placed: (image, node) => image === 'big' && node !== 'n1' && node !== 'n3',
    });
    assert.deepEqual(s.versions[0]!.holders, { n1: { state: 'held' }, n2: { state: 'missing' }, n3: { state: 'not placed' } });
  });
});
