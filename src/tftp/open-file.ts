/**
 * Opens the file a read request names, under the artifacts root, or says why not.
 *
 * Which files are served is the node's one rule for TFTP and HTTP alike,
 * src/artifacts/resolve.ts `resolveArtifact`: a leading `/` means "from the root" (as tftp-hpa
 * `-s` and dnsmasq treat it — PXE ROMs commonly ask for `/pxelinux.0`); `..` segments (with `/`
 * or `\`), NUL bytes, drive letters and names over 255 bytes are refused before touching the
 * disk; symlinks are followed but must stay inside the root; only regular files are served.
 *
 * A TFTP transfer keeps its file open for its whole length, so after resolving, this opens the
 * resolved path with O_NOFOLLOW (the last component cannot have become a symlink since) and
 * O_NONBLOCK (a FIFO swapped in must not hang a thread-pool thread waiting for a writer), checks
 * the descriptor is a regular file, and reads back which file it really is (/proc/self/fd/N)
 * to check the root again: a directory swapped for a symlink after resolving cannot escape.
 * The FileHandle is then read a window at a time (never whole) and closed when the transfer ends.
 */
import { constants, type Stats } from 'node:fs';
import { open, readlink, type FileHandle } from 'node:fs/promises';
import { isInsideRoot, resolveArtifact, type RefusalReason } from '../artifacts/resolve.js';
import { TftpErrorCode } from '../protocol/tftp/codes.js';

/** Why a TFTP request was refused (the `reason` label of pxeha_tftp_refused_total). */
export type TftpRefusalReason =
  | RefusalReason
  | 'access-denied'
  | 'bad-encoding'
  | 'write-request'
  | 'bad-mode'
  | 'malformed'
  | 'busy'
  /** A pinned image path that is malformed (src/images/image-ref.ts). */
  | 'bad-image-path'
  /** An image version this node does not hold whole (yet): another holder serves it. */
  | 'not-held';

export interface Refusal {
  reason: TftpRefusalReason;
  /** The TFTP error code sent to the client. */
  code: TftpErrorCode;
  /** Sent to the client in the ERROR packet and logged. */
  message: string;
}

export type OpenResult =
  | { ok: true; handle: FileHandle; path: string; stats: Stats; size: number }
  | ({ ok: false } & Refusal);

/** File not found → 1 (RFC 1350), a write request → 2, other path refusals → 2 (access violation). */
export function refusal(reason: TftpRefusalReason, message: string): Refusal {
  switch (reason) {
    case 'not-found':
    case 'not-held': // like a missing file, so the client tries the next server it knows
      return { reason, code: TftpErrorCode.FILE_NOT_FOUND, message };
    case 'bad-mode':
    case 'malformed':
      return { reason, code: TftpErrorCode.ILLEGAL_OPERATION, message };
    case 'busy':
      return { reason, code: TftpErrorCode.NOT_DEFINED, message };
    default:
      return { reason, code: TftpErrorCode.ACCESS_VIOLATION, message };
  }
}

const refuse = (reason: TftpRefusalReason, message: string): OpenResult => ({ ok: false, ...refusal(reason, message) });

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** The request's file name (latin1 from the codec) as the UTF-8 text it encodes, if it does. */
export function filenameToPath(latin1Name: string): string | undefined {
  try {
    return UTF8.decode(Buffer.from(latin1Name, 'latin1'));
  } catch {
    return undefined;
  }
}

function errnoReason(err: unknown): TftpRefusalReason {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EACCES' || code === 'EPERM') return 'access-denied';
  if (code === 'ELOOP') return 'outside-root'; // the file became a symlink after resolving
  return 'not-found'; // ENOENT (removed after resolving), …
}

/**
 * Opens `requested` (the RRQ file name, latin1) under `root`, which must be a real path
 * (realpath'd once at startup). The caller owns the returned handle.
 */
export async function openForRead(root: string, requested: string): Promise<OpenResult> {
  const name = filenameToPath(requested);
  if (name === undefined) return refuse('bad-encoding', 'file name is not valid UTF-8');
  const resolved = await resolveArtifact(root, name);
  if (!resolved.ok) return refuse(resolved.reason, resolved.message);
  const { path } = resolved;
  const shown = path.slice(root.length + 1);

  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW | constants.O_NOCTTY);
  } catch (err) {
    const reason = errnoReason(err);
    return refuse(reason, reason === 'not-found' ? `${shown} not found` : `${shown}: access denied`);
  }
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) {
      await handle.close();
      return refuse('not-a-file', `${shown} is not a regular file`);
    }
    const opened = await readlink(`/proc/self/fd/${handle.fd}`).catch(() => path);
    if (!isInsideRoot(root, opened)) {
      await handle.close();
      return refuse('outside-root', `${shown} resolves outside the artifacts root`);
    }
    return { ok: true, handle, path, stats, size: stats.size };
  } catch (err) {
    await handle.close().catch(() => undefined);
    return refuse(errnoReason(err), `${shown}: cannot be read`);
  }
}
