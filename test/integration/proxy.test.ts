/**
 * ProxyDHCP beside a foreign DHCP server (PXE 2.1 §2.2.4, dnsmasq's `proxy` mode), in
 * network namespaces this file creates:
 *
 *   c0 PXE client  (udhcpc -V PXEClient -x 0x5d:0000, smee test/test-smee.sh) ─┐
 *   c1 plain client (udhcpc)                                                    ├─ br0 ─┬─ srv  eth0 10.99.0.1/24  pxeha, subnet in mode: proxy
 *                                                                                │       └─ srv1 eth0 10.99.0.2/24  dnsmasq 10.99.0.150-160, no PXE options
 *
 * What the client received is read from a tcpdump capture taken in the client's namespace,
 * decoded with the codec the server uses (decodeDhcp4).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { parsePxeVendorOptions, PxeDiscoveryControl, PxeVendorSubOption } from '../../src/protocol/dhcp4/options.js';
import { BootOp, MessageType, OptionCode, type Dhcp4Message } from '../../src/protocol/dhcp4/types.js';
import { decodeDhcp4 } from '../../src/protocol/dhcp4/message.js';
import { udhcpcOnce, writeEventScript, type ClientEvent } from '../helpers/dhcp-client.js';
import { PxehaNode } from '../helpers/dhcp-client-pxeha.js';
import { Capture, type CapturedUdp } from '../helpers/foreign-dhcp-capture.js';
import { Dnsmasq } from '../helpers/foreign-dhcp.js';
import { createSandbox, srcUrl, type Lab, type Netns } from '../helpers/netns.js';

const PXEHA_IP = '10.99.0.1';
const FOREIGN_IP = '10.99.0.2';
const FOREIGN_RANGE = { start: 150, end: 160 };
/** Option 97 the PXE client sends: type 0, then a 16-byte UUID (RFC 4578 §2.5). */
const PXE_UUID = Buffer.from('00' + '5d3a1c0e9b7f4e2a8c6d0f1e2a3b4c5d', 'hex');

const CLUSTER = {
  subnets: [{ name: 'lab', subnet: '10.99.0.0/24', mode: 'proxy' }],
  boot: { files: { bios: 'undionly.kpxe', efiX64: 'snponly.efi' } },
};

function inForeignRange(ip: string | undefined): boolean {
  const m = /^10\.99\.0\.(\d+)$/.exec(ip ?? '');
  return m !== null && Number(m[1]) >= FOREIGN_RANGE.start && Number(m[1]) <= FOREIGN_RANGE.end;
}

const messageType = (m: Dhcp4Message | undefined): number | undefined => m?.options.get(OptionCode.MESSAGE_TYPE)?.[0];

/**
 * udhcpc takes the first OFFER it gets, whatever its yiaddr; a PXE ROM instead collects the
 * foreign server's address offer and the ProxyDHCP offer (PXE 2.1 §2.2.1). When pxeha's
 * answer (yiaddr 0.0.0.0) happens to come first, udhcpc asks for 0.0.0.0, nobody answers and
 * it gives up; dnsmasq without its ping check (--no-ping) is normally first. So: up to three
 * bounded runs, and the test reports how many were needed.
 */
async function pxeLease(
  ns: Netns,
  script: string,
  args: readonly string[],
): Promise<{ bound: ClientEvent; attempts: number; stderr: string }> {
  let stderr = '';
  for (let attempt = 1; attempt <= 3; attempt++) {
    const { result, events } = await udhcpcOnce(ns, script, { args });
    stderr += result.stderr;
    const bound = events.find((e) => e.event === 'bound');
    if (bound) return { bound, attempts: attempt, stderr };
  }
  throw new Error(`udhcpc got no lease in three runs\n${stderr}`);
}

/**
 * A PXE client's REQUEST to the boot server port (PXE 2.1 §2.2.5): sent from the client's
 * address, port 68, to pxeha's 4011; prints the reply, or after timeoutMs a timeout, as one
 * JSON line.
 */
const BOOT_SERVER_CLIENT = `
import dgram from 'node:dgram';
const { encodeDhcp4 } = await import(${JSON.stringify(srcUrl('src/protocol/dhcp4/message.ts'))});
const { clientIp, serverIp, mac, xid, options, timeoutMs } = JSON.parse(process.env.PXT_REQUEST);
const chaddr = Buffer.alloc(16);
Buffer.from(mac.replaceAll(':', ''), 'hex').copy(chaddr);
const msg = {
  op: 1, htype: 1, hlen: 6, hops: 0, xid, secs: 4, flags: 0,
  ciaddr: clientIp, yiaddr: '0.0.0.0', siaddr: '0.0.0.0', giaddr: '0.0.0.0',
  chaddr, sname: '', file: '',
  options: new Map(options.map(([code, hex]) => [code, Buffer.from(hex, 'hex')])),
};
const socket = dgram.createSocket('udp4');
const timer = setTimeout(() => { console.log(JSON.stringify({ timeout: true })); socket.close(); }, timeoutMs);
socket.on('message', (buf, rinfo) => {
  clearTimeout(timer);
  console.log(JSON.stringify({ from: rinfo, hex: buf.toString('hex') }));
  socket.close();
});
socket.bind({ address: clientIp, port: 68 }, () => socket.send(encodeDhcp4(msg), 4011, serverIp));
`;

interface BootServerReply {
  from: { address: string; port: number };
  reply: Dhcp4Message;
}

async function bootServerRequest(
  ns: Netns,
  request: { clientIp: string; mac: string; xid: number; options: Array<[number, Buffer]> },
  timeoutMs = 5000,
): Promise<BootServerReply | undefined> {
  const proc = ns.spawnNodeScript(BOOT_SERVER_CLIENT, {
    label: `${ns.name}: PXE REQUEST to ${PXEHA_IP}:4011`,
    env: {
      ...process.env,
      PXT_REQUEST: JSON.stringify({
        clientIp: request.clientIp,
        serverIp: PXEHA_IP,
        mac: request.mac,
        xid: request.xid,
        options: request.options.map(([code, value]) => [code, value.toString('hex')]),
        timeoutMs,
      }),
    },
  });
  const line = await proc.waitForLine(/^\{/, { timeoutMs: 15_000 });
  const out = JSON.parse(line) as { timeout?: true; from?: BootServerReply['from']; hex?: string };
  if (out.timeout || !out.from || !out.hex) return undefined;
  return { from: out.from, reply: decodeDhcp4(Buffer.from(out.hex, 'hex')) };
}

/** Option 60 as a PXE 2.1 ROM sends it (§2.2.1: "PXEClient:Arch:xxxxx:UNDI:yyyzzz"). */
function pxeRequestOptions(arch: number): Array<[number, Buffer]> {
  const uuid = Buffer.concat([Buffer.from([0]), randomBytes(16)]); // RFC 4578 §2.5: type 0 + 16 bytes
  const archText = String(arch).padStart(5, '0');
  return [
    [OptionCode.MESSAGE_TYPE, Buffer.from([MessageType.REQUEST])],
    [OptionCode.MAX_MESSAGE_SIZE, Buffer.from([0x05, 0xc0])],
    [OptionCode.PARAMETER_REQUEST_LIST, Buffer.from([1, 3, 43, 60, 66, 67, 97])],
    [OptionCode.CLIENT_ARCH, Buffer.from([arch >> 8, arch & 0xff])],
    [OptionCode.CLIENT_NDI, Buffer.from([1, 2, 1])],
    [OptionCode.CLIENT_UUID, uuid],
    [OptionCode.VENDOR_CLASS_ID, Buffer.from(`PXEClient:Arch:${archText}:UNDI:002001`)],
    // PXE 2.1 §2.2.5: the boot item the client asks the boot server for (type 0, layer 0).
    [OptionCode.VENDOR_SPECIFIC, Buffer.from([PxeVendorSubOption.BOOT_ITEM, 4, 0, 0, 0, 0, 0xff])],
  ];
}

/** Checks the boot-information-only shape of a ProxyDHCP answer (OFFER on 67, ACK on 4011). */
function assertProxyAnswer(m: Dhcp4Message, expected: { type: number; xid: number; file: string }): void {
  assert.equal(m.op, BootOp.BOOTREPLY);
  assert.equal(m.xid, expected.xid);
  assert.equal(messageType(m), expected.type);
  assert.equal(m.yiaddr, '0.0.0.0', 'a ProxyDHCP answer assigns no address');
  assert.equal(m.siaddr, PXEHA_IP);
  assert.equal(m.file, expected.file);
  assert.equal(m.options.get(OptionCode.VENDOR_CLASS_ID)?.toString('latin1'), 'PXEClient');
  assert.equal(m.options.get(OptionCode.SERVER_ID)?.join('.'), PXEHA_IP);
  const vendor = m.options.get(OptionCode.VENDOR_SPECIFIC);
  assert.ok(vendor, 'option 43 is missing');
  const control = parsePxeVendorOptions(vendor).find((s) => s.code === PxeVendorSubOption.DISCOVERY_CONTROL);
  assert.ok(control, `option 43 has no discovery control: ${vendor.toString('hex')}`);
  assert.equal((control.data[0] ?? 0) & PxeDiscoveryControl.USE_BOOTFILE, PxeDiscoveryControl.USE_BOOTFILE);
  for (const code of [
    OptionCode.LEASE_TIME,
    OptionCode.RENEWAL_TIME,
    OptionCode.REBINDING_TIME,
    OptionCode.SUBNET_MASK,
    OptionCode.ROUTER,
  ]) {
    assert.equal(m.options.has(code), false, `a ProxyDHCP answer carries no option ${code}`);
  }
}

describe('ProxyDHCP beside a foreign DHCP server (dnsmasq)', () => {
  const sandbox = createSandbox({ after });
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'pxeha-proxy-'));
  let lab: Lab;
  let node: PxehaNode;
  let dnsmasq: Dnsmasq;
  let script: string;
  let pxeClientIp: string;

  before(async () => {
    lab = await sandbox.lab({ serverAddresses: [`${PXEHA_IP}/24`, `${FOREIGN_IP}/24`], clients: 2 });
    dnsmasq = await Dnsmasq.start(lab.servers[1]!, {
      dir: workDir,
      rangeStart: `10.99.0.${FOREIGN_RANGE.start}`,
      rangeEnd: `10.99.0.${FOREIGN_RANGE.end}`,
    });
    node = await PxehaNode.create(lab.server, { name: 'proxy1', workDir: path.join(workDir, 'pxeha'), cluster: CLUSTER });
    await node.start();
    ({ script } = writeEventScript(workDir));
  });

  after(() => {
    if (process.env['PXT_DUMP'] !== '1') rmSync(workDir, { recursive: true, force: true });
  });

  it('a PXE client gets its address from dnsmasq and boot information, no address, from pxeha', async (t) => {
    const c0 = lab.clients[0]!;
    const mac = lab.clientMacs[0]!;
    const capture = await Capture.start(c0, path.join(workDir, 'pxe-client.pcap'));
    // smee's udhcpc PXE client, plus the machine identifier (97) and UNDI version (94) a PXE
    // ROM sends (PXE 2.1 §2.2.1, RFC 4578 §2.2, §2.5).
    const { bound, attempts, stderr } = await pxeLease(c0, script, [
      '-V',
      'PXEClient',
      '-x',
      '0x5d:0000',
      '-x',
      '0x5e:010201',
      '-x',
      `0x61:${PXE_UUID.toString('hex')}`,
    ]);
    if (attempts > 1) t.diagnostic(`udhcpc took pxeha's offer (yiaddr 0.0.0.0) first in ${attempts - 1} run(s)\n${stderr}`);
    pxeClientIp = bound.env['ip'] ?? '';
    assert.ok(inForeignRange(pxeClientIp), `address ${pxeClientIp} is not from dnsmasq's range`);
    assert.equal(bound.env['serverid'], FOREIGN_IP);
    assert.ok(
      dnsmasq.leases().some((l) => l.mac === mac && l.ip === pxeClientIp),
      'dnsmasq has no lease for the client',
    );

    // The run that got the lease ended with dnsmasq's ACK. Its REQUEST names dnsmasq (option
    // 54), so pxeha drops it as another server's: once that drop is logged, pxeha has decided
    // on everything the client sent.
    const ack = await capture.waitFor((ps) =>
      ps.find((p) => p.srcIp === FOREIGN_IP && messageType(p.dhcp) === MessageType.ACK && p.dhcp?.yiaddr === pxeClientIp),
    );
    const xid = ack.dhcp!.xid;
    await node.waitForLog((l) => l.msg === 'dhcp drop' && l['xid'] === xid && l['type'] === 'REQUEST' && l['reason'] === 'other-server');
    // Every OFFER pxeha logged (it logs after sending) and every DISCOVER it answered is in
    // the capture before it is stopped.
    const offersLogged = node.replies({ mac }).length;
    const isFromPxeha = (p: CapturedUdp): boolean => p.srcIp === PXEHA_IP || p.srcMac === lab.serverMacs[0];
    const isDiscover = (p: CapturedUdp): boolean => p.srcPort === 68 && messageType(p.dhcp) === MessageType.DISCOVER;
    await capture.waitFor((ps) =>
      ps.filter(isFromPxeha).length >= offersLogged && ps.filter(isDiscover).length >= offersLogged ? true : undefined,
    );
    const packets = await capture.stop();

    // One OFFER from pxeha for each DISCOVER, and nothing else.
    const discovers = packets.filter(isDiscover);
    const fromPxeha = packets.filter(isFromPxeha);
    assert.ok(discovers.some((p) => p.dhcp!.xid === xid));
    assert.deepEqual(
      fromPxeha.map((p) => [messageType(p.dhcp), p.dhcp?.xid]),
      discovers.map((p) => [MessageType.OFFER, p.dhcp!.xid]),
      'pxeha did not answer each DISCOVER with exactly one OFFER',
    );
    for (const offer of fromPxeha) {
      const discover = discovers.find((p) => p.dhcp!.xid === offer.dhcp!.xid)!;
      assert.ok(offer.dhcp);
      assert.deepEqual([offer.srcIp, offer.srcPort, offer.dstPort], [PXEHA_IP, 67, 68]);
      assert.equal(offer.srcMac, lab.serverMacs[0]);
      // yiaddr 0.0.0.0 and no broadcast bit: RFC 2131 §4.1 leaves only broadcast.
      assert.deepEqual([offer.dstIp, offer.dstMac], ['255.255.255.255', 'ff:ff:ff:ff:ff:ff']);
      assertProxyAnswer(offer.dhcp, { type: MessageType.OFFER, xid: discover.dhcp!.xid, file: 'undionly.kpxe' });
      assert.deepEqual(offer.dhcp.chaddr.subarray(0, 6), Buffer.from(mac.replaceAll(':', ''), 'hex'));
      assert.equal(offer.dhcp.flags, discover.dhcp!.flags);
      assert.deepEqual(offer.dhcp.options.get(OptionCode.CLIENT_UUID), PXE_UUID, 'PXE 2.1 §2.2.1: option 97 comes back');
      // The client asked for no option 67 (55 lacks it), and the name fits the file field.
      assert.equal(offer.dhcp.options.has(OptionCode.BOOTFILE_NAME), false);
    }

    // dnsmasq's answers carry no PXE information of their own.
    for (const p of packets.filter((q) => q.srcIp === FOREIGN_IP)) {
      assert.ok([MessageType.OFFER, MessageType.ACK].includes(messageType(p.dhcp) as 2 | 5));
      assert.equal(p.dhcp?.options.has(OptionCode.VENDOR_SPECIFIC), false);
      assert.equal(p.dhcp?.options.has(OptionCode.VENDOR_CLASS_ID), false);
      assert.equal(p.dhcp?.file, '');
    }
    assert.deepEqual(await node.leases(), [], 'pxeha wrote a lease in proxy mode');
  });

  it('a client that is not PXE gets nothing from pxeha', async () => {
    const c1 = lab.clients[1]!;
    const mac = lab.clientMacs[1]!;
    const capture = await Capture.start(c1, path.join(workDir, 'plain-client.pcap'));
    const { result, events } = await udhcpcOnce(c1, script);
    const bound = events.find((e) => e.event === 'bound');
    assert.ok(bound, `udhcpc got no lease\n${result.stderr}`);
    assert.ok(inForeignRange(bound.env['ip']));
    assert.equal(bound.env['serverid'], FOREIGN_IP);

    await node.waitForLog((l) => l.msg === 'dhcp drop' && l['mac'] === mac && l['type'] === 'DISCOVER' && l['reason'] === 'not-pxe-client');
    // Barrier: the REQUEST came after the DISCOVER, so once it is decided the DISCOVER is too.
    await node.waitForLog((l) => l.msg === 'dhcp drop' && l['mac'] === mac && l['type'] === 'REQUEST');
    await capture.waitFor((ps) => (ps.some((p) => p.srcIp === FOREIGN_IP && messageType(p.dhcp) === MessageType.ACK) ? true : undefined));
    const packets = await capture.stop();
    assert.deepEqual(
      packets.filter((p) => p.srcIp === PXEHA_IP || p.srcMac === lab.serverMacs[0]).map((p) => messageType(p.dhcp)),
      [],
      'pxeha answered a client that is not PXE',
    );
    assert.deepEqual(node.replies({ mac }), []);
  });

  it('port 4011: a PXE REQUEST to the boot server is ACKed with the boot file for its architecture', async () => {
    const c0 = lab.clients[0]!;
    const mac = lab.clientMacs[0]!;
    assert.ok(pxeClientIp, 'the PXE client has no address from the first test');
    for (const [arch, file] of [
      [0, 'undionly.kpxe'],
      [7, 'snponly.efi'],
    ] as const) {
      const xid = randomBytes(4).readUInt32BE(0);
      const options = pxeRequestOptions(arch);
      const answer = await bootServerRequest(c0, { clientIp: pxeClientIp, mac, xid, options });
      assert.ok(answer, `no answer from ${PXEHA_IP}:4011 for arch ${arch}`);
      assert.deepEqual([answer.from.address, answer.from.port], [PXEHA_IP, 4011]);
      assertProxyAnswer(answer.reply, { type: MessageType.ACK, xid, file });
      // RFC 2131 Table 3: an ACK echoes ciaddr; PXE 2.1 §2.2.1: option 97 comes back.
      assert.equal(answer.reply.ciaddr, pxeClientIp);
      assert.deepEqual(answer.reply.options.get(OptionCode.CLIENT_UUID), options.find(([c]) => c === OptionCode.CLIENT_UUID)?.[1]);
      assert.equal(answer.reply.options.get(OptionCode.BOOTFILE_NAME)?.toString('latin1'), file, 'option 67 was requested (55)');
    }
  });

  it('port 4011: a REQUEST that is not PXE is dropped as not-pxe-client', async () => {
    const c0 = lab.clients[0]!;
    const mac = lab.clientMacs[0]!;
    const xid = randomBytes(4).readUInt32BE(0);
    const options = pxeRequestOptions(0).filter(([code]) => code !== OptionCode.VENDOR_CLASS_ID);
    // The drop log line is the evidence; the client's short wait only confirms it.
    const pending = bootServerRequest(c0, { clientIp: pxeClientIp, mac, xid, options }, 1000);
    await node.waitForLog((l) => l.msg === 'dhcp drop' && l['xid'] === xid && l['reason'] === 'not-pxe-client');
    assert.equal(await pending, undefined, 'pxeha answered a non-PXE REQUEST on 4011');
    assert.deepEqual(node.replies({ reply: 'NAK' }), []);
  });
});
