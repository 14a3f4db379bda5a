/**
 * Boot artifacts served straight from the image chunk store (issue 7, serving), on three pxeha
 * nodes and a 3-member etcd in network namespaces (test/helpers/ha-lab.ts):
 *
 * - a profile on `demo@stable`: every script pins the version the channel names, and names only
 *   nodes whose membership record lists that version (node3, copying under a bandwidth limit,
 *   is never named until it holds it whole);
 * - every holder serves the kernel and initrd byte-identical to the source over HTTP (whole, and
 *   a Range across several chunks) and TFTP (curl tftp://); a sanboot profile lists every holder;
 * - a chunk corrupted on node1's disk is refused (never served), quarantined and fetched again;
 * - a channel switch and a rollback in the middle of a boot: the script rendered before pins the
 *   old version and its later fetches still get the old bytes; the next script names the new one.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ImagesStatus } from '../../src/images/status.js';
import { seededBytes } from '../../src/images/test-support.js';
import { defaultHaCluster, HaLab, type HaNode } from '../helpers/ha-lab.js';
import { REPO_ROOT, createSandbox, srcUrl } from '../helpers/netns.js';
import { until } from '../helpers/until.js';

const PXEHA = path.join(REPO_ROOT, 'bin', 'pxeha.js');
/** One chunk (under the chunker's 256 KiB minimum), so its hash is the file's SHA-256. */
const KERNEL_BYTES = 200 * 1024 + 13;
const INITRD_BYTES = 6 * 1024 * 1024 + 5;
const DISK_BYTES = 8 * 1024 * 1024;
/** node3 copies at 2 MiB/s: ~6 s for the first version, a window in which it must not be named. */
const NODE3_LIMIT = 2 * 1024 * 1024;
const DISKLESS_MAC = '02:00:00:aa:00:01';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const macOf = (i: number): string =>
  `02:00:00:bb:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`;

describe('images serving: pinned versions from the chunk store, on three nodes (etcd)', { timeout: 600_000 }, () => {
  const sandbox = createSandbox();
  let ha: HaLab;
  let n1: HaNode, n2: HaNode, n3: HaNode;
  const v1 = { kernel: seededBytes(31, KERNEL_BYTES), initrd: seededBytes(32, INITRD_BYTES), disk: seededBytes(33, DISK_BYTES) };
  const v2 = { kernel: seededBytes(41, KERNEL_BYTES), initrd: v1.initrd, disk: v1.disk };
  let id1 = '';
  let id2 = '';

  const cli = async (on: HaNode, args: string[]): Promise<string> => {
    const r = await on.ns.exec([process.execPath, PXEHA, ...args, '--config', on.nodeFile], { timeoutMs: 120_000, allowFailure: true });
    assert.equal(r.code, 0, `pxeha ${args.join(' ')} failed:\n${r.stdout}${r.stderr}`);
    return r.stdout;
  };
  const push = async (files: typeof v1, dir: string): Promise<string> => {
    const draft = path.join(n1.workDir, dir);
    mkdirSync(path.join(draft, 'boot'), { recursive: true });
    writeFileSync(path.join(draft, 'boot', 'vmlinuz'), files.kernel);
    writeFileSync(path.join(draft, 'boot', 'initrd.img'), files.initrd);
    writeFileSync(path.join(draft, 'disk.img'), files.disk);
    return (JSON.parse(await cli(n1, ['images', 'push', draft, '--name', 'demo', '--channel', 'stable', '-o', 'json'])) as { id: string })
      .id;
  };
  const holders = async (id: string): Promise<string[]> => {
    const s = await n1.api<ImagesStatus>('/api/v1/images');
    return Object.entries(s.versions.find((v) => v.id === id)?.holders ?? {})
      .filter(([, h]) => h.state === 'held')
      .map(([n]) => n)
      .sort();
  };
  const heldByAll = (id: string, timeoutMs = 60_000): Promise<true> =>
    until(
      `version ${id.slice(0, 12)} held by all three`,
      async () => ((await holders(id)).length === 3 ? true : undefined),
      timeoutMs,
      100,
    );
  /** GET from inside `from`'s namespace into a file; returns the status and the bytes. */
  const get = async (from: HaNode, url: string, extra: string[] = []): Promise<{ code: string; body: Buffer }> => {
    const out = path.join(from.workDir, `get-${Date.now()}-${Math.random().toString(36).slice(2)}`);
    const r = await from.ns.exec(['curl', '-s', '-o', out, '-w', '%{http_code}', ...extra, url], { timeoutMs: 60_000, allowFailure: true });
    return { code: r.stdout, body: existsSync(out) ? readFileSync(out) : Buffer.alloc(0) };
  };
  const script = async (mac: string, via: HaNode = n1): Promise<string> => {
    const r = await get(via, `http://${via.ip}:8080/boot.ipxe?mac=${mac}`);
    assert.equal(r.code, '200');
    return r.body.toString();
  };
  /** The URLs of one `kernel`/`initrd` line of a script, best server first. */
  const urlsOf = (text: string, command: 'kernel' | 'initrd'): string[] =>
    (text.split('\n').find((l) => l.startsWith(`${command} `)) ?? '')
      .split(' || ')
      .map((part) => part.split(' ')[1]!)
      .filter(Boolean);

  before(async () => {
    const cluster = {
      ...defaultHaCluster(),
      boot: { files: { bios: 'undionly.kpxe', efiX64: 'snponly.efi' }, defaultProfile: 'live' },
      profiles: [
        {
          name: 'live',
          image: 'demo@stable',
          boot: { kind: 'kernel', kernel: 'boot/vmlinuz', initrds: ['boot/initrd.img'], args: 'console=ttyS0' },
        },
        { name: 'diskless', image: 'demo@stable', boot: { kind: 'sanboot', disk: 'disk.img' } },
      ],
      machines: [{ name: 'thin1', mac: DISKLESS_MAC, profile: 'diskless' }],
    };
    ha = await HaLab.start(sandbox, {
      nodes: 3,
      clients: 0,
      cluster,
      nodeFields: (i) => (i === 2 ? { images: { bandwidthBytesPerSecond: NODE3_LIMIT } } : {}),
    });
    [n1, n2, n3] = ha.nodes as [HaNode, HaNode, HaNode];
  });

  after(async () => {
    await ha?.cleanup();
    await sandbox.cleanup();
  });

  it('names only nodes holding the pinned version whole; node3 only once it has caught up', async () => {
    id1 = await push(v1, 'v1');
    const t0 = Date.now();
    let scripts = 0;
    let named = 0;
    // While node3 copies under its limit, no script may name it (its record lacks the version).
    while ((await holders(id1)).length < 3) {
      for (let i = 0; i < 8; i++) {
        const text = await script(macOf(scripts++));
        const held = await holders(id1);
        if (!/^kernel /m.test(text)) continue; // nobody held it yet (the push's own node publishes within a pass)
        named++;
        assert.match(text, new RegExp(`# image demo@stable = version ${id1}`));
        for (const url of [...urlsOf(text, 'kernel'), ...urlsOf(text, 'initrd')]) {
          assert.ok(url.includes(`/images/demo/${id1}/`), url);
          // node1's matrix and its scripts read the same membership records: if the script
          // named node3, the records listed the version for it before the matrix was read.
          if (url.includes(n3.ip)) assert.ok(held.includes('node3'), `node3 named before it held the version:\n${text}`);
        }
      }
      assert.ok(Date.now() - t0 < 90_000, 'node3 never caught up');
    }
    console.log(
      `# ${scripts} scripts rendered while node3 copied (${Date.now() - t0} ms), ${named} naming holders; none named node3 before it held the version`,
    );
    assert.ok(named > 0, 'no script named a holder while node3 copied');
    // Once all hold it, the fallbacks name all three (across enough machines, node3 too).
    await until(
      'a script names node3',
      async () => ((await script(macOf(scripts++))).includes(`http://${n3.ip}:8080/images/demo/${id1}/`) ? true : undefined),
      15_000,
    );
  });

  it('every holder serves kernel and initrd byte-identical over HTTP (whole and Range) and TFTP', async () => {
    const text = await script(macOf(1000));
    const kernelPath = `images/demo/${id1}/boot/vmlinuz`;
    const initrdPath = `images/demo/${id1}/boot/initrd.img`;
    assert.ok(urlsOf(text, 'kernel').every((u) => u.endsWith(kernelPath)));
    for (const server of [n1, n2, n3]) {
      const client = server === n1 ? n2 : n1;
      const base = `http://${server.ip}:8080`;
      const kernel = await get(client, `${base}/${kernelPath}`);
      assert.equal(kernel.code, '200');
      assert.equal(sha(kernel.body), sha(v1.kernel), `kernel from ${server.name}`);
      const initrd = await get(client, `${base}/${initrdPath}`);
      assert.equal(sha(initrd.body), sha(v1.initrd), `initrd from ${server.name}`);
      // A range across several chunks (the initrd's average chunk is ~256 KiB).
      const part = await get(client, `${base}/${initrdPath}`, ['-r', '700000-3900000']);
      assert.equal(part.code, '206');
      assert.equal(sha(part.body), sha(v1.initrd.subarray(700000, 3900001)), `range from ${server.name}`);
      const tftp = await get(client, `tftp://${server.ip}/${kernelPath}`, ['--tftp-blksize', '1468']);
      assert.equal(sha(tftp.body), sha(v1.kernel), `kernel over TFTP from ${server.name}`);
    }
    // A diskless machine: one sanboot over every holder (iPXE multipath).
    const san = await script(DISKLESS_MAC);
    const sanLine = san.split('\n').find((l) => l.startsWith('sanboot '))!;
    assert.deepEqual(
      sanLine
        .split(' ')
        .filter((w) => w.startsWith('http'))
        .map((u) => new URL(u).hostname)
        .sort(),
      [n1.ip, n2.ip, n3.ip],
    );
    for (const u of sanLine.split(' ').filter((w) => w.startsWith('http'))) assert.ok(u.endsWith(`/images/demo/${id1}/disk.img`), u);
    const head = await get(n1, `http://${n2.ip}:8080/images/demo/${id1}/disk.img`, ['-r', `${DISK_BYTES - 512}-`]);
    assert.equal(sha(head.body), sha(v1.disk.subarray(DISK_BYTES - 512)));
  });

  it('a corrupt chunk on one node is refused, quarantined and fetched again; never served', async () => {
    const hash = sha(v1.kernel); // the kernel is one chunk
    const file = path.join(n1.dataDir, 'chunks', hash.slice(0, 2), hash);
    const bad = Buffer.from(readFileSync(file));
    bad[1234]! ^= 0x01;
    writeFileSync(file, bad);
    const url = `http://${n1.ip}:8080/images/demo/${id1}/boot/vmlinuz`;
    const refused = await get(n2, url);
    assert.equal(refused.code, '500');
    assert.ok(refused.body.length < 4096, 'bytes of the bad chunk were served');
    assert.match(refused.body.toString(), /PXE_ERR_CHUNK_CORRUPT/);
    assert.ok(
      readdirSync(path.join(n1.dataDir, 'chunks', 'corrupt')).some((n) => n.startsWith(hash)),
      'quarantined',
    );
    // Re-fetched from a peer: node1 holds the version whole again and serves the good bytes.
    await until(
      'node1 fetched the chunk again',
      async () => (existsSync(file) && sha(readFileSync(file)) === hash ? true : undefined),
      20_000,
      100,
    );
    await heldByAll(id1, 20_000);
    const again = await get(n2, url);
    assert.equal(again.code, '200');
    assert.equal(sha(again.body), hash);
    assert.ok(n1.logs().some((l) => l.msg === 'corrupt image chunk quarantined'));
  });

  it('a channel switch and a rollback mid-boot never mix versions within one script', async () => {
    const mac = macOf(2000);
    const before = await script(mac);
    assert.ok(urlsOf(before, 'kernel')[0]!.includes(`/images/demo/${id1}/`));
    // The machine fetched its kernel; now the channel moves to a new version.
    const k1 = await get(n2, urlsOf(before, 'kernel')[0]!);
    assert.equal(sha(k1.body), sha(v1.kernel));
    id2 = await push(v2, 'v2');
    assert.notEqual(id2, id1);
    await heldByAll(id2);
    // The rest of the first boot still fetches the version its script pinned.
    const i1 = await get(n2, urlsOf(before, 'initrd')[0]!);
    assert.equal(i1.code, '200');
    assert.equal(sha(i1.body), sha(v1.initrd));
    const k1again = await get(n3, urlsOf(before, 'kernel').at(-1)!);
    assert.equal(sha(k1again.body), sha(v1.kernel));
    // The next script names the new version, on every line.
    const afterSwitch = await until(
      'node1 renders the new version',
      async () => {
        const s = await script(mac);
        return s.includes(`version ${id2}`) ? s : undefined;
      },
      10_000,
    );
    for (const url of [...urlsOf(afterSwitch, 'kernel'), ...urlsOf(afterSwitch, 'initrd')])
      assert.ok(url.includes(`/images/demo/${id2}/`), url);
    assert.equal(sha((await get(n2, urlsOf(afterSwitch, 'kernel')[0]!)).body), sha(v2.kernel));

    // Rollback: one compare-and-set in the store; every node renders the old version again at once
    // (as soon as its watch delivers it), and a boot begun on the new version finishes on it.
    const rollback = n1.ns.spawnNodeScript(
      `import { loadNodeConfig } from ${JSON.stringify(srcUrl('src/config/load.ts'))};
       import { openStore } from ${JSON.stringify(srcUrl('src/store/open.ts'))};
       import { storeConfigOf } from ${JSON.stringify(srcUrl('src/node/node.ts'))};
       import { Catalog } from ${JSON.stringify(srcUrl('src/images/catalog.ts'))};
       const store = await openStore(storeConfigOf(await loadNodeConfig(${JSON.stringify(n1.nodeFile)})));
       const r = await new Catalog(store).rollbackChannel('demo', 'stable');
       console.log('rolled back to ' + r.record.version);
       await store.close();
       process.exit(0);`,
      { label: 'rollback demo@stable' },
    );
    await rollback.waitForLine(new RegExp(`^rolled back to ${id1}$`), { timeoutMs: 60_000 });
    await rollback.exited;
    for (const via of [n1, n2, n3]) {
      await until(
        `${via.name} renders the rolled-back version`,
        async () => ((await script(mac, via)).includes(`version ${id1}`) ? true : undefined),
        10_000,
      );
    }
    const i2 = await get(n1, urlsOf(afterSwitch, 'initrd')[0]!);
    assert.equal(sha(i2.body), sha(v2.initrd));
    const k2 = await get(n1, urlsOf(afterSwitch, 'kernel').at(-1)!);
    assert.equal(sha(k2.body), sha(v2.kernel), 'a boot begun on the new version still gets its kernel after the rollback');
  });
});
