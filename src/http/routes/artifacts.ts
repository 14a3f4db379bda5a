/**
 * Boot artifacts over HTTP: GET and HEAD with Range (206/416), ETag and Last-Modified, streamed
 * from disk by @fastify/send, under the same path rules as TFTP (src/artifacts/resolve.ts).
 * Plain requests for small files are answered from `cache`, which this route fills; on a
 * listening server most such hits never reach here (src/http/artifact-fast-path.ts).
 */
import send from '@fastify/send';
import type { FastifyInstance } from 'fastify';
import { STATUS_CODES } from 'node:http';
import { relative, sep } from 'node:path';
import { resolveArtifact } from '../../artifacts/resolve.js';
import { ARTIFACTS_ROUTE } from '../artifact-fast-path.js';
import type { HttpContext } from '../context.js';
import { SmallFileCache } from '../small-file-cache.js';

/**
 * Read size for streaming large artifacts. fs streams default to 64 KiB; a kernel or initrd
 * of tens of MiB then costs thousands of thread-pool reads and socket writes. 1 MiB cuts that
 * by 16 while keeping the memory of a transfer bounded (one or two chunks in flight).
 */
const STREAM_CHUNK_BYTES = 1024 * 1024;

export function registerArtifactRoutes(app: FastifyInstance, ctx: HttpContext, cache = new SmallFileCache()): void {
  app.route<{ Params: { '*': string } }>({
    method: ['GET', 'HEAD'],
    url: ARTIFACTS_ROUTE, // the fast path answers under this name too (metrics)
    handler: async (req, reply) => {
      // The router has already percent-decoded the wildcard; decoding again would turn a
      // literal `%` into a URIError (a 500) and `%252e` into `.`.
      const requested = req.params['*'];
      const resolved = await resolveArtifact(ctx.artifactsRoot, requested);
      if (!resolved.ok) {
        ctx.metrics.artifactRefused.inc({ protocol: 'http', reason: resolved.reason });
        const status = resolved.reason === 'not-found' ? 404 : 403;
        return reply.code(status).send({ statusCode: status, code: status === 404 ? 'PXE_ERR_NOT_FOUND' : 'PXE_ERR_PATH_REFUSED', error: status === 404 ? 'Not Found' : 'Forbidden', message: resolved.message });
      }
      // A fetch from the start (not a resumed range) is a boot stage when it is a profile's kernel.
      if (req.method === 'GET' && ctx.onArtifactFetched && !/^bytes=(?!0-)/.test(String(req.headers.range ?? ''))) {
        ctx.onArtifactFetched(req.ip, resolved.relative);
      }
      const plain = SmallFileCache.plainRequest(req.headers);
      if (plain) {
        const hit = cache.get(resolved.path, resolved.stats);
        if (hit) {
          if (req.method === 'GET') ctx.metrics.httpArtifactBytes.inc(hit.body.length);
          return reply.code(200).headers(hit.responseHeaders).send(hit.body);
        }
      }
      // send() takes a URL path and decodes it, so each segment of the resolved name is encoded.
      const urlPath = `/${relative(ctx.artifactsRoot, resolved.path).split(sep).map(encodeURIComponent).join('/')}`;
      const result = await send(req.raw, urlPath, {
        root: ctx.artifactsRoot,
        dotfiles: 'allow', // the path rules above already decided what may be served
        index: false,
        etag: true,
        lastModified: true,
        acceptRanges: true,
        highWaterMark: STREAM_CHUNK_BYTES,
      });
      if (result.type === 'error') {
        const status = result.statusCode;
        const code = status === 404 ? 'PXE_ERR_NOT_FOUND' : status < 500 ? 'PXE_ERR_BAD_REQUEST' : 'PXE_ERR_INTERNAL';
        // A 416 carries `Content-Range: bytes */size` (RFC 9110 §15.5.17) so the client learns the length.
        const contentRange = result.headers['Content-Range'];
        if (contentRange !== undefined) void reply.header('content-range', contentRange);
        return reply.code(status).send({ statusCode: status, code, error: STATUS_CODES[status] ?? 'Error', message: `cannot send ${requested}` });
      }
      // send() names no type for extensions it does not know (.ipxe, .kpxe, .efi); say
      // octet-stream (RFC 9110 §8.3) rather than leave it to the framework.
      if (result.type === 'file' && result.statusCode !== 304) result.headers['Content-Type'] ??= 'application/octet-stream';
      if (result.type === 'file' && req.method === 'GET') {
        const keep = plain && result.statusCode === 200 && cache.fits(resolved.stats) ? ([] as Buffer[]) : undefined;
        result.stream.on('data', (chunk: Buffer) => {
          ctx.metrics.httpArtifactBytes.inc(chunk.length);
          keep?.push(chunk);
        });
        if (keep) result.stream.once('end', () => cache.set(resolved.path, resolved.stats, { headers: result.headers, body: Buffer.concat(keep) }));
      }
      return reply.code(result.statusCode).headers(result.headers).send(result.stream);
    },
  });
}
