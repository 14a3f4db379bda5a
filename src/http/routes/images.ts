/**
 * Image routes: GET /api/v1/chunks/:hash and POST /api/v1/chunks/batch (several chunks back to
 * back in one body: src/images/chunk-batch.ts), the node-to-node chunk endpoints replication
 * pulls from (role `node`: a peer's node bearer or an admin token), answering only with bytes the
 * chunk store verified just now; and GET /api/v1/images, the replication matrix.
 */
import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { encodeChunkBatch, MAX_BATCH_CHUNKS } from '../../images/chunk-batch.js';
import { isChunkHash } from '../../images/chunk-store.js';
import { PxehaError } from '../../errors.js';
import type { HttpContext } from '../context.js';

const tags = { tags: ['images'] };

export function registerImageRoutes(app: FastifyInstance, ctx: HttpContext): void {
  app.get<{ Params: { hash: string } }>(
    '/api/v1/chunks/:hash',
    {
      schema: { ...tags, params: { type: 'object', properties: { hash: { type: 'string', pattern: '^[0-9a-f]{64}$' } }, required: ['hash'] } },
      config: { role: 'node' },
    },
    async (req, reply) => {
      const chunks = ctx.chunks;
      if (!chunks) throw new PxehaError('PXE_ERR_NOT_FOUND', 'this node has no chunk store');
      if (!isChunkHash(req.params.hash)) throw new PxehaError('PXE_ERR_BAD_REQUEST', 'not a chunk hash');
      // Verified against its hash before any byte is sent; a corrupt chunk is quarantined and
      // refused (PXE_ERR_CHUNK_CORRUPT), so the peer asks another holder.
      const data = await chunks.get(req.params.hash);
      return reply.header('content-type', 'application/octet-stream').header('cache-control', 'no-store').send(data);
    },
  );

  app.post<{ Body: { hashes: string[] } }>(
    '/api/v1/chunks/batch',
    {
      schema: {
        ...tags,
        body: {
          type: 'object',
          additionalProperties: false,
          properties: { hashes: { type: 'array', minItems: 1, maxItems: MAX_BATCH_CHUNKS, items: { type: 'string', pattern: '^[0-9a-f]{64}$' } } },
          required: ['hashes'],
        },
      },
      config: { role: 'node' },
    },
    async (req, reply) => {
      const chunks = ctx.chunks;
      if (!chunks) throw new PxehaError('PXE_ERR_NOT_FOUND', 'this node has no chunk store');
      // Each chunk is read and verified whole before its length word is sent; one the store
      // refuses (missing; corrupt, so quarantined) is sent as NOT_SENT and the peer asks another
      // holder for it. One chunk at a time: memory is a chunk (plus the socket's buffer).
      const body = Readable.from(
        encodeChunkBatch(req.body.hashes, (hash) => chunks.get(hash)),
        { objectMode: false, highWaterMark: 1024 * 1024 },
      );
      return reply.header('content-type', 'application/octet-stream').header('cache-control', 'no-store').send(body);
    },
  );

  app.get('/api/v1/images', { schema: tags, config: { role: 'viewer' } }, async () => {
    if (!ctx.images) throw new PxehaError('PXE_ERR_NOT_FOUND', 'images are not served by this node');
    return ctx.images();
  });
}
