/**
 * Keys as etcd addresses them. Keys are stored as their UTF-8 bytes in BLOB columns because
 * SQLite compares BLOBs with memcmp, which is exactly etcd's bytewise key order; JavaScript's
 * own string order (UTF-16 code units) differs for characters above U+FFFF.
 */
import { PxehaError } from '../../errors.js';

/** One key, or every key in the byte range [start, end); `end` undefined means unbounded. */
export type KeySpan =
  | { kind: 'key'; key: Buffer }
  | { kind: 'range'; start: Buffer; end: Buffer | undefined };

export function encodeKey(key: string): Buffer {
  return Buffer.from(key, 'utf8');
}

/**
 * The span a request addresses. With `prefix`, every key starting with `key` (an empty key
 * with prefix means all keys). With `end`, [key, end); etcd's end of "\0" means every key
 * >= key.
 */
export function keySpan(key: string, options: { prefix?: boolean; end?: string } = {}): KeySpan {
  const start = encodeKey(key);
  if (options.prefix) return { kind: 'range', start, end: prefixEnd(start) };
  if (options.end !== undefined) {
    return { kind: 'range', start, end: options.end === '\0' ? undefined : encodeKey(options.end) };
  }
  // etcd rejects an empty key ("key is not provided") unless it starts a range.
  if (start.length === 0) throw new PxehaError('PXE_ERR_STORE_BAD_REQUEST', 'store key must not be empty');
  return { kind: 'key', key: start };
}

/**
 * The smallest key above every key that starts with `prefix` (etcd's GetPrefixRangeEnd):
 * drop trailing 0xff bytes and increment the last one. Undefined when no such key exists.
 */
export function prefixEnd(prefix: Buffer): Buffer | undefined {
  for (let i = prefix.length - 1; i >= 0; i--) {
    const byte = prefix[i]!;
    if (byte < 0xff) {
      const end = Buffer.from(prefix.subarray(0, i + 1));
      end[i] = byte + 1;
      return end;
    }
  }
  return undefined;
}

export function spanContains(span: KeySpan, key: Buffer): boolean {
  if (span.kind === 'key') return span.key.equals(key);
  return Buffer.compare(key, span.start) >= 0 && (span.end === undefined || Buffer.compare(key, span.end) < 0);
}
