/**
 * The image lifecycle (issue 7) on three pxeha nodes and a 3-member etcd in network namespaces
 * (test/helpers/ha-lab.ts), driven as an operator would, with `pxeha images …`:
 *
 * - placement first: the image is placed on 2 of the 3 nodes, chosen (by name) so that the
 *   node it is pushed to is the one left out: it must serve as the source anyway, and give
 *   its copy up only once both planned nodes hold the version;
 * - a remote push from a client namespace through the REST API (operator token), killed by PID
 *   mid-way and run again: the second push sends only the chunks the first did not;
 * - stages: promote test → production, a second version, promote, rollback, rm refused while a
 *   channel uses a version, rm of an unused one, gc freeing its chunks;
 * - exactly the two planned nodes hold the image; the third holds none of its chunks.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chunkFile } from '../../src/images/chunker.js';
import { planImageHolders } from '../../src/images/placement.js';
import type { ImagesStatus } from '../../src/images/status.js';
import { seededBytes } from '../../src/images/test-support.js';
import { defaultHaCluster, HaLab, type HaNode } from '../helpers/ha-lab.js';
import { REPO_ROOT, createSandbox } from '../helpers/netns.js';
import { until } from '../helpers/until.js';

const PXEHA = path.join(REPO_ROOT, 'bin', 'pxeha.js');
const CLIENT_IP = '10.99.200.1';
const IMAGE_BYTES = 24 * 1024 * 1024;
/** The interrupted push sends at 4 MiB/s, so it is still running when killed. */
const SLOW_PUSH = 4 * 1024 * 1024;

interface ImageDetail {
  versions: { id: string; chunks: number; channels: string[]; holders: Record<string, { state: string }> }[];
  channels: { channel: string; version: string; history: string[] }[];
  plan?: { nodes: string[] };
}

interface PushJson {
  id: string;
  created: boolean;
  stats: { chunks: number; sentChunks: number; skippedChunks: number; sentBytes: number };
}

describe('image lifecycle: remote push, stages, rm, gc, k-node placement (etcd)', { timeout: 400_000 }, () => {
  const sandbox = createSandbox();
  let ha: HaLab;
  let token: string;
  let image: string;
  let draft: string;
  const ids: { v1?: string; v2?: string; v3?: string } = {};
  let v1Chunks: string[] = [];

  const onNode = async (on: HaNode, args: string[], allowFailure = false): Promise<{ stdout: string; stderr: string; code: number }> => {
    const r = await on.ns.exec([process.execPath, PXEHA, ...args, '--config', on.nodeFile], { timeoutMs: 120_000, allowFailure: true });
    if (!allowFailure) assert.equal(r.code, 0, `pxeha ${args.join(' ')} failed:\n${r.stdout}${r.stderr}`);
    return r;
  };
  /** `pxeha …` from the client namespace, through node1's TCP API with the operator token. */
  const fromClient = async (args: string[], allowFailure = false): Promise<{ stdout: string; stderr: string; code: number }> => {
    const r = await ha.clients[0]!.exec(
      [process.execPath, PXEHA, ...args, '--server', `http://${ha.nodes[0]!.ip}:8080`, '--token', token],
      {
        timeoutMs: 120_000,
        allowFailure: true,
      },
    );
    if (!allowFailure) assert.equal(r.code, 0, `pxeha ${args.join(' ')} failed:\n${r.stdout}${r.stderr}`);
    return r;
  };
  const detail = (on: HaNode = ha.nodes[0]!): Promise<ImageDetail> => on.api<ImageDetail>(`/api/v1/images/${image}`);
  const chunkPath = (n: HaNode, hash: string): string => path.join(n.dataDir, 'chunks', hash.slice(0, 2), hash);

  before(async () => {
    ha = await HaLab.start(sandbox, { nodes: 3, clients: 1, clientAddresses: [`${CLIENT_IP}/16`], cluster: defaultHaCluster() });
    token = (await onNode(ha.nodes[0]!, ['tokens', 'create', '--role', 'operator', '--name', 'image-pusher'])).stdout.trim();
    // An image name whose two planned nodes (rendezvous over node1..3, nobody holding it yet)
    // leave out node1, the node pushed to.
    const all = ha.nodes.map((n) => ({ name: n.name }));
    image = Array.from({ length: 50 }, (_, i) => `rocky-${i}`).find(
      (name) => !planImageHolders({ image: name, placement: { replicas: 2 }, members: all }).nodes.includes('node1'),
    )!;
    draft = ha.clients[0]!.tempDir('pxt-image-draft-');
    mkdirSync(path.join(draft, 'boot'), { recursive: true });
    writeFileSync(path.join(draft, 'rootfs.img'), seededBytes(31, IMAGE_BYTES));
    writeFileSync(path.join(draft, 'boot', 'vmlinuz'), seededBytes(32, 2 * 1024 * 1024 + 5));
  });

  after(async () => {
    await ha?.cleanup();
    await sandbox.cleanup();
  });

  it('places the image on 2 nodes: the leader plans them', async () => {
    const placed = await fromClient(['images', 'place', image, '--replicas', '2']);
    assert.match(placed.stdout, /placed on 2 node/);
    const plan = await until(
      'the leader planned the placement',
      async () => ((await detail()).plan?.nodes.length === 2 ? (await detail()).plan : undefined),
      20_000,
    );
    assert.ok(!plan!.nodes.includes('node1'), `planned ${plan!.nodes.join(',')}`);
  });

  it('pushes through the API from a client, resumes after the push is killed, sending only the missing chunks', async () => {
    const proc = ha.clients[0]!.spawn(
      [
        process.execPath,
        PXEHA,
        'images',
        'push',
        draft,
        '--name',
        image,
        '--server',
        `http://${ha.nodes[0]!.ip}:8080`,
        '--token',
        token,
        '--rate-limit',
        String(SLOW_PUSH),
      ],
      { label: 'interrupted push' },
    );
    // Plain progress lines (not a TTY), one per 10%: kill it once 30% is through.
    await proc.waitForLine((l) => /\]\s+([3-9]\d)%/.test(l), { stream: 'stderr', timeoutMs: 60_000 });
    process.kill(proc.pid, 'SIGKILL');
    const status = await proc.exited;
    assert.equal(status.signal, 'SIGKILL', 'killed mid-way, not finished');
    assert.equal((await detail()).versions.length, 0, 'nothing recorded by the interrupted push');

    const r = JSON.parse(
      (await fromClient(['images', 'push', draft, '--name', image, '--channel', 'test', '-o', 'json'])).stdout,
    ) as PushJson;
    console.log(
      `# resumed push: ${r.stats.skippedChunks} of ${r.stats.chunks} chunks were on the node already, ${r.stats.sentChunks} sent`,
    );
    assert.equal(r.created, true);
    assert.ok(r.stats.skippedChunks > 0, 'chunks of the first push are not sent again');
    assert.ok(r.stats.sentChunks > 0 && r.stats.sentChunks < r.stats.chunks);
    assert.equal(r.stats.sentChunks + r.stats.skippedChunks, r.stats.chunks);
    ids.v1 = r.id;
    v1Chunks = await draftChunks();
    const again = JSON.parse((await fromClient(['images', 'push', draft, '--name', image, '-o', 'json'])).stdout) as PushJson;
    assert.deepEqual([again.id, again.created, again.stats.sentChunks], [r.id, false, 0], 'a third push sends nothing');
  });

  it('holds the image on exactly the two planned nodes; the third gives up its publisher copy at gc and holds nothing of it', async () => {
    const [n1] = ha.nodes as [HaNode, HaNode, HaNode];
    const plan = (await detail()).plan!.nodes;
    const planned = ha.nodes.filter((n) => plan.includes(n.name));
    await until(
      'both planned nodes hold the version',
      async () => {
        const s = await n1.api<ImagesStatus>('/api/v1/images');
        const v = s.versions.find((x) => x.id === ids.v1);
        return v && plan.every((n) => v.holders[n]?.state === 'held') ? true : undefined;
      },
      60_000,
    );
    // The planned nodes' own records must have reached node1 before its gc lets its copy go.
    const gc = JSON.parse((await onNode(n1, ['images', 'gc', '--grace', '0', '-o', 'json'])).stdout) as {
      deletedChunks: number;
      deletedBytes: number;
    };
    assert.ok(gc.deletedBytes >= IMAGE_BYTES, `node1 freed ${gc.deletedBytes} bytes`);
    const show = await detail();
    const manifestHashes = v1Chunks;
    for (const n of ha.nodes) {
      const held = manifestHashes.filter((h) => existsSync(chunkPath(n, h))).length;
      assert.equal(held, plan.includes(n.name) ? manifestHashes.length : 0, `${n.name} holds ${held} of ${manifestHashes.length} chunks`);
    }
    // gc on a planned node keeps what is placed there.
    const kept = JSON.parse((await onNode(planned[0]!, ['images', 'gc', '--grace', '0', '-o', 'json'])).stdout) as {
      deletedChunks: number;
    };
    assert.equal(kept.deletedChunks, 0);
    await until(
      'the matrix shows node1 as not placed',
      async () =>
        (await n1.api<ImagesStatus>('/api/v1/images')).versions.find((x) => x.id === ids.v1)?.holders.node1?.state === 'not placed'
          ? true
          : undefined,
      20_000,
    );
    assert.ok(show.versions.length === 1);
  });

  it('promotes test → production, rolls back, refuses rm of versions in use, removes an unused one and gc frees its chunks', async () => {
    const [n1] = ha.nodes as [HaNode, HaNode, HaNode];
    const promoted = await fromClient(['images', 'promote', image, '--from', 'test', '--to', 'production']);
    assert.match(promoted.stdout, new RegExp(`channel production -> ${ids.v1}`));
    // A second version: 1 MiB of the root file system rewritten.
    const rootfs = seededBytes(31, IMAGE_BYTES);
    seededBytes(33, 1024 * 1024).copy(rootfs, 8 * 1024 * 1024);
    writeFileSync(path.join(draft, 'rootfs.img'), rootfs);
    const v2 = JSON.parse(
      (await fromClient(['images', 'push', draft, '--name', image, '--channel', 'test', '-o', 'json'])).stdout,
    ) as PushJson;
    ids.v2 = v2.id;
    // node1 is not placed and gave its copy of v1 up at gc: it lacks the shared chunks too, so
    // they are sent again (a push to a planned node would send only the edited chunks).
    assert.equal(v2.stats.sentChunks + v2.stats.skippedChunks, v2.stats.chunks);
    assert.ok(v2.stats.sentChunks > 0);
    await fromClient(['images', 'promote', image, '--from', 'test', '--to', 'production']);
    let channels = (await detail()).channels;
    const production = channels.find((c) => c.channel === 'production')!;
    assert.deepEqual([production.version, production.history], [v2.id, [ids.v1]]);
    const back = await fromClient(['images', 'rollback', image, '--channel', 'production']);
    assert.match(back.stdout, new RegExp(`channel production -> ${ids.v1}`));
    channels = (await detail()).channels;
    assert.equal(channels.find((c) => c.channel === 'production')!.version, ids.v1);

    // In use: v1 by production (current) and test (history), v2 by test.
    const refused = await fromClient(['images', 'rm', image, ids.v1!], true);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /in use by channel\(s\) production, test/);
    const refused2 = await fromClient(['images', 'rm', image, ids.v2!.slice(0, 12)], true);
    assert.notEqual(refused2.code, 0);
    assert.match(refused2.stderr, /in use by channel\(s\) test/);

    // A third version on no channel: removable, and gc frees the chunks only it had.
    writeFileSync(path.join(draft, 'extra.bin'), seededBytes(34, 3 * 1024 * 1024));
    const v3 = JSON.parse((await fromClient(['images', 'push', draft, '--name', image, '-o', 'json'])).stdout) as PushJson;
    ids.v3 = v3.id;
    const removed = await fromClient(['images', 'rm', image, v3.id]);
    assert.match(removed.stdout, /removed/);
    const gc = JSON.parse((await onNode(n1, ['images', 'gc', '--grace', '0', '-o', 'json'])).stdout) as { deletedBytes: number };
    assert.ok(gc.deletedBytes >= 3 * 1024 * 1024, `gc freed ${gc.deletedBytes} bytes`);
    const show = await fromClient(['images', 'show', image]);
    assert.match(show.stdout, /production/);
    assert.doesNotMatch(show.stdout, new RegExp(v3.id));
    const one = JSON.parse((await fromClient(['images', 'show', `${image}@production`, '-o', 'json'])).stdout) as {
      id: string;
      files: { path: string }[];
    };
    assert.equal(one.id, ids.v1);
    assert.deepEqual(
      one.files.map((f) => f.path),
      ['boot/vmlinuz', 'rootfs.img'],
    );
  });

  /** Chunk hashes of the draft as it is now (the push cut it with the same default cutter). */
  async function draftChunks(): Promise<string[]> {
    const hashes = new Set<string>();
    for (const f of ['boot/vmlinuz', 'rootfs.img']) for await (const c of chunkFile(path.join(draft, f))) hashes.add(c.hash);
    return [...hashes];
  }
});
