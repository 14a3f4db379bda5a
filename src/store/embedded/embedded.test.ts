import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fdatasync, fstatSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { type ErrorCode, PxehaError } from '../../errors.js';
import { rejectsWith, runStoreContract, waitFor, WatchRecorder } from '../contract.js';
import { openStore } from '../open.js';
import { type EmbeddedStoreOptions, EmbeddedStore, type FdatasyncFunction, openEmbeddedStore } from './embedded-store.js';

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CRASH_WRITER = fileURLToPath(new URL('./testdata/crash-writer.ts', import.meta.url));

function assertCode(err: unknown, code: ErrorCode): void {
  assert.ok(err instanceof PxehaError, `expected PxehaError ${code}, got ${String(err)}`);
  assert.equal(err.code, code);
}

/** A fresh directory per test, removed afterwards. */
async function scratchDirectory(): Promise<{ path: string; remove: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), 'pxeha-store-'));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

runStoreContract('embedded', async () => {
  const dir = await scratchDirectory();
  const path = join(dir.path, 'store.db');
  let store = await openEmbeddedStore({ path });
  return {
    store,
    reopen: async () => {
      await store.close();
      store = await openEmbeddedStore({ path });
      return store;
    },
    cleanup: async () => {
      await store.close();
      await dir.remove();
    },
  };
});

describe('embedded store', () => {
  let dir: { path: string; remove: () => Promise<void> };
  let counter = 0;
  before(async () => {
    dir = await scratchDirectory();
  });
  after(async () => {
    await dir.remove();
  });
  const freshPath = () => join(dir.path, `store-${++counter}.db`);

  /** Opens a store on a new file and closes it after `body`, whatever happens. */
  async function withEmbedded(options: Omit<EmbeddedStoreOptions, 'path'>, body: (store: EmbeddedStore, path: string) => Promise<void>) {
    const path = freshPath();
    const store = await openEmbeddedStore({ path, ...options });
    try {
      await body(store, path);
    } finally {
      await store.close();
    }
  }

  it('openStore opens an embedded store', async () => {
    const store = await openStore({ kind: 'embedded', path: freshPath() });
    try {
      assert.equal(store.kind, 'embedded');
      assert.equal(await store.revision(), 1, 'an empty store starts at revision 1, as etcd does');
    } finally {
      await store.close();
    }
  });

  it('reopen keeps keys, revisions, history, the compact revision and leases, with a fresh full TTL', async () => {
    const path = freshPath();
    let store = await openEmbeddedStore({ path });
    try {
      const lease = await store.leaseGrant(2);
      await store.put('a', '1');
      const second = await store.put('a', '2');
      await store.put('leased', 'v', { lease: lease.id });
      await store.compact(second.revision);
      await sleep(1100);
      assert.equal(await store.leaseTimeToLive(lease.id), 1);
      const revision = await store.revision();
      await store.close();

      store = await openEmbeddedStore({ path });
      assert.equal(await store.revision(), revision);
      assert.equal((await store.get('a'))?.version, 2);
      assert.equal((await store.get('leased'))?.lease, lease.id);
      assert.equal(await store.leaseTimeToLive(lease.id), 2, 'a surviving lease restarts its full TTL');
      const compacted = new WatchRecorder(await store.watch('a', { startRevision: second.revision - 1 }));
      assertCode(await compacted.waitForError(), 'PXE_ERR_STORE_COMPACTED');
      const history = new WatchRecorder(await store.watch('a', { startRevision: second.revision }));
      await history.waitForEvents(1);
      assert.equal(history.events()[0]?.kv.value, '2');

      // Nobody renews the lease after the restart, so it expires and takes its key along.
      await waitFor(async () => (await store.get('leased')) === undefined, 5000, 'lease expiry after reopen');
      assert.equal(await store.leaseTimeToLive(lease.id), -1);
    } finally {
      await store.close();
    }
  });

  it('group commit: writes issued together share one transaction yet keep their own revisions, in order', async () => {
    await withEmbedded({}, async (store) => {
      const start = await store.revision();
      const statsBefore = store.groupCommitStats;
      const results = await Promise.all(Array.from({ length: 64 }, (_, i) => store.put(`k${i}`, String(i))));
      const statsAfter = store.groupCommitStats;
      assert.equal(statsAfter.writes - statsBefore.writes, 64);
      assert.equal(statsAfter.batches - statsBefore.batches, 1, 'one SQLite transaction');
      assert.equal(statsAfter.syncs - statsBefore.syncs, 1, 'one fdatasync');
      assert.deepEqual(results.map((r) => r.revision), Array.from({ length: 64 }, (_, i) => start + 1 + i));
    });
  });

  it('syncs off the event loop: timers run while a batch waits for its sync, which alone settles it', async () => {
    // A gated fdatasync: each call waits until the test opens the gate, then really syncs.
    const gated: Array<() => void> = [];
    const gatedSync: FdatasyncFunction = (fd, callback) => gated.push(() => fdatasync(fd, callback));
    const openGate = () => {
      for (const run of gated.splice(0)) run();
    };
    await withEmbedded({ fdatasync: gatedSync }, async (store) => {
      const watch = new WatchRecorder(await store.watch('k', { prefix: true }));
      const statsBefore = store.groupCommitStats;
      let firstSettled = false;
      const first = store.put('k1', 'a').then((result) => {
        firstSettled = true;
        return result;
      });
      await waitFor(() => gated.length === 1, 2000, 'the first batch to ask for its sync');
      // The sync is in flight and the event loop is free: a timer fires.
      let timerFired = false;
      await new Promise<void>((resolve) => setTimeout(() => {
        timerFired = true;
        resolve();
      }, 20));
      assert.ok(timerFired);
      assert.equal(firstSettled, false, 'no promise resolves before its sync completes');
      assert.equal(watch.events().length, 0, 'no watch event before its sync completes');
      assert.equal((await store.get('k1'))?.value, 'a', 'reads see the commit at once');

      // Pipelining: batches commit while the first sync is in flight, and wait for a later one.
      let laterSettled = false;
      const later = Promise.all([store.put('k2', 'b'), store.put('k3', 'c')]).then((results) => {
        laterSettled = true;
        return results;
      });
      await sleep(20);
      const third = store.put('k4', 'd');
      await sleep(20);
      assert.equal(store.groupCommitStats.batches - statsBefore.batches, 3, 'three batches committed');
      assert.equal(gated.length, 1, 'one sync at a time');

      openGate();
      const { revision: firstRevision } = await first;
      await watch.waitForEvents(1);
      assert.equal(laterSettled, false, 'the first sync started before the later batches committed: it does not cover them');
      await waitFor(() => gated.length === 1, 2000, 'one sync for the batches committed meanwhile');
      await sleep(20);
      assert.equal(laterSettled, false);
      openGate();
      const [second, third2] = await Promise.all([later, third]);
      assert.deepEqual(second.map((r) => r.revision), [firstRevision + 1, firstRevision + 2]);
      assert.equal(third2.revision, firstRevision + 3);
      await watch.waitForEvents(4);
      assert.equal(store.groupCommitStats.syncs - statsBefore.syncs, 2, 'the second sync covered two batches');

      // close waits for the sync of a batch committed just before it.
      const last = store.put('k5', 'e');
      await waitFor(() => gated.length === 1, 2000, 'the last sync');
      const closing = store.close();
      await sleep(20);
      openGate();
      await closing;
      assert.ok((await last).revision > third2.revision);
    });
  });

  it('checkpoints the WAL into the database file: db synced before the log is truncated, nothing lost', async () => {
    const path = freshPath();
    const synced: string[] = [];
    const recordingSync: FdatasyncFunction = (fd, callback) => {
      const ino = fstatSync(fd).ino;
      synced.push(ino === statSync(path).ino ? 'db' : `wal:${fstatSync(fd).size}`);
      fdatasync(fd, callback);
    };
    let store = await openEmbeddedStore({ path, checkpointWalBytes: 64 * 1024, fdatasync: recordingSync });
    try {
      for (let round = 0; round < 40; round++) {
        await Promise.all(Array.from({ length: 20 }, (_, i) => store.put(`k${i}`, `${round}`.repeat(200))));
        assert.ok(statSync(`${path}-wal`).size < 1024 * 1024, 'the WAL stays bounded');
      }
      await store.close();
      const stats = store.groupCommitStats;
      assert.ok(stats.checkpoints >= 2, `checkpointed ${stats.checkpoints} times`);
      // Every database sync is preceded by a WAL sync and followed by a sync of the emptied WAL.
      const dbSyncs = synced.flatMap((what, i) => (what === 'db' ? [i] : []));
      assert.equal(dbSyncs.length, stats.checkpoints);
      for (const i of dbSyncs) {
        assert.match(synced[i - 1] ?? '', /^wal:[1-9]/, 'the WAL is synced before it is copied');
        assert.equal(synced[i + 1], 'wal:0', 'the WAL is emptied, and that synced, after the database is synced');
      }
      store = await openEmbeddedStore({ path });
      assert.equal(await store.revision(), 801);
      assert.equal((await store.get('k7'))?.value, '39'.repeat(200));
    } finally {
      await store.close();
    }
  });

  it('a failed sync fails the writes it covers and closes the store', async () => {
    let fail = false;
    const failingSync: FdatasyncFunction = (fd, callback) => {
      if (!fail) return fdatasync(fd, callback);
      setImmediate(() => callback(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' })));
    };
    const path = freshPath();
    const store = await openEmbeddedStore({ path, fdatasync: failingSync });
    const watch = new WatchRecorder(await store.watch('k'));
    await store.put('ok', '1');
    fail = true;
    const lost = store.put('k', 'v');
    await rejectsWith(lost, 'PXE_ERR_STORE_UNAVAILABLE');
    assertCode(await watch.waitForError(), 'PXE_ERR_STORE_UNAVAILABLE');
    assert.equal(watch.events().length, 0, 'watchers never saw the unsynced write');
    await rejectsWith(store.put('x', 'y'), 'PXE_ERR_STORE_UNAVAILABLE');
    await rejectsWith(store.get('ok'), 'PXE_ERR_STORE_UNAVAILABLE');
    await store.close();
    const reopened = await openEmbeddedStore({ path });
    try {
      assert.equal((await reopened.get('ok'))?.value, '1');
    } finally {
      await reopened.close();
    }
  });

  it('group commit: a failing write is rolled back alone and the rest of its batch commits', async () => {
    await withEmbedded({}, async (store) => {
      const start = await store.revision();
      const lease = await store.leaseGrant(60);
      await store.leaseRevoke(lease.id);
      const base = await store.revision();
      const [first, duplicate, unknownLease, last] = await Promise.allSettled([
        store.put('a', '1'),
        store.txn({ success: [{ type: 'put', key: 'x', value: '1' }, { type: 'put', key: 'x', value: '2' }] }),
        store.txn({ success: [{ type: 'put', key: 'y', value: '1' }, { type: 'put', key: 'z', value: '1', lease: lease.id }] }),
        store.put('b', '2'),
      ]);
      assert.equal(start, base, 'revoking a lease without keys writes no revision');
      assert.deepEqual(first, { status: 'fulfilled', value: { revision: base + 1 } });
      assert.deepEqual(last, { status: 'fulfilled', value: { revision: base + 2 } });
      assert.equal(duplicate.status, 'rejected');
      if (duplicate.status === 'rejected') assertCode(duplicate.reason, 'PXE_ERR_STORE_BAD_REQUEST');
      assert.equal(unknownLease.status, 'rejected');
      if (unknownLease.status === 'rejected') assertCode(unknownLease.reason, 'PXE_ERR_LEASE_NOT_FOUND');
      assert.equal((await store.range('', { prefix: true })).count, 2);
    });
  });

  it('keeps the watch history bounded by compacting it automatically', async () => {
    await withEmbedded({ historyRevisions: 100 }, async (store, path) => {
      for (let round = 0; round < 10; round++) {
        await Promise.all(Array.from({ length: 50 }, (_, i) => store.put(`k${i % 7}`, `${round}/${i}`)));
      }
      const revision = await store.revision();
      assert.equal(revision, 501);
      const early = new WatchRecorder(await store.watch('', { prefix: true, startRevision: 2 }));
      assertCode(await early.waitForError(), 'PXE_ERR_STORE_COMPACTED');
      const recent = new WatchRecorder(await store.watch('', { prefix: true, startRevision: revision - 99 }));
      await recent.waitForEvents(100);
      await store.close();

      const db = new Database(path, { readonly: true });
      try {
        const { rows, oldest } = db.prepare('SELECT count(*) AS rows, min(revision) AS oldest FROM history').get() as { rows: number; oldest: number };
        assert.ok(rows >= 100 && rows <= 110, `history keeps about 100 revisions, has ${rows}`);
        assert.ok(oldest > revision - 110);
      } finally {
        db.close();
      }
    });
  });

  it('close fails queued writes and open watches with PXE_ERR_STORE_UNAVAILABLE', async () => {
    const path = freshPath();
    const store = await openEmbeddedStore({ path });
    const watch = new WatchRecorder(await store.watch('k'));
    const queued = store.put('k', 'never committed');
    await store.close();
    await rejectsWith(queued, 'PXE_ERR_STORE_UNAVAILABLE');
    await rejectsWith(store.get('k'), 'PXE_ERR_STORE_UNAVAILABLE');
    await rejectsWith(store.put('k', 'v'), 'PXE_ERR_STORE_UNAVAILABLE');
    assertCode(await watch.waitForError(), 'PXE_ERR_STORE_UNAVAILABLE');
    await store.close();

    const reopened = await openEmbeddedStore({ path });
    try {
      assert.equal(await reopened.get('k'), undefined);
    } finally {
      await reopened.close();
    }
  });

  it('refuses a second open of a file that is in use', async () => {
    await withEmbedded({}, async (_store, path) => {
      await rejectsWith(openEmbeddedStore({ path, lockTimeoutMs: 50 }), 'PXE_ERR_STORE_UNAVAILABLE');
    });
  });

  it('a long replay hands over to live events without gap or repeat while writes continue', async () => {
    await withEmbedded({}, async (store) => {
      for (let round = 0; round < 12; round++) {
        await Promise.all(Array.from({ length: 100 }, (_, i) => store.put(`k${i}`, `${round}`)));
      }
      const watch = new WatchRecorder(await store.watch('', { prefix: true, startRevision: 2 }));
      // Back-to-back writes while the watcher pages through history (500 revisions per turn),
      // then paced ones, so the switch to live events happens while writes keep coming.
      for (let i = 0; i < 200; i++) await store.put(`chase${i % 10}`, String(i));
      for (let i = 0; i < 50; i++) {
        await store.put(`paced${i % 10}`, String(i));
        await sleep(1);
      }
      const last = await store.revision();
      await watch.waitForRevision(last);
      const revisions = watch.batches.map((b) => b.revision);
      assert.deepEqual(revisions, Array.from({ length: last - 1 }, (_, i) => i + 2));
    });
  });

  it('watch buffers deliveries until a listener is attached', async () => {
    await withEmbedded({}, async (store) => {
      const { revision } = await store.put('k', 'v');
      const watcher = await store.watch('k', { startRevision: revision });
      await sleep(50);
      const events = new WatchRecorder(watcher);
      await events.waitForEvents(1);
      await watcher.cancel();
    });
  });

  it('loses no acknowledged write when the writer is killed with SIGKILL mid-stream', { timeout: 120_000 }, async () => {
    const path = freshPath();
    for (let round = 0; round < 4; round++) {
      const acknowledged = await runCrashWriter(path, `round${round}/`, 150 + round * 250);
      assert.ok(acknowledged.length >= 150);
      const store = await openEmbeddedStore({ path });
      try {
        for (const key of acknowledged) assert.equal((await store.get(key))?.value, `value of ${key}`, `acknowledged ${key} is on disk`);
      } finally {
        await store.close();
      }
    }
  });
});

/**
 * Runs testdata/crash-writer.ts until it has acknowledged at least `killAfter` puts, kills it
 * with SIGKILL and returns every key it printed.
 */
async function runCrashWriter(path: string, prefix: string, killAfter: number): Promise<string[]> {
  const child = spawn(process.execPath, ['--import', 'tsx', CRASH_WRITER, path, prefix, '8'], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('close', (_code, signal) => resolve(signal)));
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    output += chunk;
    if (!child.killed && output.split('\n').length > killAfter + 2) child.kill('SIGKILL');
  });
  const signal = await exited;
  assert.equal(signal, 'SIGKILL', `the writer must die by SIGKILL mid-stream; stderr: ${stderr}`);
  // The last line may be cut short by the kill; only complete lines were acknowledged.
  const lines = output.split('\n').slice(0, -1);
  assert.equal(lines.shift(), 'ready');
  return lines;
}
