import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { memberKey } from '../cluster/member-record.js';
import { silentLogger } from '../obs/log.js';
import { openStore } from '../store/open.js';
import type { Manifest } from './manifest.js';
import {
  chunksToKeep,
  imagePlacementJob,
  labelsMatch,
  placedOn,
  placementKey,
  planImageHolders,
  planKey,
  plannedHolders,
  rendezvousScore,
  type PlacementRecord,
  type PlanRecord,
} from './placement.js';

const nodes = (...names: string[]) => names.map((name) => ({ name }));
const site = (name: string, s: string) => ({ name, labels: { site: s } });

describe('planImageHolders', () => {
  const five = nodes('n1', 'n2', 'n3', 'n4', 'n5');
  const byScore = (image: string, names: string[]) => [...names].sort((a, b) => rendezvousScore(image, b) - rendezvousScore(image, a));

  const cases: { name: string; input: Parameters<typeof planImageHolders>[0]; nodes: string[]; under?: boolean }[] = [
    {
      name: 'all: every member',
      input: { image: 'x', placement: { replicas: 'all' }, members: five },
      nodes: ['n1', 'n2', 'n3', 'n4', 'n5'],
    },
    {
      name: 'all with labels: the matching members',
      input: {
        image: 'x',
        placement: { replicas: 'all', labels: { site: 'a' } },
        members: [site('n1', 'a'), site('n2', 'b'), site('n3', 'a'), { name: 'n4' }],
      },
      nodes: ['n1', 'n3'],
    },
    {
      name: 'k: the k highest rendezvous scores',
      input: { image: 'rocky', placement: { replicas: 2 }, members: five },
      nodes: byScore('rocky', ['n1', 'n2', 'n3', 'n4', 'n5']).slice(0, 2).sort(),
    },
    {
      name: 'k: previous plan kept though others score higher',
      input: {
        image: 'rocky',
        placement: { replicas: 2 },
        members: five,
        previous: byScore('rocky', ['n1', 'n2', 'n3', 'n4', 'n5']).slice(3),
      },
      nodes: byScore('rocky', ['n1', 'n2', 'n3', 'n4', 'n5']).slice(3).sort(),
    },
    {
      name: 'k: a departed planned node is replaced, the other stays',
      input: { image: 'rocky', placement: { replicas: 2 }, members: nodes('n1', 'n2', 'n4', 'n5'), previous: ['n3', 'n5'] },
      nodes: ['n5', byScore('rocky', ['n1', 'n2', 'n4'])[0]!].sort(),
    },
    {
      name: 'k: nodes already holding the image are preferred over fresh ones',
      input: { image: 'rocky', placement: { replicas: 2 }, members: five, holding: ['n2', 'n4'] },
      nodes: ['n2', 'n4'],
    },
    {
      name: 'k: the previous plan outranks holders',
      input: { image: 'rocky', placement: { replicas: 2 }, members: five, previous: ['n1'], holding: ['n2', 'n4'] },
      nodes: ['n1', byScore('rocky', ['n2', 'n4'])[0]!].sort(),
    },
    {
      name: 'k with labels: only matching nodes, even if planned before',
      input: {
        image: 'x',
        placement: { replicas: 2, labels: { site: 'a' } },
        members: [site('n1', 'a'), site('n2', 'b'), site('n3', 'a'), site('n4', 'a')],
        previous: ['n2', 'n3'],
      },
      nodes: ['n3', byScore('x', ['n1', 'n4'])[0]!].sort(),
    },
    {
      name: 'k larger than the eligible nodes: all of them, under-replicated',
      input: { image: 'x', placement: { replicas: 4 }, members: nodes('n1', 'n2') },
      nodes: ['n1', 'n2'],
      under: true,
    },
    {
      name: 'no eligible node: none',
      input: { image: 'x', placement: { replicas: 1, labels: { site: 'z' } }, members: five },
      nodes: [],
      under: true,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const plan = planImageHolders(c.input);
      assert.deepEqual(plan.nodes, c.nodes);
      assert.equal(plan.underReplicated, c.under ?? false);
    });
  }

  it('is deterministic and spreads images over nodes', () => {
    const counts = new Map<string, number>();
    for (let i = 0; i < 300; i++) {
      const image = `img-${i}`;
      const a = planImageHolders({ image, placement: { replicas: 1 }, members: five });
      assert.deepEqual(planImageHolders({ image, placement: { replicas: 1 }, members: [...five].reverse() }), a);
      counts.set(a.nodes[0]!, (counts.get(a.nodes[0]!) ?? 0) + 1);
    }
    for (const n of five) assert.ok((counts.get(n.name) ?? 0) > 30, `${n.name}: ${counts.get(n.name)}`);
  });

  it('adding a node moves only what the new node takes', () => {
    for (let i = 0; i < 50; i++) {
      const image = `img-${i}`;
      const before = planImageHolders({ image, placement: { replicas: 2 }, members: nodes('n1', 'n2', 'n3', 'n4') }).nodes;
      const after = planImageHolders({ image, placement: { replicas: 2 }, members: five, previous: before }).nodes;
      assert.deepEqual(after, before, 'sticky: a new node does not take a place from a planned one');
    }
  });
});

describe('placedOn / plannedHolders / labelsMatch', () => {
  const plan: PlanRecord = { nodes: ['n1', 'n3'], plannedAtMs: 0, by: 'leader n1' };
  it('decides which node pulls an image', () => {
    assert.equal(placedOn({ name: 'n2' }, undefined, undefined), true, 'no request: everyone');
    assert.equal(placedOn({ name: 'n2' }, { replicas: 'all', changedAtMs: 0 }, undefined), true);
    assert.equal(placedOn({ name: 'n2' }, { replicas: 'all', labels: { site: 'a' }, changedAtMs: 0 }, undefined), false);
    assert.equal(
      placedOn({ name: 'n2', labels: { site: 'a', rack: '1' } }, { replicas: 'all', labels: { site: 'a' }, changedAtMs: 0 }, undefined),
      true,
    );
    assert.equal(placedOn({ name: 'n1' }, { replicas: 2, changedAtMs: 0 }, plan), true);
    assert.equal(placedOn({ name: 'n2' }, { replicas: 2, changedAtMs: 0 }, plan), false);
    assert.equal(placedOn({ name: 'n1' }, { replicas: 2, changedAtMs: 0 }, undefined), false, 'k without a plan yet: nobody pulls');
  });
  it('names the planned holders', () => {
    assert.deepEqual(plannedHolders(undefined, undefined, nodes('b', 'a')), ['a', 'b']);
    assert.deepEqual(
      plannedHolders({ replicas: 'all', labels: { site: 'a' }, changedAtMs: 0 }, undefined, [site('a', 'a'), site('b', 'b')]),
      ['a'],
    );
    assert.deepEqual(plannedHolders({ replicas: 2, changedAtMs: 0 }, plan, nodes('a')), ['n1', 'n3']);
    assert.equal(plannedHolders({ replicas: 2, changedAtMs: 0 }, undefined, nodes('a')), undefined);
  });
  it('matches labels', () => {
    assert.equal(labelsMatch(undefined, undefined), true);
    assert.equal(labelsMatch(undefined, { site: 'a' }), false);
    assert.equal(labelsMatch({ site: 'a' }, {}), true);
    assert.equal(labelsMatch({ site: 'b' }, { site: 'a' }), false);
  });
});

describe('chunksToKeep', () => {
  const manifest = (hash: string): Manifest => ({ format: 1, files: [{ path: 'f', size: 1, chunks: [{ hash, size: 1, offset: 0 }] }] });
  const h = (c: string) => c.repeat(64);
  const ref = (page: string) => ({ bytes: 100, pages: [page] });
  const versions = [
    { name: 'big', id: h('1'), ref: ref(h('c')), manifest: manifest(h('a')) },
    { name: 'small', id: h('2'), ref: ref(h('d')), manifest: manifest(h('b')) },
  ];
  const placements = new Map<string, PlacementRecord>([['big', { replicas: 2, changedAtMs: 0 }]]);

  it('keeps what is placed here and what its planned holders do not hold whole yet', () => {
    const plans = new Map<string, PlanRecord>([['big', { nodes: ['n1', 'n2'], plannedAtMs: 0, by: 'x' }]]);
    const members = [
      { name: 'n1', images: [h('1'), h('2')] },
      { name: 'n2', images: [h('2')] },
      { name: 'n3', images: [h('1'), h('2')] },
    ];
    // n3 published `big` but is not placed: kept until n2 holds it too. Manifest pages (c, d)
    // of every recorded version are always kept.
    assert.deepEqual([...chunksToKeep({ self: { name: 'n3' }, versions, placements, plans, members })].sort(), [h('a'), h('b'), h('c'), h('d')]);
    members[1]!.images.push(h('1'));
    assert.deepEqual([...chunksToKeep({ self: { name: 'n3' }, versions, placements, plans, members })].sort(), [h('b'), h('c'), h('d')]);
    assert.deepEqual([...chunksToKeep({ self: { name: 'n1' }, versions, placements, plans, members })].sort(), [h('a'), h('b'), h('c'), h('d')]);
    // A version to keep whose manifest this node has not loaded: nothing is collected.
    const unloaded = [{ ...versions[0]!, manifest: undefined }, versions[1]!];
    assert.throws(() => chunksToKeep({ self: { name: 'n1' }, versions: unloaded, placements, plans, members }), /not on this node yet/);
    // Not to keep here (placed elsewhere and held there): its manifest is not needed, its pages stay.
    assert.deepEqual([...chunksToKeep({ self: { name: 'n3' }, versions: unloaded, placements, plans, members })].sort(), [h('b'), h('c'), h('d')]);
  });

  it('keeps a version whose image has no plan yet', () => {
    assert.ok(
      chunksToKeep({ self: { name: 'n3' }, versions, placements, plans: new Map(), members: [{ name: 'n3', images: [] }] }).has(h('a')),
    );
  });
});

describe('imagePlacementJob', () => {
  it('plans k holders among live members, keeps the plan, drops it when placement goes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pxeha-image-placement-'));
    const store = await openStore({ kind: 'embedded', path: join(dir, 'store.db') });
    try {
      const member = (name: string, labels?: Record<string, string>) =>
        store.put(
          memberKey(name),
          JSON.stringify({ name, configRevision: 0, clockMs: 0, addresses: [], images: [], ...(labels ? { labels } : {}) }),
        );
      await member('n1', { site: 'a' });
      await member('n2', { site: 'a' });
      await member('n3', { site: 'b' });
      await store.put(placementKey('big'), JSON.stringify({ replicas: 2, labels: { site: 'a' }, changedAtMs: 1 }));
      await store.put(placementKey('everywhere'), JSON.stringify({ replicas: 'all', changedAtMs: 1 }));
      await store.put(planKey('gone'), JSON.stringify({ nodes: ['n1'], plannedAtMs: 0, by: 'old' }));
      const { revision } = await store.put('/pxeha/election/leader/test', 'x');
      const fence = { key: '/pxeha/election/leader/test', createRevision: revision, leaseId: '0' };
      const controller = new AbortController();
      const job = imagePlacementJob({ self: 'n1', now: () => 42, versionsOf: () => [], intervalMs: 5 });
      const running = job.run({ store, fence, signal: controller.signal, log: silentLogger() });
      const deadline = Date.now() + 5000;
      while ((await store.get(planKey('gone'))) !== undefined || !(await store.get(planKey('big')))) {
        assert.ok(Date.now() < deadline, 'plan written');
        await new Promise((r) => setTimeout(r, 10));
      }
      const plan = JSON.parse((await store.get(planKey('big')))!.value) as PlanRecord;
      assert.deepEqual(plan, { nodes: ['n1', 'n2'], plannedAtMs: 42, by: 'leader n1' });
      assert.equal(await store.get(planKey('everywhere')), undefined, 'all: no plan');
      const rev = (await store.get(planKey('big')))!.modRevision;
      await new Promise((r) => setTimeout(r, 50));
      assert.equal((await store.get(planKey('big')))!.modRevision, rev, 'an unchanged plan is not rewritten');
      controller.abort();
      await running;
    } finally {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
