/**
 * What a node follows of `/pxeha/images/` (through a PrefixCache: one range, then a watch): the
 * recorded versions, which replication makes it hold, and the channels, for the status matrix.
 * A version record is checked against its key (its manifest's id) as the catalog does; a record
 * that fails is skipped (and reported), never replicated.
 */
import { validate } from '../config/load.js';
import { ChannelRecordSchema, parseImageKey, VersionRecordSchema, type ChannelRecord, type VersionRecord } from './catalog.js';
import { checkManifestSemantics, manifestId } from './manifest.js';
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
  const record = validate<VersionRecord>(VersionRecordSchema, json, key);
  const issues = checkManifestSemantics(record.manifest);
  if (issues.length > 0) throw new Error(`${key}: manifest is invalid: ${issues.map((i) => `${i.path} ${i.message}`).join('; ')}`);
  if (manifestId(record.manifest) !== parsed.id) throw new Error(`${key} holds the manifest of another version`);
  return { kind: 'version', name: parsed.name, id: parsed.id, record };
}

/** Every recorded version: all nodes hold all of them (k-node placement: TODO, issue 7). */
export function wantedVersions(entries: readonly ImageEntry[]): WantedVersion[] {
  return entries.flatMap((e) => (e.kind === 'version' ? [{ id: e.id, manifest: e.record.manifest }] : []));
}

export function versionInfos(entries: readonly ImageEntry[]): ImageVersionInfo[] {
  const channels = entries.flatMap((e) => (e.kind === 'channel' ? [e] : []));
  return entries.flatMap((e) => {
    if (e.kind !== 'version') return [];
    const files = e.record.manifest.files;
    return [
      {
        name: e.name,
        id: e.id,
        publishedAtMs: e.record.publishedAtMs,
        bytes: files.reduce((n, f) => n + f.size, 0),
        files: files.length,
        channels: channels.filter((c) => c.name === e.name && c.record.version === e.id).map((c) => c.channel).sort(),
      },
    ];
  });
}
