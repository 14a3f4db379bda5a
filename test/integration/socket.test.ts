/**
 * Interface sockets on real links, inside namespaces this file creates:
 *
 *   client A (eth0, no IPv4) ──veth── eth0 10.99.0.1/24 ┐
 *                                                        ├ server namespace
 *   client B (eth0, no IPv4) ──veth── eth1 10.98.0.1/24 ┘
 *
 * The server opens one socket per interface on 0.0.0.0:67; each client opens one on
 * 0.0.0.0:68 pinned to its eth0 (it has no address and no route, as a booting client).
 * Each side is a small node process run with `ip netns exec`; it prints one JSON event per
 * line and takes commands on stdin.
 *
 * Negative checks use a barrier instead of a delay: after the datagram under test is seen on its
 * own link, a second datagram goes over the other link. A copy of the first that leaked onto the
 * other link would have been queued on the same socket before the barrier, so once the barrier
 * is read the socket's log is complete.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import type { ReplyDestination } from '../../src/dhcp/destination.js';
import { createSandbox, REPO_ROOT, run, srcUrl, type Netns, type NetnsProcess } from '../helpers/netns.js';

interface PeerEvent {
  ev: 'ready' | 'message' | 'sent' | 'error';
  ifname?: string;
  ifindex?: number;
  from?: { address: string; port: number };
  text?: string;
  hex?: string;
  id?: number;
  code?: string;
  message?: string;
  sockets?: Array<{ ifname: string; ifindex: number; port: number; localAddress?: string; localPrefixLength?: number }>;
}

/** Opens an interface socket per PXT_PEER.ifnames on PXT_PEER.port and bridges it to stdio. */
const PEER_SCRIPT = `
import { createInterface } from 'node:readline';
const { openInterfaceSocket } = await import(${JSON.stringify(srcUrl('src/dhcp/socket.ts'))});
const { ifnames, port } = JSON.parse(process.env.PXT_PEER);
const print = (event) => process.stdout.write(JSON.stringify(event) + '\\n');
const sockets = new Map();
for (const ifname of ifnames) {
  const socket = await openInterfaceSocket({ ifname, port });
  socket.on('message', (buf, rinfo) =>
    print({ ev: 'message', ifname, from: { address: rinfo.address, port: rinfo.port }, text: buf.toString(), hex: buf.toString('hex') }));
  socket.on('error', (err) => print({ ev: 'error', ifname, code: err.code, message: err.message }));
  sockets.set(ifname, socket);
}
print({ ev: 'ready', sockets: [...sockets.values()].map((s) =>
  ({ ifname: s.ifname, ifindex: s.ifindex, port: s.port, localAddress: s.localAddress, localPrefixLength: s.localPrefixLength })) });
for await (const line of createInterface({ input: process.stdin })) {
  const cmd = JSON.parse(line);
  const socket = sockets.get(cmd.ifname);
  try {
    const msg = Buffer.from(cmd.text);
    if (cmd.destination) await socket.sendReply(msg, cmd.destination);
    else await socket.send(msg, cmd.port, cmd.address, cmd.mac ? { mac: cmd.mac } : undefined);
    print({ ev: 'sent', id: cmd.id });
  } catch (err) {
    print({ ev: 'error', id: cmd.id, code: err.code, message: err.message });
  }
}
await Promise.all([...sockets.values()].map((s) => s.close()));
`;

class Peer {
  #nextId = 1;
  constructor(readonly proc: NetnsProcess) {}

  static async start(ns: Netns, label: string, ifnames: string[], port: number): Promise<{ peer: Peer; ready: PeerEvent }> {
    const proc = ns.spawnNodeScript(PEER_SCRIPT, {
      label,
      env: { ...process.env, PXT_PEER: JSON.stringify({ ifnames, port }) },
    });
    const peer = new Peer(proc);
    const ready = await peer.waitFor((e) => e.ev === 'ready');
    return { peer, ready };
  }

  events(): PeerEvent[] {
    return this.proc.lines().flatMap((line) => {
      try {
        return [JSON.parse(line) as PeerEvent];
      } catch {
        return [];
      }
    });
  }

  messages(): Array<{ ifname: string | undefined; text: string | undefined; from: PeerEvent['from'] }> {
    return this.events()
      .filter((e) => e.ev === 'message')
      .map((e) => ({ ifname: e.ifname, text: e.text, from: e.from }));
  }

  waitFor(match: (e: PeerEvent) => boolean): Promise<PeerEvent> {
    return this.proc.waitUntil(() => this.events().find(match));
  }

  waitForMessage(text: string): Promise<PeerEvent> {
    return this.waitFor((e) => e.ev === 'message' && e.text === text);
  }

  /** Sends and resolves with the outcome ('sent' or 'error' event). */
  async send(cmd: {
    ifname: string;
    text: string;
    port?: number;
    address?: string;
    mac?: string;
    destination?: ReplyDestination;
  }): Promise<PeerEvent> {
    const id = this.#nextId++;
    this.proc.write(`${JSON.stringify({ ...cmd, id })}\n`);
    return this.waitFor((e) => (e.ev === 'sent' || e.ev === 'error') && e.id === id);
  }
}

describe('interface sockets (SO_BINDTODEVICE) in network namespaces', () => {
  const sandbox = createSandbox({ after });
  let server: Peer;
  let clientA: Peer;
  let clientB: Peer;
  let nsA: Netns;
  let nsServer: Netns;
  const macA = '02:00:00:99:0a:01';
  const macB = '02:00:00:99:0b:01';

  before(async () => {
    nsServer = await sandbox.netns('srv');
    nsA = await sandbox.netns('ca');
    const nsB = await sandbox.netns('cb');
    await sandbox.veth({ ns: nsServer, ifname: 'eth0', address: '10.99.0.1/24' }, { ns: nsA, ifname: 'eth0', mac: macA });
    await sandbox.veth({ ns: nsServer, ifname: 'eth1', address: '10.98.0.1/24' }, { ns: nsB, ifname: 'eth0', mac: macB });

    let ready: PeerEvent;
    ({ peer: server, ready } = await Peer.start(nsServer, 'server', ['eth0', 'eth1'], 67));
    assert.deepEqual(
      ready.sockets?.map((s) => [s.ifname, s.port, s.localAddress, s.localPrefixLength]),
      [
        ['eth0', 67, '10.99.0.1', 24],
        ['eth1', 67, '10.98.0.1', 24],
      ],
    );
    ({ peer: clientA, ready } = await Peer.start(nsA, 'client A', ['eth0'], 68));
    assert.equal(ready.sockets?.[0]?.localAddress, undefined, 'a booting client has no IPv4 address');
    ({ peer: clientB } = await Peer.start(nsB, 'client B', ['eth0'], 68));
  });

  it('delivers a broadcast from client A only to the eth0 socket, and from B only to eth1', async () => {
    assert.equal((await clientA.send({ ifname: 'eth0', port: 67, address: '255.255.255.255', text: 'discover-A' })).ev, 'sent');
    const fromA = await server.waitForMessage('discover-A');
    assert.equal(fromA.ifname, 'eth0');
    assert.deepEqual(fromA.from, { address: '0.0.0.0', port: 68 });

    // Barrier over the other link (see the file comment).
    assert.equal((await clientB.send({ ifname: 'eth0', port: 67, address: '255.255.255.255', text: 'discover-B' })).ev, 'sent');
    await server.waitForMessage('discover-B');

    assert.deepEqual(
      server.messages().map((m) => [m.ifname, m.text]),
      [
        ['eth0', 'discover-A'],
        ['eth1', 'discover-B'],
      ],
    );
  });

  it('receives a real client\'s DISCOVER (busybox udhcpc, raw socket) on the eth0 socket only', async () => {
    const isDiscoverFromA = (e: PeerEvent) =>
      e.ev === 'message' && e.hex?.slice(0, 2) === '01' && e.hex.slice(56, 68) === macA.replaceAll(':', '');
    const udhcpc = nsA.spawn(['busybox', 'udhcpc', '-i', 'eth0', '-f', '-n', '-q', '-t', '1', '-T', '1', '-s', '/bin/true'], {
      label: 'udhcpc in client A',
    });
    const discover = await server.waitFor(isDiscoverFromA);
    assert.equal(discover.ifname, 'eth0');
    assert.deepEqual(discover.from, { address: '0.0.0.0', port: 68 });
    await udhcpc.stop();

    assert.equal((await clientB.send({ ifname: 'eth0', port: 67, address: '255.255.255.255', text: 'barrier-udhcpc' })).ev, 'sent');
    await server.waitForMessage('barrier-udhcpc');
    const seen = server.events().filter(isDiscoverFromA);
    assert.ok(seen.length >= 1);
    assert.ok(seen.every((e) => e.ifname === 'eth0'), JSON.stringify(seen.map((e) => e.ifname)));
  });

  it('sends a broadcast on the eth0 socket to client A only, from the eth0 address', async () => {
    assert.equal((await server.send({ ifname: 'eth0', port: 68, address: '255.255.255.255', text: 'offer-eth0' })).ev, 'sent');
    const atA = await clientA.waitForMessage('offer-eth0');
    assert.deepEqual(atA.from, { address: '10.99.0.1', port: 67 });

    assert.equal((await server.send({ ifname: 'eth1', port: 68, address: '255.255.255.255', text: 'offer-eth1' })).ev, 'sent');
    const atB = await clientB.waitForMessage('offer-eth1');
    assert.deepEqual(atB.from, { address: '10.98.0.1', port: 67 });

    // Each barrier also proves the other direction: A has read its own datagram, B its own.
    assert.deepEqual(clientB.messages().map((m) => m.text), ['offer-eth1']);
    assert.deepEqual(clientA.messages().map((m) => m.text), ['offer-eth0']);
  });

  it('unicasts to a client that has no address yet through an ARP entry (RFC 2131 §4.1)', async () => {
    // Client A's UDP socket cannot see a datagram for an address it does not hold, so the frame
    // is captured on its link: destination MAC must be A's, destination IP the offered address.
    const capture = nsA.spawn(['tcpdump', '-i', 'eth0', '-n', '-e', '-l', '-c', '1', 'udp and dst port 68'], {
      label: 'tcpdump in client A',
    });
    await capture.waitForLine(/listening on eth0/, { stream: 'stderr' });

    const outcome = await server.send({
      ifname: 'eth0',
      text: 'offer-unicast',
      destination: { kind: 'unicast-to-new-client', address: '10.99.0.50', mac: macA, port: 68 },
    });
    assert.equal(outcome.ev, 'sent', outcome.message);
    const frame = await capture.waitForLine(/10\.99\.0\.50\.68/);
    assert.match(frame, new RegExp(`> ${macA}`), frame);
    assert.match(frame, /10\.99\.0\.1\.67 > 10\.99\.0\.50\.68: /, frame);

    const neigh = await nsServer.ip(['neigh', 'show', '10.99.0.50', 'dev', 'eth0']);
    assert.match(neigh.stdout, new RegExp(`lladdr ${macA}`));
    // Nothing reached the other link.
    assert.deepEqual(clientB.messages().map((m) => m.text), ['offer-eth1']);
  });

  it('falls back to broadcast on the same link when the ARP entry cannot be written', async () => {
    const outcome = await server.send({
      ifname: 'eth0',
      text: 'offer-fallback',
      destination: { kind: 'unicast-to-new-client', address: '10.99.0.52', mac: 'not-a-mac', port: 68 },
    });
    assert.equal(outcome.ev, 'sent', outcome.message);
    assert.deepEqual((await clientA.waitForMessage('offer-fallback')).from, { address: '10.99.0.1', port: 67 });
    // Barrier on B's link, then B's log is complete.
    await server.send({ ifname: 'eth1', port: 68, address: '255.255.255.255', text: 'barrier-B' });
    await clientB.waitForMessage('barrier-B');
    assert.deepEqual(clientB.messages().map((m) => m.text), ['offer-eth1', 'barrier-B']);
  });

  it('rejects a send whose ARP entry it cannot write with PXE_ERR_SOCKET', async () => {
    const outcome = await server.send({ ifname: 'eth0', port: 68, address: '10.99.0.51', mac: 'not-a-mac', text: 'never' });
    assert.equal(outcome.ev, 'error');
    assert.equal(outcome.code, 'PXE_ERR_SOCKET');
    assert.match(outcome.message ?? '', /ARP entry 10\.99\.0\.51/);
  });
});

describe('lab(): one segment through a bridge', () => {
  const sandbox = createSandbox({ after });

  for (const bridgeIn of ['own', 'server'] as const) {
    it(`reaches every client with a server broadcast, and the server with a client's (bridge in ${bridgeIn} namespace)`, async () => {
      const lab = await sandbox.lab({ clients: 2, bridgeIn, serverAddress: bridgeIn === 'own' ? '10.99.0.1/24' : '10.97.0.1/24' });
      assert.deepEqual(lab.clientMacs, ['02:00:00:99:01:01', '02:00:00:99:01:02']);
      assert.equal(await lab.clients[1]?.mac('eth0'), '02:00:00:99:01:02');
      assert.equal(lab.bridge.ns.name, (bridgeIn === 'own' ? lab.bridge.ns : lab.server).name);

      const { peer: server } = await Peer.start(lab.server, `${bridgeIn}: server`, ['eth0'], 67);
      const clients = await Promise.all(lab.clients.map(async (ns, i) => (await Peer.start(ns, `${bridgeIn}: client ${i}`, ['eth0'], 68)).peer));

      assert.equal((await server.send({ ifname: 'eth0', port: 68, address: '255.255.255.255', text: 'hello-all' })).ev, 'sent');
      for (const client of clients) {
        const got = await client.waitForMessage('hello-all');
        assert.equal(got.from?.address, lab.serverIps[0]);
      }
      const first = clients[0];
      assert.ok(first);
      assert.equal((await first.send({ ifname: 'eth0', port: 67, address: '255.255.255.255', text: 'from-c0' })).ev, 'sent');
      assert.equal((await server.waitForMessage('from-c0')).from?.address, '0.0.0.0');
    });
  }
});

describe('sandbox cleanup when the test process is interrupted or crashes', () => {
  // A child test process (in the host namespace, like a real test file) builds a lab and starts
  // a long-running process inside it, then is interrupted; nothing may survive it.
  const CHILD = `
    const { Sandbox } = await import(${JSON.stringify(srcUrl('test/helpers/netns.ts'))});
    const sandbox = new Sandbox();
    const lab = await sandbox.lab({ clients: 1 });
    const sleeper = lab.clients[0].spawn(['sleep', '600']);
    process.stdout.write(JSON.stringify({ namespaces: sandbox.namespaces.map((n) => n.name), pid: sleeper.pid }) + '\\n');
    if (process.env.PXT_CRASH) setTimeout(() => { throw new Error('crash on purpose'); }, 10);
    else setInterval(() => {}, 1000);
  `;

  for (const how of ['SIGINT', 'SIGTERM', 'uncaught exception'] as const) {
    it(`removes namespaces and kills processes on ${how}`, async () => {
      const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '--eval', CHILD], {
        cwd: REPO_ROOT,
        env: { ...process.env, ...(how === 'uncaught exception' ? { PXT_CRASH: '1' } : {}) },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      const exited = once(child, 'exit');
      const [line] = (await once(createInterface({ input: child.stdout }), 'line')) as [string];
      const made = JSON.parse(line) as { namespaces: string[]; pid: number };
      assert.equal(made.namespaces.length, 3);
      assert.ok(isAlive(made.pid));

      if (how !== 'uncaught exception') child.kill(how);
      const [code, signal] = (await exited) as [number | null, NodeJS.Signals | null];
      if (how === 'uncaught exception') {
        assert.equal(code, 1, stderr);
        assert.match(stderr, /crash on purpose/);
      } else {
        assert.equal(signal, how, stderr);
      }

      const { stdout } = await run(['ip', 'netns', 'list']);
      for (const name of made.namespaces) assert.ok(!stdout.includes(name), `${name} survived:\n${stdout}`);
      await waitForDeath(made.pid);
    });
  }
});

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** SIGKILL is delivered asynchronously; the kernel reaps the process a moment later. */
async function waitForDeath(pid: number): Promise<void> {
  for (let i = 0; i < 100 && isAlive(pid); i++) await new Promise((r) => setTimeout(r, 20));
  assert.ok(!isAlive(pid), `pid ${pid} survived`);
}
