/**
 * Replication pipeline without the lab (no etcd, no namespaces): one sender process serving
 * POST /api/v1/chunks/batch from a chunk store on 127.0.0.1 (the route's encoding, on node:http),
 * and N receiver processes each running one Replicator pass for the version. For iterating on
 * the chunk path's CPU cost; the lab bench (bench.ts) is what the goal is measured with.
 *
 * Usage: node --import tsx bench/replication/local.ts [--size-mib 1024] [--receivers 2] [--parallel 4]
 * Environment: LOCAL_PROF=DIR writes the receivers' V8 CPU profiles there; GC_KINDS=1 prints GC
 * pauses by kind; KEEP=1 leaves the files (see the note at the end).
 */
import { fork } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import { encodeChunkBatch } from '../../src/images/chunk-batch.js';
import { ChunkStore } from '../../src/images/chunk-store.js';
import { chunkBuffer, makeCutter } from '../../src/images/chunker.js';
import { buildManifest, type ManifestRef } from '../../src/images/manifest.js';
import { ManifestCache, storeManifest } from '../../src/images/manifest-store.js';
import { httpBatchFetcher, httpChunkFetcher, Replicator } from '../../src/images/replicator.js';
import { seededBytes } from '../../src/images/test-support.js';

const MiB = 1024 * 1024;
const { values: args } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '1024' },
    receivers: { type: 'string', default: '2' },
    parallel: { type: 'string', default: '4' },
    role: { type: 'string', default: 'sender' },
    dir: { type: 'string' },
    url: { type: 'string' },
    id: { type: 'string' },
    ref: { type: 'string' },
  },
  strict: true,
});

function cpu(): { user: number; sys: number } {
  const u = process.cpuUsage();
  return { user: u.user / 1e6, sys: u.system / 1e6 };
}

/** Milliseconds spent in GC pauses (and, with GC_KINDS set, a count by kind on stderr at exit). */
function gcWatch(): () => number {
  let ms = 0;
  const kinds = new Map<number, { n: number; ms: number }>();
  if (process.env['GC_KINDS']) process.once('exit', () => console.error('gc kinds', JSON.stringify([...kinds])));
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      ms += e.duration;
      const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind ?? -1;
      const k = kinds.get(kind) ?? { n: 0, ms: 0 };
      k.n++;
      k.ms += e.duration;
      kinds.set(kind, k);
    }
  });
  obs.observe({ entryTypes: ['gc'] });
  return () => ms;
}

async function receiver(): Promise<void> {
  const chunks = await ChunkStore.open(args.dir!);
  const version = { id: args.id!, manifest: JSON.parse(args.ref!) as ManifestRef };
  const peer = { name: 'sender', baseUrl: args.url!, versions: new Set([version.id]) };
  const replicator = new Replicator({
    chunks,
    manifests: new ManifestCache(chunks),
    wanted: () => [version],
    peers: () => [peer],
    fetchChunk: httpChunkFetcher(async () => 'x'),
    fetchBatch: httpBatchFetcher(async () => 'x'),
    parallel: Number(args.parallel),
  });
  const gcMs = gcWatch();
  const c0 = cpu();
  const t0 = performance.now();
  const r = await replicator.syncOnce();
  const seconds = (performance.now() - t0) / 1000;
  const c1 = cpu();
  process.send!({ seconds, held: r.held.includes(version.id), fetched: r.fetched, rejected: r.rejected, user: c1.user - c0.user, sys: c1.sys - c0.sys, gcMs: gcMs() });
  process.disconnect();
}

async function sender(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'pxeha-local-repl-'));
  try {
    const chunks = await ChunkStore.open(join(dir, 'sender'));
    const data = seededBytes(4242, Number(args['size-mib']) * MiB);
    const refs = [];
    for (const b of chunkBuffer(data, makeCutter())) {
      const piece = data.subarray(b.offset, b.offset + b.size);
      const put = chunks.putContent(piece);
      await put.stored;
      refs.push({ hash: put.hash, size: b.size, offset: b.offset });
    }
    const { id, ref } = await storeManifest(chunks, buildManifest([{ path: 'disk.img', size: data.length, chunks: refs }]));
    const gcMs = gcWatch();
    const server = http.createServer((req, res) => {
      const parts: Buffer[] = [];
      req.on('data', (b: Buffer) => parts.push(b));
      req.on('end', () => {
        const { hashes } = JSON.parse(Buffer.concat(parts).toString()) as { hashes: string[] };
        const body = Readable.from(encodeChunkBatch(hashes, (hash) => chunks.get(hash)), { objectMode: false, highWaterMark: MiB });
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        body.pipe(res);
      });
    });
    server.keepAliveTimeout = 60_000;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    console.log(`# ${args['size-mib']} MiB in ${refs.length} chunks; ${args.receivers} receivers, parallel ${args.parallel}`);
    const c0 = cpu();
    const t0 = performance.now();
    const results = await Promise.all(
      Array.from({ length: Number(args.receivers) }, (_, i) => {
        const child = fork(new URL(import.meta.url).pathname, ['--role', 'receiver', '--dir', join(dir, `r${i}`), '--url', url, '--id', id, '--ref', JSON.stringify(ref), '--parallel', args.parallel!], {
          execArgv: ['--import', 'tsx', ...(process.env['LOCAL_PROF'] ? ['--cpu-prof', `--cpu-prof-dir=${process.env['LOCAL_PROF']}`] : [])],
        });
        return new Promise<Record<string, unknown>>((resolve, reject) => {
          child.once('message', (m) => resolve(m as Record<string, unknown>));
          child.once('exit', (code) => (code ? reject(new Error(`receiver ${i} exited ${code}`)) : undefined));
        });
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    const c1 = cpu();
    server.close();
    server.closeAllConnections();
    const f = (n: unknown): string => (n as number).toFixed(2);
    console.log(`wall ${seconds.toFixed(2)} s; sender CPU ${f(c1.user - c0.user)}+${f(c1.sys - c0.sys)} s, gc ${f(gcMs() / 1000)} s`);
    for (const r of results) console.log(`  receiver ${f(r['seconds'])} s held=${String(r['held'])} fetched ${String(r['fetched'])} rejected ${String(r['rejected'])} CPU ${f(r['user'])}+${f(r['sys'])} s, gc ${f((r['gcMs'] as number) / 1000)} s`);
  } finally {
    // KEEP=1: leave the files (deleting thousands of files makes ext4 without a journal skip
    // their inodes for the next minutes: every file the next run creates pays a scan).
    if (!process.env['KEEP']) await rm(dir, { recursive: true, force: true });
    else console.log(`# kept ${dir}`);
  }
}

await (args.role === 'receiver' ? receiver() : sender());
