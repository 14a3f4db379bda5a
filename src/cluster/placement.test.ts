import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { validate } from '../config/load.js';
import { ProfileSchema, type Profile } from '../config/schema.js';
import type { BootNodeInfo } from '../boot/servers.js';
import { movedMachines, parsePlacement, placedMembers, placementStatus, type PlacementRecord } from './placement.js';

const FILES = ['k/linux', 'k/initrd'];
const profile = validate<Profile>(ProfileSchema, { name: 'k', boot: { kind: 'kernel', kernel: 'k/linux', initrds: ['k/initrd'] } }, 'profile');
const node = (name: string, i: number, holds = FILES): BootNodeInfo => ({ name, weight: 100, addresses: [`10.0.0.${i}`], httpPort: 8080, holds: new Set(holds) });
const healthy = [node('a', 1), node('b', 2), node('c', 3)];
const record = (members: string[]): PlacementRecord => ({ members, atMs: 0, by: 'test' });
const machines = Array.from({ length: 200 }, (_, i) => ({ mac: `52:54:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`, profile }));

describe('placedMembers', () => {
  it('auto: every healthy member, whatever the record says', () => {
    assert.deepEqual(placedMembers(healthy, 'auto', record(['a'])).map((n) => n.name), ['a', 'b', 'c']);
  });
  it('manual: the healthy members the record names; a dead one is out even if named', () => {
    assert.deepEqual(placedMembers(healthy, 'manual', record(['a', 'c', 'gone'])).map((n) => n.name), ['a', 'c']);
  });
  it('manual with no record, or a record naming no healthy member: every healthy member (never nobody)', () => {
    assert.deepEqual(placedMembers(healthy, 'manual', undefined).map((n) => n.name), ['a', 'b', 'c']);
    assert.deepEqual(placedMembers(healthy, 'manual', record(['gone'])).map((n) => n.name), ['a', 'b', 'c']);
  });
});

describe('parsePlacement', () => {
  it('reads a record and refuses what is not one', () => {
    assert.deepEqual(parsePlacement('{"members":["a",1,"b"],"atMs":5,"by":"x"}'), { members: ['a', 'b'], atMs: 5, by: 'x' });
    assert.equal(parsePlacement('{"members":"a"}'), undefined);
    assert.equal(parsePlacement('not json'), undefined);
    assert.equal(parsePlacement(undefined), undefined);
  });
});

describe('placementStatus', () => {
  it('gives every machine a placed boot server and counts them per node; shares add up to 256 buckets', () => {
    const status = placementStatus({ mode: 'manual', record: record(['a', 'b']), healthy, machines });
    const c = status.nodes.find((n) => n.name === 'c')!;
    assert.equal(c.placed, false);
    assert.equal(c.buckets, 0);
    assert.equal(c.machines, 0);
    assert.equal(status.nodes.reduce((sum, n) => sum + n.buckets, 0), 256);
    assert.equal(status.nodes.reduce((sum, n) => sum + n.machines, 0), machines.length);
    for (const m of status.machines) {
      assert.ok(m.server === 'a' || m.server === 'b');
      assert.deepEqual(m.fallbacks, [m.server === 'a' ? 'b' : 'a']);
      assert.equal(m.complete, true);
    }
  });

  it('rebalancing a returned node moves exactly the machines it wins back to it', () => {
    const before = placementStatus({ mode: 'manual', record: record(['a', 'b']), healthy, machines });
    const after = placementStatus({ mode: 'manual', record: record(['a', 'b', 'c']), healthy, machines });
    const moved = movedMachines(before, after);
    assert.ok(moved.length > 30 && moved.length < 110, `${moved.length} of 200 moved`);
    for (const m of moved) assert.equal(m.to, 'c');
    assert.equal(moved.length, after.nodes.find((n) => n.name === 'c')!.machines);
  });

  it('flags a machine whose files no node holds', () => {
    const status = placementStatus({ mode: 'auto', record: undefined, healthy: [node('a', 1, []), node('b', 2, ['k/linux'])], machines: machines.slice(0, 3) });
    for (const m of status.machines) assert.equal(m.complete, false);
  });
});
