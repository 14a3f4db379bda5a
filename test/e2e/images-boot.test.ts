/**
 * A real PXE ROM boots an image-backed profile (issue 7, serving): three pxeha nodes on a
 * 3-member etcd (test/helpers/ha-lab.ts), SeaBIOS with the iPXE NIC ROM in QEMU on the bridge.
 * The image `demo` is pushed on node1 and replicated; the profile names `demo@stable`. Its
 * "kernel" is a small iPXE script inside the image (iPXE boots any image it recognises) and its
 * initrd an 8 MiB file of the image, both fetched by iPXE from `/images/demo/<version id>/…`,
 * i.e. straight from the chunk store, Range-free. The boot passes when the machine's callback
 * arrives; the console shows every fetch named the pinned version.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import type { MachineStatus } from '../../src/boot/render.js';
import type { ImagesStatus } from '../../src/images/status.js';
import { seededBytes } from '../../src/images/test-support.js';
import { qemuArgs, readConsole, writeSerconPort } from '../../src/lab/qemu.js';
import { ENABLE_IPV6_NO_DAD_SH, routerAdvertiserArgv } from '../../src/lab/router-advertiser.js';
import { defaultHaCluster, HaLab, serverIp } from '../helpers/ha-lab.js';
import { REPO_ROOT, createSandbox } from '../helpers/netns.js';
import { until } from '../helpers/until.js';

const PXEHA = path.join(REPO_ROOT, 'bin', 'pxeha.js');
const BOOT_TIMEOUT_MS = 180_000;
const MAC = '52:54:00:99:07:01';
const SAN_MAC = '52:54:00:99:07:02';
const SAN_MESSAGE = 'pxeha-san: booted from the image disk';

/**
 * A 16 MiB disk whose boot sector prints SAN_MESSAGE through the BIOS (int 10h teletype, which
 * SeaBIOS copies to the serial console) and halts; hand-assembled, 16-bit real mode at 0:7C00.
 * At least one cylinder of iPXE's default geometry (255 heads × 63 sectors, ~7.8 MiB): a 3 MiB
 * disk has zero cylinders and its MBR read fails with EIO.
 */
function sanDisk(): Buffer {
  const disk = Buffer.alloc(16 * 1024 * 1024);
  seededBytes(78, disk.length - 512).copy(disk, 512); // the rest: many chunks of data
  // prettier-ignore
  const code = [
    0x31, 0xc0,       //       xor ax, ax
    0x8e, 0xd8,       //       mov ds, ax
    0xbe, 0x19, 0x7c, //       mov si, 0x7c19 (the message)
    0xfc,             //       cld
    0xac,             // next: lodsb
    0x84, 0xc0,       //       test al, al
    0x74, 0x09,       //       jz halt
    0xb4, 0x0e,       //       mov ah, 0x0e (teletype)
    0xbb, 0x07, 0x00, //       mov bx, 0x0007
    0xcd, 0x10,       //       int 0x10
    0xeb, 0xf2,       //       jmp next
    0xf4,             // halt: hlt
    0xeb, 0xfd,       //       jmp halt
  ];
  Buffer.from(code).copy(disk, 0);
  Buffer.from(`${SAN_MESSAGE}\r\n\0`, 'latin1').copy(disk, code.length);
  disk[510] = 0x55;
  disk[511] = 0xaa;
  return disk;
}

/** The "kernel": reports the boot complete through the machine's own callback, from any node. */
function stage2Script(): string {
  const done = [0, 1, 2].map((i) => `chain http://${serverIp(i)}:8080/machines/\${net0/mac}/files/done.ipxe`).join(' || ');
  return ['#!ipxe', 'echo pxeha-images: stage2 running', done, 'echo pxeha-images: booted', 'exit', ''].join('\n');
}

describe('a PXE ROM boots an image-backed profile from the chunk store (3 nodes, etcd, QEMU)', { timeout: 600_000 }, () => {
  const sandbox = createSandbox();
  let ha: HaLab;
  let id = '';

  before(async () => {
    const cluster = {
      ...defaultHaCluster(),
      boot: {
        files: { bios: 'undionly.kpxe', efiX64: 'snponly.efi' },
        ipxeScriptUrl: 'http://{node}:{httpPort}/boot.ipxe?mac=${net0/mac}&uuid=${uuid}&arch=${buildarch}',
        defaultProfile: 'live',
      },
      profiles: [
        {
          name: 'live',
          image: 'demo@stable',
          boot: { kind: 'kernel', kernel: 'boot/stage2.ipxe', initrds: ['boot/initrd.bin'] },
          files: { 'done.ipxe': '#!ipxe\nchain {{callbackUrl}}\n' },
        },
        { name: 'diskless', image: 'demo@stable', boot: { kind: 'sanboot', disk: 'disk.img' } },
      ],
      machines: [{ name: 'thin1', mac: SAN_MAC, profile: 'diskless' }],
    };
    ha = await HaLab.start(sandbox, { nodes: 3, clients: 0, cluster, memberTtlSeconds: 2, logLevel: 'debug' });
    const n1 = ha.nodes[0]!;
    const draft = path.join(n1.workDir, 'draft');
    mkdirSync(path.join(draft, 'boot'), { recursive: true });
    writeFileSync(path.join(draft, 'boot', 'stage2.ipxe'), stage2Script());
    writeFileSync(path.join(draft, 'boot', 'initrd.bin'), seededBytes(77, 8 * 1024 * 1024));
    writeFileSync(path.join(draft, 'disk.img'), sanDisk());
    const r = await n1.ns.exec(
      [process.execPath, PXEHA, 'images', 'push', draft, '--name', 'demo', '--channel', 'stable', '-o', 'json', '--config', n1.nodeFile],
      {
        timeoutMs: 120_000,
        allowFailure: true,
      },
    );
    assert.equal(r.code, 0, r.stdout + r.stderr);
    id = (JSON.parse(r.stdout) as { id: string }).id;
    await until(
      'every node holds the image',
      async () => {
        const s = await n1.api<ImagesStatus>('/api/v1/images');
        const v = s.versions.find((x) => x.id === id);
        return v && Object.values(v.holders).filter((h) => h.state === 'held').length === 3 ? true : undefined;
      },
      60_000,
    );
    // iPXE waits ~15 s for IPv6 autoconfiguration without router advertisements (as ha-boot).
    const srv = ha.lab.servers[0]!;
    await srv.exec([
      'sh',
      '-c',
      `${ENABLE_IPV6_NO_DAD_SH}; echo 0 > /proc/sys/net/ipv6/conf/eth0/accept_dad; echo 0 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6`,
    ]);
    const ra = srv.spawn(routerAdvertiserArgv('eth0'), { label: 'router advertiser' });
    await ra.waitForLine(/router advertisements on eth0/, { timeoutMs: 10_000 });
  });

  after(async () => {
    await ha?.cleanup();
    await sandbox.cleanup();
  });

  it('boots: kernel and initrd fetched from /images/demo/<pinned version>/, callback received', async (t) => {
    const dir = path.join(ha.nodes[0]!.workDir, 'vm');
    mkdirSync(dir, { recursive: true });
    const consoleFile = path.join(dir, 'console.log');
    const serconFile = path.join(dir, 'sercon-port');
    writeSerconPort(serconFile);
    const br = ha.lab.bridge;
    await br.ns.ip(['tuntap', 'add', 'dev', 'tap0', 'mode', 'tap']);
    await br.ns.attachToBridge('tap0', br.name);
    const startedAt = Date.now();
    const vm = br.ns.spawn(
      [
        'qemu-system-x86_64',
        '-name',
        'images-vm',
        ...qemuArgs({ firmware: 'bios', mac: MAC, tap: 'tap0', consoleFile, serconFile, rebootTimeoutMs: 1000 }),
      ],
      {
        label: `qemu images-vm (bios, ${MAC})`,
      },
    );
    try {
      let done: MachineStatus | undefined;
      while (Date.now() - startedAt < BOOT_TIMEOUT_MS && !vm.status) {
        const all = await ha.nodes[0]!.api<MachineStatus[]>('/api/v1/machine-status').catch(() => []);
        done = all.find((s) => s.mac === MAC && s.lastStage === 'done');
        if (done) break;
        await sleep(250);
      }
      const settle = Date.now() + 15_000;
      while (Date.now() < settle && !/pxeha-images: booted/.test(readConsole(consoleFile))) await sleep(100);
      const text = readConsole(consoleFile);
      assert.ok(done, `no callback\n${text.slice(-6000)}\n${vm.describe(1000)}`);
      // The serial console wraps at 80 columns, which splits the long pinned URLs: unwrap first.
      const unwrapped = text.replace(/\r/g, '').replace(/^(.{80})\n/gm, '$1');
      const fetches = [
        ...unwrapped.matchAll(/http:\/\/(10\.99\.0\.\d+):8080\/images\/demo\/([0-9a-f]{64})\/(boot\/\S+)\.\.\. (ok|\S+)/g),
      ].map((m) => ({ server: m[1], version: m[2], file: m[3], outcome: m[4] }));
      t.diagnostic(
        `callback at ${done.lastNode} after ${(((done.lastStageMs ?? Date.now()) - startedAt) / 1000).toFixed(1)} s; fetches: ${fetches.map((f) => `${f.server} ${f.file} ${f.outcome}`).join(', ')}`,
      );
      assert.match(text, /pxeha-images: stage2 running/);
      assert.ok(
        fetches.some((f) => f.file === 'boot/stage2.ipxe' && f.outcome === 'ok'),
        text.slice(-3000),
      );
      assert.ok(
        fetches.some((f) => f.file === 'boot/initrd.bin' && f.outcome === 'ok'),
        text.slice(-3000),
      );
      assert.ok(
        fetches.every((f) => f.version === id),
        'every fetch names the pinned version',
      );
    } finally {
      await vm.stop(2000);
    }
  });

  it('sanboots a disk of the image over HTTP Range, every holder listed as one multipath drive', async (t) => {
    const dir = path.join(ha.nodes[0]!.workDir, 'san-vm');
    mkdirSync(dir, { recursive: true });
    const consoleFile = path.join(dir, 'console.log');
    const serconFile = path.join(dir, 'sercon-port');
    writeSerconPort(serconFile);
    const br = ha.lab.bridge;
    await br.ns.ip(['tuntap', 'add', 'dev', 'tap1', 'mode', 'tap']);
    await br.ns.attachToBridge('tap1', br.name);
    const startedAt = Date.now();
    const vm = br.ns.spawn(
      [
        'qemu-system-x86_64',
        '-name',
        'san-vm',
        ...qemuArgs({ firmware: 'bios', mac: SAN_MAC, tap: 'tap1', consoleFile, serconFile, rebootTimeoutMs: 1000 }),
      ],
      {
        label: `qemu san-vm (bios, ${SAN_MAC})`,
      },
    );
    try {
      const ended = (text: string): boolean => text.includes(SAN_MESSAGE) || /Boot from SAN device \S+ failed/.test(text);
      while (Date.now() - startedAt < BOOT_TIMEOUT_MS && !vm.status && !ended(readConsole(consoleFile))) await sleep(250);
      const text = readConsole(consoleFile);
      const requests = ha.nodes.flatMap((n) =>
        n
          .logs()
          .filter((l) => l.msg === 'image file request' || /image file/.test(String(l.msg)))
          .map((l) => `${n.name} ${JSON.stringify(l)}`),
      );
      assert.ok(text.includes(SAN_MESSAGE), `the disk's boot sector never ran\n${text.slice(-3000)}\n${requests.slice(-30).join('\n')}`);
      t.diagnostic(`boot sector ran after ${((Date.now() - startedAt) / 1000).toFixed(1)} s`);
      // The disk was read by Range requests (iPXE's HTTP block device), served from the chunks.
      const ranges = requests.filter((r) => r.includes('disk.img') && r.includes('"status":206'));
      assert.ok(ranges.length >= 1, requests.join('\n'));
      t.diagnostic(
        `disk reads: ${ranges.length} Range requests, e.g. ${ranges
          .slice(0, 2)
          .map((r) => /"range":"([^"]+)"/.exec(r)?.[1])
          .join(', ')}`,
      );
      // Every node holds the version: the script names all three as paths of one SAN drive.
      const n1 = ha.nodes[0]!;
      const script = (await n1.ns.exec(['curl', '-s', `http://${n1.ip}:8080/boot.ipxe?mac=${SAN_MAC}`], { timeoutMs: 10_000 })).stdout;
      const sanLine = script.split('\n').find((l) => l.startsWith('sanboot ')) ?? '';
      assert.deepEqual(
        sanLine
          .split(' ')
          .filter((w) => w.startsWith('http://'))
          .map((u) => new URL(u).hostname)
          .sort(),
        [serverIp(0), serverIp(1), serverIp(2)],
        script,
      );
      assert.ok(
        sanLine
          .split(' ')
          .filter((w) => w.startsWith('http://'))
          .every((u) => u.endsWith(`/images/demo/${id}/disk.img`)),
        sanLine,
      );
    } finally {
      await vm.stop(2000);
    }
  });
});
