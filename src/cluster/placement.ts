/**
 * Which healthy members take a share of the clients (DHCP designation and boot serving).
 *
 * - `auto` (default): every healthy member. A node that goes down loses its share at once
 *   (its membership lease lapses) and a node that comes back takes back exactly its own
 *   share: the weighted rendezvous hash moves nobody else's machines.
 * - `manual`: the members named in the placement record `/pxeha/placement`. A node that goes
 *   down is still dropped at once (only healthy members count, and the leader also removes it
 *   from the record), but one that comes back, or a new one, waits until an operator runs
 *   `pxeha cluster rebalance`, which places every healthy member. This is for operators who
 *   want a returning node watched before it serves machines again (as PVS's manual rebalance).
 * If the record names no healthy member, every healthy member serves: the cluster never
 * refuses clients because of a stale record.
 */
import type { LeaderJob } from './leader-jobs.js';
import { fencedTxn, periodicJob } from './leader-jobs.js';
import { MEMBERS_PREFIX, parseMemberRecord } from './member-record.js';
import type { Store } from '../store/store.js';
import type { Profile } from '../config/schema.js';
import { bootServersFor, profileArtifacts, type BootNodeInfo } from '../boot/servers.js';
import type { ResolvedImage } from '../images/image-ref.js';
import { bucketShares } from '../dhcp/designation.js';

export const PLACEMENT_KEY = '/pxeha/placement';

export type RebalanceMode = 'auto' | 'manual';

export interface PlacementRecord {
  /** Members that take a share (manual mode). */
  members: string[];
  /** Unix ms of the last rebalance or removal, by the writer's clock (for display only). */
  atMs: number;
  /** Who wrote it: `rebalance by <node>` or `leader <node> removed <names>`. */
  by: string;
}

export function parsePlacement(value: string | undefined): PlacementRecord | undefined {
  if (value === undefined) return undefined;
  try {
    const r = JSON.parse(value) as Partial<PlacementRecord>;
    if (!Array.isArray(r.members)) return undefined;
    return {
      members: r.members.filter((m): m is string => typeof m === 'string'),
      atMs: typeof r.atMs === 'number' ? r.atMs : 0,
      by: typeof r.by === 'string' ? r.by : '',
    };
  } catch {
    return undefined;
  }
}

/** The healthy members that take a share, in their given order. */
export function placedMembers<T extends { name: string }>(
  healthy: readonly T[],
  mode: RebalanceMode,
  placement: PlacementRecord | undefined,
): T[] {
  if (mode === 'auto' || placement === undefined) return [...healthy];
  const placed = healthy.filter((m) => placement.members.includes(m.name));
  return placed.length > 0 ? placed : [...healthy];
}

/**
 * Leader job (manual mode): keeps the placement record to members that are still healthy, so a
 * node that went down does not take its share back by itself on return. With no record every
 * healthy member is placed (a cluster starting node by node places them all); the first time a
 * member the leader saw goes, the record is written with the members left.
 */
export function placementJob(options: { mode: () => RebalanceMode; intervalMs?: number; now: () => number; self: string }): LeaderJob {
  return {
    name: 'placement',
    run: (context) => {
      // Healthy members at the last step of this leadership: a departure from them is what counts.
      let seen: string[] | undefined;
      return periodicJob('placement', options.intervalMs ?? 500, async ({ store, fence, log, signal }) => {
        if (options.mode() !== 'manual') {
          seen = undefined;
          return;
        }
        const [members, current] = await Promise.all([store.range(MEMBERS_PREFIX, { prefix: true }), store.get(PLACEMENT_KEY)]);
        const healthy = members.kvs.flatMap((kv) => parseMemberRecord(kv.value)?.name ?? []).sort();
        const record = parsePlacement(current?.value);
        const previous = seen;
        seen = healthy;
        const placedBefore = record ? record.members : previous;
        if (placedBefore === undefined || signal.aborted) return;
        const removed = placedBefore.filter((m) => !healthy.includes(m));
        if (removed.length === 0) return;
        const next: PlacementRecord = {
          members: placedBefore.filter((m) => healthy.includes(m)),
          atMs: options.now(),
          by: `leader ${options.self} removed ${removed.join(', ')}`,
        };
        const result = await fencedTxn(store, fence, {
          compare: [{ key: PLACEMENT_KEY, target: 'modRevision', op: '==', value: current?.modRevision ?? 0 }],
          success: [{ type: 'put', key: PLACEMENT_KEY, value: JSON.stringify(next) }],
        });
        if (result.succeeded) log.info({ placed: next.members, removed }, 'placement updated: a placed node went down');
      }).run(context);
    },
  };
}

/** `pxeha cluster rebalance`: every healthy member takes its share again. */
export async function rebalance(store: Store, by: string, nowMs: number): Promise<PlacementRecord & { revision: number }> {
  const members = await store.range(MEMBERS_PREFIX, { prefix: true });
  const record: PlacementRecord = {
    members: members.kvs.flatMap((kv) => parseMemberRecord(kv.value)?.name ?? []).sort(),
    atMs: nowMs,
    by: `rebalance by ${by}`,
  };
  const { revision } = await store.put(PLACEMENT_KEY, JSON.stringify(record));
  return { ...record, revision };
}

/** One machine as placed: its boot server and fallbacks, and the node that last served it. */
export interface MachinePlacement {
  mac: string;
  name?: string;
  profile?: string;
  /** First boot server (also its designated DHCP node when that node holds its files). */
  server?: string;
  fallbacks: string[];
  /** False when no node holds every file its profile needs. */
  complete: boolean;
  /** The node that served its last boot stage, as recorded in machine status. */
  lastNode?: string;
}

export interface PlacementStatus {
  mode: RebalanceMode;
  record?: PlacementRecord;
  nodes: { name: string; weight: number; placed: boolean; buckets: number; machines: number }[];
  machines: MachinePlacement[];
}

export interface PlacementInput {
  mode: RebalanceMode;
  record: PlacementRecord | undefined;
  /** Healthy members with what they hold. */
  healthy: readonly BootNodeInfo[];
  /** `image`: the version the profile's image reference resolves to now (image-backed profiles). */
  machines: readonly { mac: string; name?: string; profile?: Profile; image?: ResolvedImage; lastNode?: string }[];
}

/** Who serves which machines (pure): `pxeha cluster placement` and the API show this. */
export function placementStatus(input: PlacementInput): PlacementStatus {
  const placed = placedMembers(input.healthy, input.mode, input.record);
  const placedNames = new Set(placed.map((n) => n.name));
  const shares = bucketShares(placed);
  const machines = input.machines.map((m): MachinePlacement => {
    const choice = bootServersFor(m.mac, profileArtifacts(m.profile, m.image), placed);
    const [first, ...rest] = choice.servers;
    return {
      mac: m.mac,
      ...(m.name !== undefined ? { name: m.name } : {}),
      ...(m.profile ? { profile: m.profile.name } : {}),
      ...(first ? { server: first.name } : {}),
      fallbacks: rest.map((s) => s.name),
      complete: choice.complete,
      ...(m.lastNode !== undefined ? { lastNode: m.lastNode } : {}),
    };
  });
  const nodes = [...input.healthy]
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((n) => ({
      name: n.name,
      weight: n.weight,
      placed: placedNames.has(n.name),
      buckets: shares.get(n.name) ?? 0,
      machines: machines.filter((m) => m.server === n.name).length,
    }));
  return { mode: input.mode, ...(input.record ? { record: input.record } : {}), nodes, machines };
}

export interface RebalanceResult {
  mode: RebalanceMode;
  record: PlacementRecord & { revision: number };
  /** Machines whose first boot server changes (in auto mode none: shares already follow health). */
  moved: { mac: string; name?: string; from?: string; to?: string }[];
}

/** The machines whose first boot server differs between two placements. */
export function movedMachines(before: PlacementStatus, after: PlacementStatus): RebalanceResult['moved'] {
  const was = new Map(before.machines.map((m) => [m.mac, m.server]));
  return after.machines
    .filter((m) => was.get(m.mac) !== m.server)
    .map((m) => ({
      mac: m.mac,
      ...(m.name !== undefined ? { name: m.name } : {}),
      ...(was.get(m.mac) ? { from: was.get(m.mac)! } : {}),
      ...(m.server ? { to: m.server } : {}),
    }));
}
