/**
 * The behaviour every Store implementation must have, as one node:test suite. The embedded
 * store runs it in embedded/embedded.test.ts; the etcd store will run the same suite against a
 * real cluster, so it touches nothing but the Store interface and the election built on it.
 *
 * Assumptions, so that the suite also holds on a shared etcd cluster:
 * - each test uses keys under its own random prefix and revokes the leases it granted;
 * - tests that count revisions assume nobody else writes to the store during the test;
 * - lease TTLs are checked as "at least what was asked" (etcd raises TTLs below its minimum,
 *   about 2 s with default timing), and expiry is awaited by polling with a bounded timeout.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { type ErrorCode, PxehaError } from '../errors.js';
import { campaign, leader } from './election.js';
import type {
  CompareOp, CompareTarget, KeyValue, LeaseGrant, LeaseId, Store, TxnOpResult, WatchEvent, WatchOptions, Watcher,
} from './store.js';

export interface StoreUnderTest {
  store: Store;
  /** Closes the store and opens it again on the same data; omitted where that means nothing. */
  reopen?: () => Promise<Store>;
  /** Closes the store (whichever instance is current) and removes what open() created. */
  cleanup: () => Promise<void>;
}

const TEST_TIMEOUT_MS = 60_000;
/** How long an event that should arrive may take; generous for a loaded CI machine or a remote cluster. */
const EVENT_TIMEOUT_MS = 10_000;
/** How long a test waits before concluding that something did not happen. */
const QUIET_PERIOD_MS = 300;

export function runStoreContract(name: string, open: () => Promise<StoreUnderTest>): void {
  const test = (title: string, body: (t: Fixture) => Promise<void>) =>
    it(title, { timeout: TEST_TIMEOUT_MS }, (context) => withStore(open, (message) => context.skip(message), body));

  describe(`Store contract: ${name}`, () => {
    describe('keys and revisions', () => {
      test('put then get returns the key with its revisions, version 1 and no lease', async (t) => {
        const key = t.key('k');
        const { revision } = await t.store.put(key, 'v');
        assert.deepEqual(await t.store.get(key), { key, value: 'v', createRevision: revision, modRevision: revision, version: 1, lease: '0' });
        assert.equal(await t.store.revision(), revision);
      });

      test('each write bumps the revision by one; version counts puts since the key was created', async (t) => {
        const key = t.key('k');
        const first = await t.store.put(key, 'v1');
        assert.equal(first.prevKv, undefined);
        const second = await t.store.put(key, 'v2');
        assert.equal(second.revision, first.revision + 1);
        assert.equal(second.prevKv?.value, 'v1');
        assert.deepEqual(await t.store.get(key), {
          key, value: 'v2', createRevision: first.revision, modRevision: second.revision, version: 2, lease: '0',
        });
        const deleted = await t.store.delete(key);
        assert.deepEqual(deleted, { revision: second.revision + 1, deleted: 1 });
        assert.equal(await t.store.get(key), undefined);
        const again = await t.store.put(key, 'v3');
        assert.equal(again.revision, deleted.revision + 1);
        const kv = await t.store.get(key);
        assert.equal(kv?.createRevision, again.revision, 'a re-created key starts a new life');
        assert.equal(kv?.version, 1);
      });

      test('deleting an absent key deletes nothing and keeps the revision', async (t) => {
        await t.store.put(t.key('other'), 'x');
        const before = await t.store.revision();
        assert.deepEqual(await t.store.delete(t.key('absent')), { revision: before, deleted: 0 });
        assert.deepEqual(await t.store.delete(t.key('absent/'), { prefix: true }), { revision: before, deleted: 0 });
        assert.equal(await t.store.revision(), before);
      });

      test('keys and values round-trip any text, including empty values', async (t) => {
        const samples = ['', 'plain', 'ünïcødé 中文 😀', 'line\nbreak\ttab', 'nul\u0000inside'];
        for (const [i, value] of samples.entries()) {
          const key = t.key(`k${i} ${value}`);
          await t.store.put(key, value);
          const kv = await t.store.get(key);
          assert.equal(kv?.key, key);
          assert.equal(kv?.value, value);
        }
      });

      test('range orders keys bytewise by their UTF-8 encoding, as etcd does', async (t) => {
        const suffixes = ['z', 'a', 'aa', 'a\u0000', 'a\u0000b', 'B', '\u007f', 'é', '中', '\uff5a', '😀', '\u{10000}'];
        const keys = suffixes.map((s) => t.key(s));
        const bytewise = [...keys].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
        // JavaScript sorts UTF-16 code units, which puts U+1F600 before U+FF5A; the store must not.
        assert.notDeepEqual(bytewise, [...keys].sort(), 'the sample must tell the two orders apart');
        for (const key of keys) await t.store.put(key, `value of ${key}`);
        const all = await t.store.range(t.prefix, { prefix: true });
        assert.deepEqual(all.kvs.map((kv) => kv.key), bytewise);
        assert.deepEqual(all.kvs.map((kv) => kv.value), bytewise.map((key) => `value of ${key}`));
        const [from, to] = [Buffer.from(t.key('é')), Buffer.from(t.key('😀'))];
        const between = bytewise.filter((key) => Buffer.compare(Buffer.from(key), from) >= 0 && Buffer.compare(Buffer.from(key), to) < 0);
        assert.equal(between.length, 4, 'é 中 ｚ 𐀀 lie between é and 😀');
        const upper = await t.store.range(t.key('é'), { end: t.key('😀') });
        assert.deepEqual(upper.kvs.map((kv) => kv.key), between);
      });

      test('range by prefix, by [key, end), with limit and countOnly, at the current revision', async (t) => {
        for (const s of ['a', 'a/1', 'a/2', 'ab', 'b', 'c']) await t.store.put(t.key(s), s);
        const revision = await t.store.revision();
        const keysOf = (kvs: KeyValue[]) => kvs.map((kv) => kv.key.slice(t.prefix.length));

        const slash = await t.store.range(t.key('a/'), { prefix: true });
        assert.deepEqual(keysOf(slash.kvs), ['a/1', 'a/2']);
        assert.equal(slash.count, 2);
        assert.equal(slash.more, false);
        assert.equal(slash.revision, revision);
        assert.deepEqual(keysOf((await t.store.range(t.key('a'), { prefix: true })).kvs), ['a', 'a/1', 'a/2', 'ab']);
        assert.deepEqual(keysOf((await t.store.range(t.key('a/2'), { end: t.key('c') })).kvs), ['a/2', 'ab', 'b']);
        assert.deepEqual(keysOf((await t.store.range(t.key('a'))).kvs), ['a'], 'without prefix or end a range is one key');

        const limited = await t.store.range(t.prefix, { prefix: true, limit: 2 });
        assert.deepEqual(keysOf(limited.kvs), ['a', 'a/1']);
        assert.equal(limited.count, 6);
        assert.equal(limited.more, true);
        const roomy = await t.store.range(t.prefix, { prefix: true, limit: 6 });
        assert.equal(roomy.kvs.length, 6);
        assert.equal(roomy.more, false);

        const counted = await t.store.range(t.prefix, { prefix: true, countOnly: true });
        assert.deepEqual(counted.kvs, []);
        assert.equal(counted.count, 6);
      });

      test('delete by prefix or by range removes every key in one revision', async (t) => {
        for (const s of ['a', 'a/1', 'a/2', 'b', 'c', 'd']) await t.store.put(t.key(s), s);
        const before = await t.store.revision();
        assert.deepEqual(await t.store.delete(t.key('a'), { prefix: true }), { revision: before + 1, deleted: 3 });
        assert.deepEqual(await t.store.delete(t.key('b'), { end: t.key('d') }), { revision: before + 2, deleted: 2 });
        const left = await t.store.range(t.prefix, { prefix: true });
        assert.deepEqual(left.kvs.map((kv) => kv.key), [t.key('d')]);
      });
    });

    describe('transactions', () => {
      test('compares every target with every operator', async (t) => {
        const key = t.key('k');
        const lease = await t.grant(60);
        const first = await t.store.put(key, 'm', { lease: lease.id });
        const second = await t.store.put(key, 'm', { lease: lease.id });
        const leaseNumber = BigInt(lease.id);
        const actual: Record<CompareTarget, { below: string | number; equal: string | number; above: string | number }> = {
          value: { below: 'l', equal: 'm', above: 'mm' },
          version: { below: 1, equal: 2, above: 3 },
          createRevision: { below: first.revision - 1, equal: first.revision, above: first.revision + 1 },
          modRevision: { below: second.revision - 1, equal: second.revision, above: second.revision + 1 },
          lease: { below: (leaseNumber - 1n).toString(), equal: lease.id, above: (leaseNumber + 1n).toString() },
        };
        // The compare reads "stored <op> given": stored is above `below`, equal to `equal`, below `above`.
        const expected: Record<CompareOp, [boolean, boolean, boolean]> = {
          '==': [false, true, false],
          '!=': [true, false, true],
          '<': [false, false, true],
          '>': [true, false, false],
        };
        const revision = await t.store.revision();
        for (const target of Object.keys(actual) as CompareTarget[]) {
          for (const op of Object.keys(expected) as CompareOp[]) {
            const { below, equal, above } = actual[target];
            for (const [i, value] of [below, equal, above].entries()) {
              const result = await t.store.txn({ compare: [{ key, target, op, value }] });
              assert.equal(result.succeeded, expected[op][i], `${target} ${op} ${String(value)}`);
              assert.equal(result.revision, revision);
            }
          }
        }
      });

      test('compares on an absent key see version, revisions and lease as 0, and a value compare fails', async (t) => {
        const key = t.key('absent');
        const cases: Array<[CompareTarget, CompareOp, string | number, boolean]> = [
          ['version', '==', 0, true],
          ['version', '>', 0, false],
          ['createRevision', '==', 0, true],
          ['modRevision', '==', 0, true],
          ['modRevision', '<', 1, true],
          ['lease', '==', '0', true],
          ['value', '==', '', false],
          ['value', '!=', 'x', false],
          ['value', '<', 'z', false],
          ['value', '>', '', false],
        ];
        for (const [target, op, value, succeeded] of cases) {
          const result = await t.store.txn({ compare: [{ key, target, op, value }] });
          assert.equal(result.succeeded, succeeded, `${target} ${op} ${String(value)} on an absent key`);
        }
      });

      test('applies the success branch when every compare holds and the failure branch otherwise', async (t) => {
        const [key, ok, ko] = [t.key('k'), t.key('ok'), t.key('ko')];
        await t.store.put(key, '1');
        const both = await t.store.txn({
          compare: [{ key, target: 'value', op: '==', value: '1' }, { key, target: 'version', op: '==', value: 1 }],
          success: [{ type: 'put', key: ok, value: 'yes' }],
          failure: [{ type: 'put', key: ko, value: 'no' }],
        });
        assert.equal(both.succeeded, true);
        const oneFails = await t.store.txn({
          compare: [{ key, target: 'value', op: '==', value: '1' }, { key, target: 'version', op: '==', value: 5 }],
          success: [{ type: 'put', key: ok, value: 'again' }],
          failure: [{ type: 'put', key: ko, value: 'no' }],
        });
        assert.equal(oneFails.succeeded, false);
        assert.equal((await t.store.get(ok))?.value, 'yes');
        assert.equal((await t.store.get(ko))?.value, 'no');
        const empty = await t.store.txn({ success: [{ type: 'range', key }] });
        assert.equal(empty.succeeded, true, 'no compares means success');
      });

      test('compares see the state before the transaction; later ops see earlier ops', async (t) => {
        const [a, b] = [t.key('a'), t.key('b')];
        await t.store.put(a, 'old');
        const result = await t.store.txn({
          compare: [{ key: a, target: 'value', op: '==', value: 'old' }, { key: b, target: 'version', op: '==', value: 0 }],
          success: [
            { type: 'put', key: a, value: 'new' },
            { type: 'put', key: b, value: 'created' },
            { type: 'range', key: t.prefix, prefix: true },
          ],
        });
        assert.equal(result.succeeded, true);
        const range = rangeOf(result.responses[2]);
        assert.deepEqual(range.kvs.map((kv) => kv.value), ['new', 'created']);
        assert.equal(range.revision, result.revision);
      });

      test('a write transaction is one revision however many ops it has', async (t) => {
        const [a, b, c] = [t.key('a'), t.key('b'), t.key('c')];
        await t.store.put(c, 'doomed');
        const before = await t.store.revision();
        const result = await t.store.txn({
          success: [
            { type: 'put', key: a, value: '1' },
            { type: 'put', key: b, value: '2' },
            { type: 'delete', key: c },
          ],
        });
        assert.equal(result.revision, before + 1);
        assert.equal((await t.store.get(a))?.modRevision, before + 1);
        assert.equal((await t.store.get(b))?.modRevision, before + 1);
        assert.equal(await t.store.get(c), undefined);
        assert.equal(await t.store.revision(), before + 1);
      });

      test('a read-only transaction, or one that deletes nothing, keeps the revision', async (t) => {
        await t.store.put(t.key('a'), '1');
        const before = await t.store.revision();
        const reads = await t.store.txn({
          compare: [{ key: t.key('a'), target: 'version', op: '>', value: 0 }],
          success: [{ type: 'range', key: t.prefix, prefix: true }],
        });
        assert.equal(reads.revision, before);
        const noop = await t.store.txn({ success: [{ type: 'delete', key: t.key('absent') }] });
        assert.equal(noop.revision, before);
        assert.equal(noop.responses[0]?.type === 'delete' && noop.responses[0].deleted, 0);
        assert.equal(await t.store.revision(), before);
      });

      test('is atomic: a put with an unknown lease fails the whole transaction', async (t) => {
        const gone = await goneLease(t);
        const before = await t.store.revision();
        await rejectsWith(
          t.store.txn({
            success: [
              { type: 'put', key: t.key('a'), value: '1' },
              { type: 'put', key: t.key('b'), value: '2', lease: gone },
            ],
          }),
          'PXE_ERR_LEASE_NOT_FOUND',
        );
        assert.equal(await t.store.get(t.key('a')), undefined);
        assert.equal(await t.store.revision(), before);
      });

      test('rejects a key put twice, or put inside a range the same branch deletes, in either branch', async (t) => {
        const before = await t.store.revision();
        const put = (key: string) => ({ type: 'put' as const, key: t.key(key), value: 'x' });
        await rejectsWith(t.store.txn({ success: [put('a'), put('a')] }), 'PXE_ERR_STORE_BAD_REQUEST');
        await rejectsWith(
          t.store.txn({ success: [{ type: 'delete', key: t.key('a'), prefix: true }, put('a/1')] }),
          'PXE_ERR_STORE_BAD_REQUEST',
        );
        await rejectsWith(t.store.txn({ success: [put('b')], failure: [put('c'), put('c')] }), 'PXE_ERR_STORE_BAD_REQUEST');
        assert.equal(await t.store.revision(), before);
        assert.equal((await t.store.range(t.prefix, { prefix: true })).count, 0);
        // Overlapping deletes are fine, as in etcd.
        await t.store.txn({ success: [{ type: 'delete', key: t.key('a'), prefix: true }, { type: 'delete', key: t.key('a/1') }] });
      });

      test('returns prevKv for puts and prevKvs for deletes when asked', async (t) => {
        const [a, b] = [t.key('a'), t.key('b')];
        const first = await t.store.put(a, '1');
        await t.store.put(b, '2');
        const result = await t.store.txn({
          success: [
            { type: 'put', key: a, value: '1b', prevKv: true },
            { type: 'put', key: t.key('new'), value: 'n', prevKv: true },
            { type: 'delete', key: b, prevKv: true },
          ],
        });
        const [put, fresh, del] = result.responses;
        assert.deepEqual(put, {
          type: 'put',
          prevKv: { key: a, value: '1', createRevision: first.revision, modRevision: first.revision, version: 1, lease: '0' },
        });
        assert.equal(fresh?.type === 'put' ? fresh.prevKv : 'not a put', undefined);
        assert.equal(del?.type, 'delete');
        if (del?.type === 'delete') {
          assert.equal(del.deleted, 1);
          assert.deepEqual(del.prevKvs?.map((kv) => [kv.key, kv.value]), [[b, '2']]);
        }
      });

      test('concurrent compare-and-set: exactly one writer wins each key', async (t) => {
        const keys = Array.from({ length: 16 }, (_, i) => t.key(`slot/${i}`));
        const attempts = keys.flatMap((key) =>
          Array.from({ length: 8 }, (_, writer) =>
            t.store
              .txn({
                compare: [{ key, target: 'createRevision', op: '==', value: 0 }],
                success: [{ type: 'put', key, value: `writer ${writer}` }],
              })
              .then((result) => ({ key, writer, succeeded: result.succeeded })),
          ),
        );
        const results = await Promise.all(attempts);
        for (const key of keys) {
          const winners = results.filter((r) => r.key === key && r.succeeded);
          assert.equal(winners.length, 1, `exactly one winner for ${key}`);
          assert.equal((await t.store.get(key))?.value, `writer ${winners[0]!.writer}`);
        }
      });

      test('concurrent read-modify-write with modRevision compares loses no update', async (t) => {
        const counter = t.key('counter');
        await t.store.put(counter, '0');
        const workers = 8;
        const incrementsPerWorker = 15;
        const increment = async () => {
          for (;;) {
            const kv = await t.store.get(counter);
            assert.ok(kv);
            const result = await t.store.txn({
              compare: [{ key: counter, target: 'modRevision', op: '==', value: kv.modRevision }],
              success: [{ type: 'put', key: counter, value: String(Number(kv.value) + 1) }],
            });
            if (result.succeeded) return;
          }
        };
        await Promise.all(
          Array.from({ length: workers }, async () => {
            for (let i = 0; i < incrementsPerWorker; i++) await increment();
          }),
        );
        const kv = await t.store.get(counter);
        assert.equal(kv?.value, String(workers * incrementsPerWorker));
        assert.equal(kv?.version, workers * incrementsPerWorker + 1);
      });
    });

    describe('watch', () => {
      test('delivers live changes one revision at a time, in order, with a transaction as one group', async (t) => {
        const w = await t.watch(t.prefix, { prefix: true });
        const [a, b, c] = [t.key('a'), t.key('b'), t.key('c')];
        const r1 = (await t.store.put(a, '1')).revision;
        const r2 = (await t.store.put(b, '2')).revision;
        const r3 = (await t.store.txn({ success: [{ type: 'put', key: c, value: '3' }, { type: 'delete', key: a }, { type: 'put', key: b, value: '2b' }] })).revision;
        const r4 = (await t.store.delete(t.prefix, { prefix: true })).revision;
        await w.waitForRevision(r4);
        assert.deepEqual(w.summary(), [
          [r1, ['put', a, '1']],
          [r2, ['put', b, '2']],
          [r3, ['put', c, '3'], ['delete', a, ''], ['put', b, '2b']],
          [r4, ['delete', b, ''], ['delete', c, '']],
        ]);
        for (const batch of w.batches) for (const e of batch.events) assert.equal(e.kv.modRevision, batch.revision);
      });

      test('replays history from a past start revision, then continues live without gap or repeat', async (t) => {
        const key = t.key('k');
        const revisions: number[] = [];
        for (const value of ['1', '2', '3']) revisions.push((await t.store.put(key, value)).revision);
        await t.store.delete(key);
        const w = await t.watch(key, { startRevision: revisions[1] });
        revisions.push((await t.store.put(key, '4')).revision);
        await w.waitForRevision(revisions[3]!);
        assert.deepEqual(
          w.summary().map(([, ...events]) => events).flat(),
          [['put', key, '2'], ['put', key, '3'], ['delete', key, ''], ['put', key, '4']],
        );
        const seen = w.batches.map((b) => b.revision);
        assert.deepEqual(seen, [...seen].sort((x, y) => x - y));
        assert.equal(new Set(seen).size, seen.length);
      });

      test('a key watch sees only its key; a prefix watch sees only its prefix', async (t) => {
        const single = await t.watch(t.key('a'));
        const prefixed = await t.watch(t.key('a/'), { prefix: true });
        for (const s of ['a', 'a/1', 'ab', 'a/2', 'b']) await t.store.put(t.key(s), s);
        const last = (await t.store.put(t.key('a/3'), 'a/3')).revision;
        await prefixed.waitForRevision(last);
        assert.deepEqual(single.events().map((e) => e.kv.key), [t.key('a')]);
        assert.deepEqual(prefixed.events().map((e) => e.kv.key), [t.key('a/1'), t.key('a/2'), t.key('a/3')]);
      });

      test('with prevKv, events carry the key-value before the change', async (t) => {
        const key = t.key('k');
        const first = await t.store.put(key, '1');
        const w = await t.watch(key, { prevKv: true });
        const plain = await t.watch(key);
        await t.store.put(key, '2');
        const del = await t.store.delete(key);
        await t.store.put(key, '3');
        const last = await t.store.put(key, '4');
        await w.waitForRevision(last.revision);
        await plain.waitForRevision(last.revision);
        const prev = w.events().map((e) => e.prevKv && [e.prevKv.value, e.prevKv.version, e.prevKv.createRevision]);
        assert.deepEqual(prev, [['1', 1, first.revision], ['2', 2, first.revision], undefined, ['3', 1, del.revision + 1]]);
        assert.ok(plain.events().every((e) => e.prevKv === undefined), 'no prevKv unless asked');
      });

      test('a delete event carries the key and the revision of the delete, with an empty value', async (t) => {
        const key = t.key('k');
        await t.store.put(key, 'v');
        const w = await t.watch(key);
        const { revision } = await t.store.delete(key);
        await w.waitForRevision(revision);
        const [event] = w.events();
        assert.equal(event?.type, 'delete');
        assert.equal(event.kv.key, key);
        assert.equal(event.kv.value, '');
        assert.equal(event.kv.modRevision, revision);
      });

      test('delivers nothing after cancel', async (t) => {
        const key = t.key('k');
        const cancelled = await t.watch(key);
        const witness = await t.watch(t.key('witness'));
        await t.store.put(key, '1');
        await cancelled.waitForEvents(1);
        await cancelled.watcher.cancel();
        await t.store.put(key, '2');
        const { revision } = await t.store.put(t.key('witness'), 'w');
        await witness.waitForRevision(revision);
        await sleep(QUIET_PERIOD_MS);
        assert.equal(cancelled.events().length, 1);
      });

      test('a watch from before the compact revision fails with PXE_ERR_STORE_COMPACTED; later starts work', async (t) => {
        const key = t.key('k');
        const r1 = (await t.store.put(key, '1')).revision;
        const r2 = (await t.store.put(key, '2')).revision;
        const r3 = (await t.store.put(key, '3')).revision;
        await t.store.compact(r2);
        const compacted = await t.watch(key, { startRevision: r1 });
        const error = await compacted.waitForError();
        assert.ok(error instanceof PxehaError);
        assert.equal(error.code, 'PXE_ERR_STORE_COMPACTED');
        const later = await t.watch(key, { startRevision: r3 });
        await later.waitForRevision(r3);
        assert.deepEqual(later.summary(), [[r3, ['put', key, '3']]]);
      });

      test('compact rejects a future revision and a revision already compacted', async (t) => {
        const { revision } = await t.store.put(t.key('k'), 'v');
        await rejectsWith(t.store.compact(revision + 1000), 'PXE_ERR_STORE_BAD_REQUEST');
        await t.store.compact(revision);
        await rejectsWith(t.store.compact(revision), 'PXE_ERR_STORE_COMPACTED');
        assert.equal((await t.store.get(t.key('k')))?.value, 'v', 'compaction keeps current values');
      });
    });

    describe('leases', () => {
      test('grant gives a decimal id and at least the TTL asked; timeToLive counts down; unknown leases report -1', async (t) => {
        const lease = await t.grant(30);
        assert.match(lease.id, /^[1-9][0-9]*$/);
        assert.ok(lease.ttlSeconds >= 30);
        const remaining = await t.store.leaseTimeToLive(lease.id);
        assert.ok(remaining > 0 && remaining <= lease.ttlSeconds, `remaining ${remaining}`);
        assert.equal(await t.store.leaseTimeToLive(await goneLease(t)), -1);
      });

      test('a put with a lease attaches the key; a later put without one detaches it', async (t) => {
        const lease = await t.grant(30);
        const [kept, dropped] = [t.key('kept'), t.key('dropped')];
        await t.store.put(kept, '1', { lease: lease.id });
        await t.store.put(dropped, '1', { lease: lease.id });
        assert.equal((await t.store.get(kept))?.lease, lease.id);
        await t.store.put(kept, '2');
        assert.equal((await t.store.get(kept))?.lease, '0');
        await t.store.leaseRevoke(lease.id);
        assert.equal((await t.store.get(kept))?.value, '2');
        assert.equal(await t.store.get(dropped), undefined);
      });

      test('a put with an unknown lease fails with PXE_ERR_LEASE_NOT_FOUND and writes nothing', async (t) => {
        const gone = await goneLease(t);
        const before = await t.store.revision();
        await rejectsWith(t.store.put(t.key('k'), 'v', { lease: gone }), 'PXE_ERR_LEASE_NOT_FOUND');
        assert.equal(await t.store.get(t.key('k')), undefined);
        assert.equal(await t.store.revision(), before);
      });

      test('expiry deletes every attached key in one revision, with delete events', async (t) => {
        const lease = await t.grant(1);
        const [a, b, free] = [t.key('a'), t.key('b'), t.key('free')];
        await t.store.put(a, '1', { lease: lease.id });
        await t.store.put(b, '2', { lease: lease.id });
        await t.store.put(free, '3');
        const w = await t.watch(t.prefix, { prefix: true, prevKv: true });
        await waitFor(async () => (await t.store.get(a)) === undefined, leaseDeadlineMs(lease), 'lease expiry');
        await w.waitForEvents(2);
        assert.equal(w.batches.length, 1, 'both keys go in one revision');
        assert.deepEqual(w.summary()[0]?.slice(1), [['delete', a, ''], ['delete', b, '']]);
        assert.deepEqual(w.events().map((e) => e.prevKv?.lease), [lease.id, lease.id]);
        assert.equal(await t.store.get(b), undefined);
        assert.equal((await t.store.get(free))?.value, '3');
        assert.equal(await t.store.leaseTimeToLive(lease.id), -1);
        await rejectsWith(t.store.leaseKeepAlive(lease.id), 'PXE_ERR_LEASE_NOT_FOUND');
        await rejectsWith(t.store.put(a, 'again', { lease: lease.id }), 'PXE_ERR_LEASE_NOT_FOUND');
      });

      test('keepAlive holds a lease past its TTL; once renewals stop it expires', async (t) => {
        const lease = await t.grant(1);
        const key = t.key('k');
        await t.store.put(key, 'v', { lease: lease.id });
        const holdUntil = Date.now() + (2 * lease.ttlSeconds + 1) * 1000;
        while (Date.now() < holdUntil) {
          const renewed = await t.store.leaseKeepAlive(lease.id);
          assert.ok(renewed.ttlSeconds >= 1);
          assert.equal((await t.store.get(key))?.value, 'v');
          await sleep(250);
        }
        await waitFor(async () => (await t.store.get(key)) === undefined, leaseDeadlineMs(lease), 'expiry after renewals stop');
      });

      test('revoke deletes every attached key in one revision; revoking an unknown lease is not an error', async (t) => {
        const lease = await t.grant(60);
        for (const s of ['a', 'b', 'c']) await t.store.put(t.key(s), s, { lease: lease.id });
        const w = await t.watch(t.prefix, { prefix: true });
        const before = await t.store.revision();
        await t.store.leaseRevoke(lease.id);
        assert.equal(await t.store.revision(), before + 1);
        await w.waitForRevision(before + 1);
        assert.deepEqual(w.summary(), [[before + 1, ['delete', t.key('a'), ''], ['delete', t.key('b'), ''], ['delete', t.key('c'), '']]]);
        assert.equal(await t.store.leaseTimeToLive(lease.id), -1);
        await t.store.leaseRevoke(lease.id);
        await t.store.leaseRevoke(await goneLease(t));
      });
    });

    describe('election', () => {
      test('hands leadership to the next candidate when the leader\'s lease is revoked', async (t) => {
        const options = { prefix: t.key('election') };
        const [leaseA, leaseB] = [await t.grant(60), await t.grant(60)];
        const a = await campaign(t.store, 'boot', 'node-a', leaseA.id, options);
        assert.equal(a.isLeader, true);
        assert.equal((await leader(t.store, 'boot', options))?.value, 'node-a');

        let bLeads = false;
        const bCampaign = campaign(t.store, 'boot', 'node-b', leaseB.id, options).then((b) => {
          bLeads = true;
          return b;
        });
        await waitFor(async () => (await t.store.range(`${options.prefix}/boot/`, { prefix: true })).count === 2, EVENT_TIMEOUT_MS, 'second candidate key');
        await sleep(QUIET_PERIOD_MS);
        assert.equal(bLeads, false, 'the second candidate waits while the first leads');

        const lost = new Promise<Error>((resolve) => a.on('lost', resolve));
        await t.store.leaseRevoke(leaseA.id);
        const b = await within(bCampaign, EVENT_TIMEOUT_MS, 'second candidate to lead');
        assert.equal(b.isLeader, true);
        const reason = await within(lost, EVENT_TIMEOUT_MS, "first leader's lost event");
        assert.ok(reason instanceof PxehaError && reason.code === 'PXE_ERR_NOT_LEADER');
        assert.equal(a.isLeader, false);
        assert.equal((await leader(t.store, 'boot', options))?.value, 'node-b');
        await b.resign();
        assert.equal(await leader(t.store, 'boot', options), undefined);
      });
    });

    describe('durability', () => {
      test('keys, revisions, history and leases survive a reopen', async (t) => {
        if (!t.reopen) {
          t.skip('this store under test cannot be reopened');
          return;
        }
        const lease = await t.grant(60);
        const [a, b] = [t.key('a'), t.key('b')];
        const first = await t.store.put(a, '1');
        await t.store.put(a, '2');
        await t.store.put(b, 'leased', { lease: lease.id });
        const before = { a: await t.store.get(a), b: await t.store.get(b), revision: await t.store.revision() };

        const store = await t.reopen();
        assert.deepEqual(await store.get(a), before.a);
        assert.deepEqual(await store.get(b), before.b);
        assert.equal(await store.revision(), before.revision);
        assert.ok((await store.leaseTimeToLive(lease.id)) > 0, 'the lease survives');
        const w = await t.watch(a, { startRevision: first.revision });
        const next = await store.put(a, '3');
        assert.equal(next.revision, before.revision + 1);
        await w.waitForRevision(next.revision);
        assert.deepEqual(w.events().map((e) => e.kv.value), ['1', '2', '3']);
      });
    });
  });
}

/** What a test gets: the store, keys of its own, and leases and watches cleaned up after it. */
export interface Fixture {
  readonly store: Store;
  /** Prefix of every key of this test. */
  readonly prefix: string;
  key(name: string): string;
  grant(ttlSeconds: number): Promise<LeaseGrant>;
  watch(key: string, options?: WatchOptions): Promise<WatchRecorder>;
  reopen: (() => Promise<Store>) | undefined;
  /** Marks the test skipped, with the reason. */
  skip(message: string): void;
}

async function withStore(
  open: () => Promise<StoreUnderTest>,
  skip: (message: string) => void,
  body: (t: Fixture) => Promise<void>,
): Promise<void> {
  const opened = await open();
  let store = opened.store;
  const prefix = `/contract/${randomUUID()}/`;
  const leases: LeaseId[] = [];
  const watchers: Watcher[] = [];
  const reopen = opened.reopen;
  const fixture: Fixture = {
    get store() {
      return store;
    },
    prefix,
    key: (name) => prefix + name,
    grant: async (ttlSeconds) => {
      const grant = await store.leaseGrant(ttlSeconds);
      leases.push(grant.id);
      return grant;
    },
    watch: async (key, options) => {
      const watcher = await store.watch(key, options);
      watchers.push(watcher);
      return new WatchRecorder(watcher);
    },
    reopen: reopen && (async () => (store = await reopen())),
    skip,
  };
  try {
    await body(fixture);
  } finally {
    // Leave a shared cluster as we found it; failures here must not hide the test's own.
    for (const watcher of watchers) await watcher.cancel().catch(() => undefined);
    for (const id of leases) await store.leaseRevoke(id).catch(() => undefined);
    await store.delete(prefix, { prefix: true }).catch(() => undefined);
    await opened.cleanup();
  }
}

/** Collects what a watcher delivers. */
export class WatchRecorder {
  readonly batches: Array<{ revision: number; events: WatchEvent[] }> = [];
  readonly errors: Error[] = [];

  constructor(readonly watcher: Watcher) {
    watcher.on('events', (events, revision) => this.batches.push({ revision, events }));
    watcher.on('error', (err) => this.errors.push(err));
  }

  events(): WatchEvent[] {
    return this.batches.flatMap((b) => b.events);
  }

  /** Each batch as [revision, [type, key, value]...], for readable deepEqual. */
  summary(): Array<[number, ...Array<[string, string, string]>]> {
    return this.batches.map((b) => [b.revision, ...b.events.map((e): [string, string, string] => [e.type, e.kv.key, e.kv.value])]);
  }

  async waitForEvents(count: number): Promise<void> {
    await waitFor(() => this.events().length >= count, EVENT_TIMEOUT_MS, `${count} watch events`);
  }

  async waitForRevision(revision: number): Promise<void> {
    await waitFor(() => this.batches.some((b) => b.revision >= revision), EVENT_TIMEOUT_MS, `watch events up to revision ${revision}`);
  }

  async waitForError(): Promise<Error> {
    await waitFor(() => this.errors.length > 0, EVENT_TIMEOUT_MS, 'watch error');
    return this.errors[0]!;
  }
}

/** Polls `condition` until it holds; fails the test after `timeoutMs`. */
export async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25);
  }
}

export async function within<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export async function rejectsWith(promise: Promise<unknown>, code: ErrorCode): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof PxehaError, `expected PxehaError ${code}, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  });
}

/** Expiry may take the TTL the server granted plus its expiry-check interval; allow a margin. */
function leaseDeadlineMs(lease: LeaseGrant): number {
  return (lease.ttlSeconds + 5) * 1000;
}

/** The id of a lease that certainly does not exist (granted, then revoked). */
async function goneLease(t: Fixture): Promise<LeaseId> {
  const lease = await t.store.leaseGrant(60);
  await t.store.leaseRevoke(lease.id);
  return lease.id;
}

function rangeOf(response: TxnOpResult | undefined) {
  assert.equal(response?.type, 'range');
  if (response?.type !== 'range') throw new Error('unreachable');
  return response.result;
}
