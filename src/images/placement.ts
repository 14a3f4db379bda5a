/**
 * Image placement: which nodes hold an image (every version of it), so that a large image lives
 * only where it is needed.
 *
 *   /pxeha/image-placement/<name>  what the operator asked: {replicas: 'all' | k, labels?}
 *   /pxeha/image-plan/<name>       which nodes the leader chose for k replicas: {nodes, …}
 *
 * Two prefixes of their own rather than keys beside the versions under /pxeha/images/<name>/:
 * the leader reads every request and plan each step, and a range over /pxeha/images/ would
 * carry every version record with it (small now that manifests live in the chunk store, but many).
 *
 * - No request: every node holds every version (the first cut's rule, unchanged).
 * - `all`: every node whose labels include the request's; each node decides this itself, no
 *   plan is needed.
 * - `k`: the leader picks k of the live members whose labels match and writes the plan
 *   (fenced). Sticky: nodes of the previous plan that are still eligible stay, then nodes that
 *   already hold a version of the image, then the rest by rendezvous hash of (image, node); so
 *   a plan changes only when a chosen node goes or the request changes, and then only the
 *   departed node's place moves. Fewer eligible nodes than k: all of them (under-replicated,
 *   logged).
 * - A node pulls only versions placed on it (`placedOn`). It still advertises versions it holds
 *   whole though not placed on it (the publishing node), so the placed nodes can pull them, and
 *   garbage collection frees them only once every planned holder holds the version whole
 *   (`chunksToKeep`): an unplaced publisher's copy is never the last one to go.
 */
import { createHash } from 'node:crypto';
import { Type, type Static } from '@sinclair/typebox';
import { validate } from '../config/load.js';
import { fencedTxn, periodicJob, type LeaderJob } from '../cluster/leader-jobs.js';
import { MEMBERS_PREFIX, parseMemberRecord } from '../cluster/member-record.js';
import { PxehaError } from '../errors.js';
import type { TxnOp } from '../store/store.js';
import type { Manifest, ManifestRef } from './manifest.js';

export const PLACEMENT_PREFIX = '/pxeha/image-placement/';
export const PLAN_PREFIX = '/pxeha/image-plan/';

export function placementKey(name: string): string {
  return `${PLACEMENT_PREFIX}${name}`;
}
export function planKey(name: string): string {
  return `${PLAN_PREFIX}${name}`;
}

const LabelsSchema = Type.Record(Type.String({ pattern: '^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$' }), Type.String({ maxLength: 253 }));

/** The operator's request (API body of PUT /api/v1/images/:name/placement). */
export const PlacementRequestSchema = Type.Object(
  {
    /** 'all' eligible nodes, or this many. */
    replicas: Type.Union([Type.Literal('all'), Type.Integer({ minimum: 1, maximum: 1000 })]),
    /** Only nodes whose labels include all of these (e.g. {site: 'a'}). */
    labels: Type.Optional(LabelsSchema),
  },
  { additionalProperties: false },
);
export type PlacementRequest = Static<typeof PlacementRequestSchema>;

export const PlacementRecordSchema = Type.Object(
  {
    replicas: PlacementRequestSchema.properties.replicas,
    labels: Type.Optional(LabelsSchema),
    changedAtMs: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);
export type PlacementRecord = Static<typeof PlacementRecordSchema>;

export const PlanRecordSchema = Type.Object(
  {
    /** Nodes that hold the image, sorted. */
    nodes: Type.Array(Type.String()),
    plannedAtMs: Type.Integer({ minimum: 0 }),
    /** `leader <node>` */
    by: Type.String(),
    /** Fewer eligible nodes than replicas asked. */
    underReplicated: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type PlanRecord = Static<typeof PlanRecordSchema>;

export function parsePlacementRecord(value: string, key: string): PlacementRecord {
  return validate<PlacementRecord>(PlacementRecordSchema, JSON.parse(value) as unknown, key);
}
export function parsePlanRecord(value: string, key: string): PlanRecord {
  return validate<PlanRecord>(PlanRecordSchema, JSON.parse(value) as unknown, key);
}

export interface PlacementNode {
  name: string;
  labels?: Readonly<Record<string, string>>;
}

/** Whether a node's labels include every label of the selector. */
export function labelsMatch(
  labels: Readonly<Record<string, string>> | undefined,
  selector: Readonly<Record<string, string>> | undefined,
): boolean {
  return Object.entries(selector ?? {}).every(([k, v]) => labels?.[k] === v);
}

/** Rendezvous (highest random weight) score of a node for an image. */
export function rendezvousScore(image: string, node: string): number {
  return createHash('sha256').update(image).update('\0').update(node).digest().readUIntBE(0, 6);
}

export interface PlanInput {
  image: string;
  placement: Pick<PlacementRecord, 'replicas' | 'labels'>;
  /** Live members. */
  members: readonly PlacementNode[];
  /** The nodes of the current plan, if any. */
  previous?: readonly string[];
  /** Nodes that hold a version of the image whole now. */
  holding?: readonly string[];
}

/** The nodes that should hold an image (sorted), and whether there were fewer than asked. Pure. */
export function planImageHolders(input: PlanInput): { nodes: string[]; underReplicated: boolean } {
  const eligible = input.members.filter((m) => labelsMatch(m.labels, input.placement.labels)).map((m) => m.name);
  const replicas = input.placement.replicas;
  if (replicas === 'all') return { nodes: [...eligible].sort(), underReplicated: false };
  const score = new Map(eligible.map((n) => [n, rendezvousScore(input.image, n)]));
  const previous = new Set(input.previous ?? []);
  const holding = new Set(input.holding ?? []);
  const tier = (n: string): number => (previous.has(n) ? 0 : holding.has(n) ? 1 : 2);
  const ranked = [...eligible].sort((a, b) => tier(a) - tier(b) || score.get(b)! - score.get(a)! || (a < b ? -1 : 1));
  return { nodes: ranked.slice(0, replicas).sort(), underReplicated: eligible.length < replicas };
}

/** Whether versions of an image should be pulled by `self`. Pure. */
export function placedOn(self: PlacementNode, placement: PlacementRecord | undefined, plan: PlanRecord | undefined): boolean {
  if (!placement) return true;
  if (!labelsMatch(self.labels, placement.labels)) return false;
  if (placement.replicas === 'all') return true;
  return plan?.nodes.includes(self.name) ?? false;
}

/**
 * Who should hold an image: with no request or `all`, the live members whose labels match;
 * with k, the plan (undefined while the leader has not planned yet).
 */
export function plannedHolders(
  placement: PlacementRecord | undefined,
  plan: PlanRecord | undefined,
  members: readonly PlacementNode[],
): string[] | undefined {
  if (!placement || placement.replicas === 'all')
    return members
      .filter((m) => labelsMatch(m.labels, placement?.labels))
      .map((m) => m.name)
      .sort();
  return plan ? [...plan.nodes].sort() : undefined;
}

export interface KeepInput {
  self: PlacementNode;
  /** Every recorded version: its manifest's pages and, once loaded on this node, the manifest. */
  versions: readonly { name: string; id: string; ref: ManifestRef; manifest: Manifest | undefined }[];
  placements: ReadonlyMap<string, PlacementRecord>;
  plans: ReadonlyMap<string, PlanRecord>;
  /** Live members with the versions each holds whole. */
  members: readonly (PlacementNode & { images: readonly string[] })[];
}

/**
 * The chunks a node's garbage collection must keep (pure): the manifest pages of every recorded
 * version, the chunks of every version placed on it, and of every version not yet held whole by
 * all of its planned holders (no plan yet, or no eligible holder, counts as not yet: keep).
 * Chunks of versions placed elsewhere and held there can go. A version whose chunks must be
 * kept but whose manifest is not loaded here cannot be listed: PXE_ERR_CONFLICT, nothing goes.
 */
export function chunksToKeep(input: KeepInput): Set<string> {
  const heldBy = new Map(input.members.map((m) => [m.name, new Set(m.images)]));
  const keep = new Set<string>();
  for (const v of input.versions) {
    const placement = input.placements.get(v.name);
    const plan = input.plans.get(v.name);
    let needed = placedOn(input.self, placement, plan);
    if (!needed) {
      const holders = plannedHolders(placement, plan, input.members);
      needed = !holders || holders.length === 0 || !holders.every((n) => heldBy.get(n)?.has(v.id));
    }
    for (const page of v.ref.pages) keep.add(page);
    if (!needed) continue;
    if (!v.manifest) {
      throw new PxehaError(
        'PXE_ERR_CONFLICT',
        `the manifest of version ${v.id} of image ${v.name} is not on this node yet (replication fetches it); its chunks cannot be known, so nothing is collected`,
      );
    }
    for (const f of v.manifest.files) for (const c of f.chunks) keep.add(c.hash);
  }
  return keep;
}

/**
 * Leader job: keeps a plan for every image placed on k nodes, and removes plans of images no
 * longer placed so (no request, or `all`). Every write is fenced and compares the plan's
 * modRevision, so two leaders (an old one not yet aware) never interleave plans.
 */
export function imagePlacementJob(options: {
  self: string;
  now: () => number;
  /** Version ids recorded for an image (from the node's image cache). */
  versionsOf: (image: string) => readonly string[];
  intervalMs?: number;
}): LeaderJob {
  return periodicJob('image-placement', options.intervalMs ?? 1000, async ({ store, fence, log, signal }) => {
    const [requests, plans, members] = await Promise.all([
      store.range(PLACEMENT_PREFIX, { prefix: true }),
      store.range(PLAN_PREFIX, { prefix: true }),
      store.range(MEMBERS_PREFIX, { prefix: true }),
    ]);
    const live = members.kvs.flatMap((kv) => parseMemberRecord(kv.value) ?? []);
    const planKvs = new Map(plans.kvs.map((kv) => [kv.key.slice(PLAN_PREFIX.length), kv]));
    const wanted = new Set<string>();
    for (const kv of requests.kvs) {
      if (signal.aborted) return;
      const image = kv.key.slice(PLACEMENT_PREFIX.length);
      let request: PlacementRecord;
      try {
        request = parsePlacementRecord(kv.value, kv.key);
      } catch (err) {
        log.warn({ key: kv.key, err: (err as Error).message }, 'invalid image placement skipped');
        continue;
      }
      if (request.replicas === 'all') continue;
      wanted.add(image);
      const currentKv = planKvs.get(image);
      let current: PlanRecord | undefined;
      try {
        current = currentKv ? parsePlanRecord(currentKv.value, currentKv.key) : undefined;
      } catch {
        current = undefined; // rewritten below
      }
      const ids = new Set(options.versionsOf(image));
      const { nodes, underReplicated } = planImageHolders({
        image,
        placement: request,
        members: live,
        ...(current ? { previous: current.nodes } : {}),
        holding: live.filter((m) => m.images.some((id) => ids.has(id))).map((m) => m.name),
      });
      if (current && current.nodes.join() === nodes.join() && (current.underReplicated ?? false) === underReplicated) continue;
      const next: PlanRecord = {
        nodes,
        plannedAtMs: options.now(),
        by: `leader ${options.self}`,
        ...(underReplicated ? { underReplicated } : {}),
      };
      const result = await fencedTxn(store, fence, {
        compare: [{ key: planKey(image), target: 'modRevision', op: '==', value: currentKv?.modRevision ?? 0 }],
        success: [{ type: 'put', key: planKey(image), value: JSON.stringify(next) }],
      });
      if (result.succeeded) {
        const entry = { image, nodes, was: current?.nodes ?? [], replicas: request.replicas };
        if (underReplicated) log.warn(entry, 'image placed on fewer nodes than asked: not enough eligible nodes');
        else log.info(entry, 'image placement planned');
      }
    }
    const stale: TxnOp[] = [...planKvs.keys()]
      .filter((image) => !wanted.has(image))
      .map((image) => ({ type: 'delete', key: planKey(image) }));
    if (stale.length > 0 && !signal.aborted) await fencedTxn(store, fence, { success: stale });
  });
}
