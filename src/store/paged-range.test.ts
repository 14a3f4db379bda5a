import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LeaseBook } from '../dhcp/lease-book.js';
import { LEASE_PREFIX, leaseKey, type LeaseRecord } from '../dhcp/lease-record.js';
import { openStore } from './open.js';
import { rangePages, readPaged } from './paged-range.js';
import type { RangeOptions, Store } from './store.js';
import { overriding } from '../util/test-override.js';

const rec = (i: number, client = `52:54:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`): LeaseRecord => ({
  ip: `10.0.${i >> 8}.${i & 0xff}`,
  subnet: 'lab',
  state: 'bound',
  clientKey: `mac:${client}`,
  mac: client,
  expiresAtMs: 1_000_000,
  node: 'n1',
});

describe('paged range', () => {
  let dir: string;
  let store: Store;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pxeha-paged-'));
    store = await openStore({ kind: 'embedded', path: join(dir, 'store.db') });
    // Neighbours on both sides of the prefix must never show up.
    await store.put('/t/a', 'before');
    await store.put('/t/b0', 'after: shares "/t/b" but not "/t/b/"');
    await store.put('/t/c', 'after');
    for (let i = 0; i < 23; i++) await store.put(`/t/b/${String(i).padStart(2, '0')}`, String(i));
    await store.put('/t/b/ü', 'multi-byte key');
  });
  after(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('yields every key under the prefix once, in order, a page at a time', async () => {
    const pages = [];
    for await (const page of rangePages(store, '/t/b/', 5)) pages.push(page.kvs.map((kv) => kv.key));
    assert.deepEqual(pages.map((p) => p.length), [5, 5, 5, 5, 4]);
    const keys = pages.flat();
    assert.deepEqual(keys, [...Array.from({ length: 23 }, (_, i) => `/t/b/${String(i).padStart(2, '0')}`), '/t/b/ü']);
  });

  it('asks with a limit every time, so no response carries more than a page', async () => {
    const asked: RangeOptions[] = [];
    const spy = overriding(store, { range: (key: string, options: RangeOptions = {}) => (asked.push(options), store.range(key, options)) });
    let n = 0;
    await readPaged(spy, '/t/b/', () => n++, 10);
    assert.equal(n, 24);
    assert.equal(asked.length, 3);
    assert.ok(asked.every((o) => o.limit === 10));
  });

  it('an exact multiple of the page size needs no extra read, and an empty prefix yields one empty page', async () => {
    const sizes = [];
    for await (const page of rangePages(store, '/t/b/', 12)) sizes.push(page.kvs.length);
    assert.deepEqual(sizes, [12, 12], 'the store says nothing more, so no third read');
    const none = [];
    for await (const page of rangePages(store, '/nothing/', 12)) none.push(page.kvs.length);
    assert.deepEqual(none, [0]);
  });

  it('refuses a page size that is not a positive integer', async () => {
    await assert.rejects(rangePages(store, '/t/b/', 0).next(), /page size/);
  });

  it('a lease book opened page by page misses no change made while it read (watch from the first page)', async () => {
    const s = await openStore({ kind: 'embedded', path: join(dir, 'leases.db') });
    try {
      for (let i = 0; i < 40; i++) await s.put(leaseKey('lab', rec(i).ip), JSON.stringify(rec(i)));
      // Between pages: a key already read is deleted, one not yet read is changed, one is added.
      let pagesRead = 0;
      const meddling = overriding(s, {
        range: async (key: string, options?: RangeOptions) => {
          const result = await s.range(key, options);
          if (key.startsWith(LEASE_PREFIX) && ++pagesRead === 1) {
            await s.delete(leaseKey('lab', rec(0).ip));
            await s.put(leaseKey('lab', rec(39).ip), JSON.stringify(rec(39, '52:54:00:ff:ff:ff')));
            await s.put(leaseKey('lab', rec(300).ip), JSON.stringify(rec(300)));
          }
          return result;
        },
      });
      const book = await LeaseBook.open(meddling, (err) => assert.fail(err), { pageSize: 7 });
      try {
        assert.ok(pagesRead >= 6, `read in ${pagesRead} pages`);
        const settled = async () => {
          for (let t = 0; t < 200; t++) {
            if (!book.get('lab', rec(0).ip) && book.get('lab', rec(300).ip) && book.get('lab', rec(39).ip)?.record.mac === '52:54:00:ff:ff:ff') return;
            await new Promise((r) => setTimeout(r, 10));
          }
          assert.fail('the book never caught up with the changes made while it read');
        };
        await settled();
        assert.equal(book.size, 40, '39 of the first 40, plus the one added');
      } finally {
        await book.close();
      }
    } finally {
      await s.close();
    }
  });
});
