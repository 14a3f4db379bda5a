/**
 * Image references and pinned image paths (pure: no store, no disk).
 *
 * A profile names an image as `<name>@<channel>` or `<name>@<version id>`. A channel is resolved
 * to a version id once, when a machine's boot script is rendered, and every URL of that script
 * names the version id: `/images/<name>/<id>/<path in the image>`. Those paths are immutable (a
 * version is create-only and content-addressed), so a channel switch or rollback between two
 * fetches of one boot cannot mix versions: the fetches still name the version the script pinned,
 * and the next script names the new one.
 */
import { IMAGE_REF_PATTERN } from '../config/schema.js';
import { PxehaError } from '../errors.js';
import type { ImageEntry } from './image-watch.js';
import { imagePathProblem } from './manifest.js';

/** Image and channel names (the catalog's NAME_RE) and version ids. */
const NAME = '[a-z0-9][a-z0-9._-]{0,62}';
const ID = '[0-9a-f]{64}';
const IMAGE_REF_RE = new RegExp(IMAGE_REF_PATTERN);
const ID_RE = new RegExp(`^${ID}$`);
const NAME_RE = new RegExp(`^${NAME}$`);

/** Where pinned image files are served from, over HTTP (`/images/…`) and TFTP (`images/…`). */
export const IMAGE_PATH_ROOT = 'images';

export type ImageRef = { name: string; version: string } | { name: string; channel: string };

/** A reference resolved to the version it names now. */
export interface ResolvedImage {
  name: string;
  /** Version id (64 hex). */
  version: string;
  /** The channel it was resolved through, if any (for the script's comment). */
  channel?: string;
}

export function parseImageRef(ref: string): ImageRef {
  if (!IMAGE_REF_RE.test(ref)) {
    throw new PxehaError(
      'PXE_ERR_BAD_REQUEST',
      `image reference ${JSON.stringify(ref)} must be <name>@<channel> or <name>@<64-hex version id>`,
    );
  }
  const at = ref.indexOf('@');
  const name = ref.slice(0, at);
  const rest = ref.slice(at + 1);
  // A channel name cannot be 64 hex digits long (63 at most), so the two never clash.
  return ID_RE.test(rest) ? { name, version: rest } : { name, channel: rest };
}

/**
 * The version `ref` names in the catalog as this node sees it (its watch of /pxeha/images/):
 * a channel's current version, or a version id that is recorded. Undefined when the image,
 * channel or version is unknown.
 */
export function resolveImageRef(ref: string, entries: readonly ImageEntry[]): ResolvedImage | undefined {
  const parsed = parseImageRef(ref);
  if ('version' in parsed) {
    return entries.some((e) => e.kind === 'version' && e.name === parsed.name && e.id === parsed.version)
      ? { name: parsed.name, version: parsed.version }
      : undefined;
  }
  const channel = entries.find((e) => e.kind === 'channel' && e.name === parsed.name && e.channel === parsed.channel);
  if (channel?.kind !== 'channel') return undefined;
  // A channel only ever names a recorded version (the switch compares it exists), but the watch
  // could deliver a removal first; a version we cannot see is not served.
  const version = channel.record.version;
  if (!entries.some((e) => e.kind === 'version' && e.name === parsed.name && e.id === version)) return undefined;
  return { name: parsed.name, version, channel: parsed.channel };
}

/** The pinned path of a file of a version, relative to the serving root: `images/<name>/<id>/<path>`. */
export function pinnedImagePath(image: Pick<ResolvedImage, 'name' | 'version'>, path: string): string {
  return `${IMAGE_PATH_ROOT}/${image.name}/${image.version}/${path.replace(/^\/+/, '')}`;
}

export interface PinnedPath {
  name: string;
  version: string;
  /** Path of the file inside the version. */
  path: string;
}

/**
 * Parses a request path (already relative: no leading `/`) as a pinned image path, or undefined
 * when it does not start with `images/` (an ordinary artifact). A path under `images/` that is
 * malformed is refused with the reason, never looked up on disk.
 */
export function parsePinnedPath(relative: string): PinnedPath | { refused: string } | undefined {
  if (relative !== IMAGE_PATH_ROOT && !relative.startsWith(`${IMAGE_PATH_ROOT}/`)) return undefined;
  const [, name = '', version = '', ...rest] = relative.split('/');
  const path = rest.join('/');
  if (!NAME_RE.test(name)) return { refused: `image name ${JSON.stringify(name)} is not valid` };
  if (!ID_RE.test(version)) return { refused: 'image paths name a version id (64 hex digits), not a channel' };
  const problem = path === '' ? 'is empty' : imagePathProblem(path);
  if (problem) return { refused: `path in the image ${problem}` };
  return { name, version, path };
}

/** Strong ETag of a file of a version: the version id and the path identify its bytes forever. */
export function imageEtag(p: PinnedPath): string {
  return `"${p.version}/${encodeURIComponent(p.path)}"`;
}
