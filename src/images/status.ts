/**
 * The replication matrix (`pxeha images status`, GET /api/v1/images): every recorded version ×
 * every live node — held (whole and verified, from the node's membership record), copying n%
 * (the answering node's own replication progress) or missing. Pure.
 */
import type { VersionProgress } from './replicator.js';

export interface ImageVersionInfo {
  name: string;
  id: string;
  publishedAtMs: number;
  bytes: number;
  files: number;
  /** Channels that serve this version now. */
  channels: string[];
}

/** `not placed`: the image is placed on other nodes (src/images/placement.ts); this one is not to hold it. */
export type Holding = { state: 'held' } | { state: 'copying'; percent: number } | { state: 'missing' } | { state: 'not placed' };

export interface ImagesStatus {
  observer: string;
  nodes: string[];
  versions: (ImageVersionInfo & { holders: Record<string, Holding> })[];
  /** The observer's replication window (node config images.window), when it has one. */
  window?: { start: string; end: string; open: boolean; waiting: boolean };
}

export function imagesStatusOf(input: {
  observer: string;
  versions: readonly ImageVersionInfo[];
  members: readonly { name: string; images: readonly string[] }[];
  /** The observer's own progress (ids it is copying). */
  progress: readonly VersionProgress[];
  /** Whether a node is to hold versions of an image (placement); default every node. */
  placed?: (image: string, node: string) => boolean;
}): ImagesStatus {
  const nodes = input.members.map((m) => m.name).sort();
  const heldBy = new Map(input.members.map((m) => [m.name, new Set(m.images)]));
  const progress = new Map(input.progress.map((p) => [p.id, p]));
  const versions = [...input.versions]
    .sort((a, b) => a.name.localeCompare(b.name) || a.publishedAtMs - b.publishedAtMs || a.id.localeCompare(b.id))
    .map((v) => {
      const holders: Record<string, Holding> = {};
      for (const n of nodes) {
        if (heldBy.get(n)?.has(v.id)) holders[n] = { state: 'held' };
        else {
          if (input.placed && !input.placed(v.name, n)) {
            holders[n] = { state: 'not placed' };
            continue;
          }
          const p = n === input.observer ? progress.get(v.id) : undefined;
          holders[n] = p && p.heldBytes > 0 ? { state: 'copying', percent: Math.floor((p.heldBytes / Math.max(1, p.bytes)) * 100) } : { state: 'missing' };
        }
      }
      return { ...v, holders };
    });
  return { observer: input.observer, nodes, versions };
}

export function holdingText(h: Holding): string {
  return h.state === 'copying' ? `copying ${h.percent}%` : h.state;
}
