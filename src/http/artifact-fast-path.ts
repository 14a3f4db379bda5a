/**
 * The hot request of a boot storm, a plain GET or HEAD of a small unchanged artifact, answered
 * before Fastify sees it. Every machine fetches the same few KiB (iPXE scripts, menus,
 * configs); through Fastify (routing, the access-control and metrics hooks, the reply object,
 * a promise or two per request) pxeha answered 0.4× the requests nginx did (bench/http). Here
 * it is a path check, a stat and one write.
 *
 * Only what the artifacts route (src/http/routes/artifacts.ts) would answer from its small-file
 * cache is taken, with the same bytes, headers and metrics; everything else goes on to Fastify
 * untouched: other routes and methods, URLs the router would decode (`%`, `?`, …), Range and
 * conditional requests, a path the rules refuse (answered and counted there, once), a file not
 * cached yet or changed since (the cache compares stat identity on every request), and any
 * request once the server is closing (Fastify's 503). Access control has nothing to decide:
 * /artifacts/* is open on every listener (src/http/access-control.ts OPEN_ROUTES).
 *
 * Plugged in with Fastify's documented `serverFactory` (createServerWithFastPath): the node
 * server is created as Fastify creates it, with one function in front of Fastify's handler.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import { resolveArtifactSync } from '../artifacts/resolve.js';
import type { HttpContext } from './context.js';
import { SmallFileCache } from './small-file-cache.js';

/** The artifacts route's pattern, as Fastify names it in `pxeha_http_requests_total{route}`. */
export const ARTIFACTS_ROUTE = '/artifacts/*';
const PREFIX = '/artifacts/';
/**
 * URLs whose wildcard the router takes verbatim: RFC 3986 unreserved and sub-delims, `:`, `@`
 * and `/`. No `%` (find-my-way decodes it), `?` or `#` (it cuts there), nothing else odd.
 */
const VERBATIM_URL = /^\/artifacts\/[A-Za-z0-9._~!$&'()*+,=:@/-]*$/;
const SERVED_LABELS = Object.freeze({ route: ARTIFACTS_ROUTE, status: '200' });

export class ArtifactFastPath {
  #closing = false;
  /** The counter's child for this route and 200, bound once: no label hashing per request. */
  readonly #served: { inc(): void };

  constructor(
    private readonly ctx: Pick<HttpContext, 'artifactsRoot' | 'metrics' | 'log' | 'onArtifactFetched'>,
    private readonly cache: SmallFileCache,
  ) {
    this.#served = ctx.metrics.httpRequests.labels(SERVED_LABELS);
  }

  /** From now on every request goes to Fastify, which answers 503 while it closes. */
  close(): void {
    this.#closing = true;
  }

  /** Answers `req` if it is a plain GET or HEAD of a cached, unchanged artifact; false: not taken. */
  serve(req: IncomingMessage, res: ServerResponse): boolean {
    const { method, url } = req;
    if ((method !== 'GET' && method !== 'HEAD') || url === undefined || !url.startsWith(PREFIX) || this.#closing) return false;
    if (!VERBATIM_URL.test(url) || !SmallFileCache.plainRequest(req.headers)) return false;
    // The path rules run on every request, and their stat is the cache's key: a refused,
    // missing, replaced or changed file is never answered here.
    const resolved = resolveArtifactSync(this.ctx.artifactsRoot, url.slice(PREFIX.length));
    if (!resolved.ok) return false;
    const hit = this.cache.get(resolved.path, resolved.stats);
    if (!hit) return false;
    const { metrics, onArtifactFetched } = this.ctx;
    res.writeHead(200, hit.responseHeaders);
    res.end(method === 'GET' ? hit.body : undefined);
    this.#served.inc();
    if (method === 'GET') {
      metrics.httpArtifactBytes.inc(hit.body.length);
      // As the route does: a fetch from the start (here always) may be a profile's kernel.
      // Outside Fastify nothing would catch a throw, and the answer is already sent: log it.
      try {
        onArtifactFetched?.(req.socket.remoteAddress ?? '', resolved.relative);
      } catch (err) {
        this.ctx.log.error({ err, path: resolved.relative }, 'artifact fetch not recorded');
      }
    }
    return true;
  }
}

type RequestListener = (req: IncomingMessage, res: ServerResponse) => void;

/** The options of Fastify's that shape its node server (fastify lib/server.js getServerInstance). */
export interface NodeServerOptions {
  https?: http.ServerOptions | null | boolean;
  http?: http.ServerOptions;
  keepAliveTimeout?: number;
  requestTimeout?: number;
  connectionTimeout?: number;
  maxRequestsPerSocket?: number | null;
}

/**
 * A `serverFactory` body: the HTTP/1 server Fastify would create (same options, timeouts and
 * limits), whose requests meet the fast path first and Fastify's handler otherwise.
 */
export function createServerWithFastPath(fastify: RequestListener, options: NodeServerOptions, fastPath: ArtifactFastPath): http.Server {
  const listener: RequestListener = (req, res) => {
    if (!fastPath.serve(req, res)) fastify(req, res);
  };
  const tls = options.https === true ? {} : options.https;
  const server = tls ? https.createServer(tls as https.ServerOptions, listener) : http.createServer(options.http ?? {}, listener);
  if (options.keepAliveTimeout !== undefined) server.keepAliveTimeout = options.keepAliveTimeout;
  if (options.requestTimeout !== undefined) server.requestTimeout = options.requestTimeout;
  if (options.connectionTimeout !== undefined) server.setTimeout(options.connectionTimeout);
  if (options.maxRequestsPerSocket) server.maxRequestsPerSocket = options.maxRequestsPerSocket;
  return server;
}
