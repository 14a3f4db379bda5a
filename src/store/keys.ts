/**
 * Keys as etcd addresses them, shared by both store implementations: keys are UTF-8 bytes,
 * ordered bytewise (memcmp), and a prefix is the byte range [prefix, prefixEnd(prefix)).
 * JavaScript's own string order (UTF-16 code units) differs for characters above U+FFFF, so
 * key arithmetic is done on Buffers.
 */
import { PxehaError } from '../errors.js';

export function encodeKey(key: string): Buffer {
  return Buffer.from(key, 'utf8');
}

/** etcd rejects an empty key ("key is not provided") unless it starts a range; say so before asking. */
export function assertKeyGiven(key: Buffer): void {
  if (key.length === 0) throw new PxehaError('PXE_ERR_STORE_BAD_REQUEST', 'store key must not be empty');
}

/**
 * The smallest key above every key that starts with `prefix` (etcd's GetPrefixRangeEnd):
 * drop trailing 0xff bytes and increment the last one. Undefined when no such key exists
 * (an empty prefix, or one of only 0xff bytes): the range is then unbounded.
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
