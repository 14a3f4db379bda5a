/**
 * What a node follows of `/pxeha/images/` (through a PrefixCache: one range, then a watch): the
 * recorded versions, which replication makes it hold, and the channels, for the status matrix.
 * A version record names its manifest's pages (in the chunk store, not here); a record that fails
 * its schema is skipped (and reported). Whether the pages are the version its key names is
 * proven when they are loaded (manifest-store.ts): a record that lies is never replicated.
 */
import { validate } from '../config/load.js';
import { ChannelRecordSchema, parseImageKey, parseVersionRecord, type ChannelRecord, type VersionRecord } from './catalog.js';
import type { WantedVersion } from './replicator.js';
import type { ImageVersionInfo } from './status.js';

export type ImageEntry =
  | { kind: 'version'; name: string; id: string; record: VersionRecord }
  | { kind: 'channel'; name: string; channel: string; record: ChannelRecord };

/** Parses one key under /pxeha/images/ (the fence and unknown keys: undefined). Throws on a bad record. */
export function parseImageEntry(value: string, key: string): ImageEntry | undefined {
  const parsed = parseImageKey(key);
  if (!parsed) return undefined;
  const json = JSON.parse(value) as unknown;
  if (parsed.kind === 'channel') {
    return { kind: 'channel', name: parsed.name, channel: parsed.channel, record: validate<ChannelRecord>(ChannelRecordSchema, json, key) };
  }
  if (parsed.kind !== 'version') return undefined;
  return { kind: 'version', name: parsed.name, id: parsed.id, record: parseVersionRecord(json, key) };
}

/** The recorded versions among `entries`, as the replicator takes them (placement filters them first). */
export function wantedVersions(entries: readonly ImageEntry[]): WantedVersion[] {
  return entries.flatMap((e) => (e.kind === 'version' ? [{ id: e.id, manifest: e.record.manifest }] : []));
}

export function versionInfos(entries: readonly ImageEntry[]): ImageVersionInfo[] {
  const channels = entries.flatMap((e) => (e.kind === 'channel' ? [e] : []));
  return entries.flatMap((e) => {
    if (e.kind !== 'version') return [];
    return [
      {
        name: e.name,
        id: e.id,
        publishedAtMs: e.record.publishedAtMs,
        bytes: e.record.totals.bytes,
        files: e.record.totals.files,
        channels: channels.filter((c) => c.name === e.name && c.record.version === e.id).map((c) => c.channel).sort(),
      },
    ];
  });
}
