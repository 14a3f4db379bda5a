/**
 * Picks up a renewed API certificate without a restart. Certificates are renewed by tools that
 * replace the files (certbot swaps a symlink, others write and rename), often the certificate
 * and the key one after the other, so the files are compared by what `stat` says of their
 * targets (device, inode, size, mtime) every few seconds and on SIGHUP, and a new pair is
 * installed only when the two make a usable context together: a certificate whose key has not
 * been written yet is refused (counted, logged) and the listener keeps the pair it has; the next
 * change of either file is tried again. Connections already open keep their context.
 */
import { readFile, stat } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import type { Logger } from 'pino';

export interface TlsFiles {
  certFile: string;
  keyFile: string;
}

/** What an HTTPS server offers for this (node:https and node:tls servers both do). */
export interface SecureContextTarget {
  setSecureContext(options: { cert: Buffer; key: Buffer }): void;
}

export type ReloadResult = 'unchanged' | 'reloaded' | 'refused';

export interface TlsReloaderOptions {
  /** How often the files are compared; default 5 s. 0: only on check() (tests, SIGHUP). */
  intervalMs?: number;
  log: Pick<Logger, 'info' | 'error'>;
  /** Told of each reload attempt (a metric). */
  onResult?: (result: Exclude<ReloadResult, 'unchanged'>) => void;
}

export interface TlsReloader {
  /** Compares the files now and installs a changed pair if it is usable. */
  check(): Promise<ReloadResult>;
  close(): void;
}

/** What stat says of both files' targets; any replacement or rewrite changes it. */
export async function tlsFilesIdentity(files: TlsFiles): Promise<string> {
  const parts = await Promise.all(
    [files.certFile, files.keyFile].map(async (f) => {
      const s = await stat(f).catch(() => undefined);
      return s ? `${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}` : 'missing';
    }),
  );
  return parts.join('|');
}

/**
 * Starts watching the files behind `target`'s context. `loadedIdentity`: the files' identity
 * taken before the caller read them, so a change made meanwhile is not missed.
 */
export async function watchTlsFiles(files: TlsFiles, target: SecureContextTarget, options: TlsReloaderOptions & { loadedIdentity?: string }): Promise<TlsReloader> {
  let seen = options.loadedIdentity ?? (await tlsFilesIdentity(files));
  let running: Promise<ReloadResult> | undefined;

  const attempt = async (): Promise<ReloadResult> => {
    const now = await tlsFilesIdentity(files);
    if (now === seen) return 'unchanged';
    // Remembered even when refused: a broken pair is reported once, not every interval.
    seen = now;
    try {
      const [cert, key] = await Promise.all([readFile(files.certFile), readFile(files.keyFile)]);
      createSecureContext({ cert, key }); // throws on a key that does not match, or unparsable PEM
      const leaf = new X509Certificate(cert);
      target.setSecureContext({ cert, key });
      options.log.info({ certFile: files.certFile, subject: leaf.subject, validTo: leaf.validTo }, 'api tls certificate reloaded');
      options.onResult?.('reloaded');
      return 'reloaded';
    } catch (err) {
      options.log.error({ err, certFile: files.certFile, keyFile: files.keyFile }, 'api tls files changed but are not a usable pair; keeping the current certificate');
      options.onResult?.('refused');
      return 'refused';
    }
  };
  // One comparison at a time: a timer tick and a SIGHUP at once share it.
  const check = (): Promise<ReloadResult> => (running ??= attempt().finally(() => (running = undefined)));

  const intervalMs = options.intervalMs ?? 5000;
  const timer = intervalMs > 0 ? setInterval(() => void check(), intervalMs) : undefined;
  timer?.unref();
  const onHangup = () => void check();
  process.on('SIGHUP', onHangup);
  return {
    check,
    close() {
      if (timer) clearInterval(timer);
      process.off('SIGHUP', onHangup);
    },
  };
}
