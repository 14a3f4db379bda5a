/**
 * The one rule for which files a node serves, for TFTP and HTTP alike: a relative path under
 * the artifacts root, resolved through symlinks and still inside the root, to a regular file.
 * Everything else is refused with a reason that is logged and counted, never served.
 */
import { lstatSync, realpathSync, statSync, type Stats } from 'node:fs';
import { isAbsolute, join, sep } from 'node:path';

/** Longest request path we consider (bytes); PXE file names are short, attackers' are not. */
export const MAX_PATH_BYTES = 255;

export type RefusalReason = 'nul-byte' | 'too-long' | 'parent-segment' | 'absolute' | 'outside-root' | 'not-found' | 'not-a-file';

export type Resolution =
  /** `relative`: the requested path as checked (checkRequestPath), `path`: the real path. */
  | { ok: true; path: string; relative: string; stats: Stats }
  | { ok: false; reason: RefusalReason; message: string };

/**
 * Checks a requested path without touching the disk: PXE clients often ask for `/file`, which
 * means "from the root" (as tftp-hpa -s and dnsmasq treat it), so one leading slash is dropped;
 * `..` segments, NUL bytes, backslash tricks and over-long names are refused outright.
 */
export function checkRequestPath(requested: string): { ok: true; relative: string } | { ok: false; reason: RefusalReason; message: string } {
  if (requested.includes('\0')) return { ok: false, reason: 'nul-byte', message: 'path contains a NUL byte' };
  if (Buffer.byteLength(requested) > MAX_PATH_BYTES) return { ok: false, reason: 'too-long', message: `path is longer than ${MAX_PATH_BYTES} bytes` };
  const relative = requested.replace(/^\/+/, '');
  const segments = relative.split(/[\\/]+/);
  if (segments.some((s) => s === '..')) return { ok: false, reason: 'parent-segment', message: 'path contains ".."' };
  if (isAbsolute(relative) || /^[a-zA-Z]:/.test(relative)) return { ok: false, reason: 'absolute', message: 'absolute paths are not served' };
  return { ok: true, relative: segments.filter((s) => s !== '' && s !== '.').join('/') };
}

/** Whether the real path `real` is `root` (itself a real path) or below it. */
export function isInsideRoot(root: string, real: string): boolean {
  return real === root || real.startsWith(root.endsWith(sep) ? root : root + sep);
}

/** Resolves a requested path under `root` (which must itself be a real path). */
export async function resolveArtifact(root: string, requested: string): Promise<Resolution> {
  return resolveArtifactSync(root, requested);
}

/**
 * resolveArtifact without the promise, for the HTTP fast path (src/http/artifact-fast-path.ts).
 *
 * Synchronous on purpose: on a local artifacts directory every call below is answered from the
 * kernel's dentry and inode caches in microseconds, while the promise forms cost a thread-pool
 * round trip each, which measured as a third of the time of serving a small file over HTTP
 * (bench/http). nginx, too, opens and stats synchronously.
 */
export function resolveArtifactSync(root: string, requested: string): Resolution {
  const checked = checkRequestPath(requested);
  if (!checked.ok) return checked;
  return resolvePlain(root, checked.relative) ?? resolveThroughLinks(root, checked.relative);
}

/**
 * The common case in one lstat per segment below the root: when no segment is a symlink the
 * path is already real and the last lstat is the file's stat. realpath(3) instead reads every
 * component from `/` (glibc: a readlink each) and a stat follows, five system calls for
 * `root/x` on a root three levels deep, which the 1 KiB benchmark showed as 14% of pxeha's
 * time. Returns undefined (the caller takes the realpath route, which decides) on a symlink,
 * a missing segment or any error, so the answer is the same as resolveThroughLinks gives.
 * Against someone swapping directories while we look it is no weaker than realpath + stat:
 * both check a path, then use it.
 */
function resolvePlain(root: string, relative: string): Resolution | undefined {
  if (relative === '') return undefined;
  let path = root;
  let stats: Stats | undefined;
  try {
    for (const segment of relative.split('/')) {
      path = `${path}${path.endsWith(sep) ? '' : sep}${segment}`;
      stats = lstatSync(path, { throwIfNoEntry: false });
      if (!stats || stats.isSymbolicLink()) return undefined;
    }
  } catch {
    return undefined;
  }
  if (!stats) return undefined;
  if (!stats.isFile()) return { ok: false, reason: 'not-a-file', message: `${relative} is not a regular file` };
  return { ok: true, path, relative, stats };
}

/** Any path, symlinks included: resolved by realpath and refused if it leaves the root. */
function resolveThroughLinks(root: string, relative: string): Resolution {
  let real: string;
  try {
    real = realpathSync.native(join(root, relative));
  } catch {
    return { ok: false, reason: 'not-found', message: `${relative} not found` };
  }
  if (!isInsideRoot(root, real)) {
    return { ok: false, reason: 'outside-root', message: `${relative} resolves outside the artifacts root` };
  }
  let stats: Stats | undefined;
  try {
    stats = statSync(real, { throwIfNoEntry: false });
  } catch {
    stats = undefined; // EACCES and the like: not servable, as missing
  }
  if (!stats) return { ok: false, reason: 'not-found', message: `${relative} not found` };
  if (!stats.isFile()) return { ok: false, reason: 'not-a-file', message: `${relative} is not a regular file` };
  return { ok: true, path: real, relative, stats };
}
