/**
 * Throughput of small compare-and-set transactions on the embedded store, one client versus
 * many concurrent ones, the shape of the DHCP server's address allocations. Every transaction
 * is durable (its -wal file fdatasynced) before it resolves, so the sequential rate is bounded
 * by the disk's sync latency plus a threadpool round trip, and the concurrent rate shows what
 * group commit buys. "syncs" counts fdatasyncs: one may cover several commits.
 *
 * Usage: node --import tsx bench/store/throughput.ts [seconds per run, default 3] [dir]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openEmbeddedStore } from '../../src/store/embedded/embedded-store.js';

const runSeconds = Number(process.argv[2] ?? 3);
const baseDir = process.argv[3] ?? tmpdir();
const CONCURRENCY_LEVELS = [1, 8, 64, 256];

const dir = await mkdtemp(join(baseDir, 'pxeha-bench-'));
try {
  for (const concurrency of CONCURRENCY_LEVELS) {
    const store = await openEmbeddedStore({ path: join(dir, `bench-${concurrency}.db`) });
    try {
      // Each client owns one key and bumps it with a modRevision compare, as an allocator would.
      const client = async (id: number, deadlineMs: number): Promise<number> => {
        const key = `/bench/lease/${id}`;
        let modRevision = 0;
        let done = 0;
        while (performance.now() < deadlineMs) {
          const result = await store.txn({
            compare: [{ key, target: 'modRevision', op: '==', value: modRevision }],
            success: [{ type: 'put', key, value: `binding ${done}` }],
          });
          if (!result.succeeded) throw new Error(`lost a CAS on ${key}, which only this client writes`);
          modRevision = result.revision;
          done++;
        }
        return done;
      };
      const statsBefore = store.groupCommitStats;
      const startedMs = performance.now();
      const counts = await Promise.all(Array.from({ length: concurrency }, (_, id) => client(id, startedMs + runSeconds * 1000)));
      const elapsedSeconds = (performance.now() - startedMs) / 1000;
      const stats = store.groupCommitStats;
      const txns = counts.reduce((a, b) => a + b, 0);
      const batches = stats.batches - statsBefore.batches;
      const syncs = stats.syncs - statsBefore.syncs;
      console.log(
        `concurrency ${String(concurrency).padStart(3)}: ${Math.round(txns / elapsedSeconds).toString().padStart(6)} txns/s` +
          `  (${txns} txns, ${batches} commits, ${(txns / batches).toFixed(1)} txns/commit,` +
          ` ${((elapsedSeconds * 1000) / batches).toFixed(2)} ms/commit, ${syncs} syncs, ${stats.checkpoints - statsBefore.checkpoints} checkpoints)`,
      );
    } finally {
      await store.close();
    }
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
