/**
 * The images catalog in the store: which versions exist and which version each channel serves.
 *
 *   /pxeha/images/<name>/versions/<id>       version record: where the manifest is, totals, when; create-only
 *   /pxeha/images/<name>/channels/<channel>  channel record: version id + short history
 *   /pxeha/images/<name>/fence               bumped by every channel write (see removeVersion)
 *
 * A version's key names its manifest's SHA-256, so recording it is idempotent. The manifest
 * itself (every chunk of every file) is not in the record: it is stored as pages in the chunk
 * store first (manifest-store.ts) and the record names them, so its size does not grow with the
 * image. Whoever reads the chunk list loads it through loadManifest, which proves the pages are
 * the version its key names. A channel switches with one compare-and-set on its key's
 * modRevision: of two switches made from the same state only one commits, the other gets
 * PXE_ERR_CONFLICT and nothing changes. Every node sees the switch at one store revision, which
 * is what makes publish and rollback atomic across the cluster.
 *
 * The decisions (next channel record, rollback target, who uses a version) are pure functions
 * below the class; the class only reads, plans and commits.
 */
import { Type, type Static } from '@sinclair/typebox';
import { validate } from '../config/load.js';
import { PxehaError } from '../errors.js';
import type { Compare, KeyValue, Store, TxnOpResult } from '../store/store.js';
import type { ChunkStore } from './chunk-store.js';
import { ManifestRefSchema, manifestChunks, manifestRefProblem, manifestTotals, type Manifest } from './manifest.js';
import { loadManifest, storeManifest } from './manifest-store.js';

export const IMAGES_PREFIX = '/pxeha/images/';
/** Previous versions a channel remembers for rollback. */
export const DEFAULT_CHANNEL_HISTORY = 5;
/**
 * Largest version record we write: etcd refuses requests over 1.5 MiB by default. A record is
 * its totals, its note and one 64-digit hash per 1 MiB manifest page (~2.3 GiB of image at
 * 256 KiB chunks), so this bounds an image at ~15 000 pages: tens of TiB, not a practical limit.
 */
export const MAX_VERSION_RECORD_BYTES = 1024 * 1024;

/** Image and channel names: DNS-label-like, so they are safe in keys, paths and URLs. */
const NAME_RE = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const ID_RE = /^[0-9a-f]{64}$/;

export const VersionRecordSchema = Type.Object(
  {
    /** The manifest's pages in the chunk store (manifest-store.ts). */
    manifest: ManifestRefSchema,
    /** What lists and the matrix show without loading the manifest. */
    totals: Type.Object(
      {
        bytes: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }),
        files: Type.Integer({ minimum: 0 }),
        /** Distinct chunks. */
        chunks: Type.Integer({ minimum: 0 }),
      },
      { additionalProperties: false },
    ),
    publishedAtMs: Type.Integer({ minimum: 0 }),
    note: Type.Optional(Type.String({ maxLength: 1024 })),
  },
  { additionalProperties: false },
);
export type VersionRecord = Static<typeof VersionRecordSchema>;

export const ChannelRecordSchema = Type.Object(
  {
    version: Type.String({ pattern: ID_RE.source }),
    /** Versions served before, newest first; rollback goes to the first. */
    history: Type.Array(Type.String({ pattern: ID_RE.source })),
    changedAtMs: Type.Integer({ minimum: 0 }),
    /** What the last change was. */
    change: Type.Union([Type.Literal('set'), Type.Literal('rollback')]),
  },
  { additionalProperties: false },
);
export type ChannelRecord = Static<typeof ChannelRecordSchema>;

export interface ChannelState {
  name: string;
  channel: string;
  record: ChannelRecord;
  /** Pass as `baseRevision` to change the channel only if nobody else has meanwhile. */
  modRevision: number;
}

export interface VersionState {
  name: string;
  id: string;
  record: VersionRecord;
  createRevision: number;
}

export type ImageKey =
  | { kind: 'version'; name: string; id: string }
  | { kind: 'channel'; name: string; channel: string }
  | { kind: 'fence'; name: string };

export function versionKey(name: string, id: string): string {
  return `${IMAGES_PREFIX}${name}/versions/${id}`;
}
export function channelKey(name: string, channel: string): string {
  return `${IMAGES_PREFIX}${name}/channels/${channel}`;
}
export function fenceKey(name: string): string {
  return `${IMAGES_PREFIX}${name}/fence`;
}

/** What a key under IMAGES_PREFIX is (for watchers, e.g. replication), or undefined. */
export function parseImageKey(key: string): ImageKey | undefined {
  if (!key.startsWith(IMAGES_PREFIX)) return undefined;
  const parts = key.slice(IMAGES_PREFIX.length).split('/');
  const [name, kind, leaf] = parts;
  if (!name || !NAME_RE.test(name)) return undefined;
  if (parts.length === 2 && kind === 'fence') return { kind: 'fence', name };
  if (parts.length !== 3 || !leaf) return undefined;
  if (kind === 'versions' && ID_RE.test(leaf)) return { kind: 'version', name, id: leaf };
  if (kind === 'channels' && NAME_RE.test(leaf)) return { kind: 'channel', name, channel: leaf };
  return undefined;
}

export function checkName(what: 'image' | 'channel', name: string): void {
  if (!NAME_RE.test(name)) {
    throw new PxehaError('PXE_ERR_BAD_REQUEST', `${what} name ${JSON.stringify(name)} must match ${NAME_RE.source}`);
  }
}

export function checkVersionId(id: string): void {
  if (!ID_RE.test(id)) throw new PxehaError('PXE_ERR_BAD_REQUEST', `version id ${JSON.stringify(id)} is not 64 hex digits`);
}

// ---- pure decisions ----------------------------------------------------------------------

/**
 * The channel record after pointing it at `version`, or undefined when it already does (a
 * no-op, so publishing twice does not push the same version into the history). The version it
 * leaves goes first in the history; the target is taken out of it, so history never names the
 * current version.
 */
export function planSwitch(prev: ChannelRecord | undefined, version: string, nowMs: number, historyLimit: number): ChannelRecord | undefined {
  if (prev?.version === version) return undefined;
  const history = prev ? [prev.version, ...prev.history].filter((v) => v !== version).slice(0, historyLimit) : [];
  return { version, history, changedAtMs: nowMs, change: 'set' };
}

/**
 * The channel record after a rollback: the previous version, whose own predecessors remain, so
 * repeated rollbacks walk back through the history. The version rolled back from is dropped:
 * it is the one found wanting, and keeping it would make a second rollback return to it.
 */
export function planRollback(prev: ChannelRecord, nowMs: number): ChannelRecord | undefined {
  const [previous, ...older] = prev.history;
  if (!previous) return undefined;
  return { version: previous, history: older, changedAtMs: nowMs, change: 'rollback' };
}

/** Channels that serve `id` or can roll back to it: a version they name cannot be removed. */
export function channelsUsing(channels: ReadonlyMap<string, ChannelRecord>, id: string): string[] {
  return [...channels].filter(([, r]) => r.version === id || r.history.includes(id)).map(([c]) => c).sort();
}

// ---- the catalog -------------------------------------------------------------------------

export interface CatalogOptions {
  nowMs?: () => number;
  historyLimit?: number;
}

export class Catalog {
  readonly #store: Store;
  readonly #nowMs: () => number;
  readonly #historyLimit: number;

  constructor(store: Store, options: CatalogOptions = {}) {
    this.#store = store;
    this.#nowMs = options.nowMs ?? Date.now;
    this.#historyLimit = options.historyLimit ?? DEFAULT_CHANNEL_HISTORY;
  }

  /**
   * Records a version (create-only): stores its manifest's pages in `chunks` (this node's chunk
   * store; the caller has made sure every chunk the manifest names is there too), then writes the
   * record, so a record never names a page or chunk its recording node lacks. `created` is false
   * when it was already recorded: same key, same manifest by construction, so publishing the same
   * tree twice is harmless.
   */
  async recordVersion(name: string, manifest: Manifest, chunks: ChunkStore, options: { note?: string } = {}): Promise<{ id: string; created: boolean; revision: number }> {
    checkName('image', name);
    const { id, ref } = await storeManifest(chunks, manifest);
    const record: VersionRecord = {
      manifest: ref,
      totals: manifestTotals(manifest),
      publishedAtMs: this.#nowMs(),
      ...(options.note !== undefined ? { note: options.note } : {}),
    };
    const value = JSON.stringify(record);
    const bytes = Buffer.byteLength(value);
    if (bytes > MAX_VERSION_RECORD_BYTES) {
      throw new PxehaError('PXE_ERR_BAD_REQUEST', `version record of ${bytes} bytes exceeds the store limit of ${MAX_VERSION_RECORD_BYTES}`);
    }
    const key = versionKey(name, id);
    const result = await this.#store.txn({
      compare: [{ key, target: 'version', op: '==', value: 0 }],
      success: [{ type: 'put', key, value }],
    });
    return { id, created: result.succeeded, revision: result.revision };
  }

  async getVersion(name: string, id: string): Promise<VersionState | undefined> {
    checkName('image', name);
    checkVersionId(id);
    const kv = await this.#store.get(versionKey(name, id));
    return kv ? parseVersionKv(name, id, kv) : undefined;
  }

  /** Versions of an image, oldest first (by the revision that recorded them). */
  async listVersions(name: string): Promise<VersionState[]> {
    checkName('image', name);
    const { kvs } = await this.#store.range(`${IMAGES_PREFIX}${name}/versions/`, { prefix: true });
    const versions: VersionState[] = [];
    for (const kv of kvs) {
      const parsed = parseImageKey(kv.key);
      if (parsed?.kind === 'version') versions.push(parseVersionKv(name, parsed.id, kv));
    }
    return versions.sort((a, b) => a.createRevision - b.createRevision);
  }

  /** Names of the images that have any key (a version or a channel). */
  async listImages(): Promise<string[]> {
    // Channel and fence keys are few; versions are read key by key only where needed.
    const { kvs } = await this.#store.range(IMAGES_PREFIX, { prefix: true });
    return [...new Set(kvs.map((kv) => parseImageKey(kv.key)?.name).filter((n): n is string => n !== undefined))].sort();
  }

  async getChannel(name: string, channel: string): Promise<ChannelState | undefined> {
    checkName('image', name);
    checkName('channel', channel);
    const kv = await this.#store.get(channelKey(name, channel));
    return kv ? parseChannelKv(name, channel, kv) : undefined;
  }

  async listChannels(name: string): Promise<ChannelState[]> {
    checkName('image', name);
    const { kvs } = await this.#store.range(`${IMAGES_PREFIX}${name}/channels/`, { prefix: true });
    return channelStates(name, kvs);
  }

  /**
   * Points a channel at a recorded version, in one compare-and-set. With `baseRevision` (the
   * `modRevision` of the channel state the caller decided on, 0 for "the channel must not
   * exist yet") the switch happens only if the channel is still in that state; without it,
   * only if nobody changes it between this call's read and its write. Either way a concurrent
   * change fails this one with PXE_ERR_CONFLICT; it never overwrites it.
   */
  async setChannel(name: string, channel: string, id: string, options: { baseRevision?: number } = {}): Promise<ChannelState> {
    checkName('image', name);
    checkName('channel', channel);
    checkVersionId(id);
    const current = await this.#readChannelAt(name, channel, options.baseRevision);
    const next = planSwitch(current?.record, id, this.#nowMs(), this.#historyLimit);
    if (!next) {
      // Already there; still insist that the version exists (a channel record could predate a
      // manual deletion in the store).
      if (!(await this.#store.get(versionKey(name, id)))) throw versionMissing(name, id);
      return current!;
    }
    return this.#commitChannel(name, channel, current?.modRevision ?? 0, next);
  }

  /** Points a channel back at its previous version (compare-and-set, as setChannel). */
  async rollbackChannel(name: string, channel: string, options: { baseRevision?: number } = {}): Promise<ChannelState> {
    checkName('image', name);
    checkName('channel', channel);
    const current = await this.#readChannelAt(name, channel, options.baseRevision);
    if (!current) throw new PxehaError('PXE_ERR_NOT_FOUND', `channel ${channel} of image ${name} does not exist`);
    const next = planRollback(current.record, this.#nowMs());
    if (!next) throw new PxehaError('PXE_ERR_NOT_FOUND', `channel ${channel} of image ${name} has no previous version to roll back to`);
    return this.#commitChannel(name, channel, current.modRevision, next);
  }

  /**
   * Stages: points channel `to` at the version channel `from` serves (test → production), in one
   * transaction that commits only if neither channel changed since they were read (and `to` is
   * still at `baseRevision` when given). A promotion decided on a stale view fails with
   * PXE_ERR_CONFLICT; it never overwrites a change made meanwhile.
   */
  async promoteChannel(name: string, from: string, to: string, options: { baseRevision?: number } = {}): Promise<ChannelState & { from: ChannelState }> {
    checkName('image', name);
    checkName('channel', from);
    checkName('channel', to);
    if (from === to) throw new PxehaError('PXE_ERR_BAD_REQUEST', `cannot promote channel ${from} to itself`);
    const source = await this.getChannel(name, from);
    if (!source) throw new PxehaError('PXE_ERR_NOT_FOUND', `channel ${from} of image ${name} does not exist`);
    const current = await this.#readChannelAt(name, to, options.baseRevision);
    const next = planSwitch(current?.record, source.record.version, this.#nowMs(), this.#historyLimit);
    if (!next) return { ...current!, from: source };
    const state = await this.#commitChannel(name, to, current?.modRevision ?? 0, next, [
      { key: channelKey(name, from), target: 'modRevision', op: '==', value: source.modRevision },
    ]);
    return { ...state, from: source };
  }

  /** Deletes a channel (compare-and-set on its state). */
  async removeChannel(name: string, channel: string, options: { baseRevision?: number } = {}): Promise<void> {
    checkName('image', name);
    checkName('channel', channel);
    const current = await this.#readChannelAt(name, channel, options.baseRevision);
    if (!current) throw new PxehaError('PXE_ERR_NOT_FOUND', `channel ${channel} of image ${name} does not exist`);
    const key = channelKey(name, channel);
    const result = await this.#store.txn({
      compare: [{ key, target: 'modRevision', op: '==', value: current.modRevision }],
      success: [{ type: 'delete', key }],
    });
    if (!result.succeeded) throw channelChanged(name, channel, current.modRevision);
  }

  /**
   * Removes a version no channel uses (current or in its rollback history). The check and the
   * delete are made safe against a concurrent channel switch by the fence key: every channel
   * write bumps it, and the delete commits only if it has not moved since the channels were
   * read. (A per-channel compare would miss a channel created meanwhile; the Store has no
   * compare over a key range.) The other order is covered by setChannel, which commits only
   * while the version's key exists.
   */
  async removeVersion(name: string, id: string): Promise<void> {
    checkName('image', name);
    checkVersionId(id);
    const vKey = versionKey(name, id);
    const fKey = fenceKey(name);
    // One read-only transaction: fence, channels and version seen at one revision.
    const snapshot = await this.#store.txn({
      success: [
        { type: 'range', key: fKey },
        { type: 'range', key: `${IMAGES_PREFIX}${name}/channels/`, prefix: true },
        { type: 'range', key: vKey },
      ],
    });
    const [fence, channels, version] = snapshot.responses.map(rangeKvs);
    const versionKv = version![0];
    if (!versionKv) throw versionMissing(name, id);
    const records = new Map(channelStates(name, channels!).map((s) => [s.channel, s.record]));
    const users = channelsUsing(records, id);
    if (users.length > 0) {
      throw new PxehaError('PXE_ERR_CONFLICT', `version ${id} of image ${name} is in use by channel(s) ${users.join(', ')} (current or rollback history)`);
    }
    const result = await this.#store.txn({
      compare: [
        { key: fKey, target: 'modRevision', op: '==', value: fence![0]?.modRevision ?? 0 },
        { key: vKey, target: 'modRevision', op: '==', value: versionKv.modRevision },
      ],
      success: [{ type: 'delete', key: vKey }],
    });
    if (!result.succeeded) {
      throw new PxehaError('PXE_ERR_CONFLICT', `channels of image ${name} changed while removing version ${id}; check again`);
    }
  }

  /**
   * Every chunk and manifest page any recorded version references, across all images: what a
   * node's chunk store must keep (ChunkStore.gc). Versions, not channels, because any recorded
   * version can be pointed at by a channel at any moment. The chunk lists come from the
   * manifests in `chunks`; if one is not there (not replicated yet) its chunks cannot be known,
   * so this refuses (PXE_ERR_CONFLICT) rather than let gc delete them.
   */
  async referencedChunks(chunks: ChunkStore): Promise<Set<string>> {
    const { kvs } = await this.#store.range(IMAGES_PREFIX, { prefix: true });
    const hashes = new Set<string>();
    for (const kv of kvs) {
      const parsed = parseImageKey(kv.key);
      if (parsed?.kind !== 'version') continue;
      const { record } = parseVersionKv(parsed.name, parsed.id, kv);
      for (const page of record.manifest.pages) hashes.add(page);
      const manifest = await loadManifest(chunks, parsed.id, record.manifest);
      if (!manifest) throw manifestNotHere(parsed.name, parsed.id);
      for (const h of manifestChunks(manifest)) hashes.add(h);
    }
    return hashes;
  }

  /** Reads a channel, insisting on `baseRevision` when given. */
  async #readChannelAt(name: string, channel: string, baseRevision: number | undefined): Promise<ChannelState | undefined> {
    const current = await this.getChannel(name, channel);
    const seen = current?.modRevision ?? 0;
    if (baseRevision !== undefined && seen !== baseRevision) throw channelChanged(name, channel, baseRevision);
    return current;
  }

  async #commitChannel(name: string, channel: string, baseRevision: number, next: ChannelRecord, also: Compare[] = []): Promise<ChannelState> {
    const key = channelKey(name, channel);
    const vKey = versionKey(name, next.version);
    const value = JSON.stringify(next);
    const result = await this.#store.txn({
      compare: [
        { key, target: 'modRevision', op: '==', value: baseRevision },
        { key: vKey, target: 'version', op: '>', value: 0 },
        ...also,
      ],
      success: [
        { type: 'put', key, value },
        { type: 'put', key: fenceKey(name), value: JSON.stringify({ channel, changedAtMs: next.changedAtMs }) },
      ],
      // Read both at the same revision, to say which compare failed.
      failure: [
        { type: 'range', key, countOnly: false },
        { type: 'range', key: vKey, countOnly: true },
      ],
    });
    if (!result.succeeded) {
      const [chan, ver] = result.responses;
      const versionExists = ver?.type === 'range' && ver.result.count > 0;
      if (!versionExists) throw versionMissing(name, next.version);
      if (also.length > 0 && chan && (rangeKvs(chan)[0]?.modRevision ?? 0) === baseRevision) {
        throw new PxehaError('PXE_ERR_CONFLICT', `channels of image ${name} changed while promoting to ${channel}; read them again and retry`);
      }
      throw channelChanged(name, channel, baseRevision, chan ? rangeKvs(chan)[0]?.modRevision : undefined);
    }
    return { name, channel, record: next, modRevision: result.revision };
  }
}

function rangeKvs(r: TxnOpResult): KeyValue[] {
  return r.type === 'range' ? r.result.kvs : [];
}

function versionMissing(name: string, id: string): PxehaError {
  return new PxehaError('PXE_ERR_NOT_FOUND', `version ${id} of image ${name} is not recorded`);
}

function channelChanged(name: string, channel: string, base: number, now?: number): PxehaError {
  const was = base === 0 ? 'absent' : `at revision ${base}`;
  const is = now === undefined ? '' : now === 0 ? ', now absent' : `, now at revision ${now}`;
  return new PxehaError('PXE_ERR_CONFLICT', `channel ${channel} of image ${name} changed (expected it ${was}${is}); read it again and retry`);
}

function parseJson(kv: KeyValue): unknown {
  try {
    return JSON.parse(kv.value);
  } catch {
    throw new PxehaError('PXE_ERR_INTERNAL', `store key ${kv.key} does not hold JSON`);
  }
}

/**
 * Parses a version record. That its pages are the manifest its key names is proven where they
 * are read (loadManifest), since only the pages can prove it.
 */
function parseVersionKv(name: string, id: string, kv: KeyValue): VersionState {
  return { name, id, record: parseVersionRecord(parseJson(kv), kv.key), createRevision: kv.createRevision };
}

/** Validates a version record (schema, and a page count that fits its byte count). */
export function parseVersionRecord(json: unknown, key: string): VersionRecord {
  const record = validate<VersionRecord>(VersionRecordSchema, json, key);
  const problem = manifestRefProblem(record.manifest);
  if (problem) throw new PxehaError('PXE_ERR_INTERNAL', `${key}: ${problem}`);
  return record;
}

export function manifestNotHere(name: string, id: string): PxehaError {
  return new PxehaError(
    'PXE_ERR_CONFLICT',
    `the manifest of version ${id} of image ${name} is not on this node yet (replication fetches it); its chunks cannot be known, so nothing is collected`,
  );
}

function channelStates(name: string, kvs: readonly KeyValue[]): ChannelState[] {
  const states: ChannelState[] = [];
  for (const kv of kvs) {
    const parsed = parseImageKey(kv.key);
    if (parsed?.kind === 'channel') states.push(parseChannelKv(name, parsed.channel, kv));
  }
  return states;
}

function parseChannelKv(name: string, channel: string, kv: KeyValue): ChannelState {
  return { name, channel, record: validate<ChannelRecord>(ChannelRecordSchema, parseJson(kv), kv.key), modRevision: kv.modRevision };
}
