/**
 * A local, watch-fed copy of every key under a prefix, parsed into objects: reads on hot paths
 * (an HTTP boot request, a DHCP decision) come from memory, and the copy follows the store
 * from the revision it was loaded at, so no change is missed.
 */
import type { Store, Watcher } from './store.js';

export class PrefixCache<T> {
  private readonly items = new Map<string, { value: T; modRevision: number }>();
  private watcher: Watcher | undefined;
  #generation = 0;

  private constructor(
    private readonly prefix: string,
    private readonly parse: (value: string, key: string) => T | undefined,
  ) {}

  static async open<T>(
    store: Store,
    prefix: string,
    parse: (value: string, key: string) => T | undefined,
    onError: (err: Error) => void,
    /** Called after each batch of changes is applied. */
    onChange?: () => void,
  ): Promise<PrefixCache<T>> {
    const cache = new PrefixCache<T>(prefix, parse);
    const snapshot = await store.range(prefix, { prefix: true });
    for (const kv of snapshot.kvs) cache.apply(kv.key, kv.value, kv.modRevision);
    cache.watcher = await store.watch(prefix, { prefix: true, startRevision: snapshot.revision + 1 });
    cache.watcher.on('events', (events) => {
      for (const e of events) {
        if (e.type === 'put') cache.apply(e.kv.key, e.kv.value, e.kv.modRevision);
        else if (cache.items.delete(e.kv.key.slice(prefix.length))) cache.#generation++;
      }
      onChange?.();
    });
    cache.watcher.on('error', onError);
    return cache;
  }

  /** The object under `prefix + name`. */
  get(name: string): T | undefined {
    return this.items.get(name)?.value;
  }

  /** Changes whenever the contents do: what is derived from values() can be kept until then. */
  get generation(): number {
    return this.#generation;
  }

  /** Store modRevision of `name` (0 when absent): the token for a compare-and-set. */
  revisionOf(name: string): number {
    return this.items.get(name)?.modRevision ?? 0;
  }

  values(): T[] {
    return [...this.items.values()].map((i) => i.value);
  }

  /** Takes a value the caller just wrote, before its watch event arrives. */
  apply(key: string, value: string, modRevision: number): void {
    const name = key.slice(this.prefix.length);
    const existing = this.items.get(name);
    if (existing && existing.modRevision >= modRevision) return;
    const parsed = this.parse(value, key);
    if (parsed !== undefined) {
      this.items.set(name, { value: parsed, modRevision });
      this.#generation++;
    }
  }

  async close(): Promise<void> {
    await this.watcher?.cancel();
  }
}
