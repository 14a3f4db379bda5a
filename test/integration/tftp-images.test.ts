/**
 * Pinned image files over TFTP on loopback (no namespace needed): `images/<name>/<version>/<path>`
 * is read straight from the chunk store through one verified stream per transfer, so each chunk
 * is read once per transfer whatever the block size; a version not held is "file not found"
 * (the client tries its next server); a corrupt chunk ends the transfer with an ERROR before any
 * of its bytes are sent, and is quarantined.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sha256Hex } from '../../src/images/chunker.js';
import { ChunkStore } from '../../src/images/chunk-store.js';
import { buildManifest, manifestId, type ChunkRef, type Manifest, type ManifestFile } from '../../src/images/manifest.js';
import { seededBytes } from '../../src/images/test-support.js';
import { startTftpServer, type TftpServer } from '../../src/tftp/server.js';
import { fetch as tftpFetch, TftpClientError } from '../helpers/tftp-client.js';

const CHUNK = 64 * 1024;

async function storeFile(chunks: ChunkStore, path: string, data: Buffer): Promise<ManifestFile> {
  const refs: ChunkRef[] = [];
  for (let offset = 0; offset < data.length; offset += CHUNK) {
    const bytes = data.subarray(offset, Math.min(data.length, offset + CHUNK));
    const hash = sha256Hex(bytes);
    await chunks.put(hash, bytes);
    refs.push({ hash, size: bytes.length, offset });
  }
  return { path, size: data.length, chunks: refs };
}

describe('TFTP: pinned image files from the chunk store (loopback)', () => {
  let dir: string;
  let chunks: ChunkStore;
  let server: TftpServer;
  let manifest: Manifest;
  let version: string;
  const held = new Set<string>();
  const reads: string[] = [];
  const kernel = seededBytes(21, 10 * CHUNK + 777);
  const other = seededBytes(22, 3 * CHUNK);

  before(async () => {
    dir = await realpath(await mkdtemp(join(tmpdir(), 'pxeha-tftp-images-')));
    await mkdir(join(dir, 'artifacts'));
    chunks = await ChunkStore.open(dir);
    manifest = buildManifest([await storeFile(chunks, 'boot/vmlinuz', kernel), await storeFile(chunks, 'other.img', other)]);
    version = manifestId(manifest);
    held.add(version);
    const get = chunks.get.bind(chunks);
    chunks.get = async (hash, size) => {
      reads.push(hash);
      return get(hash, size);
    };
    server = await startTftpServer({
      root: join(dir, 'artifacts'),
      port: 0,
      address: '127.0.0.1',
      images: { held: () => held, manifestOf: (name, id) => (name === 'demo' && id === version ? manifest : undefined), chunks },
    });
  });
  after(async () => {
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const file = (path: string): string => `images/demo/${version}/${path}`;

  for (const [blksize, windowsize] of [
    [512, 1],
    [1468, 8],
  ] as const) {
    it(`serves a file byte-identical, each chunk read once (blksize ${blksize}, windowsize ${windowsize})`, async () => {
      reads.length = 0;
      const got = await tftpFetch({
        host: '127.0.0.1',
        port: server.port,
        file: `/${file('boot/vmlinuz')}`,
        blksize,
        windowsize,
        tsize: true,
      });
      assert.equal(got.bytes, kernel.length);
      assert.equal(got.sha256, createHash('sha256').update(kernel).digest('hex'));
      assert.equal(got.oack['tsize'], String(kernel.length));
      assert.deepEqual(
        reads,
        manifest.files.find((f) => f.path === 'boot/vmlinuz')!.chunks.map((c) => c.hash),
      );
    });
  }

  it('refuses a version not held as "file not found", and a channel in the path as an access violation', async () => {
    held.delete(version);
    try {
      await assert.rejects(
        tftpFetch({ host: '127.0.0.1', port: server.port, file: file('boot/vmlinuz') }),
        (err: TftpClientError) => err.code === 1 && /whole/.test(err.message),
      );
    } finally {
      held.add(version);
    }
    await assert.rejects(
      tftpFetch({ host: '127.0.0.1', port: server.port, file: 'images/demo/stable/boot/vmlinuz' }),
      (err: TftpClientError) => err.code === 2,
    );
  });

  it('ends the transfer at a corrupt chunk, sends none of its bytes, quarantines it', async () => {
    const victim = manifest.files.find((f) => f.path === 'other.img')!.chunks[1]!;
    const bad = Buffer.from(other.subarray(victim.offset, victim.offset + victim.size));
    bad[0]! ^= 0x80;
    await writeFile(chunks.pathOf(victim.hash), bad);
    await assert.rejects(
      tftpFetch({ host: '127.0.0.1', port: server.port, file: file('other.img'), blksize: 1468 }),
      (err: TftpClientError) => err.code === 0,
    );
    assert.equal((await readdir(join(dir, 'chunks', 'corrupt'))).filter((n) => n.startsWith(victim.hash)).length, 1);
    assert.equal(await chunks.has(victim.hash), false);
  });
});
