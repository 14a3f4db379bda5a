/**
 * What a node publishes about itself under `/pxeha/nodes/<name>` (attached to its session
 * lease, so the key vanishes when the node stops renewing), and the pure rules that turn the
 * records every node sees into a cluster status: who is behind on configuration, how far the
 * clocks are apart. Nothing here reads a clock or the store.
 */

export const MEMBERS_PREFIX = '/pxeha/nodes/';
/** The election whose leader runs cluster-wide jobs. */
export const LEADER_ELECTION = 'leader';

export interface MemberLoad {
  /** 1-minute load average of the host. */
  loadAvg1: number;
  /** Resident memory of the node process. */
  rssBytes: number;
  /** Lease records in the node's view. */
  leaseRecords: number;
}

export interface MemberRecord {
  name: string;
  /** Addresses machines and peers reach the node at. */
  addresses: string[];
  httpPort: number;
  version: string;
  /** Store revision of the cluster configuration the node applied (0: none yet). */
  configRevision: number;
  /** Relative share of DHCP clients this node takes (node config cluster.weight; default 100). */
  weight?: number;
  /** Drained by an operator (src/cluster/node-overrides.ts): takes no new clients, weight 0. */
  drained?: boolean;
  /** Image versions (ids) the node holds whole, every chunk verified (src/images/replicator.ts). */
  images: string[];
  /** The node's labels (node config `labels`, e.g. site): image placement selects nodes by them. */
  labels?: Record<string, string>;
  /**
   * Artifacts named by the configuration (boot files, profile kernels and initrds) that the node
   * holds in its artifacts directory: boot servers are chosen among the nodes holding a
   * machine's files (src/boot/servers.ts).
   */
  artifacts: string[];
  load: MemberLoad;
  /** The node's wall clock when it wrote this record, in Unix ms. */
  clockMs: number;
  /** When the node process started, in Unix ms (its own clock). */
  startedAtMs: number;
}

export function memberKey(name: string): string {
  return `${MEMBERS_PREFIX}${name}`;
}

export function parseMemberRecord(value: string): MemberRecord | undefined {
  try {
    const r = JSON.parse(value) as Partial<MemberRecord>;
    if (typeof r.name !== 'string' || typeof r.configRevision !== 'number' || typeof r.clockMs !== 'number') return undefined;
    return {
      name: r.name,
      addresses: Array.isArray(r.addresses) ? r.addresses.filter((a): a is string => typeof a === 'string') : [],
      httpPort: typeof r.httpPort === 'number' ? r.httpPort : 0,
      version: typeof r.version === 'string' ? r.version : 'unknown',
      configRevision: r.configRevision,
      weight: typeof r.weight === 'number' && r.weight >= 0 ? r.weight : 100,
      ...(r.drained === true ? { drained: true } : {}),
      images: Array.isArray(r.images) ? r.images.filter((a): a is string => typeof a === 'string') : [],
      ...(r.labels && typeof r.labels === 'object' && !Array.isArray(r.labels)
        ? { labels: Object.fromEntries(Object.entries(r.labels).filter((e): e is [string, string] => typeof e[1] === 'string')) }
        : {}),
      artifacts: Array.isArray(r.artifacts) ? r.artifacts.filter((a): a is string => typeof a === 'string') : [],
      load: { loadAvg1: r.load?.loadAvg1 ?? 0, rssBytes: r.load?.rssBytes ?? 0, leaseRecords: r.load?.leaseRecords ?? 0 },
      clockMs: r.clockMs,
      startedAtMs: typeof r.startedAtMs === 'number' ? r.startedAtMs : 0,
    };
  } catch {
    return undefined;
  }
}

/** One member as a node sees it. */
export interface MemberView {
  record: MemberRecord;
  /** Store revision of the record's last write. */
  modRevision: number;
  /**
   * The observer's wall clock when the write arrived (undefined for a record that was already
   * there at start-up, whose age is unknown).
   */
  receivedAtMs?: number;
  /**
   * clockMs − receivedAtMs of the last few writes that arrived: each is the member's clock
   * offset minus that write's delay through the store, so the largest is the best estimate
   * (NTP's minimum-delay filter). Empty when no write was seen arriving.
   */
  offsetSamplesMs?: number[];
}

/** How many recent offset samples a view keeps per member. */
export const OFFSET_SAMPLES = 8;

/** The best estimate of a member's clock offset from its samples, or undefined. */
export function estimateOffsetMs(view: MemberView): number | undefined {
  const samples = view.offsetSamplesMs ?? (view.receivedAtMs !== undefined ? [view.record.clockMs - view.receivedAtMs] : []);
  return samples.length > 0 ? Math.round(Math.max(...samples)) : undefined;
}

export interface ClusterNodeStatus extends MemberRecord {
  /** This node is the elected leader. */
  leader: boolean;
  /** The node applied an older configuration than the one in the store. */
  behind: boolean;
  /** Estimated clock offset from the node answering, in ms (positive: ahead); undefined if unknown. */
  clockOffsetMs?: number;
}

export interface ClusterStatus {
  /** The node that answered. */
  observer: string;
  /** Its wall clock when it answered. */
  observedAtMs: number;
  nodes: ClusterNodeStatus[];
  /** Name of the elected leader, if any. */
  leader?: string;
  /** Revision of the configuration in the store (0: none written). */
  configRevision: number;
  /** Largest difference between any two known node clocks, in ms (undefined with fewer than two estimates). */
  clockSkewMs?: number;
  clockSkewThresholdMs: number;
  store: { kind: string; reachable: boolean; revision?: number; error?: string };
  /** The answering node cannot reach the store (its view may be stale). */
  degraded: boolean;
  warnings: string[];
}

export interface ClusterStatusInput {
  observer: string;
  observedAtMs: number;
  members: readonly MemberView[];
  leaderName: string | undefined;
  configRevision: number;
  clockSkewThresholdMs: number;
  store: ClusterStatus['store'];
  degraded: boolean;
  /** The observer is a node (it should be registered), not a CLI reading the store; default true. */
  observerIsNode?: boolean;
}

/** The cluster as one node sees it; pure, so the flags are easy to test. */
export function clusterStatusOf(input: ClusterStatusInput): ClusterStatus {
  const nodes = [...input.members]
    .sort((a, b) => a.record.name.localeCompare(b.record.name))
    .map((m): ClusterNodeStatus => {
      const offset = m.record.name === input.observer ? 0 : estimateOffsetMs(m);
      return {
        ...m.record,
        leader: m.record.name === input.leaderName,
        behind: m.record.configRevision < input.configRevision,
        ...(offset !== undefined ? { clockOffsetMs: offset } : {}),
      };
    });
  const offsets = nodes.flatMap((n) => (n.clockOffsetMs !== undefined ? [n.clockOffsetMs] : []));
  const clockSkewMs = offsets.length >= 2 ? Math.max(...offsets) - Math.min(...offsets) : undefined;
  const warnings: string[] = [];
  if (input.degraded) warnings.push(`node ${input.observer} cannot reach the store: this view may be stale`);
  if (!input.store.reachable) warnings.push(`store unreachable${input.store.error ? `: ${input.store.error}` : ''}`);
  for (const n of nodes) {
    if (n.behind) warnings.push(`node ${n.name} applied configuration revision ${n.configRevision}, the store has ${input.configRevision}`);
  }
  if (clockSkewMs !== undefined && clockSkewMs > input.clockSkewThresholdMs) {
    warnings.push(`node clocks differ by ${clockSkewMs} ms (threshold ${input.clockSkewThresholdMs} ms); lease times shown may be off`);
  }
  if (input.leaderName === undefined) warnings.push('no leader elected: cluster-wide jobs are not running');
  if (input.observerIsNode !== false && !nodes.some((n) => n.name === input.observer)) {
    warnings.push(`node ${input.observer} is not registered`);
  }
  return {
    observer: input.observer,
    observedAtMs: input.observedAtMs,
    nodes,
    ...(input.leaderName !== undefined ? { leader: input.leaderName } : {}),
    configRevision: input.configRevision,
    ...(clockSkewMs !== undefined ? { clockSkewMs } : {}),
    clockSkewThresholdMs: input.clockSkewThresholdMs,
    store: input.store,
    degraded: input.degraded,
    warnings,
  };
}

/** The value a leader proclaims in the election. */
export function leaderValue(name: string): string {
  return JSON.stringify({ name });
}

export function leaderNameOf(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  try {
    const v = JSON.parse(value) as { name?: unknown };
    return typeof v.name === 'string' ? v.name : undefined;
  } catch {
    return undefined;
  }
}
