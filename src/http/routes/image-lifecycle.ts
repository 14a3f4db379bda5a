/**
 * The image lifecycle API (issue 7), what `pxeha images …` calls:
 *
 *   GET    /api/v1/images/:name                            versions, files, channels, placement, holders
 *   POST   /api/v1/images/:name/versions                   record a manifest (or its uploaded pages) whose chunks this node holds
 *   DELETE /api/v1/images/:name/versions/:id               remove a version no channel uses
 *   POST   /api/v1/images/:name/channels/:channel          point a channel at a version (CAS)
 *   POST   /api/v1/images/:name/channels/:channel/rollback back to the channel's previous version
 *   POST   /api/v1/images/:name/promote                    stages: `to` serves what `from` serves
 *   PUT    /api/v1/images/:name/placement                  {replicas: 'all' | k, labels?}
 *   DELETE /api/v1/images/:name/placement                  back to every node
 *   POST   /api/v1/images/gc                               this node's chunk garbage collection
 *   POST   /api/v1/chunks/missing                          which of these hashes this node lacks
 *   PUT    /api/v1/chunks/:hash                            upload one chunk (verified against its hash)
 *
 * Reads are `viewer`, changes `operator`. Channel changes are compare-and-set: `baseRevision`
 * in the body, or an `If-Match` header with the channel's modRevision (0: must not exist); a
 * change made meanwhile answers 409 PXE_ERR_CONFLICT. Bodies are TypeBox schemas checked by
 * the app's validator: an unknown or bad field is refused with its JSON pointer.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { PxehaError } from '../../errors.js';
import { Catalog, type ChannelState } from '../../images/catalog.js';
import { DEFAULT_GC_GRACE_MS, type ChunkStore } from '../../images/chunk-store.js';
import { ManifestRefSchema, ManifestSchema, manifestChunks, manifestPages, type Manifest } from '../../images/manifest.js';
import { loadManifest } from '../../images/manifest-store.js';
import {
  parsePlacementRecord,
  parsePlanRecord,
  placementKey,
  planKey,
  PlacementRequestSchema,
  type PlacementRecord,
  type PlacementRequest,
  type PlanRecord,
} from '../../images/placement.js';
import type { ImagesStatus } from '../../images/status.js';
import type { HttpContext } from '../context.js';

const tags = { tags: ['images'] };
const viewer = { role: 'viewer' as const };
const operator = { role: 'operator' as const };

const NAME = '^[a-z0-9][a-z0-9._-]{0,62}$';
const HASH = '^[0-9a-f]{64}$';
const ImageParams = Type.Object({ name: Type.String({ pattern: NAME }) }, { additionalProperties: false });
const ChannelParams = Type.Object(
  { name: Type.String({ pattern: NAME }), channel: Type.String({ pattern: NAME }) },
  { additionalProperties: false },
);
const VersionParams = Type.Object(
  { name: Type.String({ pattern: NAME }), id: Type.String({ pattern: HASH }) },
  { additionalProperties: false },
);
const HashParams = Type.Object({ hash: Type.String({ pattern: HASH }) }, { additionalProperties: false });
const BaseRevision = Type.Optional(
  Type.Integer({ minimum: 0, description: "the channel's modRevision the change is based on (0: must not exist); as If-Match" }),
);

const RecordBody = Type.Object(
  {
    /** The manifest itself (bodies are limited to 8 MiB: ~75 000 chunk references)… */
    manifest: Type.Optional(ManifestSchema),
    /** …or the version id and pages of one uploaded first (PUT /api/v1/chunks/:hash), any size. */
    manifestRef: Type.Optional(
      Type.Object({ id: Type.String({ pattern: HASH }), ...ManifestRefSchema.properties }, { additionalProperties: false }),
    ),
    /** Also point this channel at the version. */
    channel: Type.Optional(Type.String({ pattern: NAME })),
    baseRevision: BaseRevision,
    note: Type.Optional(Type.String({ maxLength: 1024 })),
  },
  { additionalProperties: false },
);
const SetChannelBody = Type.Object(
  { version: Type.String({ pattern: HASH }), baseRevision: BaseRevision },
  { additionalProperties: false },
);
const RollbackBody = Type.Object({ baseRevision: BaseRevision }, { additionalProperties: false });
const PromoteBody = Type.Object(
  { from: Type.String({ pattern: NAME }), to: Type.String({ pattern: NAME }), baseRevision: BaseRevision },
  { additionalProperties: false },
);
const GcBody = Type.Object(
  {
    graceSeconds: Type.Optional(
      Type.Integer({ minimum: 0, maximum: 30 * 86_400, description: 'spare chunks written or touched this recently (default 3600)' }),
    ),
  },
  { additionalProperties: false },
);
/** 100 000 hashes, ~6.7 MB of JSON (the body limit is 8 MiB); `push` asks in batches of 16. */
const MissingBody = Type.Object(
  { hashes: Type.Array(Type.String({ pattern: HASH }), { maxItems: 100_000 }) },
  { additionalProperties: false },
);
/** Above the chunker's largest chunk (1 MiB, src/images/chunker.ts) and a manifest page (1 MiB). */
const MAX_CHUNK_UPLOAD_BYTES = 4 * 1024 * 1024;

type RecordBody = Static<typeof RecordBody>;

export interface ImageGcResult {
  deletedChunks: number;
  deletedBytes: number;
  spared: number;
}

export function registerImageLifecycleRoutes(app: FastifyInstance, ctx: HttpContext): void {
  const catalog = new Catalog(ctx.store, { nowMs: () => ctx.clock.now() });
  const chunksOf = (): ChunkStore => {
    if (!ctx.chunks) throw new PxehaError('PXE_ERR_NOT_FOUND', 'this node has no chunk store');
    return ctx.chunks;
  };

  app.get<{ Params: { name: string } }>(
    '/api/v1/images/:name',
    { schema: { ...tags, params: ImageParams }, config: viewer },
    async (req): Promise<ImageDetail> => {
      const name = req.params.name;
      const [versions, channels, placementKv, planKv] = await Promise.all([
        catalog.listVersions(name),
        catalog.listChannels(name),
        ctx.store.get(placementKey(name)),
        ctx.store.get(planKey(name)),
      ]);
      if (versions.length === 0 && channels.length === 0 && !placementKv)
        throw new PxehaError('PXE_ERR_NOT_FOUND', `image ${name} does not exist`);
      const matrix = ctx.images?.();
      // The file list is in the manifest, in this node's chunk store (absent until replicated).
      const manifestOf = async (id: string, ref: (typeof versions)[number]['record']['manifest']): Promise<Manifest | undefined> =>
        ctx.imageFiles?.manifestOf(name, id) ?? (ctx.chunks ? await loadManifest(ctx.chunks, id, ref).catch(() => undefined) : undefined);
      const manifests = await Promise.all(versions.map((v) => manifestOf(v.id, v.record.manifest)));
      return {
        name,
        versions: versions.map((v, i) => ({
          id: v.id,
          publishedAtMs: v.record.publishedAtMs,
          ...(v.record.note !== undefined ? { note: v.record.note } : {}),
          bytes: v.record.totals.bytes,
          chunks: v.record.totals.chunks,
          ...(manifests[i] ? { files: manifests[i].files.map((f) => ({ path: f.path, size: f.size, chunks: f.chunks.length })) } : {}),
          channels: channels
            .filter((c) => c.record.version === v.id)
            .map((c) => c.channel)
            .sort(),
          holders: matrix?.versions.find((x) => x.id === v.id && x.name === name)?.holders ?? {},
        })),
        channels: channels.map(channelView).sort((a, b) => a.channel.localeCompare(b.channel)),
        ...(placementKv ? { placement: parsePlacementRecord(placementKv.value, placementKv.key) } : {}),
        ...(planKv ? { plan: parsePlanRecord(planKv.value, planKv.key) } : {}),
      };
    },
  );

  app.post<{ Params: { name: string }; Body: RecordBody }>(
    '/api/v1/images/:name/versions',
    { schema: { ...tags, params: ImageParams, body: RecordBody }, config: operator },
    async (req) => {
      const chunks = chunksOf();
      const manifest = await bodyManifest(chunks, req.body);
      // A recorded version must never name a chunk no node holds: peers would pull it from
      // nobody. So this node, which will advertise it, must hold every chunk first.
      const missing: string[] = [];
      for (const hash of manifestChunks(manifest).keys()) if (!(await chunks.has(hash))) missing.push(hash);
      if (missing.length > 0) {
        throw new PxehaError(
          'PXE_ERR_CONFLICT',
          `this node lacks ${missing.length} chunk(s) of the manifest (first ${missing[0]}); upload them (PUT /api/v1/chunks/:hash) first`,
        );
      }
      const recorded = await catalog.recordVersion(req.params.name, manifest, chunks, req.body.note !== undefined ? { note: req.body.note } : {});
      let channel: ChannelState | undefined;
      if (req.body.channel !== undefined) {
        const base = baseRevisionOf(req, req.body.baseRevision);
        channel = await catalog.setChannel(
          req.params.name,
          req.body.channel,
          recorded.id,
          base !== undefined ? { baseRevision: base } : {},
        );
      }
      return { id: recorded.id, created: recorded.created, ...(channel ? { channel: channelView(channel) } : {}) };
    },
  );

  app.delete<{ Params: { name: string; id: string } }>(
    '/api/v1/images/:name/versions/:id',
    { schema: { ...tags, params: VersionParams }, config: operator },
    async (req) => {
      await catalog.removeVersion(req.params.name, req.params.id);
      return { deleted: true };
    },
  );

  app.post<{ Params: { name: string; channel: string }; Body: Static<typeof SetChannelBody> }>(
    '/api/v1/images/:name/channels/:channel',
    { schema: { ...tags, params: ChannelParams, body: SetChannelBody }, config: operator },
    async (req) => {
      const base = baseRevisionOf(req, req.body.baseRevision);
      return channelView(
        await catalog.setChannel(req.params.name, req.params.channel, req.body.version, base !== undefined ? { baseRevision: base } : {}),
      );
    },
  );

  app.post<{ Params: { name: string; channel: string }; Body: Static<typeof RollbackBody> }>(
    '/api/v1/images/:name/channels/:channel/rollback',
    { schema: { ...tags, params: ChannelParams, body: RollbackBody }, config: operator, preValidation: optionalBody },
    async (req) => {
      const base = baseRevisionOf(req, req.body?.baseRevision);
      return channelView(
        await catalog.rollbackChannel(req.params.name, req.params.channel, base !== undefined ? { baseRevision: base } : {}),
      );
    },
  );

  app.post<{ Params: { name: string }; Body: Static<typeof PromoteBody> }>(
    '/api/v1/images/:name/promote',
    { schema: { ...tags, params: ImageParams, body: PromoteBody }, config: operator },
    async (req) => {
      const base = baseRevisionOf(req, req.body.baseRevision);
      const state = await catalog.promoteChannel(
        req.params.name,
        req.body.from,
        req.body.to,
        base !== undefined ? { baseRevision: base } : {},
      );
      return { ...channelView(state), from: channelView(state.from) };
    },
  );

  app.put<{ Params: { name: string }; Body: PlacementRequest }>(
    '/api/v1/images/:name/placement',
    { schema: { ...tags, params: ImageParams, body: PlacementRequestSchema }, config: operator },
    async (req) => {
      const record: PlacementRecord = { ...req.body, changedAtMs: ctx.clock.now() };
      const { revision } = await ctx.store.put(placementKey(req.params.name), JSON.stringify(record));
      return { ...record, revision };
    },
  );

  app.delete<{ Params: { name: string } }>(
    '/api/v1/images/:name/placement',
    { schema: { ...tags, params: ImageParams }, config: operator },
    async (req) => {
      const { deleted } = await ctx.store.delete(placementKey(req.params.name));
      return { deleted: deleted > 0 };
    },
  );

  app.post<{ Body: Static<typeof GcBody> }>(
    '/api/v1/images/gc',
    { schema: { ...tags, body: GcBody }, config: operator, preValidation: optionalBody },
    async (req): Promise<ImageGcResult> => {
      const graceMs = req.body?.graceSeconds !== undefined ? req.body.graceSeconds * 1000 : DEFAULT_GC_GRACE_MS;
      // The node knows what it must keep (placement: src/images/placement.ts chunksToKeep); an app
      // built alone keeps every recorded version's chunks.
      const r = ctx.imagesGc ? await ctx.imagesGc(graceMs) : await chunksOf().gc(await catalog.referencedChunks(chunksOf()), { graceMs });
      return { deletedChunks: r.deleted.length, deletedBytes: r.deletedBytes, spared: r.spared };
    },
  );

  app.post<{ Body: Static<typeof MissingBody> }>(
    '/api/v1/chunks/missing',
    { schema: { ...tags, body: MissingBody }, config: operator },
    async (req) => {
      const chunks = chunksOf();
      const missing: string[] = [];
      for (const hash of new Set(req.body.hashes)) if (!(await chunks.has(hash))) missing.push(hash);
      return { missing };
    },
  );

  // Chunk bodies are raw bytes: a parser for them in this scope only.
  void app.register(async (scope) => {
    scope.addContentTypeParser('application/octet-stream', { parseAs: 'buffer', bodyLimit: MAX_CHUNK_UPLOAD_BYTES }, (_req, body, done) =>
      done(null, body),
    );
    scope.put<{ Params: { hash: string }; Body: Buffer }>(
      '/api/v1/chunks/:hash',
      { schema: { ...tags, params: HashParams }, config: operator },
      async (req) => {
        if (!Buffer.isBuffer(req.body))
          throw new PxehaError('PXE_ERR_BAD_REQUEST', 'a chunk upload needs content-type application/octet-stream');
        // put() hashes the bytes first: anything but the chunk is refused (PXE_ERR_CHUNK_CORRUPT, 500
        // would blame the node; the sender is at fault, so answer 400).
        try {
          const created = await chunksOf().put(req.params.hash, req.body);
          return { created, bytes: req.body.length };
        } catch (err) {
          if (err instanceof PxehaError && err.code === 'PXE_ERR_CHUNK_CORRUPT') throw new PxehaError('PXE_ERR_BAD_REQUEST', err.message);
          throw err;
        }
      },
    );
  });
}

/**
 * The manifest a record request names: given whole, or as the pages uploaded before, read back
 * from this node's chunk store and proven to be the version (loadManifest).
 */
async function bodyManifest(chunks: ChunkStore, body: RecordBody): Promise<Manifest> {
  if ((body.manifest === undefined) === (body.manifestRef === undefined)) {
    throw new PxehaError('PXE_ERR_BAD_REQUEST', 'give either manifest or manifestRef');
  }
  if (body.manifest) return body.manifest;
  const { id, ...ref } = body.manifestRef!;
  let manifest: Manifest | undefined;
  try {
    manifest = await loadManifest(chunks, id, ref);
  } catch (err) {
    if (err instanceof PxehaError && err.code === 'PXE_ERR_CHUNK_CORRUPT') throw new PxehaError('PXE_ERR_BAD_REQUEST', err.message);
    throw err;
  }
  if (!manifest) {
    const lacking = [];
    for (const page of manifestPages(ref)) if (!(await chunks.has(page.hash))) lacking.push(page.hash);
    throw new PxehaError('PXE_ERR_CONFLICT', `this node lacks ${lacking.length} manifest page(s) (first ${lacking[0]}); upload them (PUT /api/v1/chunks/:hash) first`);
  }
  return manifest;
}

/** A POST whose body fields are all optional may come without a body (`curl -X POST`). */
async function optionalBody(req: FastifyRequest): Promise<void> {
  req.body ??= {};
}

/** A channel as the API answers it (and `pxeha images` prints it). */
export interface ChannelView {
  channel: string;
  version: string;
  history: string[];
  changedAtMs: number;
  change: string;
  /** Pass back as `baseRevision` (or If-Match) to change it only if nobody else has. */
  modRevision: number;
}

/** GET /api/v1/images/:name. */
export interface ImageDetail {
  name: string;
  versions: {
    id: string;
    publishedAtMs: number;
    note?: string;
    bytes: number;
    chunks: number;
    /** From the manifest, when the answering node holds it (it fetches every version's). */
    files?: { path: string; size: number; chunks: number }[];
    channels: string[];
    holders: ImagesStatus['versions'][number]['holders'];
  }[];
  channels: ChannelView[];
  placement?: PlacementRecord;
  plan?: PlanRecord;
}

function channelView(s: ChannelState): ChannelView {
  return {
    channel: s.channel,
    version: s.record.version,
    history: s.record.history,
    changedAtMs: s.record.changedAtMs,
    change: s.record.change,
    modRevision: s.modRevision,
  };
}

/** `baseRevision` from the body, or from If-Match (`"12"`, `12`, `W/"12"`); both must agree. */
export function baseRevisionOf(req: FastifyRequest, fromBody: number | undefined): number | undefined {
  const header = req.headers['if-match'];
  if (header === undefined) return fromBody;
  const m = /^(?:W\/)?"?(\d+)"?$/.exec(String(header).trim());
  if (!m) throw new PxehaError('PXE_ERR_BAD_REQUEST', `If-Match must be a channel revision (e.g. "12"), got ${JSON.stringify(header)}`);
  const fromHeader = Number(m[1]);
  if (fromBody !== undefined && fromBody !== fromHeader)
    throw new PxehaError('PXE_ERR_BAD_REQUEST', `If-Match (${fromHeader}) and baseRevision (${fromBody}) differ`);
  return fromHeader;
}
