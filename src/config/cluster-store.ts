/**
 * The cluster configuration's home in the store: one key holding the validated document, so
 * every node applies exactly the same revision. `pxeha apply` validates before it writes and
 * nodes validate again when they read (a store written by an older or newer version, or by
 * hand, must not crash a node).
 */
import type { Store, Watcher } from '../store/store.js';
import { parseClusterConfig } from './load.js';
import { PxehaError } from '../errors.js';
import type { ClusterConfig } from './schema.js';

export const CLUSTER_CONFIG_KEY = '/pxeha/config/cluster';

export interface StoredClusterConfig {
  config: ClusterConfig;
  /** Store revision at which this configuration was written (0: none written yet). */
  revision: number;
}

export interface ClusterConfigSnapshot extends StoredClusterConfig {
  /** Store revision the read was served at: watch from the next one to miss nothing. */
  readRevision: number;
}

export async function writeClusterConfig(store: Store, config: ClusterConfig): Promise<number> {
  const { revision } = await store.put(CLUSTER_CONFIG_KEY, JSON.stringify(config));
  return revision;
}

export async function readClusterConfig(store: Store): Promise<ClusterConfigSnapshot> {
  const { kvs, revision: readRevision } = await store.range(CLUSTER_CONFIG_KEY);
  const kv = kvs[0];
  if (!kv) return { config: parseClusterConfig({}), revision: 0, readRevision };
  return {
    config: parseClusterConfig(JSON.parse(kv.value), `store key ${CLUSTER_CONFIG_KEY}`),
    revision: kv.modRevision,
    readRevision,
  };
}

/**
 * Calls `onChange` with every new configuration after `afterRevision` (a snapshot's readRevision). A stored document that
 * fails validation is reported through `onInvalid` and the node keeps its current one.
 */
export async function watchClusterConfig(
  store: Store,
  afterRevision: number,
  onChange: (c: StoredClusterConfig) => void,
  onInvalid: (err: Error) => void,
): Promise<Watcher> {
  const watcher = await store.watch(CLUSTER_CONFIG_KEY, { startRevision: afterRevision + 1 });
  watcher.on('events', (events) => {
    for (const e of events) {
      if (e.type !== 'put') continue;
      try {
        onChange({ config: parseClusterConfig(JSON.parse(e.kv.value), `store key ${CLUSTER_CONFIG_KEY}`), revision: e.kv.modRevision });
      } catch (err) {
        onInvalid(err as Error);
      }
    }
  });
  watcher.on('error', onInvalid);
  return watcher;
}

/**
 * Changes the stored configuration with a compare-and-set, so two concurrent edits (API calls
 * on two nodes) can never silently undo each other; the result is validated like a file.
 */
export async function updateClusterConfig(
  store: Store,
  change: (draft: ClusterConfig) => void,
): Promise<{ config: ClusterConfig; revision: number }> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const kv = await store.get(CLUSTER_CONFIG_KEY);
    const draft = structuredClone(kv ? (JSON.parse(kv.value) as ClusterConfig) : parseClusterConfig({}));
    change(draft);
    const config = parseClusterConfig(draft);
    const result = await store.txn({
      compare: [{ key: CLUSTER_CONFIG_KEY, target: 'modRevision', op: '==', value: kv?.modRevision ?? 0 }],
      success: [{ type: 'put', key: CLUSTER_CONFIG_KEY, value: JSON.stringify(config) }],
    });
    if (result.succeeded) return { config, revision: result.revision };
  }
  throw new PxehaError('PXE_ERR_CONFLICT', 'the cluster configuration kept changing; try again');
}
