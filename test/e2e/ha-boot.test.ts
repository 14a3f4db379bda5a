/**
 * A real PXE ROM boots through a pxeha cluster while the node it was sent to dies (issue 6,
 * "next-server and boot failover"): three pxeha nodes on a 3-member etcd (test/helpers/ha-lab.ts),
 * SeaBIOS with the iPXE NIC ROM in QEMU on the same bridge.
 *
 * The machine's profile is a kernel profile whose "kernel" is a small iPXE script (iPXE boots any
 * image it recognises) and whose initrd is 48 MiB, so a fetch is under way for a few seconds.
 * Every node holds both files; the machine's MAC is picked so that node2 is its designated DHCP
 * node and so its boot server. As soon as node2 has served the machine's script (machine status
 * stage `script`), node2 is killed with SIGKILL. The script names every file on each holder in
 * turn (`kernel a || kernel b || kernel c`), so the boot goes on from the runner-up and the
 * machine's callback arrives at another node.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it, type TestContext } from 'node:test';
import type { MachineStatus } from '../../src/boot/render.js';
import { bucketOfMac, rankFor } from '../../src/dhcp/designation.js';
import { qemuArgs, readConsole, writeSerconPort } from '../../src/lab/qemu.js';
import { ENABLE_IPV6_NO_DAD_SH, routerAdvertiserArgv } from '../../src/lab/router-advertiser.js';
import { defaultHaCluster, HaLab, serverIp } from '../helpers/ha-lab.js';
import { apiGet, metricValue } from '../helpers/dhcp-client-pxeha.js';
import { createSandbox } from '../helpers/netns.js';

const NODES = ['node1', 'node2', 'node3'];
const DOOMED = 'node2';
const BOOT_TIMEOUT_MS = 180_000;

/** The first lab MAC whose bucket node2 owns among three equal nodes, and whose runner-up is node3. */
function macOwnedBy(owner: string, runnerUp: string, nth: number): string {
  const members = NODES.map((name) => ({ name, weight: 100 }));
  for (let i = 0; i < 4096; i++) {
    const mac = `52:54:00:99:${(0x0a + (i >> 8)).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`;
    const ranked = rankFor(bucketOfMac(mac), members).map((m) => m.name);
    if (ranked[0] === owner && ranked[1] === runnerUp && nth-- === 0) return mac;
  }
  throw new Error(`no MAC found for ${owner}`);
}

/**
 * The "kernel": an iPXE script that reports the boot complete to whichever node answers. It is
 * the same file for every machine, so it fetches the machine's own callback (a per-machine file
 * of the profile, whose callback URL carries the machine's token) from each node in turn.
 */
function stage2Script(): string {
  const done = NODES.map((_, i) => `chain http://${serverIp(i)}:8080/machines/\${net0/mac}/files/done.ipxe`).join(' || ');
  return ['#!ipxe', 'echo pxeha-ha: stage2 running', done, 'echo pxeha-ha: booted', 'exit', ''].join('\n');
}

describe('a PXE ROM boots while its boot server is killed (3 nodes, etcd, QEMU)', { timeout: 600_000 }, () => {
  const sandbox = createSandbox();
  let ha: HaLab;
  const initrd = randomBytes(48 * 1024 * 1024);
  let taps = 0;

  before(async () => {
    const cluster = {
      ...defaultHaCluster(),
      boot: {
        files: { bios: 'undionly.kpxe', efiX64: 'snponly.efi' },
        ipxeScriptUrl: 'http://{node}:{httpPort}/boot.ipxe?mac=${net0/mac}&uuid=${uuid}&arch=${buildarch}',
        defaultProfile: 'ha-kernel',
      },
      profiles: [
        {
          name: 'ha-kernel',
          boot: { kind: 'kernel', kernel: 'ha/stage2.ipxe', initrds: ['ha/initrd.bin'] },
          files: { 'done.ipxe': '#!ipxe\nchain {{callbackUrl}}\n' },
        },
      ],
    };
    ha = await HaLab.start(sandbox, {
      nodes: 3,
      clients: 0,
      cluster,
      memberTtlSeconds: 2,
      logLevel: 'debug',
      artifacts: () => ({ 'ha/stage2.ipxe': stage2Script(), 'ha/initrd.bin': initrd }),
    });
    // iPXE waits ~15 s for IPv6 autoconfiguration on a link without router advertisements
    // (as in the single-node lab, src/lab/router-advertiser.ts): the first server sends them.
    const srv = ha.lab.servers[0]!;
    await srv.exec(['sh', '-c', `${ENABLE_IPV6_NO_DAD_SH}; echo 0 > /proc/sys/net/ipv6/conf/eth0/accept_dad; echo 0 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6`]);
    const ra = srv.spawn(routerAdvertiserArgv('eth0'), { label: 'router advertiser' });
    await ra.waitForLine(/router advertisements on eth0/, { timeoutMs: 10_000 });
  });

  after(async () => {
    await ha?.cleanup();
    await sandbox.cleanup();
  });

  it('every node publishes the files it holds', async () => {
    const status = await ha.nodes[0]!.api<{ nodes: { name: string; artifacts: string[] }[] }>('/api/v1/cluster');
    for (const n of status.nodes) assert.deepEqual(n.artifacts, ['ha/initrd.bin', 'ha/stage2.ipxe', 'ipxe.efi', 'snponly.efi', 'undionly.kpxe'], n.name);
  });

  /** Boots one BIOS machine on a new tap, kills node2 when `killWhen` says so, waits for the callback. */
  async function bootThroughKill(
    t: TestContext,
    name: string,
    mac: string,
    killWhen: (console: string, status: MachineStatus | undefined) => boolean,
  ): Promise<{ console: string; done: MachineStatus; killedAfterMs: number; doneAfterMs: number }> {
    const dir = path.join(ha.nodes[0]!.workDir, name);
    mkdirSync(dir, { recursive: true });
    const consoleFile = path.join(dir, 'console.log');
    const serconFile = path.join(dir, 'sercon-port');
    writeSerconPort(serconFile);
    const br = ha.lab.bridge;
    const tap = `tap${taps++}`;
    await br.ns.ip(['tuntap', 'add', 'dev', tap, 'mode', 'tap']);
    await br.ns.attachToBridge(tap, br.name);
    const startedAt = Date.now();
    // A machine set to retry network boot (SeaBIOS reboot-timeout), as fleet servers are.
    const argv = qemuArgs({ firmware: 'bios', mac, tap, consoleFile, serconFile, rebootTimeoutMs: 1000 });
    const vm = br.ns.spawn(['qemu-system-x86_64', '-name', name, ...argv], { label: `qemu ${name} (bios, ${mac})` });
    const describe = (): string =>
      [
        `--- console of ${name} ---`,
        readConsole(consoleFile).slice(-6000),
        vm.describe(1000),
        ...ha.nodes.map((n) => `--- ${n.name} on ${mac} ---\n${n.logs().filter((l) => l['mac'] === mac).slice(-20).map((l) => JSON.stringify(l)).join('\n')}`),
      ].join('\n');
    const statusOf = async (): Promise<MachineStatus | undefined> => {
      const live = ha.nodes.find((n) => n.running && n.name !== DOOMED) ?? ha.nodes[0]!;
      const all = await live.api<MachineStatus[]>('/api/v1/machine-status').catch(() => []);
      return all.find((s) => s.mac === mac);
    };
    try {
      let killedAt = 0;
      while (Date.now() - startedAt < BOOT_TIMEOUT_MS) {
        const status = await statusOf();
        if (killWhen(readConsole(consoleFile), status)) {
          await ha.kill(NODES.indexOf(DOOMED));
          killedAt = Date.now();
          break;
        }
        if (status?.lastStage === 'done') assert.fail(`booted before node2 was killed\n${describe()}`);
        if (vm.status) assert.fail(`QEMU exited\n${describe()}`);
        await sleep(20);
      }
      assert.ok(killedAt > 0, `the moment to kill node2 never came\n${describe()}`);
      while (Date.now() - startedAt < BOOT_TIMEOUT_MS) {
        const status = await statusOf();
        if (status?.lastStage === 'done') {
          // The callback can arrive before the serial console has caught up with the machine.
          const settle = Date.now() + 15_000;
          while (Date.now() < settle && !/pxeha-ha: booted/.test(readConsole(consoleFile))) await sleep(100);
          const text = readConsole(consoleFile);
          assert.match(text, /pxeha-ha: stage2 running/, describe());
          assert.notEqual(status.lastNode, DOOMED);
          const result = { console: text, done: status, killedAfterMs: killedAt - startedAt, doneAfterMs: (status.lastStageMs ?? Date.now()) - startedAt };
          t.diagnostic(`${name}: node2 killed ${result.killedAfterMs} ms after QEMU start; callback at ${status.lastNode} after ${(result.doneAfterMs / 1000).toFixed(1)} s`);
          return result;
        }
        if (vm.status) break;
        await sleep(250);
      }
      assert.fail(`no callback after node2 was killed\n${describe()}`);
    } finally {
      await vm.stop(2000);
    }
  }

  /** iPXE's download lines (`http://…/file... ok` or an error), in order: "<server> <path> <outcome>". */
  const fetchesOf = (text: string): string[] =>
    [...text.matchAll(/http:\/\/(10\.99\.0\.\d+):8080\/(boot\.ipxe|artifacts\/ha\/stage2\.ipxe|artifacts\/ha\/initrd\.bin)\.\.\. (ok|\S+)/g)].map(
      (m) => `${m[1]} ${m[2]} ${m[3]}`,
    );
  const DOOMED_IP = serverIp(NODES.indexOf(DOOMED));

  it('killed after serving the script: the kernel or initrd comes from the next holder (`||` fallback)', async (t) => {
    const mac = macOwnedBy(DOOMED, 'node3', 0);
    // The console shows the script arrived; the 48 MiB initrd from node2 takes seconds.
    const run = await bootThroughKill(t, 'ha-vm1', mac, (text) => /boot\.ipxe : \d+ bytes \[script\]/.test(text));
    const fetches = fetchesOf(run.console);
    t.diagnostic(`fetches: ${fetches.join(', ')}`);
    assert.equal(fetches[0], `${DOOMED_IP} boot.ipxe ok`, 'the script came from the designated node');
    assert.equal(fetches.filter((f) => f.includes(' boot.ipxe ')).length, 1, 'no reboot was needed');
    assert.ok(fetches.some((f) => f.startsWith(`${DOOMED_IP} artifacts/`) && !f.endsWith(' ok')), `a fetch from node2 failed: ${fetches.join(', ')}`);
    assert.ok(fetches.some((f) => !f.startsWith(`${DOOMED_IP} `) && f.includes('artifacts/') && f.endsWith(' ok')), `a fallback node served a file: ${fetches.join(', ')}`);
  });

  it('killed right after its DHCP ACK: the machine retries and boots from a survivor', async (t) => {
    await ha.restart(NODES.indexOf(DOOMED));
    await ha.waitMembers(3);
    const mac = macOwnedBy(DOOMED, 'node3', 1);
    const run = await bootThroughKill(t, 'ha-vm2', mac, (text) => /Next server: 10\.99\.0\.2/.test(text));
    const fetches = fetchesOf(run.console);
    t.diagnostic(`fetches: ${fetches.join(', ')}`);
    const scripts = fetches.filter((f) => f.includes(' boot.ipxe '));
    assert.ok(scripts.some((f) => f.startsWith(`${DOOMED_IP} `) && !f.endsWith(' ok')), `the first script fetch failed: ${fetches.join(', ')}`);
    assert.ok(scripts.some((f) => !f.startsWith(`${DOOMED_IP} `) && f.endsWith(' ok')), `the script came from a survivor on retry: ${fetches.join(', ')}`);
    // The kernel fetch (from a survivor) counts as the machine's `kernel` boot stage there.
    const kernelStages = await Promise.all(
      ha.nodes.filter((n) => n.running).map(async (n) => metricValue(await apiGet(n.dataDir, '/metrics').catch(() => ''), 'pxeha_boot_stage_total', { stage: 'kernel' })),
    );
    assert.ok(kernelStages.some((v) => v >= 1), `kernel boot stage recorded: ${kernelStages.join(', ')}`);
  });
});
