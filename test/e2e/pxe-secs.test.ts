/**
 * Do real PXE clients fill in BOOTP `secs`? (Issue 6: "test that real PXE ROMs fill in secs; if
 * some do not, do not depend on it alone.") pxeha lets any node answer a client whose `secs`
 * reaches `dhcp.takeoverSecs`, besides the primary takeover on membership (docs/design.md).
 *
 * Two machines, SeaBIOS + the iPXE NIC ROM and OVMF's own PXE client, boot on a bridge where
 * nothing answers DHCP; a plain UDP listener (not pxeha) on port 67 in its own namespace records
 * every DISCOVER's `secs` while the firmware retries. The figures are printed; the assertions
 * state what each firmware does, so a firmware update that changes it fails here first.
 * Measured here: iPXE 4, 8, 12, 16 at 2.4, 3.4, 5.4, 9.5 s after QEMU start (its clock runs
 * about 4x fast under TCG, so its first DISCOVER already passes takeoverSecs 3); OVMF 0, 4, 12
 * at 3.4, 7.2, 16.2 s (real seconds). Both fill it in; pxeha still takes over on membership
 * first, since PXE ROMs in the field differ (RFC 2131 leaves `secs` to the client).
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { prepareUefiVars, qemuArgs, writeSerconPort, type Firmware } from '../../src/lab/qemu.js';
import { createSandbox, type Netns, type NetnsProcess } from '../helpers/netns.js';

/** Bound on the wait for several retries of each firmware's DISCOVER schedule. */
const MAX_LISTEN_MS = 60_000;

const LISTENER = `
import dgram from 'node:dgram';
const socket = dgram.createSocket({ type: 'udp4', reuseAddr: true });
socket.on('message', (msg) => {
  // BOOTP: op 1 = request; chaddr at 28; secs at 8 (big-endian); option 53 = 1 is DISCOVER.
  if (msg.length < 240 || msg[0] !== 1) return;
  let type = 0;
  for (let i = 240; i < msg.length && msg[i] !== 255; ) {
    if (msg[i] === 0) { i++; continue; }
    if (msg[i] === 53) type = msg[i + 2];
    i += 2 + msg[i + 1];
  }
  if (type !== 1) return;
  const mac = [...msg.subarray(28, 34)].map((b) => b.toString(16).padStart(2, '0')).join(':');
  console.log(JSON.stringify({ mac, secs: msg.readUInt16BE(8), atMs: Date.now() }));
});
socket.bind(67, '0.0.0.0', () => { socket.setBroadcast(true); console.log('listening'); });
`;

interface Discover {
  mac: string;
  secs: number;
  atMs: number;
}

describe('real PXE firmware and the BOOTP secs field (QEMU, no DHCP server)', { timeout: 300_000 }, () => {
  const sandbox = createSandbox();
  let lan: Netns;
  let listener: NetnsProcess;
  const machines: Record<Firmware, { mac: string; startedAtMs: number; proc?: NetnsProcess }> = {
    bios: { mac: '52:54:00:99:05:01', startedAtMs: 0 },
    uefi: { mac: '52:54:00:99:05:02', startedAtMs: 0 },
  };

  before(async () => {
    const workDir = sandbox.tempDir('pxt-secs-');
    const srv = await sandbox.netns('srv');
    lan = await sandbox.netns('lan');
    await lan.addBridge('br0');
    await sandbox.veth({ ns: srv, ifname: 'eth0', address: '10.99.0.1/24', mac: '02:00:00:99:05:00' }, { ns: lan, ifname: 's0', bridge: 'br0' });
    listener = srv.spawnNodeScript(LISTENER, { tsx: false, label: 'DHCP listener' });
    await listener.waitForLine(/^listening$/, { timeoutMs: 10_000 });
    let tap = 0;
    for (const firmware of ['bios', 'uefi'] as const) {
      const m = machines[firmware];
      const dir = path.join(workDir, firmware);
      mkdirSync(dir, { recursive: true });
      const spec = {
        firmware,
        mac: m.mac,
        tap: `tap${tap++}`,
        consoleFile: path.join(dir, 'console.log'),
        serconFile: path.join(dir, 'sercon-port'),
        uefiVarsFile: path.join(dir, 'OVMF_VARS.fd'),
      };
      if (firmware === 'bios') writeSerconPort(spec.serconFile);
      else prepareUefiVars(spec.uefiVarsFile);
      await lan.ip(['tuntap', 'add', 'dev', spec.tap, 'mode', 'tap']);
      await lan.attachToBridge(spec.tap, 'br0');
      m.startedAtMs = Date.now();
      m.proc = lan.spawn(['qemu-system-x86_64', '-name', `secs-${firmware}`, ...qemuArgs(spec)], { label: `qemu ${firmware}` });
    }
    // Until each firmware has retried a few times (TCG on shared cores is slow to start OVMF).
    const deadline = Date.now() + MAX_LISTEN_MS;
    while (Date.now() < deadline && (discovers(machines.bios.mac).length < 4 || discovers(machines.uefi.mac).length < 3)) await sleep(500);
    for (const m of Object.values(machines)) await m.proc?.stop(2000);
  });

  after(() => sandbox.cleanup());

  const discovers = (mac: string): Discover[] =>
    listener
      .lines()
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Discover)
      .filter((d) => d.mac === mac);

  it('iPXE (BIOS NIC ROM) counts secs up across its retries', (t) => {
    const seen = discovers(machines.bios.mac);
    t.diagnostic(`iPXE: ${seen.map((d) => `${d.secs}s@${((d.atMs - machines.bios.startedAtMs) / 1000).toFixed(1)}`).join(', ')}`);
    assert.ok(seen.length >= 3, `iPXE retried (${seen.length} DISCOVERs)`);
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i]!.secs >= seen[i - 1]!.secs, 'secs never goes back');
    assert.ok(seen.at(-1)!.secs >= 3, `secs reached takeoverSecs (3): ${seen.at(-1)!.secs}`);
  });

  it('OVMF (UEFI PXE) starts secs at 0 and counts it up across its retries', (t) => {
    const seen = discovers(machines.uefi.mac);
    t.diagnostic(`OVMF: ${seen.map((d) => `${d.secs}s@${((d.atMs - machines.uefi.startedAtMs) / 1000).toFixed(1)}`).join(', ')}`);
    assert.ok(seen.length >= 2, `OVMF retried (${seen.length} DISCOVERs)`);
    assert.equal(seen[0]!.secs, 0);
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i]!.secs >= seen[i - 1]!.secs, 'secs never goes back');
    assert.ok(seen.at(-1)!.secs >= 3, `secs reached takeoverSecs (3): ${seen.at(-1)!.secs}`);
  });
});
