/**
 * Real firmware boots end to end through pxeha (issue 4): SeaBIOS + the iPXE NIC ROM and OVMF's
 * own PXE client, in QEMU (TCG), on a bridge inside network namespaces, served by `pxeha serve`
 * with the examples/lab configuration. A boot passes when pxeha's API shows the callback the
 * machine's rendered script makes. Each boot prints its seconds from QEMU start to callback.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { apiGet, metricValue } from '../helpers/dhcp-client-pxeha.js';
import { createSandbox } from '../helpers/netns.js';
import { exampleCluster, QemuLab, type BootedVm } from '../helpers/qemu-lab.js';

/** Bounded waits per boot: generous, since TCG shares two cores with other work. */
const BIOS_TIMEOUT_MS = 120_000;
const UEFI_TIMEOUT_MS = 240_000;

const SCRIPT = [
  '#!ipxe',
  'echo pxeha-e2e: hello {{machine.name}} ({{mac}}) at ${net0/ip}',
  'chain {{callbackUrl}}',
  'echo pxeha-e2e: callback sent',
  'exit',
].join('\n');

const INSTALLER = [
  '#!ipxe',
  'echo pxeha-e2e: installing {{machine.name}}',
  'chain {{callbackUrl}}',
  'echo pxeha-e2e: installer done',
  'exit',
].join('\n');

const MACHINES = {
  bios: { name: 'e2e-bios', mac: '52:54:00:99:01:01', profile: 'e2e-script' },
  uefi: { name: 'e2e-uefi', mac: '52:54:00:99:01:02', profile: 'e2e-script' },
  m1: { name: 'e2e-multi-1', mac: '52:54:00:99:01:11', profile: 'e2e-script' },
  m2: { name: 'e2e-multi-2', mac: '52:54:00:99:01:12', profile: 'e2e-script' },
  m3: { name: 'e2e-multi-3', mac: '52:54:00:99:01:13', profile: 'e2e-script' },
  b1: { name: 'e2e-bios-1', mac: '52:54:00:99:01:41', profile: 'e2e-script' },
  b2: { name: 'e2e-bios-2', mac: '52:54:00:99:01:42', profile: 'e2e-script' },
  b3: { name: 'e2e-bios-3', mac: '52:54:00:99:01:43', profile: 'e2e-script' },
  u1: { name: 'e2e-uefi-1', mac: '52:54:00:99:01:51', profile: 'e2e-script' },
  u2: { name: 'e2e-uefi-2', mac: '52:54:00:99:01:52', profile: 'e2e-script' },
  u3: { name: 'e2e-uefi-3', mac: '52:54:00:99:01:53', profile: 'e2e-script' },
  install: { name: 'e2e-install', mac: '52:54:00:99:01:21', profile: 'e2e-install' },
  chain: { name: 'e2e-chain', mac: '52:54:00:99:01:31', profile: 'e2e-script' },
} as const;

/** The chainloading machine's reservation: its iPXE ROM loads undionly.kpxe by TFTP first. */
const CHAIN_RESERVATION = { mac: MACHINES.chain.mac, address: '10.99.0.31', boot: { ipxeChainFile: 'undionly.kpxe' } };

const timings: { what: string; seconds: number }[] = [];

function record(t: TestContext, what: string, seconds: number): void {
  timings.push({ what, seconds });
  t.diagnostic(`${what}: ${seconds.toFixed(1)} s from QEMU start to callback`);
}

describe('real firmware boots through pxeha (QEMU, TCG)', { timeout: 900_000 }, () => {
  const sandbox = createSandbox();
  let lab: QemuLab;

  before(async () => {
    const workDir = mkdtempSync(path.join(tmpdir(), 'pxeha-e2e-'));
    const example = exampleCluster() as { subnets: { reservations?: unknown[] }[] };
    const [lan, ...rest] = example.subnets;
    assert.ok(lan, 'examples/lab/cluster.yaml has a subnet');
    const cluster = {
      ...example,
      subnets: [{ ...lan, reservations: [...(lan.reservations ?? []), CHAIN_RESERVATION] }, ...rest],
      profiles: [
        { name: 'e2e-script', boot: { kind: 'script', script: SCRIPT } },
        { name: 'e2e-install', boot: { kind: 'script', script: INSTALLER }, once: true, localboot: 'sanboot' },
      ],
      machines: Object.values(MACHINES).map((m) => ({ ...m })),
    };
    lab = await QemuLab.create(sandbox, { workDir, cluster });
  });

  after(() => {
    if (timings.length > 0) console.log(`boot timings (QEMU start → callback):\n${timings.map((x) => `  ${x.what}: ${x.seconds.toFixed(1)} s`).join('\n')}`);
  });

  /** Boots one machine to its callback and checks its script was its own. */
  async function bootToCallback(t: TestContext, key: keyof typeof MACHINES, firmware: 'bios' | 'uefi'): Promise<{ vm: BootedVm; seconds: number }> {
    const m = MACHINES[key];
    const vm = await lab.boot(m.name, firmware, m.mac);
    const seconds = await lab.waitForCallback(vm, firmware === 'bios' ? BIOS_TIMEOUT_MS : UEFI_TIMEOUT_MS);
    await lab.waitForConsole(vm, new RegExp(`pxeha-e2e: (hello|installing) ${m.name} \\(${m.mac}\\) at 10\\.99\\.0\\.|pxeha-e2e: installing ${m.name}`), 30_000);
    const status = (await lab.machineStatus()).find((s) => s.mac === m.mac);
    assert.ok(status, `machine-status has ${m.mac}`);
    assert.equal(status.lastStage, 'done', `${m.name} recorded as done`);
    return { vm, seconds };
  }

  test('BIOS: the iPXE ROM goes straight to its HTTP script and calls back', async (t) => {
    const { vm, seconds } = await bootToCallback(t, 'bios', 'bios');
    record(t, 'BIOS, 1 client', seconds);
    await lab.stopVm(vm);
  });

  test('BIOS via TFTP: the iPXE ROM loads undionly.kpxe, whose iPXE runs the HTTP script', async (t) => {
    const { vm, seconds } = await bootToCallback(t, 'chain', 'bios');
    record(t, 'BIOS via TFTP undionly.kpxe, 1 client', seconds);
    const text = vm.console();
    assert.match(text, /Filename: undionly\.kpxe/, 'the ROM was told to load undionly.kpxe');
    assert.match(text, /using undionly on/, 'the chainloaded iPXE drives the NIC through UNDI');
    assert.equal((text.match(/undionly\.kpxe\.\.\. ok/g) ?? []).length, 1, 'undionly.kpxe loaded exactly once (no chain loop)');
    assert.match(text, /at 10\.99\.0\.31/, 'the reserved address');
    // The TFTP transfer counts as the machine's `tftp` boot stage (found by its lease's address).
    const metrics = await apiGet(lab.node.dataDir, '/metrics');
    assert.ok(metricValue(metrics, 'pxeha_boot_stage_total', { stage: 'tftp' }) >= 1, 'tftp boot stage recorded');
    await lab.stopVm(vm);
  });

  test('UEFI: OVMF PXE fetches snponly.efi by TFTP, then iPXE runs its HTTP script', async (t) => {
    const { vm, seconds } = await bootToCallback(t, 'uefi', 'uefi');
    record(t, 'UEFI, 1 client', seconds);
    const console = vm.console();
    assert.match(console, /Downloading NBP file/, 'OVMF fetched its network boot program by TFTP');
    assert.match(console, /iPXE/, 'the NBP was iPXE');
    await lab.stopVm(vm);
  });

  test('three machines at once, BIOS and UEFI mixed: each its own address and its own script', async (t) => {
    const plan = [
      ['m1', 'bios'],
      ['m2', 'uefi'],
      ['m3', 'bios'],
    ] as const;
    const boots = await Promise.all(plan.map(([key, firmware]) => bootToCallback(t, key, firmware)));
    for (const [i, [key, firmware]] of plan.entries()) record(t, `${firmware.toUpperCase()}, 3 clients (${MACHINES[key].name})`, boots[i]!.seconds);
    const leases = await lab.leases();
    const addressOf = (mac: string) => leases.filter((l) => l.mac === mac && l.state === 'bound').map((l) => l.ip);
    const addresses = plan.map(([key]) => addressOf(MACHINES[key].mac));
    for (const [i, list] of addresses.entries()) assert.ok(list.length >= 1, `${plan[i]![0]} holds a bound lease`);
    // The address each machine's own script saw (printed by its per-machine script).
    const seen = boots.map(({ vm }) => /pxeha-e2e: hello \S+ \(\S+\) at (10\.99\.0\.\d+)/.exec(vm.console())?.[1]);
    assert.equal(new Set(seen).size, 3, `three distinct addresses: ${seen.join(', ')}`);
    for (const [i, ip] of seen.entries()) assert.ok(ip && addresses[i]!.includes(ip), `${ip} is a lease of ${plan[i]![0]}`);
    await Promise.all(boots.map(({ vm }) => lab.stopVm(vm)));
  });

  for (const firmware of ['bios', 'uefi'] as const) {
    test(`three ${firmware.toUpperCase()} machines at once (timings)`, async (t) => {
      const keys = firmware === 'bios' ? (['b1', 'b2', 'b3'] as const) : (['u1', 'u2', 'u3'] as const);
      const boots = await Promise.all(keys.map((key) => bootToCallback(t, key, firmware)));
      for (const [i, key] of keys.entries()) record(t, `${firmware.toUpperCase()}, 3 clients of a kind (${MACHINES[key].name})`, boots[i]!.seconds);
      await Promise.all(boots.map(({ vm }) => lab.stopVm(vm)));
    });
  }

  test('install once: the first boot installs and calls back, the second boots the local disk', async (t) => {
    const m = MACHINES.install;
    const first = await bootToCallback(t, 'install', 'bios');
    record(t, 'BIOS, install-once first boot', first.seconds);
    assert.match(first.vm.console(), /pxeha-e2e: installing e2e-install/);
    await lab.stopVm(first.vm);
    const installed = (await lab.machineStatus()).find((s) => s.mac === m.mac);
    assert.ok(installed?.installedAtMs !== undefined, 'machine-status records the install');

    const second = await lab.start(m.name, 'bios', m.mac, first.vm.tap);
    await lab.waitForConsole(second, /pxeha: installed, booting from local disk/, BIOS_TIMEOUT_MS);
    // iPXE's sanboot of the (absent) first disk fails and the script falls through to `exit`.
    await lab.waitForConsole(second, /Booting from SAN device 0x80/, 60_000);
    const text = second.console();
    assert.doesNotMatch(text, /pxeha-e2e: installing/, 'the installer did not run again');
    await lab.stopVm(second);
  });
});
