/**
 * The socket adapter on loopback only (ephemeral ports; never 67/68 in the host namespace).
 * Link behaviour (which interface a broadcast arrives on and leaves by) is covered in
 * test/integration/socket.test.ts inside network namespaces.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PxehaError } from '../errors.js';
import { loadSockopt, openInterfaceSocket, openUnicastSocket, type RemoteInfo, type UdpSocket } from './socket.js';

function nextMessage(socket: UdpSocket): Promise<[Buffer, RemoteInfo]> {
  return new Promise((resolve) => {
    const listener = (msg: Buffer, rinfo: RemoteInfo) => {
      socket.off('message', listener);
      resolve([msg, rinfo]);
    };
    socket.on('message', listener);
  });
}

async function rejectsWithSocketError(promise: Promise<unknown>, message: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof PxehaError, `not a PxehaError: ${String(err)}`);
    assert.equal(err.code, 'PXE_ERR_SOCKET');
    assert.match(err.message, message);
    return true;
  });
}

describe('openUnicastSocket', () => {
  it('binds the given address and port 0 to a free port, and exchanges datagrams', async () => {
    const a = await openUnicastSocket({ address: '127.0.0.1', port: 0 });
    const b = await openUnicastSocket({ address: '127.0.0.1', port: 0 });
    try {
      assert.equal(a.localAddress, '127.0.0.1');
      assert.equal(a.ifname, 'lo', 'the interface holding the address');
      assert.ok(a.port > 0);
      const received = nextMessage(b);
      await a.send(Buffer.from('ping'), b.port, '127.0.0.1');
      const [msg, rinfo] = await received;
      assert.equal(msg.toString(), 'ping');
      assert.equal(rinfo.port, a.port);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('rejects with PXE_ERR_SOCKET for an address this host does not have', async () => {
    // 192.0.2.1 is TEST-NET-1 (RFC 5737): bind fails locally, nothing is sent.
    await rejectsWithSocketError(openUnicastSocket({ address: '192.0.2.1', port: 0 }), /bind 192\.0\.2\.1:0: .*EADDRNOTAVAIL/);
    await rejectsWithSocketError(
      openUnicastSocket({ address: '192.0.2.1', port: 0, ifname: 'lo' }),
      /open UDP socket 192\.0\.2\.1:0 on lo: bind .*Cannot assign requested address \(EADDRNOTAVAIL\)/,
    );
  });

  it('keeps delivering when a listener throws or rejects, and reports it as PXE_ERR_SOCKET', async () => {
    const a = await openUnicastSocket({ address: '127.0.0.1', port: 0 });
    const b = await openUnicastSocket({ address: '127.0.0.1', port: 0 });
    try {
      b.on('message', () => {
        throw new Error('boom');
      });
      b.on('message', async () => {
        throw new Error('async boom');
      });
      const errors: PxehaError[] = [];
      const twoErrors = new Promise<void>((resolve) =>
        b.on('error', (err) => {
          if (errors.push(err) === 2) resolve();
        }),
      );
      const received = nextMessage(b);
      await a.send(Buffer.from('one'), b.port, '127.0.0.1');
      const [msg] = await received;
      assert.equal(msg.toString(), 'one', 'a later listener still got the datagram');
      await twoErrors;
      assert.deepEqual(
        errors.map((e) => [e.code, /(async )?boom$/.exec(e.message)?.[0]]),
        [
          ['PXE_ERR_SOCKET', 'boom'],
          ['PXE_ERR_SOCKET', 'async boom'],
        ],
      );
      assert.match(errors[0]?.message ?? '', /from 127\.0\.0\.1:\d+/);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('rejects send after close, and close is idempotent', async () => {
    const a = await openUnicastSocket({ address: '127.0.0.1', port: 0 });
    const closed = new Promise<void>((resolve) => a.on('close', resolve));
    await a.close();
    await a.close();
    await closed;
    await rejectsWithSocketError(a.send(Buffer.from('late'), 9, '127.0.0.1'), /send to 127\.0\.0\.1:9/);
  });
});

describe('openInterfaceSocket', () => {
  it('pins a socket to lo and reports its index and address', async () => {
    const pinned = await openInterfaceSocket({ ifname: 'lo', port: 0 });
    const peer = await openUnicastSocket({ address: '127.0.0.1', port: 0 });
    try {
      assert.equal(pinned.ifname, 'lo');
      assert.equal(pinned.ifindex, loadSockopt().ifIndex('lo'));
      assert.equal(pinned.localAddress, '127.0.0.1');
      assert.equal(pinned.localPrefixLength, 8);
      const received = nextMessage(pinned);
      await peer.send(Buffer.from('to-lo'), pinned.port, '127.0.0.1');
      assert.equal((await received)[0].toString(), 'to-lo');
      const back = nextMessage(peer);
      await pinned.send(Buffer.from('from-lo'), peer.port, '127.0.0.1');
      const [msg, rinfo] = await back;
      assert.equal(msg.toString(), 'from-lo');
      assert.equal(rinfo.port, pinned.port);
    } finally {
      await Promise.all([pinned.close(), peer.close()]);
    }
  });

  it('sends a unicast reply destination where it says', async () => {
    const pinned = await openInterfaceSocket({ ifname: 'lo', port: 0 });
    const peer = await openUnicastSocket({ address: '127.0.0.1', port: 0, ifname: 'lo' });
    try {
      assert.equal(peer.ifname, 'lo');
      const received = nextMessage(peer);
      await pinned.sendReply(Buffer.from('reply'), { kind: 'unicast', address: '127.0.0.1', port: peer.port });
      const [msg, rinfo] = await received;
      assert.equal(msg.toString(), 'reply');
      assert.equal(rinfo.port, pinned.port);
    } finally {
      await Promise.all([pinned.close(), peer.close()]);
    }
  });

  it('rejects with PXE_ERR_SOCKET for a missing interface', async () => {
    await rejectsWithSocketError(openInterfaceSocket({ ifname: 'pxt-missing0', port: 0 }), /interface pxt-missing0: .*ENODEV/);
  });

  it('rejects an address the interface does not hold', async () => {
    await rejectsWithSocketError(openInterfaceSocket({ ifname: 'lo', port: 0, address: '10.99.0.1' }), /lo has no address 10\.99\.0\.1 \(it has 127\.0\.0\.1\/8\)/);
  });

  it('rejects a port already taken on the same interface', async () => {
    const first = await openInterfaceSocket({ ifname: 'lo', port: 0, reuseAddr: false });
    try {
      await rejectsWithSocketError(openInterfaceSocket({ ifname: 'lo', port: first.port, reuseAddr: false }), /EADDRINUSE/);
    } finally {
      await first.close();
    }
  });

  it('rejects a send with a MAC on a socket not pinned to an interface', async () => {
    const plain = await openUnicastSocket({ address: '127.0.0.1', port: 0 });
    try {
      await rejectsWithSocketError(plain.send(Buffer.from('x'), 9, '127.0.0.2', { mac: '02:00:00:00:00:01' }), /not pinned to an interface/);
    } finally {
      await plain.close();
    }
  });

  it('rejects a send with a bad MAC before sending', async () => {
    const pinned = await openInterfaceSocket({ ifname: 'lo', port: 0 });
    try {
      await rejectsWithSocketError(pinned.send(Buffer.from('x'), 9, '127.0.0.2', { mac: 'nope' }), /ARP entry 127\.0\.0\.2 -> nope on lo: mac must look like/);
    } finally {
      await pinned.close();
    }
  });
});

describe('loadSockopt', () => {
  it('loads the addon with its whole surface', () => {
    const binding = loadSockopt();
    for (const name of ['ifIndex', 'openUdpSocket', 'bindToDevice', 'boundDevice', 'closeFd', 'setArpEntry', 'deleteArpEntry']) {
      assert.equal(typeof (binding as unknown as Record<string, unknown>)[name], 'function', name);
    }
  });
});
