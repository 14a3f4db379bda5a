/**
 * Issue 7 acceptance: image replication on three pxeha nodes and a 3-member etcd in network
 * namespaces (test/helpers/ha-lab.ts).
 *
 * (a) A 1 GiB image pushed on node1 with channel `stable` becomes held whole on node2 and node3,
 *     every chunk re-hashed by the receiving chunk store; each peer fetched exactly the image's
 *     bytes (pxeha_image_bytes_fetched_total). Prints the time and MB/s.
 * (b) A chunk file flipped on node2's disk is refused on read (no byte of it is returned), moved
 *     to chunks/corrupt/, and node2 fetches it again from a peer and holds the version whole;
 *     the file on disk then hashes to its name.
 * (c) node3, slowed by a bandwidth limit, is killed with SIGKILL part-way through a 256 MiB
 *     image and restarted: it fetches exactly the chunks that were not on its disk, and holds
 *     the version whole.
 * (d) A new version of that 256 MiB file with 1% overwritten in 3 places (as the chunker test)
 *     costs each peer a few percent of the file (asserted < 10%; the figure is printed).
 *
 * "Bytes fetched" is the node's own count of chunk payload bytes it fetched, verified and stored
 * (GET /metrics), read before and after; a restarted node counts from zero.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { assembleManifest, type Manifest, type ManifestRef } from '../../src/images/manifest.js';
import type { ImagesStatus } from '../../src/images/status.js';
import { seededBytes } from '../../src/images/test-support.js';
import { apiGet } from '../helpers/dhcp-client-pxeha.js';
import { defaultHaCluster, HaLab, type HaNode } from '../helpers/ha-lab.js';
import { REPO_ROOT, createSandbox } from '../helpers/netns.js';
import { until } from '../helpers/until.js';

const PXEHA = path.join(REPO_ROOT, 'bin', 'pxeha.js');
const MiB = 1024 * 1024;
const BIG_BYTES = 1024 * MiB;
const DELTA_BYTES = 256 * MiB;
/** node3's limit in (c): 24 MiB/s, so 256 MiB takes ~10 s and there is time to kill it part-way. */
const SLOW_LIMIT = 24 * MiB;

describe('issue 7 acceptance: replication of large images on three nodes (etcd)', { timeout: 900_000 }, () => {
  const sandbox = createSandbox();
  let ha: HaLab;

  const cli = async (on: HaNode, args: string[]): Promise<string> => {
    const r = await on.ns.exec([process.execPath, PXEHA, ...args, '--config', on.nodeFile], { timeoutMs: 300_000, allowFailure: true });
    assert.equal(r.code, 0, `pxeha ${args.join(' ')} failed:\n${r.stdout}${r.stderr}`);
    return r.stdout;
  };
  const push = async (on: HaNode, dir: string, name: string): Promise<{ id: string; seconds: number; stats: { chunks: number; bytes: number } }> => {
    const t0 = performance.now();
    const out = JSON.parse(await cli(on, ['images', 'push', dir, '--name', name, '--channel', 'stable', '-o', 'json'])) as { id: string; stats: { chunks: number; bytes: number } };
    return { ...out, seconds: (performance.now() - t0) / 1000 };
  };
  /** The version's manifest: its record in etcd names its pages, read from node1's chunk store and proven to be the version. */
  const refOf = async (name: string, id: string): Promise<ManifestRef> => {
    const { stdout } = await ha.etcdctl(0, ['get', `/pxeha/images/${name}/versions/${id}`, '--print-value-only']);
    return (JSON.parse(stdout) as { manifest: ManifestRef }).manifest;
  };
  const manifestOf = async (name: string, id: string): Promise<Manifest> => {
    const ref = await refOf(name, id);
    return assembleManifest(id, ref, ref.pages.map((h) => readFileSync(chunkFile(ha.nodes[0]!, h))));
  };
  const uniqueChunks = (m: Manifest): Map<string, number> => new Map(m.files.flatMap((f) => f.chunks.map((c) => [c.hash, c.size] as const)));
  const chunkFile = (n: HaNode, hash: string): string => path.join(n.dataDir, 'chunks', hash.slice(0, 2), hash);
  /** Sum of a metric's samples over its labels (0 when absent). */
  const metric = async (n: HaNode, name: string): Promise<number> => {
    const text = await apiGet(n.dataDir, '/metrics');
    let sum = 0;
    for (const line of text.split('\n')) {
      const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+]+)$`).exec(line);
      if (m) sum += Number(m[1]);
    }
    return sum;
  };
  const fetchedBytes = (n: HaNode): Promise<number> => metric(n, 'pxeha_image_bytes_fetched_total');
  /** Waits until every node's record says it holds `id` whole; returns ms from t0 per node. */
  const heldEverywhere = async (id: string, t0: number, timeoutMs: number): Promise<Record<string, number>> => {
    const heldAt: Record<string, number> = {};
    await until(
      `every node holds ${id.slice(0, 12)} whole`,
      async () => {
        const s = await ha.nodes[0]!.api<ImagesStatus>('/api/v1/images');
        const v = s.versions.find((x) => x.id === id);
        for (const [name, h] of Object.entries(v?.holders ?? {})) if (h.state === 'held' && heldAt[name] === undefined) heldAt[name] = performance.now() - t0;
        return v && s.nodes.length === 3 && Object.values(v.holders).every((h) => h.state === 'held') ? true : undefined;
      },
      timeoutMs,
      50,
    );
    return heldAt;
  };
  /** Writes `parts` to `file` one after another, streaming (a 1 GiB file never sits in memory). */
  const writeParts = async (file: string, parts: Iterable<Uint8Array>): Promise<void> => {
    const out = createWriteStream(file);
    for (const part of parts) if (!out.write(part)) await once(out, 'drain');
    out.end();
    await once(out, 'finish');
  };
  const setLimit = (n: HaNode, bytesPerSecond: number | undefined): void => {
    const config = JSON.parse(readFileSync(n.nodeFile, 'utf8')) as Record<string, unknown>;
    if (bytesPerSecond === undefined) delete config.images;
    else config.images = { bandwidthBytesPerSecond: bytesPerSecond };
    writeFileSync(n.nodeFile, `${JSON.stringify(config, null, 2)}\n`);
  };

  before(async () => {
    ha = await HaLab.start(sandbox, { nodes: 3, clients: 0, cluster: defaultHaCluster() });
  });

  after(async () => {
    await ha?.cleanup();
    await sandbox.cleanup();
  });

  let bigId = '';
  let bigManifest: Manifest;

  it('(a) a 1 GiB image pushed on node1 is held whole, verified, on node2 and node3', { timeout: 600_000 }, async () => {
    const [n1, n2, n3] = ha.nodes as [HaNode, HaNode, HaNode];
    const draft = path.join(n1.workDir, 'draft-big');
    mkdirSync(draft, { recursive: true });
    const piece = 64 * MiB;
    await writeParts(path.join(draft, 'rootfs.img'), (function* () {
      for (let i = 0; i < BIG_BYTES / piece; i++) yield seededBytes(100 + i, piece);
    })());
    const before2 = await fetchedBytes(n2);
    const before3 = await fetchedBytes(n3);

    const pushed = await push(n1, draft, 'big');
    bigId = pushed.id;
    const t0 = performance.now();
    const heldAt = await heldEverywhere(pushed.id, t0, 480_000);
    bigManifest = await manifestOf('big', pushed.id);
    const chunks = uniqueChunks(bigManifest);
    const imageBytes = [...chunks.values()].reduce((a, b) => a + b, 0);
    assert.equal(imageBytes, BIG_BYTES);
    const mb = BIG_BYTES / 1e6;
    const last = Math.max(heldAt.node2!, heldAt.node3!);
    console.log(
      `(a) pushed ${mb.toFixed(0)} MB (${chunks.size} chunks) on node1 in ${pushed.seconds.toFixed(1)} s; ` +
        `held whole on node2 after ${(heldAt.node2! / 1000).toFixed(1)} s, node3 after ${(heldAt.node3! / 1000).toFixed(1)} s ` +
        `(both peers: ${((2 * mb) / (last / 1000)).toFixed(0)} MB/s out of node1, ${(mb / (last / 1000)).toFixed(0)} MB/s per peer)`,
    );
    // Each peer fetched every chunk once, and only that (its own count of verified, stored bytes),
    // plus the version's manifest pages (fetched like chunks, before them).
    const manifestBytes = (await refOf('big', pushed.id)).bytes;
    for (const [n, before] of [[n2, before2], [n3, before3]] as const) {
      assert.equal((await fetchedBytes(n)) - before, imageBytes + manifestBytes, `${n.name} fetched the image's bytes and its manifest once`);
      assert.equal(await metric(n, 'pxeha_image_chunks_rejected_total'), 0, `${n.name} had no fetch refused`);
      // On disk, whole: every chunk present, with its size (its hash was checked by put).
      for (const [hash, size] of chunks) assert.equal(readFileSync(chunkFile(n, hash)).length, size);
    }
  });

  it('(b) a chunk corrupted on node2\'s disk is refused, quarantined and fetched again', { timeout: 180_000 }, async () => {
    assert.ok(bigId, 'needs (a)');
    const [, n2] = ha.nodes as [HaNode, HaNode, HaNode];
    const [hash, size] = [...uniqueChunks(bigManifest)][Math.floor(uniqueChunks(bigManifest).size / 2)]!;
    const file = chunkFile(n2, hash);
    const good = readFileSync(file);
    assert.equal(good.length, size);
    // Flip 16 bytes in the middle, as bit rot or a hand edit would.
    const bad = Buffer.from(good);
    for (let i = 0; i < 16; i++) bad[(size >> 1) + i] = bad[(size >> 1) + i]! ^ 0xff;
    writeFileSync(file, bad);
    const corruptBefore = await metric(n2, 'pxeha_image_chunks_corrupt_total');

    // A read of it (as a peer's fetch would be; the Unix socket is the admin's) is refused, and
    // no byte of the bad file is in the answer.
    const answer = await getRaw(n2.dataDir, `/api/v1/chunks/${hash}`);
    assert.notEqual(answer.status, 200, 'a corrupt chunk is never served');
    assert.ok(answer.body.length < 4096, `the refusal is an error envelope (${answer.body.length} bytes)`);
    assert.equal(answer.body.indexOf(bad.subarray((size >> 1) - 32, (size >> 1) + 48)), -1);
    assert.match(answer.body.toString('utf8'), /PXE_ERR_CHUNK_CORRUPT/);
    assert.equal(await metric(n2, 'pxeha_image_chunks_corrupt_total'), corruptBefore + 1);
    const quarantined = readdirSync(path.join(n2.dataDir, 'chunks', 'corrupt')).filter((f) => f.startsWith(hash));
    assert.equal(quarantined.length, 1, 'moved to chunks/corrupt/');

    // node2 fetches it again from a peer and holds the version whole again; the file now hashes to its name.
    const t0 = performance.now();
    await until(
      'node2 holds the chunk again',
      async () => (existsSync(file) && createHash('sha256').update(readFileSync(file)).digest('hex') === hash ? true : undefined),
      60_000,
      50,
    );
    await heldEverywhere(bigId, t0, 60_000);
    assert.ok(readFileSync(file).equals(good), 'the re-fetched chunk is the good bytes');
    const again = await getRaw(n2.dataDir, `/api/v1/chunks/${hash}`);
    assert.equal(again.status, 200);
    assert.ok(again.body.equals(good));
    console.log(`(b) corrupt chunk refused (HTTP ${answer.status}), quarantined, re-fetched and held whole after ${(performance.now() - t0).toFixed(0)} ms`);
  });

  let deltaId = '';
  let deltaBase: Buffer;

  it('(c) a node killed part-way through a 256 MiB image resumes where it stopped', { timeout: 300_000 }, async () => {
    const [n1, n2, n3] = ha.nodes as [HaNode, HaNode, HaNode];
    // node3 runs with a bandwidth limit, so its copy takes long enough to be interrupted.
    setLimit(n3, SLOW_LIMIT);
    await ha.restart(2);
    await ha.waitMembers(3);
    await heldEverywhere(bigId, performance.now(), 60_000); // node3 advertises what it holds again

    deltaBase = seededBytes(20160622, DELTA_BYTES);
    const draft = path.join(n1.workDir, 'draft-delta-1');
    mkdirSync(draft, { recursive: true });
    writeFileSync(path.join(draft, 'disk.img'), deltaBase);
    const pushed = await push(n1, draft, 'delta');
    deltaId = pushed.id;
    const chunks = uniqueChunks(await manifestOf('delta', pushed.id));
    const total = [...chunks.values()].reduce((a, b) => a + b, 0);

    // Killed once it has fetched about 40% (its own count), well before the end.
    const before3 = await fetchedBytes(n3);
    await until('node3 has fetched 40% of the image', async () => ((await fetchedBytes(n3)) - before3 >= 0.4 * total ? true : undefined), 120_000, 50);
    await ha.kill(2);
    const onDisk = [...chunks].filter(([hash]) => existsSync(chunkFile(n3, hash)));
    const heldBytes = onDisk.reduce((a, [, size]) => a + size, 0);
    const remaining = total - heldBytes;
    assert.ok(heldBytes > 0.3 * total && remaining > 0.1 * total, `killed part-way: ${heldBytes} of ${total} bytes on disk`);

    // Restarted (without the limit): it fetches what was missing and nothing it already had.
    setLimit(n3, undefined);
    const t0 = performance.now();
    await n3.start();
    await heldEverywhere(pushed.id, t0, 120_000);
    const after = await fetchedBytes(n3); // a new process: counted from zero
    console.log(
      `(c) node3 killed with ${(heldBytes / MiB).toFixed(1)} of ${(total / MiB).toFixed(0)} MiB on disk (${onDisk.length}/${chunks.size} chunks); ` +
        `after restart it fetched ${(after / MiB).toFixed(1)} MiB (missing: ${(remaining / MiB).toFixed(1)} MiB) and held the version after ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
    assert.equal(after, remaining, 'after the restart node3 fetched exactly the chunks not on its disk');
    for (const [hash, size] of chunks) assert.equal(readFileSync(chunkFile(n3, hash)).length, size);
    assert.equal(await metric(n2, 'pxeha_image_chunks_rejected_total'), 0);
  });

  it('(d) a version with 1% changed in 3 places costs each peer a few percent of 256 MiB', { timeout: 300_000 }, async () => {
    assert.ok(deltaId, 'needs (c)');
    const [n1, n2, n3] = ha.nodes as [HaNode, HaNode, HaNode];
    const places = [0.21, 0.5, 0.83].map((p) => Math.floor(DELTA_BYTES * p));
    const editBytes = Math.floor((DELTA_BYTES * 0.01) / places.length);
    const edited = Buffer.from(deltaBase);
    places.forEach((p, i) => seededBytes(1000 + i, editBytes).copy(edited, p));
    const draft = path.join(n1.workDir, 'draft-delta-2');
    mkdirSync(draft, { recursive: true });
    writeFileSync(path.join(draft, 'disk.img'), edited);

    const before = { node2: await fetchedBytes(n2), node3: await fetchedBytes(n3) };
    const pushed = await push(n1, draft, 'delta');
    assert.notEqual(pushed.id, deltaId);
    const t0 = performance.now();
    const heldAt = await heldEverywhere(pushed.id, t0, 120_000);
    const oldChunks = uniqueChunks(await manifestOf('delta', deltaId));
    const newChunks = uniqueChunks(await manifestOf('delta', pushed.id));
    const changedBytes = [...newChunks].filter(([h]) => !oldChunks.has(h)).reduce((a, [, s]) => a + s, 0);
    // The new version's manifest pages are fetched too (before its chunks).
    const manifestBytes = (await refOf('delta', pushed.id)).bytes;
    const lines: string[] = [];
    for (const n of [n2, n3]) {
      const fetched = (await fetchedBytes(n)) - before[n.name as 'node2' | 'node3'];
      lines.push(`${n.name} fetched ${(fetched / MiB).toFixed(2)} MiB = ${((fetched / DELTA_BYTES) * 100).toFixed(2)}% (held after ${(heldAt[n.name]! / 1000).toFixed(1)} s)`);
      assert.equal(fetched, changedBytes + manifestBytes, `${n.name} fetched exactly the new chunks and the manifest`);
      assert.ok(fetched < 0.1 * DELTA_BYTES, `${n.name} fetched ${fetched} bytes for a 1% change`);
    }
    console.log(`(d) 1% of ${DELTA_BYTES / MiB} MiB overwritten in 3 places (${(3 * editBytes / MiB).toFixed(2)} MiB): new chunks ${(changedBytes / MiB).toFixed(2)} MiB + manifest ${(manifestBytes / 1024).toFixed(0)} KiB; ${lines.join('; ')}`);
  });
});

/** GET over the node's Unix socket (local root: admin), body as bytes whatever the status. */
function getRaw(dataDir: string, urlPath: string): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ socketPath: path.join(dataDir, 'pxeha.sock'), path: urlPath, timeout: 10_000 }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (b: Buffer) => parts.push(b));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${urlPath} timed out`)));
    req.on('error', reject);
  });
}
