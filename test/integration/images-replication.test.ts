/**
 * Image replication (issue 7) on three pxeha nodes and a 3-member etcd in network namespaces
 * (test/helpers/ha-lab.ts): an image pushed on node1 is pulled by node2 and node3 from their
 * peers (GET /api/v1/chunks/:hash with the node-to-node bearer), verified chunk by chunk, and
 * shows as held whole by every node in the replication matrix (GET /api/v1/images, fed by the
 * membership records). node3 has a bandwidth limit, which the time it takes must respect.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ImagesStatus } from '../../src/images/status.js';
import { seededBytes } from '../../src/images/test-support.js';
import { defaultHaCluster, HaLab, type HaNode } from '../helpers/ha-lab.js';
import { REPO_ROOT, createSandbox } from '../helpers/netns.js';
import { until } from '../helpers/until.js';

const PXEHA = path.join(REPO_ROOT, 'bin', 'pxeha.js');
const IMAGE_BYTES = 48 * 1024 * 1024;
/** node3's replication limit: 16 MiB/s, so its copy takes at least (48 − 16 burst) / 16 = 2 s. */
const NODE3_LIMIT = 16 * 1024 * 1024;

describe('image replication: push on one node, held whole on all three (etcd)', { timeout: 300_000 }, () => {
  const sandbox = createSandbox();
  let ha: HaLab;

  const cli = async (on: HaNode, args: string[]): Promise<string> => {
    const r = await on.ns.exec([process.execPath, PXEHA, ...args, '--config', on.nodeFile], { timeoutMs: 120_000, allowFailure: true });
    assert.equal(r.code, 0, `pxeha ${args.join(' ')} failed:\n${r.stdout}${r.stderr}`);
    return r.stdout;
  };

  before(async () => {
    ha = await HaLab.start(sandbox, {
      nodes: 3,
      clients: 0,
      cluster: defaultHaCluster(),
      nodeFields: (i) => (i === 2 ? { images: { bandwidthBytesPerSecond: NODE3_LIMIT } } : {}),
    });
  });

  after(async () => {
    await ha?.cleanup();
    await sandbox.cleanup();
  });

  it('replicates a pushed image to every node, each chunk verified, within the bandwidth limit', async () => {
    const [n1, n2, n3] = ha.nodes as [HaNode, HaNode, HaNode];
    const draft = path.join(n1.workDir, 'draft');
    mkdirSync(path.join(draft, 'boot'), { recursive: true });
    writeFileSync(path.join(draft, 'rootfs.img'), seededBytes(7, IMAGE_BYTES));
    writeFileSync(path.join(draft, 'boot', 'vmlinuz'), seededBytes(8, 3 * 1024 * 1024 + 17));

    const pushed = JSON.parse(await cli(n1, ['images', 'push', draft, '--name', 'demo', '--channel', 'stable', '-o', 'json'])) as { id: string; stats: { chunks: number } };
    const t0 = Date.now();
    const heldAt: Record<string, number> = {};
    const status = await until(
      'every node holds the version whole',
      async () => {
        const s = await n1.api<ImagesStatus>('/api/v1/images');
        const v = s.versions.find((x) => x.id === pushed.id);
        for (const [name, h] of Object.entries(v?.holders ?? {})) if (h.state === 'held' && heldAt[name] === undefined) heldAt[name] = Date.now() - t0;
        return v && s.nodes.length === 3 && Object.values(v.holders).every((h) => h.state === 'held') ? s : undefined;
      },
      60_000,
      50, // held-at times are read to the poll
    );
    const v = status.versions.find((x) => x.id === pushed.id)!;
    assert.deepEqual(v.channels, ['stable']);
    assert.equal(v.name, 'demo');
    const mb = (IMAGE_BYTES + 3 * 1024 * 1024 + 17) / 1e6;
    console.log(`# replicated ${mb.toFixed(1)} MB in ${pushed.stats.chunks} chunks: node2 held after ${heldAt.node2} ms (${(mb / (heldAt.node2! / 1000)).toFixed(0)} MB/s), node3 (limit ${NODE3_LIMIT / 1048576} MiB/s) after ${heldAt.node3} ms`);
    // node3's copy needs at least (size − one second of burst) / limit.
    const minMs = ((IMAGE_BYTES - NODE3_LIMIT) / NODE3_LIMIT) * 1000;
    assert.ok(heldAt.node3! >= minMs, `node3 held the image after ${heldAt.node3} ms, faster than its limit allows (${minMs} ms)`);

    // Every node's matrix agrees once the membership records have reached it through its watch
    // (a node's view of its peers trails node1's by a watch delivery, so it is awaited, bounded).
    for (const n of [n2, n3]) {
      const states = async (): Promise<string[]> => {
        const own = await n.api<ImagesStatus>('/api/v1/images');
        return Object.values(own.versions.find((x) => x.id === pushed.id)?.holders ?? {}).map((h) => h.state);
      };
      await until(`${n.name}'s matrix shows the version held by all three`, async () => ((await states()).join() === 'held,held,held' ? true : undefined), 10_000);
    }
    const table = await cli(n2, ['images', 'status']);
    assert.match(table, /demo/);
    assert.match(table, /held/);
    const ls = await cli(n3, ['images', 'ls']);
    assert.match(ls, new RegExp(`demo .*${pushed.id.slice(0, 12)} .*stable .*3/3`));
  });

  it('serves chunks to peers only with the node credential (or admin)', async () => {
    const [n1, n2] = ha.nodes as [HaNode, HaNode];
    const hash = 'a'.repeat(64);
    const url = `http://${n1.ip}:8080/api/v1/chunks/${hash}`;
    const code = async (headers: string[]): Promise<string> =>
      (await n2.ns.exec(['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', ...headers.flatMap((h) => ['-H', h]), url], { timeoutMs: 10_000 })).stdout;
    assert.equal(await code([]), '401');
    assert.equal(await code(['Authorization: Bearer pxeha-node.node2.forged']), '401');
  });
});
