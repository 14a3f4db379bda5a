import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openStore } from '../store/open.js';
import type { Store, TxnRequest } from '../store/store.js';
import { overriding } from '../util/test-override.js';
import { LeaseBook } from './lease-book.js';
import { leaseKey, parseLeaseRecord, type LeaseRecord } from './lease-record.js';

const rec = (ip: string, client: string): LeaseRecord => ({
  ip,
  subnet: 'lab',
  state: 'bound',
  clientKey: `mac:${client}`,
  mac: client,
  expiresAtMs: 1_000_000,
  node: 'n1',
});

describe('LeaseBook writes (group commit of compare-and-sets)', () => {
  let dir: string;
  let store: Store;
  let book: LeaseBook;
  const txns: TxnRequest[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pxeha-lease-book-'));
    const inner = await openStore({ kind: 'embedded', path: join(dir, 'store.db') });
    // Counts the transactions the book sends.
    store = overriding(inner, { txn: (r: TxnRequest) => (txns.push(r), inner.txn(r)) });
    book = await LeaseBook.open(store, (err) => assert.fail(err));
  });
  after(async () => {
    await book.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('writes that arrive together go in fewer transactions, each still its own compare-and-set', async () => {
    txns.length = 0;
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => book.write(rec(`10.0.0.${i + 1}`, `52:54:00:00:00:${i}`), 0)));
    assert.ok(results.every((r) => r.ok));
    assert.ok(txns.length < 20, `${txns.length} transactions for 20 writes`);
    for (let i = 0; i < 20; i++) assert.equal(parseLeaseRecord((await store.get(leaseKey('lab', `10.0.0.${i + 1}`)))!.value)?.clientKey, `mac:52:54:00:00:00:${i}`);
  });

  it('a write whose key moved fails alone; the others of its transaction commit', async () => {
    const moved = book.get('lab', '10.0.0.1')!;
    const kept = book.get('lab', '10.0.0.2')!;
    const [stale, fresh, absent] = await Promise.all([
      book.write(rec('10.0.0.1', 'aa'), moved.modRevision - 1), // not the key's revision: must fail
      book.write(rec('10.0.0.2', 'bb'), kept.modRevision),
      book.write(rec('10.0.0.50', 'cc'), 0),
    ]);
    assert.equal(stale.ok, false);
    assert.equal(!stale.ok && stale.current?.record.clientKey, 'mac:52:54:00:00:00:0');
    assert.equal(fresh.ok, true);
    assert.equal(absent.ok, true);
    assert.equal(parseLeaseRecord((await store.get(leaseKey('lab', '10.0.0.1')))!.value)?.clientKey, 'mac:52:54:00:00:00:0');
    assert.equal(parseLeaseRecord((await store.get(leaseKey('lab', '10.0.0.2')))!.value)?.clientKey, 'mac:bb');
  });

  it('two writes of one key expecting the same revision: exactly one commits', async () => {
    const [a, b] = await Promise.all([book.write(rec('10.0.0.60', 'a1'), 0), book.write(rec('10.0.0.60', 'b1'), 0)]);
    assert.deepEqual([a.ok, b.ok].sort(), [false, true]);
    const winner = a.ok ? 'mac:a1' : 'mac:b1';
    assert.equal(parseLeaseRecord((await store.get(leaseKey('lab', '10.0.0.60')))!.value)?.clientKey, winner);
  });

  it('a failed store call fails every write of its transaction', async () => {
    const closedDir = await mkdtemp(join(tmpdir(), 'pxeha-lease-book-closed-'));
    const s = await openStore({ kind: 'embedded', path: join(closedDir, 'store.db') });
    const b = await LeaseBook.open(s, () => undefined);
    await b.close();
    await s.close();
    const results = await Promise.allSettled([b.write(rec('10.0.0.1', 'x'), 0), b.write(rec('10.0.0.2', 'y'), 0)]);
    assert.deepEqual(results.map((r) => r.status), ['rejected', 'rejected']);
    await rm(closedDir, { recursive: true, force: true });
  });

  it('fences every write with the node\'s session: once that session is over, a write fails, it is not retried forever', async () => {
    const fenceDir = await mkdtemp(join(tmpdir(), 'pxeha-lease-book-fence-'));
    const s = await openStore({ kind: 'embedded', path: join(fenceDir, 'store.db') });
    const b = await LeaseBook.open(s, (err) => assert.fail(err));
    try {
      const session = await s.leaseGrant(60);
      await s.put('/pxeha/nodes/n1', '{}', { lease: session.id });
      let current: typeof session.id | undefined = session.id;
      b.setFence(() => (current === undefined ? undefined : { key: '/pxeha/nodes/n1', target: 'lease', op: '==', value: current }));
      assert.equal((await b.write(rec('10.0.1.1', 'a'), 0)).ok, true, 'written under the current session');
      // The session ends (its key goes with it) while the node still believes in it: a write
      // arriving now, like one delivered after a partition, must fail.
      await s.leaseRevoke(session.id);
      await assert.rejects(b.write(rec('10.0.1.2', 'b'), 0), /membership session changed/);
      assert.equal(await s.get(leaseKey('lab', '10.0.1.2')), undefined, 'nothing bound');
      current = undefined;
      await assert.rejects(b.write(rec('10.0.1.3', 'c'), 0), /no current membership session/);
    } finally {
      await b.close();
      await s.close();
      await rm(fenceDir, { recursive: true, force: true });
    }
  });
});
