import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { rejectsWith, waitFor, within } from './contract.js';
import { campaign, DEFAULT_ELECTION_PREFIX, type Leadership, leader, observe } from './election.js';
import { openEmbeddedStore } from './embedded/embedded-store.js';
import type { KeyValue, Store } from './store.js';

const EVENT_TIMEOUT_MS = 5000;

/** Runs `body` on a fresh embedded store. */
async function withStore(body: (store: Store) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'pxeha-election-'));
  const store = await openEmbeddedStore({ path: join(dir, 'store.db') });
  try {
    await body(store);
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Resolves true if `promise` settles within `ms`, false otherwise. */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  const settled = promise.then(
    () => true,
    () => true,
  );
  return Promise.race([settled, sleep(ms).then(() => false)]);
}

describe('election', () => {
  it('a lone candidate leads at once under <prefix>/<name>/<leaseId>, and proclaims', () =>
    withStore(async (store) => {
      const lease = await store.leaseGrant(30);
      const leadership = await campaign(store, 'dhcp', 'node-a', lease.id);
      assert.equal(leadership.isLeader, true);
      assert.equal(leadership.key, `${DEFAULT_ELECTION_PREFIX}/dhcp/${lease.id}`);
      assert.equal((await store.get(leadership.key))?.lease, lease.id);
      assert.equal((await leader(store, 'dhcp'))?.value, 'node-a');
      await leadership.proclaim('node-a, epoch 2');
      const current = await leader(store, 'dhcp');
      assert.equal(current?.value, 'node-a, epoch 2');
      assert.equal(current?.createRevision, leadership.createRevision);
      await leadership.resign();
      assert.equal(leadership.isLeader, false);
      assert.equal(await leader(store, 'dhcp'), undefined);
      await rejectsWith(leadership.proclaim('too late'), 'PXE_ERR_NOT_LEADER');
    }));

  it('leadership passes in campaign order, on resign and on lease revoke', () =>
    withStore(async (store) => {
      const [la, lb, lc] = [await store.leaseGrant(30), await store.leaseGrant(30), await store.leaseGrant(30)];
      const a = await campaign(store, 'e', 'a', la.id);
      const bCampaign = campaign(store, 'e', 'b', lb.id);
      await waitFor(async () => (await store.range(`${DEFAULT_ELECTION_PREFIX}/e/`, { prefix: true })).count === 2, EVENT_TIMEOUT_MS, 'b key');
      const cCampaign = campaign(store, 'e', 'c', lc.id);
      await waitFor(async () => (await store.range(`${DEFAULT_ELECTION_PREFIX}/e/`, { prefix: true })).count === 3, EVENT_TIMEOUT_MS, 'c key');
      assert.equal(await settlesWithin(bCampaign, 200), false, 'b waits for a');

      await a.resign();
      const b = await within(bCampaign, EVENT_TIMEOUT_MS, 'b to lead');
      assert.equal(b.isLeader, true);
      assert.equal(await settlesWithin(cCampaign, 200), false, 'c waits for b');

      const bLost = new Promise<Error>((resolve) => b.on('lost', resolve));
      await store.leaseRevoke(lb.id);
      const c = await within(cCampaign, EVENT_TIMEOUT_MS, 'c to lead');
      await within(bLost, EVENT_TIMEOUT_MS, 'b to hear lost');
      assert.equal(b.isLeader, false);
      assert.equal(c.isLeader, true);
      assert.equal((await leader(store, 'e'))?.value, 'c');
      await c.resign();
    }));

  it('a leader whose lease expires hears lost and the next candidate takes over', () =>
    withStore(async (store) => {
      const [short, long] = [await store.leaseGrant(1), await store.leaseGrant(30)];
      const first = await campaign(store, 'e', 'first', short.id);
      const lost = new Promise<Error>((resolve) => first.on('lost', resolve));
      const second = await within(campaign(store, 'e', 'second', long.id), EVENT_TIMEOUT_MS, 'takeover after expiry');
      const reason = await within(lost, EVENT_TIMEOUT_MS, 'lost');
      assert.equal((reason as { code?: string }).code, 'PXE_ERR_NOT_LEADER');
      assert.equal(first.isLeader, false);
      await rejectsWith(first.proclaim('still me?'), 'PXE_ERR_NOT_LEADER');
      assert.equal(second.isLeader, true);
      await second.resign();
    }));

  it('a waiting candidate whose key is deleted stops with PXE_ERR_NOT_LEADER', () =>
    withStore(async (store) => {
      const [la, lb] = [await store.leaseGrant(30), await store.leaseGrant(30)];
      const a = await campaign(store, 'e', 'a', la.id);
      const bCampaign = campaign(store, 'e', 'b', lb.id);
      await waitFor(async () => (await store.range(`${DEFAULT_ELECTION_PREFIX}/e/`, { prefix: true })).count === 2, EVENT_TIMEOUT_MS, 'b key');
      await store.leaseRevoke(lb.id);
      await rejectsWith(within(bCampaign, EVENT_TIMEOUT_MS, 'b to fail'), 'PXE_ERR_NOT_LEADER');
      assert.equal(a.isLeader, true);
      await a.resign();
    }));

  it('an aborted campaign rejects with the abort reason and withdraws its key', () =>
    withStore(async (store) => {
      const [la, lb] = [await store.leaseGrant(30), await store.leaseGrant(30)];
      const a = await campaign(store, 'e', 'a', la.id);
      const controller = new AbortController();
      const bCampaign = campaign(store, 'e', 'b', lb.id, { signal: controller.signal });
      const bKey = `${DEFAULT_ELECTION_PREFIX}/e/${lb.id}`;
      await waitFor(async () => (await store.get(bKey)) !== undefined, EVENT_TIMEOUT_MS, 'b key');
      const reason = new Error('shutting down');
      controller.abort(reason);
      await assert.rejects(bCampaign, (err) => err === reason);
      assert.equal(await store.get(bKey), undefined);
      assert.equal(a.isLeader, true);
      await assert.rejects(campaign(store, 'e', 'b', lb.id, { signal: AbortSignal.abort() }), { name: 'AbortError' });
      assert.equal(await store.get(bKey), undefined, 'an already aborted campaign writes nothing');
      await a.resign();
    }));

  it('campaigning again with the same lease resumes the candidacy and proclaims the new value', () =>
    withStore(async (store) => {
      const lease = await store.leaseGrant(30);
      const first = await campaign(store, 'e', 'v1', lease.id);
      const again = await campaign(store, 'e', 'v2', lease.id);
      assert.equal(again.createRevision, first.createRevision);
      assert.equal((await leader(store, 'e'))?.value, 'v2');
      await again.resign();
    }));

  it('observe follows the leader through proclaim, handover and an empty election', () =>
    withStore(async (store) => {
      const [la, lb] = [await store.leaseGrant(30), await store.leaseGrant(30)];
      const observer = await observe(store, 'e');
      assert.equal(observer.leader, undefined);
      const seen: Array<string | undefined> = [];
      observer.on('change', (kv: KeyValue | undefined) => seen.push(kv?.value));
      const a = await campaign(store, 'e', 'a', la.id);
      const bCampaign = campaign(store, 'e', 'b', lb.id);
      await a.proclaim('a2');
      await waitFor(() => seen.length === 2, EVENT_TIMEOUT_MS, 'a and a2');
      await a.resign();
      const b = await within(bCampaign, EVENT_TIMEOUT_MS, 'b to lead');
      await b.resign();
      await waitFor(() => seen.length === 4, EVENT_TIMEOUT_MS, 'b and then nobody');
      assert.deepEqual(seen, ['a', 'a2', 'b', undefined]);
      assert.equal(observer.leader, undefined);
      await observer.cancel();
    }));

  it('elections with different names are independent; names with "/" are refused', () =>
    withStore(async (store) => {
      const [la, lb] = [await store.leaseGrant(30), await store.leaseGrant(30)];
      const leaders: Leadership[] = [await campaign(store, 'x', 'x', la.id), await campaign(store, 'y', 'y', lb.id)];
      assert.ok(leaders.every((l) => l.isLeader));
      await rejectsWith(campaign(store, 'x/y', 'v', la.id), 'PXE_ERR_STORE_BAD_REQUEST');
      await rejectsWith(leader(store, ''), 'PXE_ERR_STORE_BAD_REQUEST');
      await rejectsWith(campaign(store, 'z', 'v', '0'), 'PXE_ERR_STORE_BAD_REQUEST');
      for (const l of leaders) await l.resign();
    }));
});
