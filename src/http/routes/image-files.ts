/**
 * Pinned image files over HTTP: GET and HEAD `/images/<name>/<version id>/<path>`, served
 * straight from the chunk store (src/images/serve.ts), with Range (206/416), a strong ETag
 * (version id + path: the bytes of a pinned path never change) and If-None-Match / If-Range.
 *
 * Only the chunks a range overlaps are read (readRange), each verified before any of its bytes
 * go out. The first chunk is read before the status line is sent, so a corrupt chunk there is a
 * clean 500 PXE_ERR_CHUNK_CORRUPT; one found later aborts the response (the connection is
 * closed short of its Content-Length, which every client reports as a failed download). Either
 * way no unverified byte is sent, and the chunk is quarantined for replication to fetch again.
 * A version this node does not hold whole is refused with 503 PXE_ERR_IMAGE_NOT_HELD.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import { STATUS_CODES } from 'node:http';
import { Readable } from 'node:stream';
import { checkRequestPath } from '../../artifacts/resolve.js';
import { PxehaError, type ErrorCode } from '../../errors.js';
import { IMAGE_PATH_ROOT, imageEtag } from '../../images/image-ref.js';
import { readRange } from '../../images/reader.js';
import { findImageFile } from '../../images/serve.js';
import type { HttpContext } from '../context.js';

export type ByteRange = { kind: 'whole' } | { kind: 'range'; start: number; end: number } | { kind: 'unsatisfiable' };

/**
 * The one range a `Range` header asks of a file of `size` bytes (RFC 9110 §14.1.2): `a-b`, `a-`
 * or `-n`. Several ranges, other units and malformed headers are served whole, which §14.2
 * allows (a server may ignore Range); iPXE and curl ask for one range.
 */
export function parseByteRange(header: string | undefined, size: number): ByteRange {
  if (header === undefined) return { kind: 'whole' };
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return { kind: 'whole' };
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0 || size === 0) return { kind: 'unsatisfiable' };
    return { kind: 'range', start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (m[2] !== '' && Number(m[2]) < start) return { kind: 'whole' }; // invalid: ignored (§14.1.1)
  if (start >= size) return { kind: 'unsatisfiable' };
  return { kind: 'range', start, end };
}

function fail(reply: FastifyReply, code: ErrorCode, message: string): FastifyReply {
  const err = new PxehaError(code, message);
  // The success headers (octet-stream, ETag, caching) may be set already: an error is JSON.
  void reply.removeHeader('etag').removeHeader('cache-control').removeHeader('content-length');
  return reply
    .code(err.statusCode)
    .type('application/json; charset=utf-8')
    .send({ statusCode: err.statusCode, code, error: STATUS_CODES[err.statusCode] ?? 'Error', message });
}

export function registerImageFileRoutes(app: FastifyInstance, ctx: HttpContext): void {
  app.route<{ Params: { '*': string } }>({
    method: ['GET', 'HEAD'],
    url: `/${IMAGE_PATH_ROOT}/*`,
    handler: async (req, reply) => {
      const sources = ctx.imageFiles;
      if (!sources) return fail(reply, 'PXE_ERR_NOT_FOUND', 'this node serves no images');
      // The router has percent-decoded the wildcard already (as for /artifacts/*).
      const checked = checkRequestPath(req.params['*']);
      if (!checked.ok) {
        ctx.metrics.artifactRefused.inc({ protocol: 'http', reason: checked.reason });
        return fail(reply, 'PXE_ERR_PATH_REFUSED', checked.message);
      }
      const relative = `${IMAGE_PATH_ROOT}/${checked.relative}`;
      const found = findImageFile(relative, sources);
      if (!found?.ok) {
        const reason = found?.reason ?? 'bad-path';
        ctx.metrics.artifactRefused.inc({ protocol: 'http', reason });
        const message = found?.message ?? 'not an image path';
        return fail(
          reply,
          reason === 'not-held' ? 'PXE_ERR_IMAGE_NOT_HELD' : reason === 'not-found' ? 'PXE_ERR_NOT_FOUND' : 'PXE_ERR_PATH_REFUSED',
          message,
        );
      }
      const { file, pinned } = found;
      const etag = imageEtag(pinned);
      void reply
        .header('etag', etag)
        .header('accept-ranges', 'bytes')
        // Immutable: a pinned path names one version's bytes for good.
        .header('cache-control', 'public, max-age=31536000, immutable');
      if (req.headers['if-none-match'] === etag) return reply.code(304).send();
      const ifRange = req.headers['if-range'];
      const range = ifRange !== undefined && ifRange !== etag ? { kind: 'whole' as const } : parseByteRange(req.headers.range, file.size);
      if (range.kind === 'unsatisfiable') {
        // RFC 9110 §15.5.17: the length, so the client can ask again.
        return reply
          .code(416)
          .header('content-range', `bytes */${file.size}`)
          .type('application/json; charset=utf-8')
          .send({
            statusCode: 416,
            code: 'PXE_ERR_BAD_REQUEST',
            error: STATUS_CODES[416],
            message: `range not satisfiable for ${file.size} bytes`,
          });
      }
      const [start, end] = range.kind === 'range' ? [range.start, range.end] : [0, file.size - 1];
      const status = range.kind === 'range' ? 206 : 200;
      ctx.log.debug({ ip: req.ip, file: relative, method: req.method, range: req.headers.range, status }, 'image file request');
      if (range.kind === 'range') void reply.header('content-range', `bytes ${start}-${end}/${file.size}`);
      void reply.header('content-length', String(end - start + 1)).type('application/octet-stream');
      if (req.method === 'HEAD' || file.size === 0) return reply.code(status).send();
      // A fetch from the start is a boot stage when it is a profile's kernel (as for /artifacts).
      if (start === 0) ctx.onArtifactFetched?.(req.ip, relative);
      const stream = readRange(file, sources.chunks, start, end);
      const chunks = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
      let first: IteratorResult<Buffer>;
      try {
        first = await chunks.next();
      } catch (err) {
        stream.destroy();
        const code = err instanceof PxehaError ? err.code : 'PXE_ERR_INTERNAL';
        ctx.log.warn({ file: relative, code, err: (err as Error).message }, 'image file not served');
        // A chunk gone since the version was counted held (quarantined by another read): as not held.
        return fail(reply, code === 'PXE_ERR_NOT_FOUND' ? 'PXE_ERR_IMAGE_NOT_HELD' : code, (err as Error).message);
      }
      const metrics = ctx.metrics;
      const log = ctx.log;
      async function* body(): AsyncGenerator<Buffer> {
        try {
          if (!first.done) {
            metrics.httpArtifactBytes.inc(first.value.length);
            yield first.value;
          }
          for (;;) {
            const next = await chunks.next();
            if (next.done) return;
            metrics.httpArtifactBytes.inc(next.value.length);
            yield next.value;
          }
        } catch (err) {
          log.warn(
            { file: relative, err: (err as Error).message },
            'image file response aborted: a chunk failed verification or went missing',
          );
          throw err; // Fastify destroys the response: the client sees a short, failed download
        } finally {
          stream.destroy();
        }
      }
      return reply.code(status).send(Readable.from(body(), { objectMode: false, highWaterMark: 1 }));
    },
  });
}
