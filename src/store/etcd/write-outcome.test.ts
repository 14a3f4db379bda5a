/**
 * findWriteOutcome against a made-up history: which lost writes it finds applied, which it
 * finds absent (safe to send again), and where it refuses to guess.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { KeyValue, RangeOptions, RangeResult, TxnRequest } from '../store.js';
import { findWriteOutcome, type HistoryReader } from './write-outcome.js';

/** Versions of each key; `undefined` marks a delete at that revision. */
type History = Record<string, Array<[revision: number, value: string | undefined, lease?: string]>>;

function reader(history: History): HistoryReader {
  const current = Math.max(...Object.values(history).flatMap((versions) => versions.map(([r]) => r)));
  const at = (key: string, revision: number): KeyValue | undefined => {
    const versions = (history[key] ?? []).filter(([r]) => r <= revision);
    let life: Array<[number, string, string]> = [];
    for (const [r, value, lease] of versions) life = value === undefined ? [] : [...life, [r, value, lease ?? '0']];
    const last = life.at(-1);
    if (!last) return undefined;
    return { key, value: last[1], lease: last[2], createRevision: life[0]![0], modRevision: last[0], version: life.length };
  };
  return {
    async range(key: string, options: RangeOptions, revision: number): Promise<RangeResult> {
      const r = revision > 0 ? revision : current;
      const keys = options.prefix ? Object.keys(history).filter((k) => k.startsWith(key)).sort() : [key];
      const kvs = keys.map((k) => at(k, r)).filter((kv): kv is KeyValue => kv !== undefined);
      return { kvs: options.countOnly ? [] : kvs, count: kvs.length, more: false, revision: r };
    },
  };
}

const cas = (key: string, modRevision: number, value: string, failure: TxnRequest['failure'] = []): TxnRequest => ({
  compare: [{ key, target: 'modRevision', op: '==', value: modRevision }],
  success: [{ type: 'put', key, value, prevKv: true }],
  failure,
});

describe('findWriteOutcome', () => {
  it('finds a put applied after the last revision seen, with the responses it had', async () => {
    const history: History = { '/a': [[3, 'old'], [7, 'ours'], [9, 'later']], '/b': [[2, 'x']] };
    const request: TxnRequest = {
      success: [{ type: 'range', key: '/a' }, { type: 'put', key: '/a', value: 'ours', prevKv: true }, { type: 'delete', key: '/b' }],
    };
    const outcome = await findWriteOutcome(reader(history), request, 5);
    assert.ok(typeof outcome === 'object');
    assert.equal(outcome.applied.succeeded, true);
    assert.equal(outcome.applied.revision, 7);
    const [range, put, del] = outcome.applied.responses;
    assert.equal(range?.type === 'range' && range.result.kvs[0]?.value, 'old', 'a range before the first write reads before it');
    assert.equal(put?.type === 'put' && put.prevKv?.value, 'old');
    assert.deepEqual(del, { type: 'delete', deleted: 1 });
  });

  it('finds a compare-and-set absent when the key changed only by others, or not at all', async () => {
    assert.equal(await findWriteOutcome(reader({ '/a': [[3, 'old'], [7, 'theirs']] }), cas('/a', 3, 'ours'), 5), 'absent');
    assert.equal(await findWriteOutcome(reader({ '/a': [[3, 'old']] }), cas('/a', 3, 'ours'), 5), 'absent');
  });

  it('requires every put of the branch at the same revision, with its lease', async () => {
    const request: TxnRequest = { success: [{ type: 'put', key: '/a', value: 'v' }, { type: 'put', key: '/b', value: 'w', lease: '42' }] };
    assert.equal(await findWriteOutcome(reader({ '/a': [[6, 'v']], '/b': [[6, 'w', '42']] }), request, 5) !== 'absent', true);
    assert.equal(await findWriteOutcome(reader({ '/a': [[6, 'v']], '/b': [[6, 'w']] }), request, 5), 'absent', 'lease differs');
    assert.equal(await findWriteOutcome(reader({ '/a': [[6, 'v']], '/b': [[8, 'w', '42']] }), request, 5), 'absent', 'another revision');
  });

  it('a read-only failure branch is harmless; a failure branch that wrote is found', async () => {
    assert.equal(await findWriteOutcome(reader({ '/a': [[3, 'old']] }), cas('/a', 1, 'ours', [{ type: 'range', key: '/a' }]), 5), 'absent');
    const withWrite = cas('/a', 1, 'ours', [{ type: 'put', key: '/conflicts', value: 'seen' }]);
    const outcome = await findWriteOutcome(reader({ '/a': [[3, 'old']], '/conflicts': [[6, 'seen']] }), withWrite, 5);
    assert.ok(typeof outcome === 'object');
    assert.equal(outcome.applied.succeeded, false);
    assert.equal(outcome.applied.revision, 6);
  });

  it('refuses to guess for deletes only, keys deleted since, or versions beyond the walk', async () => {
    assert.equal(await findWriteOutcome(reader({ '/a': [[3, 'old']] }), { success: [{ type: 'delete', key: '/a' }] }, 5), 'unknown');
    assert.equal(await findWriteOutcome(reader({ '/a': [[6, 'ours'], [8, undefined]] }), cas('/a', 3, 'ours'), 5), 'unknown');
    assert.equal(await findWriteOutcome(reader({ '/a': [[6, 'ours'], [8, undefined], [9, 'again']] }), cas('/a', 3, 'ours'), 5), 'unknown');
    const busy: History = { '/a': Array.from({ length: 40 }, (_, i): [number, string] => [10 + i, `other ${i}`]) };
    assert.equal(await findWriteOutcome(reader(busy), cas('/a', 3, 'ours'), 5), 'unknown');
  });
});
