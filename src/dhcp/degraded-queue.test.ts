import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DegradedRenewals } from './degraded-queue.js';
import type { LeaseBook, WriteResult } from './lease-book.js';
import type { LeaseRecord } from './lease-record.js';

const record = (ip: string, node = 'n1'): LeaseRecord => ({
  ip,
  subnet: 'lab',
  state: 'bound',
  clientKey: `mac-${ip}`,
  mac: '52:54:00:00:00:01',
  expiresAtMs: 1_000_000,
  boundAtMs: 0,
  node,
});

/** A store that holds one record per key, compares modRevisions, and can lose one reply. */
function fakeBook(loseReplyOnce: Set<string>): { book: LeaseBook; store: Map<string, { record: LeaseRecord; modRevision: number }> } {
  const store = new Map<string, { record: LeaseRecord; modRevision: number }>();
  let revision = 10;
  const book = {
    async write(r: LeaseRecord, expected: number): Promise<WriteResult> {
      const current = store.get(r.ip);
      if ((current?.modRevision ?? 0) !== expected) return { ok: false, current };
      store.set(r.ip, { record: r, modRevision: ++revision });
      if (loseReplyOnce.delete(r.ip)) throw new Error('reply lost: the store went away again');
      return { ok: true, entry: store.get(r.ip)! };
    },
  } as unknown as LeaseBook;
  return { book, store };
}

describe('DegradedRenewals', () => {
  it('writes each queued renewal once with a compare-and-set, and drops one someone else changed', async () => {
    const { book, store } = fakeBook(new Set());
    store.set('10.0.0.1', { record: record('10.0.0.1'), modRevision: 5 });
    store.set('10.0.0.2', { record: record('10.0.0.2', 'n2'), modRevision: 7 });
    const q = new DegradedRenewals();
    q.add({ record: { ...record('10.0.0.1'), expiresAtMs: 2 }, expectedModRevision: 5 });
    q.add({ record: record('10.0.0.2'), expectedModRevision: 6 }); // n2 rewrote it meanwhile
    const conflicts: string[] = [];
    assert.deepEqual(await q.flush(book, (k) => conflicts.push(k)), { written: 1, conflicts: ['/pxeha/leases/lab/10.0.0.2'], pending: 0 });
    assert.deepEqual(conflicts, ['/pxeha/leases/lab/10.0.0.2']);
    assert.equal(store.get('10.0.0.2')!.record.node, 'n2', 'the other node\'s record stands');
    assert.equal(q.size, 0);
  });

  it('counts a write whose reply was lost but which the store applied as written, not as a conflict', async () => {
    const { book, store } = fakeBook(new Set(['10.0.0.1']));
    store.set('10.0.0.1', { record: record('10.0.0.1'), modRevision: 5 });
    const q = new DegradedRenewals();
    const renewal = { ...record('10.0.0.1'), expiresAtMs: 3 };
    q.add({ record: renewal, expectedModRevision: 5 });
    assert.deepEqual(await q.flush(book), { written: 0, conflicts: [], pending: 1 }, 'kept for the next flush');
    assert.deepEqual(await q.flush(book), { written: 1, conflicts: [], pending: 0 });
    assert.deepEqual(store.get('10.0.0.1')!.record, renewal);
  });
});
