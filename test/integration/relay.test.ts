/**
 * Relayed DHCP (RFC 2131 §4.1, RFC 3046, RFC 3011, RFC 3527) with perfdhcp as the relay agent,
 * inside namespaces this file creates:
 *
 *   relay ns: eth0 10.99.0.2/24, 10.50.0.2/16, 10.77.0.2/24 ──veth── server ns: eth0 10.99.0.1/24
 *                                                                     routes 10.50/16, 10.77/24
 *                                                                     via 10.99.0.2 (the relay)
 *
 * perfdhcp writes its local address (-l) into giaddr and sends from port 67 to the server's
 * port 67, so each local address plays one relay: 10.99.0.2 on the server's own subnet `lab`,
 * 10.50.0.2 on `remote` (a subnet the server has no interface on), 10.77.0.2 on a subnet
 * pxeha does not know. Replies are captured on the relay's link, so every test checks the wire
 * (where the reply went, from which subnet the address came) as well as perfdhcp's counters;
 * the last test checks the store against the wire.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { LeaseRecord } from '../../src/dhcp/lease-record.js';
import { createSandbox, type Netns } from '../helpers/netns.js';
import { captureReplies, countByType, runPerfdhcp, type CapturedDhcp, type PerfdhcpLoad, type PerfdhcpRun } from '../helpers/perfdhcp.js';
import { leaseViolations, PxehaServer, type ClusterDocument } from '../helpers/perfdhcp-pxeha.js';

const SERVER = '10.99.0.1';
const RELAY_LAB = '10.99.0.2';
const RELAY_REMOTE = '10.50.0.2';
const RELAY_UNKNOWN = '10.77.0.2';

const CLUSTER: ClusterDocument = {
  subnets: [
    { name: 'lab', subnet: '10.99.0.0/24', pools: [{ start: '10.99.0.100', end: '10.99.0.199' }], options: { routers: ['10.99.0.1'] } },
    { name: 'remote', subnet: '10.50.0.0/16', pools: [{ start: '10.50.1.0', end: '10.50.3.255' }], options: { routers: ['10.50.0.2'] } },
  ],
};

/** The lab pool and the remote pool, as integers, for range checks. */
const inLabPool = (ip: string) => between(ip, '10.99.0.100', '10.99.0.199');
const inRemotePool = (ip: string) => between(ip, '10.50.1.0', '10.50.3.255');

function ipInt(ip: string): number {
  return ip.split('.').reduce((n, p) => n * 256 + Number(p), 0);
}

function between(ip: string, start: string, end: string): boolean {
  const n = ipInt(ip);
  return n >= ipInt(start) && n <= ipInt(end);
}

function hex(buf: Buffer | undefined): string | undefined {
  return buf?.toString('hex');
}

interface Exchange {
  run: PerfdhcpRun;
  replies: CapturedDhcp[];
}

describe('relayed DHCP through perfdhcp as relay agent', () => {
  const sandbox = createSandbox({ after });
  let relay: Netns;
  let pxeha: PxehaServer;
  /** Every ACK seen on the wire, by scenario, for the store check at the end. */
  const acked = new Map<string, { subnet: 'lab' | 'remote'; replies: CapturedDhcp[] }>();

  before(async () => {
    const server = await sandbox.netns('srv');
    relay = await sandbox.netns('relay');
    await sandbox.veth({ ns: server, ifname: 'eth0', address: `${SERVER}/24` }, { ns: relay, ifname: 'eth0', address: `${RELAY_LAB}/24` });
    await relay.ip(['addr', 'add', `${RELAY_REMOTE}/16`, 'dev', 'eth0']);
    await relay.ip(['addr', 'add', `${RELAY_UNKNOWN}/24`, 'dev', 'eth0']);
    // The relay is the router to its remote links, as a real relay agent on a router is.
    await server.ip(['route', 'add', '10.50.0.0/16', 'via', RELAY_LAB]);
    await server.ip(['route', 'add', '10.77.0.0/24', 'via', RELAY_LAB]);
    pxeha = await PxehaServer.start(server, { cluster: CLUSTER });
  });

  after(async () => {
    await pxeha?.stop();
    if (process.env['PXT_DUMP'] !== '1') await pxeha?.remove();
  });

  /** Runs a bounded perfdhcp load from the relay namespace and captures what comes back. */
  async function exchange(load: Omit<PerfdhcpLoad, 'server'>, expect?: { scenario: string; subnet: 'lab' | 'remote' }): Promise<Exchange> {
    const capture = await captureReplies(relay, 'eth0');
    // -W: keep receiving after the last exchange starts, or perfdhcp counts its last
    // DISCOVER as a drop without waiting for the OFFER.
    const run = await runPerfdhcp(relay, { server: SERVER, exitWaitSeconds: 1, ...load });
    const { messages, kernelDrops } = await capture.stop();
    // Recorded before any assertion, so the store check sees every binding a scenario made.
    if (expect) acked.set(expect.scenario, { subnet: expect.subnet, replies: messages.filter((r) => r.typeName === 'ACK') });
    assert.equal(kernelDrops, 0, 'tcpdump lost packets: the capture is incomplete');
    return { run, replies: messages };
  }

  /** What every relayed reply must look like (RFC 2131 §4.1: to the relay's port 67). */
  function assertAnsweredToRelay(replies: readonly CapturedDhcp[], giaddr: string): void {
    for (const r of replies) {
      assert.equal(r.op, 2, 'BOOTREPLY');
      assert.equal(r.src, SERVER, 'from the server address');
      assert.equal(r.srcPort, 67);
      assert.equal(r.dst, giaddr, `${r.typeName} for ${r.mac} goes to the relay`);
      assert.equal(r.dstPort, 67, 'to the relay agent port');
      assert.equal(r.giaddr, giaddr, 'giaddr echoed');
      assert.equal(r.options.get(54)?.join('.'), SERVER, 'server identifier');
    }
  }

  function assertAllCompleted(run: PerfdhcpRun, exchanges: number): void {
    const { discoverOffer: dO, requestAck: rA } = run.report;
    assert.equal(dO.sent, exchanges, run.output);
    assert.equal(dO.received, exchanges, `every DISCOVER got an OFFER\n${run.output}`);
    assert.equal(rA.sent, exchanges, run.output);
    assert.equal(rA.received, exchanges, `every REQUEST got an ACK\n${run.output}`);
    assert.equal(run.code, 0, run.output);
  }

  /** 30 exchanges of 20 clients through the relay at giaddr, all answered from `subnet`. */
  async function assertServedFromGiaddrSubnet(
    giaddr: string,
    subnet: { name: 'lab' | 'remote'; inPool: (ip: string) => boolean; mask: string; router: string },
    client: { baseMac: string; seed: number },
  ): Promise<void> {
    const { run, replies } = await exchange(
      { localAddress: giaddr, rate: 50, exchanges: 30, clients: 20, ...client },
      { scenario: subnet.name, subnet: subnet.name },
    );
    assertAllCompleted(run, 30);
    assertAnsweredToRelay(replies, giaddr);
    assert.deepEqual(countByType(replies), { OFFER: 30, ACK: 30 });
    for (const r of replies) {
      assert.ok(subnet.inPool(r.yiaddr), `${r.typeName} ${r.yiaddr} is in the ${subnet.name} pool`);
      assert.equal(r.options.get(1)?.join('.'), subnet.mask, `the ${subnet.name} subnet mask`);
      assert.equal(r.options.get(3)?.join('.'), subnet.router, `the ${subnet.name} router`);
    }
  }

  it('answers a relay on its own subnet from that subnet (giaddr 10.99.0.2 → lab)', async () => {
    await assertServedFromGiaddrSubnet(
      RELAY_LAB,
      { name: 'lab', inPool: inLabPool, mask: '255.255.255.0', router: '10.99.0.1' },
      { baseMac: '02:aa:00:00:00:00', seed: 1 },
    );
  });

  it('answers a relay on a remote subnet from that subnet (giaddr 10.50.0.2 → remote)', async () => {
    await assertServedFromGiaddrSubnet(
      RELAY_REMOTE,
      { name: 'remote', inPool: inRemotePool, mask: '255.255.0.0', router: '10.50.0.2' },
      { baseMac: '02:bb:00:00:00:00', seed: 2 },
    );
  });

  it('selects the subnet by RFC 3527 link selection (82.5) over giaddr, and echoes option 82 unchanged', async () => {
    // Sub-option 1 (circuit id "port7") and 5 (link selection 10.50.0.0) — RFC 3046 §2.0, RFC 3527 §3.
    const option82 = `0105${Buffer.from('port7').toString('hex')}05040a320000`;
    const { run, replies } = await exchange(
      {
        localAddress: RELAY_LAB,
        rate: 50,
        exchanges: 10,
        clients: 10,
        baseMac: '02:cc:00:00:00:00',
        seed: 3,
        options: [{ code: 82, hex: option82 }],
      },
      { scenario: 'link selection', subnet: 'remote' },
    );
    assertAllCompleted(run, 10);
    assertAnsweredToRelay(replies, RELAY_LAB);
    for (const r of replies) {
      assert.ok(inRemotePool(r.yiaddr), `${r.typeName} ${r.yiaddr} comes from the linked subnet, not giaddr's`);
      assert.equal(hex(r.options.get(82)), option82, 'relay agent information echoed byte for byte');
    }
  });

  it('selects the subnet by RFC 3011 subnet selection (option 118) over giaddr', async () => {
    const { run, replies } = await exchange(
      {
        localAddress: RELAY_LAB,
        rate: 50,
        exchanges: 10,
        clients: 10,
        baseMac: '02:dd:00:00:00:00',
        seed: 4,
        options: [{ code: 118, hex: '0a320000' }],
      },
      { scenario: 'subnet selection', subnet: 'remote' },
    );
    assertAllCompleted(run, 10);
    assertAnsweredToRelay(replies, RELAY_LAB);
    for (const r of replies) assert.ok(inRemotePool(r.yiaddr), `${r.typeName} ${r.yiaddr} comes from the selected subnet`);
  });

  it('stays silent for a relay on a subnet it does not serve (giaddr 10.77.0.2)', async () => {
    const { run, replies } = await exchange({
      localAddress: RELAY_UNKNOWN,
      rate: 20,
      exchanges: 5,
      clients: 5,
      baseMac: '02:ee:00:00:00:00',
      dropTimeSeconds: 0.5,
    });
    assert.equal(run.report.discoverOffer.sent, 5, run.output);
    assert.equal(run.report.discoverOffer.received, 0, run.output);
    assert.equal(run.code, 3, 'perfdhcp reports the exchanges as failed');
    assert.deepEqual(replies, [], 'no reply at all: answering from the wrong subnet is worse than silence');
  });

  it('committed exactly what it ACKed, in the subnet the relay selected, and logged no problem', async () => {
    const status = await pxeha.stop();
    assert.equal(status.code, 0, `pxeha exits cleanly on SIGTERM\n${pxeha.proc.describe()}`);
    assert.deepEqual(pxeha.problems(), []);
    const leases = await pxeha.leases();
    const bound = leases.filter((l) => l.state === 'bound');
    const byIp = new Map<string, LeaseRecord>(bound.map((l) => [l.ip, l]));

    const ackedMacs = new Set<string>();
    for (const [scenario, { subnet, replies }] of acked) {
      assert.ok(replies.length > 0, `${scenario} saw ACKs`);
      for (const ack of replies) {
        const lease = byIp.get(ack.yiaddr);
        assert.ok(lease, `${scenario}: ${ack.yiaddr} ACKed to ${ack.mac} is bound in the store`);
        assert.equal(lease.subnet, subnet, `${scenario}: ${ack.yiaddr} in subnet ${subnet}`);
        assert.equal(lease.mac, ack.mac, `${scenario}: ${ack.yiaddr} bound to the MAC it was ACKed to`);
        ackedMacs.add(ack.mac);
      }
    }
    assert.equal(bound.length, ackedMacs.size, 'one binding per client that got an ACK, and no other');
    assert.ok(!leases.some((l) => l.mac.startsWith('02:ee:')), 'nothing recorded for the unserved relay');
    assert.deepEqual(leaseViolations(leases, await pxeha.history(), Date.now()), []);
  });
});
