import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openStore } from './open.js';
import { PrefixCache } from './prefix-cache.js';
import type { Store } from './store.js';

describe('PrefixCache', () => {
  let dir: string;
  let store: Store;
  let cache: PrefixCache<string>;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pxeha-prefix-cache-'));
    store = await openStore({ kind: 'embedded', path: join(dir, 'store.db') });
    await store.put('/c/a', 'one');
    cache = await PrefixCache.open(store, '/c/', (v) => (v === 'bad' ? undefined : v), (err) => assert.fail(err));
  });
  after(async () => {
    await cache.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** Waits (bounded) until the watch has delivered what `done` looks for. */
  async function until(done: () => boolean): Promise<void> {
    for (let i = 0; i < 200 && !done(); i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(done(), 'the watch delivered the change');
  }

  it('its generation moves with every change the watch delivers, and only then', async () => {
    const g0 = cache.generation;
    const { revision } = await store.put('/c/b', 'two');
    await until(() => cache.get('b') === 'two');
    const g1 = cache.generation;
    assert.ok(g1 > g0, 'a put');
    cache.apply('/c/b', 'older', revision - 1);
    assert.equal(cache.generation, g1, 'an older value is ignored and changes nothing');
    await store.put('/c/c', 'bad');
    await store.delete('/c/nothing-here');
    await store.delete('/c/a');
    await until(() => cache.get('a') === undefined);
    assert.ok(cache.generation > g1, 'a delete');
    const g2 = cache.generation;
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(cache.generation, g2, 'quiet store, same generation');
    assert.deepEqual(cache.values().sort(), ['two']);
  });
});
