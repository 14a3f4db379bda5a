/**
 * Opens the store a node's configuration names. The rest of pxeha sees only the Store
 * interface, so switching a node from embedded to etcd is a configuration change.
 */
import { openEmbeddedStore } from './embedded/embedded-store.js';
import type { Store } from './store.js';

export type StoreConfig = {
  kind: 'embedded';
  /** SQLite file of the single-node store. */
  path: string;
};
// The etcd branch joins this union with src/store/etcd/: { kind: 'etcd'; endpoints: string[]; ... }.

export async function openStore(config: StoreConfig): Promise<Store> {
  switch (config.kind) {
    case 'embedded':
      return openEmbeddedStore({ path: config.path });
    // case 'etcd': return openEtcdStore(config);
    default:
      return assertNever(config.kind);
  }
}

function assertNever(kind: never): never {
  throw new Error(`unknown store kind ${String(kind)}`);
}
