/**
 * Reads every key under a prefix a page at a time, so a large prefix (100 000 leases and more)
 * never has to come back as one response: etcd caps a response by gRPC message size, and one
 * huge read holds every value in memory twice (wire and parsed) at once.
 *
 * The pages are not one snapshot: each is read at the store's revision of its moment. A caller
 * that keeps a watch-fed copy makes them one by applying values by modRevision (an older value
 * never replaces a newer one) and starting its watch after `firstRevision`: every change made
 * while the pages were read is then delivered again, in order.
 */
import { encodeKey, prefixEnd } from './keys.js';
import type { KeyValue, Store } from './store.js';

export const DEFAULT_PAGE_SIZE = 5000;

export interface Page {
  kvs: KeyValue[];
  /** Store revision this page was read at. */
  revision: number;
}

/** Yields the keys under `prefix` in key order, `pageSize` at a time (one empty page when there are none). */
export async function* rangePages(store: Store, prefix: string, pageSize = DEFAULT_PAGE_SIZE): AsyncGenerator<Page> {
  if (!Number.isInteger(pageSize) || pageSize < 1) throw new RangeError(`page size must be a positive integer, got ${pageSize}`);
  const endBytes = prefixEnd(encodeKey(prefix));
  // An unbounded prefix (empty, or all 0xff) has no end key; '\0' is etcd's "to the end".
  const end = endBytes ? endBytes.toString('utf8') : '\0';
  // Keys travel as strings: an end that is not valid UTF-8 would not survive the trip.
  if (endBytes && !encodeKey(end).equals(endBytes)) throw new RangeError(`prefix ${JSON.stringify(prefix)} has no UTF-8 end key; page it by an explicit range`);
  let from = prefix;
  for (;;) {
    const result = await store.range(from, { end, limit: pageSize });
    yield { kvs: result.kvs, revision: result.revision };
    if (!result.more || result.kvs.length === 0) return;
    // The next key after the last one read: the same bytes with a NUL appended.
    from = `${result.kvs[result.kvs.length - 1]!.key}\0`;
  }
}

/** Applies every key under `prefix`, page by page; returns the revision of the first page. */
export async function readPaged(store: Store, prefix: string, apply: (kv: KeyValue) => void, pageSize = DEFAULT_PAGE_SIZE): Promise<number> {
  let firstRevision: number | undefined;
  for await (const page of rangePages(store, prefix, pageSize)) {
    firstRevision ??= page.revision;
    for (const kv of page.kvs) apply(kv);
  }
  return firstRevision!;
}
