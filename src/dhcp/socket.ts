/**
 * DHCP sockets: I/O only, no decisions.
 *
 * A DISCOVER comes from 0.0.0.0 to 255.255.255.255, so the server must listen on 0.0.0.0:67, and
 * a plain socket there cannot tell which link a broadcast came in on; its broadcast replies
 * follow the default route. So we open one socket per served interface and pin it with
 * SO_BINDTODEVICE (socket(7)): the kernel delivers to it only datagrams that arrived on that
 * device and sends everything it writes, broadcasts included, out of that device. The pinning is
 * done by our addon (native/sockopt.c) before bind(2), so no datagram from another link can slip
 * in between, and dgram adopts the descriptor with bind({ fd }); this also avoids dgram's
 * private, deprecated `_handle` (DEP0112).
 *
 * On the packet path nothing throws: a listener that throws or rejects, and any socket error,
 * goes to the 'error' listeners (or a process warning when there are none).
 */
import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PxehaError } from '../errors.js';
import type { ReplyDestination } from './destination.js';

/** An IPv4 address of an interface, as os.networkInterfaces() reports it. */
export interface InterfaceAddress {
  address: string;
  netmask: string;
  prefixLength: number;
  /** `address/prefixLength`, e.g. `10.99.0.1/24`. */
  cidr: string;
}

/** Where a datagram came from (dgram's RemoteInfo). */
export type RemoteInfo = dgram.RemoteInfo;

/** A message listener may be async; a rejection is reported like a throw. */
export type MessageListener = (msg: Buffer, rinfo: RemoteInfo) => void | Promise<void>;
export type ErrorListener = (err: PxehaError) => void;

export interface SendOptions {
  /**
   * Client hardware address for a unicast to an address the client does not hold yet
   * (RFC 2131 §4.1: yiaddr + chaddr when the broadcast bit is clear). A neighbour entry
   * address → mac is written on the socket's interface first; if that fails the promise
   * rejects and nothing is sent.
   */
  mac?: string;
}

/**
 * What both kinds of socket share. Servers take this, so tests can inject a fake
 * (insomniacslk server4.WithConn).
 */
export interface UdpSocket {
  /** The interface the socket serves: pinned to it, or (unicast socket) the one holding its address. */
  readonly ifname: string;
  /** Our IPv4 address on that interface (the server identifier there); undefined if it has none. */
  readonly localAddress: string | undefined;
  /** The local port actually bound (useful with port 0). */
  readonly port: number;
  /**
   * Each datagram received. A listener that throws or returns a rejected promise does not
   * disturb the socket or other listeners; its error goes to the 'error' listeners.
   */
  on(event: 'message', listener: MessageListener): this;
  /**
   * A socket error after open, or a message listener's failure, as PXE_ERR_SOCKET. The socket
   * stays open. With no 'error' listener these become process warnings, never exceptions.
   */
  on(event: 'error', listener: ErrorListener): this;
  /** The socket has closed, by close() or by the OS. */
  on(event: 'close', listener: () => void): this;
  off(event: 'message', listener: MessageListener): this;
  off(event: 'error', listener: ErrorListener): this;
  off(event: 'close', listener: () => void): this;
  /** Resolves once the datagram is handed to the kernel; rejects with PXE_ERR_SOCKET. */
  send(msg: Uint8Array, port: number, address: string, options?: SendOptions): Promise<void>;
  /**
   * Sends to a destination chosen by replyDestination() (destination.ts): 'broadcast' goes to
   * 255.255.255.255 out of this socket's interface; 'unicast-to-new-client' writes the ARP
   * entry and unicasts, and falls back to broadcast when the entry cannot be written
   * (RFC 2131 §4.1 allows either).
   */
  sendReply(msg: Uint8Array, destination: ReplyDestination): Promise<void>;
  /** Idempotent. */
  close(): Promise<void>;
}

export interface InterfaceSocket extends UdpSocket {
  readonly ifindex: number;
  /**
   * Prefix length of localAddress (e.g. 24), undefined with it. Address and prefix are read
   * when the socket opens and not refreshed: reopen the socket after readdressing.
   */
  readonly localPrefixLength: number | undefined;
}

export interface UnicastSocket extends UdpSocket {
  readonly localAddress: string;
}

export interface InterfaceSocketOptions {
  ifname: string;
  /** 67 for a server; 0 picks a free port. */
  port: number;
  /** Which of the interface's IPv4 addresses to report as localAddress; it must exist. */
  address?: string;
  /**
   * SO_REUSEADDR, default true: lets another socket share the port, such as a unicast socket
   * on the server address or a foreign DHCP server in proxy mode. Sockets pinned to different
   * interfaces never conflict, with or without it.
   */
  reuseAddr?: boolean;
}

export interface UnicastSocketOptions {
  /** A local IPv4 address (e.g. the server address for port 4011), or 127.0.0.1 in tests. */
  address: string;
  port: number;
  /**
   * Also pin the socket to this interface (SO_BINDTODEVICE), so its broadcasts leave by it.
   * Without it the socket is plain dgram, and ifname reports the interface holding address.
   */
  ifname?: string;
  /** SO_REUSEADDR, default true, so it can share a port with the interface sockets. */
  reuseAddr?: boolean;
}

/** The addon's exports (native/sockopt.c); errors carry code/errno/syscall like Node's. */
export interface SockoptBinding {
  ifIndex(ifname: string): number;
  openUdpSocket(ifname: string, address: string, port: number, reuseAddr: boolean): number;
  bindToDevice(fd: number, ifname: string): void;
  boundDevice(fd: number): string;
  closeFd(fd: number): void;
  setArpEntry(ifname: string, ip: string, mac: string): void;
  deleteArpEntry(ifname: string, ip: string): void;
}

const ADDON = path.join('build', 'Release', 'pxeha_sockopt.node');

/**
 * Loads the addon from the package root's build/Release. The root is found by walking up from
 * this file, so it works from src/ under tsx and from dist/ after tsc alike.
 */
export function loadSockopt(): SockoptBinding {
  const here = path.dirname(fileURLToPath(import.meta.url));
  let dir = here;
  for (;;) {
    const candidate = path.join(dir, ADDON);
    if (existsSync(candidate)) {
      try {
        return createRequire(import.meta.url)(candidate) as SockoptBinding;
      } catch (err) {
        throw new PxehaError(
          'PXE_ERR_SOCKET',
          `cannot load the native addon ${candidate}: ${errorText(err)}; rebuild it with ` +
            '`npm rebuild` or `npm_config_nodedir=/usr npx node-gyp rebuild`',
          { cause: err },
        );
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  throw new PxehaError(
    'PXE_ERR_SOCKET',
    `the native addon ${ADDON} is not built (looked in the parents of ${here}); build it with ` +
      '`npm rebuild` or `npm_config_nodedir=/usr npx node-gyp rebuild` (scripts/install-deps.sh does it)',
  );
}

/** Every IPv4 address of ifname, in the order the OS lists them. */
export function interfaceAddresses(ifname: string): InterfaceAddress[] {
  const entries = os.networkInterfaces()[ifname] ?? [];
  const out: InterfaceAddress[] = [];
  for (const e of entries) {
    if (e.family !== 'IPv4' || e.cidr === null) continue;
    out.push({ address: e.address, netmask: e.netmask, prefixLength: Number(e.cidr.split('/')[1]), cidr: e.cidr });
  }
  return out;
}

/**
 * Opens a UDP socket on 0.0.0.0:port that receives only what arrives on ifname and sends
 * only out of it, with broadcast allowed. Port 67 needs CAP_NET_BIND_SERVICE, and kernels
 * before 5.7 want CAP_NET_RAW for SO_BINDTODEVICE. Rejects with PXE_ERR_SOCKET.
 */
export async function openInterfaceSocket(options: InterfaceSocketOptions): Promise<InterfaceSocket> {
  const { ifname, port } = options;
  const binding = loadSockopt();
  const ifindex = callNative(() => binding.ifIndex(ifname), `interface ${ifname}`);
  const addresses = interfaceAddresses(ifname);
  let local: InterfaceAddress | undefined = addresses[0];
  if (options.address !== undefined) {
    local = addresses.find((a) => a.address === options.address);
    if (local === undefined) {
      const held = addresses.map((a) => a.cidr).join(', ') || 'none';
      throw new PxehaError('PXE_ERR_SOCKET', `interface ${ifname} has no address ${options.address} (it has ${held})`);
    }
  }
  const socket = await adoptPinnedSocket(binding, ifname, '0.0.0.0', port, options.reuseAddr ?? true);
  setLargeRecvBuffer(socket);
  return new InterfaceSocketImpl(socket, { ifname, ifindex, local, binding });
}

/**
 * Receive buffer of a DHCP interface socket. Every request of a segment (or of a relay's
 * fan-out) arrives on it in bursts; the kernel's default (~200 KiB, a few hundred small
 * datagrams) overflowed under perfdhcp load during event-loop pauses (bench/dhcp-ha). The
 * kernel caps the request at net.core.rmem_max.
 */
const RECV_BUFFER_BYTES = 4 << 20;

function setLargeRecvBuffer(socket: dgram.Socket): void {
  try {
    socket.setRecvBufferSize(RECV_BUFFER_BYTES);
  } catch {
    // Not fatal: the kernel's default buffer still works, with less room for bursts.
  }
}

/**
 * A socket bound to one local address, e.g. server-address:4011: plain dgram, or pinned to
 * options.ifname as well. Broadcast is allowed. Rejects with PXE_ERR_SOCKET.
 */
export async function openUnicastSocket(options: UnicastSocketOptions): Promise<UnicastSocket> {
  const { address, port } = options;
  const reuseAddr = options.reuseAddr ?? true;
  if (options.ifname !== undefined) {
    const binding = loadSockopt();
    const socket = await adoptPinnedSocket(binding, options.ifname, address, port, reuseAddr);
    return new UnicastSocketImpl(socket, options.ifname, binding);
  }
  const owner = Object.entries(os.networkInterfaces()).find(([, entries]) =>
    (entries ?? []).some((e) => e.family === 'IPv4' && e.address === address),
  )?.[0];
  if (owner === undefined) throw new PxehaError('PXE_ERR_SOCKET', `bind ${address}:${port}: no interface holds ${address} (EADDRNOTAVAIL)`);
  const socket = dgram.createSocket({ type: 'udp4', reuseAddr });
  try {
    await bindSocket(socket, { address, port });
    socket.setBroadcast(true);
  } catch (err) {
    socket.close();
    throw socketError(`bind ${address}:${port}`, err);
  }
  return new UnicastSocketImpl(socket, owner, undefined);
}

/** Creates, pins and binds the socket natively, then has dgram adopt the descriptor. */
async function adoptPinnedSocket(
  binding: SockoptBinding,
  ifname: string,
  address: string,
  port: number,
  reuseAddr: boolean,
): Promise<dgram.Socket> {
  const fd = callNative(() => binding.openUdpSocket(ifname, address, port, reuseAddr), `open UDP socket ${address}:${port} on ${ifname}`);
  const socket = dgram.createSocket({ type: 'udp4' });
  try {
    await bindSocket(socket, { fd });
  } catch (err) {
    // dgram did not adopt the descriptor (it only fails before taking it), so close it here.
    try {
      binding.closeFd(fd);
    } catch {
      // Already closed: nothing leaks.
    }
    throw socketError(`adopt socket ${address}:${port} on ${ifname}`, err);
  }
  return socket;
}

const BROADCAST = '255.255.255.255';

class DatagramSocketImpl extends EventEmitter implements UdpSocket {
  readonly ifname: string;
  readonly port: number;
  readonly localAddress: string | undefined;
  readonly #socket: dgram.Socket;
  readonly #label: string;
  /** Set when the socket is pinned to ifname, so ARP entries can be written there. */
  readonly #binding: SockoptBinding | undefined;
  #closing: Promise<void> | undefined;

  constructor(socket: dgram.Socket, info: { ifname: string; localAddress: string | undefined; binding: SockoptBinding | undefined }) {
    super();
    this.#socket = socket;
    this.ifname = info.ifname;
    this.localAddress = info.localAddress;
    this.#binding = info.binding;
    this.port = socket.address().port;
    this.#label = `${info.ifname} ${socket.address().address}:${this.port}`;
    socket.on('message', (msg, rinfo) => this.#deliver(msg, rinfo));
    socket.on('error', (err) => this.#report(socketError(this.#label, err)));
    socket.on('close', () => this.emit('close'));
  }

  #deliver(msg: Buffer, rinfo: RemoteInfo): void {
    for (const listener of this.listeners('message') as MessageListener[]) {
      try {
        const result = listener(msg, rinfo);
        if (result instanceof Promise) {
          result.catch((err: unknown) => this.#report(listenerError(this.#label, rinfo, err)));
        }
      } catch (err) {
        this.#report(listenerError(this.#label, rinfo, err));
      }
    }
  }

  /** Hands an error to the 'error' listeners, or to a process warning when there are none. */
  #report(err: PxehaError): void {
    if (this.listenerCount('error') === 0) {
      process.emitWarning(err.message, { code: err.code });
      return;
    }
    for (const listener of this.listeners('error') as ErrorListener[]) {
      try {
        listener(err);
      } catch {
        // An error listener that throws has nowhere left to report to; the socket goes on.
      }
    }
  }

  async send(msg: Uint8Array, port: number, address: string, options?: SendOptions): Promise<void> {
    if (options?.mac !== undefined) this.#setArpEntry(address, options.mac);
    return new Promise((resolve, reject) => {
      const fail = (err: unknown) => reject(socketError(`${this.#label} send to ${address}:${port}`, err));
      try {
        this.#socket.send(msg, port, address, (err) => (err ? fail(err) : resolve()));
      } catch (err) {
        fail(err); // e.g. ERR_SOCKET_DGRAM_NOT_RUNNING after close()
      }
    });
  }

  async sendReply(msg: Uint8Array, destination: ReplyDestination): Promise<void> {
    switch (destination.kind) {
      case 'unicast':
        return this.send(msg, destination.port, destination.address);
      case 'broadcast':
        return this.send(msg, destination.port, BROADCAST);
      case 'unicast-to-new-client':
        try {
          this.#setArpEntry(destination.address, destination.mac);
        } catch {
          return this.send(msg, destination.port, BROADCAST);
        }
        return this.send(msg, destination.port, destination.address);
    }
  }

  #setArpEntry(address: string, mac: string): void {
    const binding = this.#binding;
    const what = `set ARP entry ${address} -> ${mac} on ${this.ifname}`;
    if (binding === undefined) throw new PxehaError('PXE_ERR_SOCKET', `${what}: the socket is not pinned to an interface`);
    callNative(() => binding.setArpEntry(this.ifname, address, mac), what);
  }

  close(): Promise<void> {
    this.#closing ??= new Promise((resolve) => {
      try {
        this.#socket.close(() => resolve());
      } catch {
        resolve(); // already closed by the OS
      }
    });
    return this.#closing;
  }
}

class InterfaceSocketImpl extends DatagramSocketImpl implements InterfaceSocket {
  readonly ifindex: number;
  readonly localPrefixLength: number | undefined;

  constructor(
    socket: dgram.Socket,
    info: { ifname: string; ifindex: number; local: InterfaceAddress | undefined; binding: SockoptBinding },
  ) {
    super(socket, { ifname: info.ifname, localAddress: info.local?.address, binding: info.binding });
    this.ifindex = info.ifindex;
    this.localPrefixLength = info.local?.prefixLength;
  }
}

class UnicastSocketImpl extends DatagramSocketImpl implements UnicastSocket {
  declare readonly localAddress: string;

  constructor(socket: dgram.Socket, ifname: string, binding: SockoptBinding | undefined) {
    super(socket, { ifname, localAddress: socket.address().address, binding });
  }
}

function bindSocket(socket: dgram.Socket, options: dgram.BindOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    socket.once('error', onError);
    try {
      socket.bind(options, () => {
        socket.off('error', onError);
        resolve();
      });
    } catch (err) {
      socket.off('error', onError);
      reject(err);
    }
  });
}

function callNative<T>(call: () => T, what: string): T {
  try {
    return call();
  } catch (err) {
    throw socketError(what, err);
  }
}

function socketError(what: string, err: unknown): PxehaError {
  if (err instanceof PxehaError) return err;
  return new PxehaError('PXE_ERR_SOCKET', `${what}: ${errorText(err)}`, { cause: err });
}

function listenerError(label: string, rinfo: RemoteInfo, err: unknown): PxehaError {
  return new PxehaError(
    'PXE_ERR_SOCKET',
    `${label}: message listener failed on a datagram from ${rinfo.address}:${rinfo.port}: ${errorText(err)}`,
    { cause: err },
  );
}

function errorText(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code !== undefined && !err.message.includes(code) ? `${err.message} (${code})` : err.message;
  }
  return String(err);
}
