/**
 * A TCP proxy on 127.0.0.1 in front of one loopback endpoint (an etcd member, a node's API),
 * for fault tests that need a connection to fail while both ends stay up (etcd3's own test
 * suite does the same with its `Proxy`, src/test/util.ts):
 *
 * - pause(): stops forwarding in both directions, on open and new connections alike; the
 *   peers see a silent network (bytes wait in the socket buffers) until resume().
 * - cut(): resets every open connection and every new one until resume(), as a refusing
 *   or crashed peer would.
 * - resume(): forwards again (paused bytes flow on; cut connections stay gone).
 *
 * Only loopback: the proxy listens on 127.0.0.1 and connects only to 127.0.0.1.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';

type Mode = 'forward' | 'paused' | 'cut';

export class TcpProxy {
  readonly #server: Server;
  readonly #scheme: string;
  readonly #pairs = new Set<[Socket, Socket]>();
  #mode: Mode = 'forward';

  private constructor(server: Server, scheme: string) {
    this.#server = server;
    this.#scheme = scheme;
  }

  /** Starts a proxy to `target` ('http://127.0.0.1:PORT', 'https://…' or a bare port). */
  static async start(target: string | number): Promise<TcpProxy> {
    const url = typeof target === 'number' ? new URL(`tcp://127.0.0.1:${target}`) : new URL(target);
    if (url.hostname !== '127.0.0.1') throw new Error(`TcpProxy only forwards to 127.0.0.1, not ${url.hostname}`);
    const port = Number(url.port);
    let proxy: TcpProxy | undefined;
    const server = createServer((client) => proxy!.#accept(client, port));
    proxy = new TcpProxy(server, url.protocol.replace(/:$/, ''));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    return proxy;
  }

  get port(): number {
    return (this.#server.address() as { port: number }).port;
  }

  /** The proxy's address with the target's scheme, e.g. http://127.0.0.1:PORT. */
  get endpoint(): string {
    return `${this.#scheme}://127.0.0.1:${this.port}`;
  }

  /** Open connections through the proxy. */
  get connections(): number {
    return this.#pairs.size;
  }

  pause(): void {
    this.#mode = 'paused';
    for (const [a, b] of this.#pairs) {
      a.pause();
      b.pause();
    }
  }

  cut(): void {
    this.#mode = 'cut';
    for (const pair of [...this.#pairs]) this.#destroy(pair);
  }

  resume(): void {
    this.#mode = 'forward';
    for (const [a, b] of this.#pairs) {
      a.resume();
      b.resume();
    }
  }

  async close(): Promise<void> {
    for (const pair of [...this.#pairs]) this.#destroy(pair);
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #accept(client: Socket, port: number): void {
    if (this.#mode === 'cut') {
      client.resetAndDestroy();
      return;
    }
    const upstream = createConnection({ host: '127.0.0.1', port });
    const pair: [Socket, Socket] = [client, upstream];
    this.#pairs.add(pair);
    client.pipe(upstream);
    upstream.pipe(client);
    for (const socket of pair) {
      socket.on('error', () => this.#destroy(pair));
      socket.on('close', () => this.#destroy(pair));
    }
    // pipe() sets both sockets flowing; a paused proxy holds them at once.
    if (this.#mode === 'paused') {
      client.pause();
      upstream.pause();
    }
  }

  #destroy(pair: [Socket, Socket]): void {
    if (!this.#pairs.delete(pair)) return;
    for (const socket of pair) if (!socket.destroyed) socket.resetAndDestroy();
  }
}
