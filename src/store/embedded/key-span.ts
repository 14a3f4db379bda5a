/**
 * Keys as etcd addresses them. Keys are stored as their UTF-8 bytes in BLOB columns because
 * SQLite compares BLOBs with memcmp, which is exactly etcd's bytewise key order; JavaScript's
 * own string order (UTF-16 code units) differs for characters above U+FFFF.
 */
import { assertKeyGiven, encodeKey, prefixEnd } from '../keys.js';

/** One key, or every key in the byte range [start, end); `end` undefined means unbounded. */
export type KeySpan =
  | { kind: 'key'; key: Buffer }
  | { kind: 'range'; start: Buffer; end: Buffer | undefined };

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
  assertKeyGiven(start);
  return { kind: 'key', key: start };
}

export function spanContains(span: KeySpan, key: Buffer): boolean {
  if (span.kind === 'key') return span.key.equals(key);
  return Buffer.compare(key, span.start) >= 0 && (span.end === undefined || Buffer.compare(key, span.end) < 0);
}
