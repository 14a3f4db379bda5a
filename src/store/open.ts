/**
 * Opens the store a node's configuration names. The rest of pxeha sees only the Store
 * interface, so switching a node from embedded to etcd is a configuration change.
 */
import { openEmbeddedStore } from './embedded/embedded-store.js';
import { type EtcdStoreOptions, openEtcdStore } from './etcd/etcd-store.js';
import type { Store } from './store.js';

export type StoreConfig =
  | {
      kind: 'embedded';
      /** SQLite file of the single-node store. */
      path: string;
    }
  | ({ kind: 'etcd' } & EtcdStoreOptions);

export async function openStore(config: StoreConfig): Promise<Store> {
  switch (config.kind) {
    case 'embedded':
      return openEmbeddedStore({ path: config.path });
    case 'etcd': {
      const { kind: _kind, ...options } = config;
      return openEtcdStore(options);
    }
    default:
      return assertNever(config);
  }
}

function assertNever(config: never): never {
  throw new Error(`unknown store kind ${String((config as { kind?: unknown }).kind)}`);
}
