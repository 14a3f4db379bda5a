import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ConfigError } from '../errors.js';
import {
  DEFAULT_CHUNKING,
  GEAR,
  chunkBuffer,
  chunkFile,
  chunkStream,
  makeCutter,
  sha256Hex,
  spreadMask,
  type ChunkBoundary,
  type Cutter,
} from './chunker.js';
import { pieces, seededBytes } from './test-support.js';

const small = makeCutter({ minBytes: 2048, avgBytes: 8192, maxBytes: 32768 });

/**
 * The paper's Algorithm 2 written the slow, obvious way: the Gear hash at byte i recomputed from
 * its 32-byte window (bytes before the chunk's min offset do not count), to check the rolling
 * implementation against.
 */
function naiveBoundaries(data: Uint8Array, cutter: Cutter): ChunkBoundary[] {
  const { minBytes, avgBytes, maxBytes } = cutter.params;
  const out: ChunkBoundary[] = [];
  for (let offset = 0; offset < data.length; ) {
    const n = Math.min(maxBytes, data.length - offset);
    let size = n;
    if (n > minBytes) {
      for (let i = minBytes; i < n; i++) {
        let fp = 0;
        for (let j = 0; j < 32 && i - j >= minBytes; j++) fp = (fp + (GEAR[data[offset + i - j]!]! << j)) | 0;
        const mask = i < Math.min(n, avgBytes) ? cutter.maskS : cutter.maskL;
        if ((fp & mask) === 0) {
          size = i + 1;
          break;
        }
      }
    }
    out.push({ offset, size });
    offset += size;
  }
  return out;
}

async function collect(source: AsyncIterable<{ offset: number; size: number; hash: string }>) {
  const out: { offset: number; size: number; hash: string }[] = [];
  for await (const c of source) out.push({ offset: c.offset, size: c.size, hash: c.hash });
  return out;
}

describe('FastCDC chunker', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('cuts a seeded buffer at the same golden boundaries (pins the Gear table and the masks)', () => {
    const data = seededBytes(2016, 256 * 1024);
    const got = [...chunkBuffer(data, small)].map((b) => [b.offset, b.size, sha256Hex(data.subarray(b.offset, b.offset + b.size)).slice(0, 16)]);
    assert.deepEqual(got, [
      [0, 6884, '93f45dde3c7b7b83'], [6884, 12817, '6a0a972fc85a076f'], [19701, 9653, '9759104da5bb9b21'],
      [29354, 10334, 'acfba0b62fd39aba'], [39688, 9047, 'bc02680b8215cdb6'], [48735, 7592, '3d0d2c3d62ccc4df'],
      [56327, 8480, '71a90439d070c1e7'], [64807, 8853, '2d31e88bd9b5277e'], [73660, 11066, 'f3d91ed9bedf1100'],
      [84726, 4332, '9bc142bd2143b112'], [89058, 2763, '232b36c478c4e7c3'], [91821, 10315, '8991c0f01241b063'],
      [102136, 9686, 'd6a7cedf6a737917'], [111822, 9529, '1155338651dc1dc9'], [121351, 12700, 'c002ffe01ec3995b'],
      [134051, 8381, 'a9faa513a5cb5f0f'], [142432, 10325, '4326a1a5b8ea37f5'], [152757, 10162, '1f03ad8e60cf2874'],
      [162919, 11204, '5d86e9500e5c46bf'], [174123, 9100, 'd9eb2cc53cdb57b3'], [183223, 10052, '93ac8f83006fd70e'],
      [193275, 12764, '958cf628f3e3ca8b'], [206039, 8888, 'efb87af74b90b1b8'], [214927, 9285, '583823759f81462e'],
      [224212, 10961, '22173e544e144ecd'], [235173, 10524, 'd08749c43281f1b7'], [245697, 2653, 'b93b837ec61106ca'],
      [248350, 9900, '39cd71f242011875'], [258250, 3894, 'af0ba136b572ff20'],
    ]);
    // The default parameters, on 16 MiB.
    const sizes = [...chunkBuffer(seededBytes(7, 16 << 20))].map((b) => b.size);
    assert.deepEqual(sizes, [
      341999, 368987, 264165, 284989, 204856, 330688, 354400, 283052, 173377, 265662, 107030, 210075, 286974, 309206, 291228,
      298167, 621065, 205257, 392362, 290104, 155127, 279626, 284141, 477004, 275721, 278784, 281707, 426453, 188428, 466493,
      294657, 312475, 339943, 288657, 278275, 90642, 280053, 267115, 326369, 334754, 262198, 270351, 275070, 267034, 346146,
      261985, 387304, 360967, 369200, 270295, 345626, 288334, 170518, 263970, 298245, 272673, 155669, 101564,
    ]);
  });

  it('agrees with a naive implementation of the paper’s algorithm', () => {
    const data = seededBytes(99, 128 * 1024);
    assert.deepEqual([...chunkBuffer(data, small)], naiveBoundaries(data, small));
  });

  it('spreads mask bits over the word, the top bit always set', () => {
    assert.equal(spreadMask(32), -1);
    assert.equal(spreadMask(16) >>> 0, 0xaaaaaaaa);
    for (const bits of [11, 18, 20, 22, 24]) {
      const m = spreadMask(bits) >>> 0;
      assert.equal(m.toString(2).replace(/0/g, '').length, bits);
      assert.ok(m & 0x80000000);
    }
  });

  it('keeps every chunk within [min, max] except a short last one, and tiles the input', () => {
    for (const [seed, length] of [[1, 300_000], [2, 32768], [3, 2047], [4, 0], [5, 65537]] as const) {
      const data = seededBytes(seed, length);
      const chunks = [...chunkBuffer(data, small)];
      let offset = 0;
      chunks.forEach((c, i) => {
        assert.equal(c.offset, offset);
        assert.ok(c.size <= 32768, `chunk ${i} of ${c.size} bytes is over max`);
        if (i < chunks.length - 1) assert.ok(c.size >= 2048, `chunk ${i} of ${c.size} bytes is under min`);
        offset += c.size;
      });
      assert.equal(offset, length);
    }
    // Constant data hashes to one constant: every chunk but the last has the same size.
    const zeros = [...chunkBuffer(Buffer.alloc(100_000), small)].map((c) => c.size);
    assert.equal(new Set(zeros.slice(0, -1)).size, 1, `zeros cut at ${zeros.join(',')}`);
  });

  it('cuts the same boundaries streaming, whatever the pieces it is fed, and from a file', async () => {
    const data = seededBytes(11, 400_000);
    const expected = [...chunkBuffer(data, small)].map((b) => ({ ...b, hash: sha256Hex(data.subarray(b.offset, b.offset + b.size)) }));
    for (const piece of [1, 7, 1000, 32768, 1 << 20]) {
      const input = piece === 1 ? pieces([data.subarray(0, 70_000)], 1) : pieces([data], piece);
      const want = piece === 1 ? [...chunkBuffer(data.subarray(0, 70_000), small)] : expected;
      const got = await collect(chunkStream(input, small));
      assert.deepEqual(got.map(({ offset, size }) => ({ offset, size })), want.map(({ offset, size }) => ({ offset, size })), `pieces of ${piece}`);
    }
    const dir = await mkdtemp(join(tmpdir(), 'pxeha-chunker-'));
    dirs.push(dir);
    await writeFile(join(dir, 'f'), data);
    assert.deepEqual(await collect(chunkFile(join(dir, 'f'), small)), expected);
    await writeFile(join(dir, 'empty'), '');
    assert.deepEqual(await collect(chunkFile(join(dir, 'empty'), small)), []);
  });

  it('rejects bad parameters with the path of the bad field', () => {
    assert.throws(() => makeCutter({ minBytes: 1000, avgBytes: 3000, maxBytes: 9000 }), (e: unknown) => e instanceof ConfigError && e.issues[0]!.path === '/avgBytes');
    assert.throws(() => makeCutter({ minBytes: 9000, avgBytes: 8192, maxBytes: 65536 }), (e: unknown) => e instanceof ConfigError && e.issues[0]!.path === '');
    assert.throws(() => makeCutter({ minBytes: 1024, avgBytes: 1 << 24, maxBytes: 1 << 25 }), ConfigError);
    assert.deepEqual(makeCutter().params, DEFAULT_CHUNKING);
  });

  it('shares ≥ 95% of chunk bytes between a 256 MiB file and a copy with 1% changed or inserted in 3 places', async () => {
    const size = 256 << 20;
    const original = seededBytes(20160622, size);
    const cutter = makeCutter();
    const started = performance.now();
    const base = await collect(chunkStream(pieces([original])));
    const seconds = (performance.now() - started) / 1000;
    const held = new Set(base.map((c) => c.hash));
    const places = [0.21, 0.5, 0.83].map((p) => Math.floor(size * p));
    const editBytes = Math.floor((size * 0.01) / places.length);
    const shared = (chunks: { hash: string; size: number }[]) =>
      chunks.filter((c) => held.has(c.hash)).reduce((n, c) => n + c.size, 0) / chunks.reduce((n, c) => n + c.size, 0);

    // Overwritten in place: the parts are views of the original around the new bytes.
    const overwritten: Uint8Array[] = [];
    let at = 0;
    places.forEach((p, i) => {
      overwritten.push(original.subarray(at, p), seededBytes(1000 + i, editBytes));
      at = p + editBytes;
    });
    overwritten.push(original.subarray(at));
    // Inserted: everything after each place shifts.
    const inserted: Uint8Array[] = [];
    at = 0;
    places.forEach((p, i) => {
      inserted.push(original.subarray(at, p), seededBytes(2000 + i, editBytes));
      at = p;
    });
    inserted.push(original.subarray(at));

    const overwriteShare = shared(await collect(chunkStream(pieces(overwritten), cutter)));
    const insertShare = shared(await collect(chunkStream(pieces(inserted), cutter)));
    const avgKiB = size / base.length / 1024;
    console.log(
      `# chunking 256 MiB: ${(256 / seconds).toFixed(0)} MB/s with SHA-256, ${base.length} chunks, average ${avgKiB.toFixed(0)} KiB; ` +
        `shared after 1% overwritten: ${(overwriteShare * 100).toFixed(2)}%, after 1% inserted: ${(insertShare * 100).toFixed(2)}%`,
    );
    assert.ok(overwriteShare >= 0.95, `overwrite shares ${overwriteShare}`);
    assert.ok(insertShare >= 0.95, `insertion shares ${insertShare}`);
  });
});
