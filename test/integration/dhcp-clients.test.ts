/**
 * pxeha against real DHCP clients, busybox udhcpc and ISC dhclient, over a bridge inside
 * network namespaces this file creates (coredhcp `.ci/setup-integ.sh`, per test file):
 *
 *   c0 udhcpc  02:00:00:99:01:01 ─┐
 *   c1 udhcpc  52:54:00:99:00:10 ─┼─ br0 ── eth0 10.99.0.1/24  pxeha serve (srv)
 *   c2 dhclient 02:00:00:99:01:03 ┘
 *
 * pxeha runs through its command line (`apply`, `serve`, `leases`), as an operator runs it.
 * The steps build on each other in order: leases are taken, renewed, carried across a
 * graceful restart and a kill -9, then released. Waits are on events (client script runs,
 * pxeha log lines), never on sleeps.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { LeaseRecord } from '../../src/dhcp/lease-record.js';
import { Dhclient, interfaceAddresses, Udhcpc, udhcpcOnce, writeEventScript, type ClientEvent } from '../helpers/dhcp-client.js';
import { metricValue, PxehaNode, type LogLine } from '../helpers/dhcp-client-pxeha.js';
import { createSandbox, type Lab } from '../helpers/netns.js';

const POOL = { start: 100, end: 199 };
const RESERVED = { mac: '52:54:00:99:00:10', address: '10.99.0.10', hostname: 'reserved1' };
const LEASE_SECONDS = 3600;

const CLUSTER = {
  subnets: [
    {
      name: 'lab',
      subnet: '10.99.0.0/24',
      mode: 'full',
      pools: [{ start: `10.99.0.${POOL.start}`, end: `10.99.0.${POOL.end}` }],
      leaseSeconds: LEASE_SECONDS,
      options: {
        routers: ['10.99.0.1'],
        dnsServers: ['10.99.0.53', '10.99.0.54'],
        domainName: 'lab.pxeha.test',
      },
      reservations: [RESERVED],
    },
  ],
  boot: { files: { bios: 'undionly.kpxe' } },
};

function inPool(ip: string | undefined): boolean {
  const m = /^10\.99\.0\.(\d+)$/.exec(ip ?? '');
  return m !== null && Number(m[1]) >= POOL.start && Number(m[1]) <= POOL.end;
}

/** The NAK replies pxeha logged, over every run, as readable lines for a failure message. */
function naks(node: PxehaNode): string[] {
  return node.replies({ reply: 'NAK' }).map((l) => JSON.stringify(l));
}

function leaseOf(leases: readonly LeaseRecord[], ip: string): LeaseRecord {
  const found = leases.find((l) => l.ip === ip);
  assert.ok(found, `no lease record for ${ip} in ${JSON.stringify(leases)}`);
  return found;
}

/** Messages pxeha received from one MAC in the current run, in order ('dhcp reply' / 'dhcp drop' / 'dhcp handled'). */
function handled(node: PxehaNode, mac: string, from: number): LogLine[] {
  return node
    .logs({ currentRunOnly: true })
    .slice(from)
    .filter((l) => l['mac'] === mac && ['dhcp reply', 'dhcp drop', 'dhcp handled'].includes(l.msg));
}

describe('real DHCP clients (udhcpc, dhclient) against pxeha', () => {
  const sandbox = createSandbox({ after });
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'pxeha-clients-'));
  let lab: Lab;
  let node: PxehaNode;
  let script: string;
  /** c0: a udhcpc that stays running, for renewals and releases. */
  let udhcpc: Udhcpc;
  let dynamicIp: string;
  let dhclient: Dhclient;
  let dhclientIp: string;

  const clientMac = (i: number): string => (i === 1 ? RESERVED.mac : `02:00:00:99:01:0${i + 1}`);

  before(async () => {
    lab = await sandbox.lab({ clients: 3, clientMac });
    node = await PxehaNode.create(lab.server, { name: 'lab1', workDir: path.join(workDir, 'pxeha'), cluster: CLUSTER });
    await node.start();
    ({ script } = writeEventScript(workDir));
  });

  after(() => {
    if (process.env['PXT_DUMP'] !== '1') rmSync(workDir, { recursive: true, force: true });
  });

  it('udhcpc gets a pool address with the subnet options, and pxeha records the binding', async () => {
    const c0 = lab.clients[0]!;
    udhcpc = new Udhcpc(c0, script, { label: 'c0: udhcpc' });
    const bound = await udhcpc.waitEvent(['bound'], 0);
    const env = bound.env;
    dynamicIp = env['ip'] ?? '';
    assert.ok(inPool(dynamicIp), `address ${dynamicIp} is not in the pool`);
    assert.equal(env['mask'], '24');
    assert.equal(env['subnet'], '255.255.255.0');
    assert.equal(env['router'], '10.99.0.1');
    assert.equal(env['dns'], '10.99.0.53 10.99.0.54');
    assert.equal(env['domain'], 'lab.pxeha.test');
    assert.equal(env['broadcast'], '10.99.0.255');
    assert.equal(env['lease'], String(LEASE_SECONDS));
    assert.equal(env['serverid'], '10.99.0.1');
    // T1 and T2 (udhcpc has no names for 58/59): 50 % and 87.5 % of the lease (RFC 2131 §4.4.5).
    assert.equal(env['opt58'], (LEASE_SECONDS / 2).toString(16).padStart(8, '0'));
    assert.equal(
      env['opt59'],
      Math.floor(LEASE_SECONDS * 0.875)
        .toString(16)
        .padStart(8, '0'),
    );
    assert.deepEqual(await interfaceAddresses(c0), [`${dynamicIp}/24`]);

    const leases = await node.leases();
    assert.deepEqual(await node.leasesViaCli(), leases, '`pxeha leases -o json` differs from the API');
    const record = leaseOf(leases, dynamicIp);
    assert.equal(record.state, 'bound');
    assert.equal(record.mac, lab.clientMacs[0]);
    assert.equal(record.subnet, 'lab');
    assert.equal(record.node, 'lab1');
    assert.ok(record.boundAtMs !== undefined);
    assert.equal(record.expiresAtMs - record.boundAtMs, LEASE_SECONDS * 1000);
    assert.deepEqual(naks(node), []);
  });

  it('a reserved MAC gets its reserved address and host name', async () => {
    const c1 = lab.clients[1]!;
    const { result, events } = await udhcpcOnce(c1, script);
    const bound = events.find((e) => e.event === 'bound');
    assert.ok(bound, `udhcpc got no lease\n${result.stderr}`);
    assert.equal(bound.env['ip'], RESERVED.address);
    assert.equal(bound.env['hostname'], RESERVED.hostname);
    assert.equal(bound.env['router'], '10.99.0.1');
    assert.deepEqual(await interfaceAddresses(c1), [`${RESERVED.address}/24`]);

    const record = leaseOf(await node.leases(), RESERVED.address);
    assert.equal(record.state, 'bound');
    assert.equal(record.mac, RESERVED.mac);
    assert.equal(record.hostname, RESERVED.hostname);
    assert.deepEqual(naks(node), []);
  });

  it('udhcpc renews (SIGUSR1): a unicast REQUEST from its address is ACKed with the same address', async () => {
    const before = leaseOf(await node.leases(), dynamicIp);
    const logFrom = node.logs({ currentRunOnly: true }).length;
    const eventsBefore = udhcpc.events().length;
    udhcpc.renew();
    const renewed = await udhcpc.waitEvent(['renew', 'bound'], eventsBefore);
    assert.equal(renewed.env['ip'], dynamicIp);
    assert.equal(renewed.env['lease'], String(LEASE_SECONDS));

    // RENEWING (RFC 2131 §4.3.2): ciaddr set, so the ACK goes unicast to it (§4.1).
    // A client may retransmit (RFC 2131 §4.1); every message is a REQUEST answered this way.
    const replies = handled(node, lab.clientMacs[0]!, logFrom);
    assert.ok(replies.length >= 1);
    assert.deepEqual(
      [...new Set(replies.map((l) => JSON.stringify([l['type'], l['reply'], l['ip'], l['dest']])))],
      [JSON.stringify(['REQUEST', 'ACK', dynamicIp, { kind: 'unicast', address: dynamicIp, port: 68 }])],
    );
    const after = leaseOf(await node.leases(), dynamicIp);
    assert.equal(after.state, 'bound');
    assert.ok((after.boundAtMs ?? 0) >= (before.boundAtMs ?? 0));
    assert.ok(after.expiresAtMs >= before.expiresAtMs);
    assert.deepEqual(naks(node), []);
  });

  it('dhclient gets a pool address, and comes back with INIT-REBOOT to the same address', async () => {
    const c2 = lab.clients[2]!;
    const mac = lab.clientMacs[2]!;
    dhclient = new Dhclient(c2, workDir);
    const bound = await dhclient.start(['BOUND']);
    dhclientIp = bound.env['new_ip_address'] ?? '';
    assert.ok(inPool(dhclientIp), `address ${dhclientIp} is not in the pool`);
    assert.equal(bound.env['new_subnet_mask'], '255.255.255.0');
    assert.equal(bound.env['new_routers'], '10.99.0.1');
    assert.equal(bound.env['new_domain_name_servers'], '10.99.0.53 10.99.0.54');
    assert.equal(bound.env['new_domain_name'], 'lab.pxeha.test');
    assert.equal(bound.env['new_dhcp_lease_time'], String(LEASE_SECONDS));
    assert.equal(bound.env['new_dhcp_server_identifier'], '10.99.0.1');
    assert.deepEqual(await interfaceAddresses(c2), [`${dhclientIp}/24`]);
    const record = leaseOf(await node.leases(), dhclientIp);
    assert.equal(record.state, 'bound');
    assert.equal(record.mac, mac);
    assert.equal(record.hostname, 'pxt-dhclient'); // option 12 from dhclient.conf `send host-name`

    // Switched off without a RELEASE, then on again: its lease file makes it ask for the
    // address it had, with no server identifier and no ciaddr (RFC 2131 §4.3.2 INIT-REBOOT).
    await dhclient.kill();
    const logFrom = node.logs({ currentRunOnly: true }).length;
    const reboot = await dhclient.start(['REBOOT', 'BOUND']);
    assert.equal(reboot.event, 'REBOOT', 'dhclient went through DISCOVER instead of INIT-REBOOT');
    assert.equal(reboot.env['new_ip_address'], dhclientIp);
    const seen = handled(node, mac, logFrom);
    assert.ok(seen.length >= 1);
    assert.deepEqual(
      [...new Set(seen.map((l) => JSON.stringify([l['type'], l['reply'], l['ip']])))],
      [JSON.stringify(['REQUEST', 'ACK', dhclientIp])],
    );
    assert.deepEqual(
      seen.map((l) => [l['type'], l['reply'], l['ip']]),
      [['REQUEST', 'ACK', dhclientIp]],
    );
    await dhclient.kill();
    assert.deepEqual(naks(node), []);
  });

  /**
   * Stops pxeha with `signal`, checks the store holds exactly the leases it held before, starts
   * it again, and has every client come back: udhcpc renews (RENEWING), dhclient reboots
   * (INIT-REBOOT), the reserved client asks again (DISCOVER). Each gets its old address.
   */
  async function restartKeepsLeases(signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    const before = await node.leases(); // from the running node's API socket
    assert.ok(before.length >= 3, `expected three leases, have ${JSON.stringify(before)}`);
    const status = await node.stop(signal);
    if (signal === 'SIGTERM') assert.deepEqual(status, { code: 0, signal: null }, 'graceful stop did not exit 0');
    else assert.equal(status.signal, 'SIGKILL');
    // `pxeha leases` on the store file itself: what a crash left on disk.
    assert.deepEqual(await node.leasesViaCli(), before, 'store file (node stopped) differs from what the node served');
    await node.start();
    assert.deepEqual(await node.leases(), before, 'leases changed across the restart');

    const eventsBefore = udhcpc.events().length;
    udhcpc.renew();
    const renewed: ClientEvent = await udhcpc.waitEvent(['renew', 'bound'], eventsBefore);
    assert.equal(renewed.env['ip'], dynamicIp);

    const reboot = await dhclient.start(['REBOOT', 'BOUND']);
    assert.equal(reboot.event, 'REBOOT');
    assert.equal(reboot.env['new_ip_address'], dhclientIp);
    await dhclient.kill();

    const { events } = await udhcpcOnce(lab.clients[1]!, script);
    assert.equal(events.find((e) => e.event === 'bound')?.env['ip'], RESERVED.address);

    const afterwards = await node.leases();
    for (const ip of [dynamicIp, dhclientIp, RESERVED.address]) {
      const was = leaseOf(before, ip);
      const now = leaseOf(afterwards, ip);
      assert.equal(now.state, 'bound');
      assert.equal(now.clientKey, was.clientKey, `${ip} changed hands across the restart`);
    }
    assert.equal(afterwards.length, before.length, 'a client was given a new address after the restart');
    assert.deepEqual(naks(node), []);
    assert.equal(metricValue(await node.metrics(), 'pxeha_dhcp_replies_total', { type: 'NAK' }), 0);
  }

  it('a graceful restart (SIGTERM) keeps every lease; each client keeps its address', async () => {
    await restartKeepsLeases('SIGTERM');
  });

  it('a crash (kill -9) keeps every lease; each client keeps its address', async () => {
    await restartKeepsLeases('SIGKILL');
  });

  it('udhcpc (SIGUSR2) and dhclient (-r) release their leases, and pxeha marks them released', async () => {
    const c0mac = lab.clientMacs[0]!;
    const c2mac = lab.clientMacs[2]!;

    const eventsBefore = udhcpc.events().length;
    udhcpc.release();
    await udhcpc.waitEvent(['deconfig'], eventsBefore);
    await node.waitForLog((l) => l.msg === 'dhcp handled' && l['mac'] === c0mac && l['type'] === 'RELEASE');
    await udhcpc.stop();

    // dhclient needs a running instance (pid file) and its address to release from.
    const reboot = await dhclient.start(['REBOOT', 'BOUND']);
    assert.equal(reboot.env['new_ip_address'], dhclientIp);
    await dhclient.release();
    assert.ok(
      dhclient.events().some((e) => e.event === 'RELEASE'),
      'dhclient did not run its script with RELEASE',
    );
    await node.waitForLog((l) => l.msg === 'dhcp handled' && l['mac'] === c2mac && l['type'] === 'RELEASE');

    const leases = await node.leasesViaCli();
    for (const [ip, mac] of [
      [dynamicIp, c0mac],
      [dhclientIp, c2mac],
    ] as const) {
      const record = leaseOf(leases, ip);
      assert.equal(record.state, 'released', `${ip} (${mac}) is ${record.state}`);
      assert.equal(record.mac, mac);
      assert.ok(record.expiresAtMs <= Date.now());
    }
    assert.equal(leaseOf(leases, RESERVED.address).state, 'bound', 'the reserved client did not release');
  });

  it('sent no NAK and dropped nothing in these normal flows', async () => {
    assert.deepEqual(naks(node), []);
    const drops = node.drops().map((l) => JSON.stringify(l));
    assert.deepEqual(drops, []);
    const metrics = await node.metrics();
    assert.equal(metricValue(metrics, 'pxeha_dhcp_replies_total', { type: 'NAK' }), 0);
    assert.ok(metricValue(metrics, 'pxeha_dhcp_replies_total', { type: 'ACK' }) > 0);
  });
});
