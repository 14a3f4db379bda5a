/**
 * Boot artifacts over HTTP: GET and HEAD with Range (206/416), ETag and Last-Modified, streamed
 * from disk by @fastify/send, under the same path rules as TFTP (src/artifacts/resolve.ts).
 */
import send from '@fastify/send';
import type { FastifyInstance } from 'fastify';
import { relative } from 'node:path';
import { resolveArtifact } from '../../artifacts/resolve.js';
import type { HttpContext } from '../context.js';

export function registerArtifactRoutes(app: FastifyInstance, ctx: HttpContext): void {
  app.route<{ Params: { '*': string } }>({
    method: ['GET', 'HEAD'],
    url: '/artifacts/*',
    handler: async (req, reply) => {
      const requested = decodeURIComponent(req.params['*']);
      const resolved = await resolveArtifact(ctx.artifactsRoot, requested);
      if (!resolved.ok) {
        ctx.metrics.artifactRefused.inc({ protocol: 'http', reason: resolved.reason });
        const status = resolved.reason === 'not-found' ? 404 : 403;
        return reply.code(status).send({ statusCode: status, code: status === 404 ? 'PXE_ERR_NOT_FOUND' : 'PXE_ERR_PATH_REFUSED', error: status === 404 ? 'Not Found' : 'Forbidden', message: resolved.message });
      }
      const result = await send(req.raw, `/${relative(ctx.artifactsRoot, resolved.path)}`, {
        root: ctx.artifactsRoot,
        dotfiles: 'allow', // the path rules above already decided what may be served
        index: false,
        etag: true,
        lastModified: true,
        acceptRanges: true,
      });
      if (result.type === 'error') {
        const status = (result.metadata as { error?: { status?: number } }).error?.status ?? 500;
        return reply.code(status).send({ statusCode: status, code: 'PXE_ERR_NOT_FOUND', error: 'Error', message: `cannot send ${requested}` });
      }
      if (result.type === 'file' && req.method === 'GET') {
        result.stream.on('data', (chunk: Buffer) => ctx.metrics.httpArtifactBytes.inc(chunk.length));
      }
      return reply.code(result.statusCode).headers(result.headers).send(result.stream);
    },
  });
}
