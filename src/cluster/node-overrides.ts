/**
 * Operator overrides of a node's share of the clients, kept in the store under
 * `/pxeha/node-overrides/<name>` as `{weight?, drained?}` (the dashboard's "drain" and "set
 * weight", `PUT /api/v1/nodes/:name/weight`, `POST /api/v1/nodes/:name/drain|undrain`).
 *
 * Each node watches its own key and republishes its membership record with the effective
 * weight: the override's weight, else the node configuration's `cluster.weight`; 0 while
 * drained. DHCP designation and boot-server choice already follow the weights in the records
 * (weighted rendezvous hashing: a weight-0 member takes no bucket while any member has a
 * positive weight), so a drained node gets no new clients and nobody else's machines move.
 * Overrides outlive the node process (they are not attached to its session lease): a drained
 * node stays drained across restarts until it is undrained.
 */
import { PrefixCache } from '../store/prefix-cache.js';
import type { Store } from '../store/store.js';

export const NODE_OVERRIDES_PREFIX = '/pxeha/node-overrides/';

export interface NodeOverride {
  /** Replaces the configured weight (0–10000). */
  weight?: number;
  /** Takes no new clients: effective weight 0, whatever the weight. */
  drained?: boolean;
  /** Unix ms of the last change, by the writer's clock (display only). */
  atMs?: number;
  /** Who changed it (`api on <node>`). */
  by?: string;
}

export function nodeOverrideKey(name: string): string {
  return `${NODE_OVERRIDES_PREFIX}${name}`;
}

export function parseNodeOverride(value: string): NodeOverride | undefined {
  try {
    const v = JSON.parse(value) as Record<string, unknown>;
    if (typeof v !== 'object' || v === null) return undefined;
    const out: NodeOverride = {};
    if (typeof v.weight === 'number' && Number.isFinite(v.weight) && v.weight >= 0) out.weight = v.weight;
    if (typeof v.drained === 'boolean') out.drained = v.drained;
    if (typeof v.atMs === 'number') out.atMs = v.atMs;
    if (typeof v.by === 'string') out.by = v.by;
    return out;
  } catch {
    return undefined;
  }
}

/** The weight a node publishes: 0 while drained, else the override's, else the configured one. */
export function effectiveWeight(configured: number, override: NodeOverride | undefined): number {
  if (override?.drained) return 0;
  return override?.weight ?? configured;
}

/** Read-modify-write of one node's override with a compare-and-set; returns the new value. */
export async function updateNodeOverride(
  store: Store,
  name: string,
  change: (current: NodeOverride) => NodeOverride,
): Promise<NodeOverride & { revision: number }> {
  const key = nodeOverrideKey(name);
  for (let attempt = 0; attempt < 5; attempt++) {
    const kv = await store.get(key);
    const next = change((kv && parseNodeOverride(kv.value)) ?? {});
    const result = await store.txn({
      compare: [{ key, target: 'modRevision', op: '==', value: kv?.modRevision ?? 0 }],
      success: [{ type: 'put', key, value: JSON.stringify(next) }],
    });
    if (result.succeeded) return { ...next, revision: result.revision };
  }
  throw new Error(`override of node ${name} kept changing; try again`);
}

/** A node's watch of its own override; `onChange` runs after each change (republish the record). */
export class NodeOverrideWatch {
  private constructor(private readonly cache: PrefixCache<NodeOverride>) {}

  static async open(store: Store, name: string, onError: (err: Error) => void, onChange: () => void): Promise<NodeOverrideWatch> {
    const cache = await PrefixCache.open(store, nodeOverrideKey(name), (v) => parseNodeOverride(v), onError, onChange);
    return new NodeOverrideWatch(cache);
  }

  /** The override of this node, if any (the cache holds the one key `prefix + name`). */
  get current(): NodeOverride | undefined {
    return this.cache.get('');
  }

  get drained(): boolean {
    return this.current?.drained === true;
  }

  close(): Promise<void> {
    return this.cache.close();
  }
}
