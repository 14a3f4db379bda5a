/**
 * Who answers a client when several nodes share one pool (pure, no clock, no I/O).
 *
 * - The client's hardware address is hashed into one of 256 buckets with RFC 3074's
 *   load-balancing hash (§6: a 256-byte mixing table, Pearson-style), the same bucket every
 *   node computes.
 * - Each bucket is given to one healthy member by weighted rendezvous (HRW) hashing over the
 *   member names: member m wins bucket b when `weight(m) / -ln(u(m, b))` is highest, u being a
 *   uniform (0,1) hash of (m, b). Every node computes the same owner from the same membership
 *   view; a member that leaves only loses its own buckets (each goes to the runner-up) and a
 *   member that returns takes back exactly the buckets it wins, nobody else's move
 *   (docs/design.md, "Who answers a DHCP client").
 */
import { fnv1a32 } from './allocator.js';

/** RFC 3074 §6 mixing table: 256 distinct values in pseudo-random order. */
const LOADB_MX_TBL: readonly number[] = [
  251, 175, 119, 215, 81, 14, 79, 191, 103, 49, 181, 143, 186, 157, 0, 232, 31, 32, 55, 60, 152, 58, 17, 237, 174, 70,
  160, 144, 220, 90, 57, 223, 59, 3, 18, 140, 111, 166, 203, 196, 134, 243, 124, 95, 222, 179, 197, 65, 180, 48, 36, 15,
  107, 46, 233, 130, 165, 30, 123, 161, 209, 23, 97, 16, 40, 91, 219, 61, 100, 10, 210, 109, 250, 127, 22, 138, 29, 108,
  244, 67, 207, 9, 178, 204, 74, 98, 126, 249, 167, 116, 34, 77, 193, 200, 121, 5, 20, 113, 71, 35, 128, 13, 182, 94,
  25, 226, 227, 199, 75, 27, 41, 245, 230, 224, 43, 225, 177, 26, 155, 150, 212, 142, 218, 115, 241, 73, 88, 105, 39,
  114, 62, 255, 192, 201, 145, 214, 168, 158, 221, 148, 154, 122, 12, 84, 82, 163, 44, 139, 228, 236, 205, 242, 217, 11,
  187, 146, 159, 64, 86, 239, 195, 42, 106, 198, 118, 112, 184, 172, 87, 2, 173, 117, 176, 229, 247, 253, 137, 185, 99,
  164, 102, 147, 45, 66, 231, 52, 141, 211, 194, 206, 246, 238, 56, 110, 78, 248, 63, 240, 189, 93, 92, 51, 53, 183, 19,
  171, 72, 50, 33, 104, 101, 69, 8, 252, 83, 120, 76, 135, 85, 54, 202, 125, 188, 213, 96, 235, 136, 208, 162, 129, 190,
  132, 156, 38, 47, 1, 7, 254, 24, 4, 216, 131, 89, 21, 28, 133, 37, 153, 149, 80, 170, 68, 6, 169, 234, 151,
];

export const BUCKETS = 256;
export const DEFAULT_WEIGHT = 100;

/** RFC 3074 §6 `loadb_p_hash`: the hash starts at the key length and mixes the bytes last to first. */
export function loadBalanceHash(key: Uint8Array): number {
  let hash = key.length & 0xff;
  for (let i = key.length; i > 0; ) hash = LOADB_MX_TBL[hash ^ key[--i]!]!;
  return hash;
}

/** The bucket of a hardware address written lowercase colon-separated (DhcpRequest.mac). */
export function bucketOfMac(mac: string): number {
  const bytes = mac === '' ? [] : mac.split(':').map((h) => parseInt(h, 16));
  return loadBalanceHash(Uint8Array.from(bytes));
}

export interface Candidate {
  name: string;
  /** Relative share of buckets; 0 takes none while any member has a positive weight. */
  weight: number;
}

/** 32-bit finaliser (MurmurHash3 fmix32) so neighbouring inputs give unrelated outputs. */
function mix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** HRW score of `member` for `bucket`: higher wins. Weighted as in Schindelhauer & Schomaker. */
function score(member: Candidate, bucket: number): number {
  const u = (mix32(fnv1a32(`${member.name}\u0000${bucket}`)) + 0.5) / 2 ** 32; // in (0, 1)
  return Math.max(member.weight, 0) / -Math.log(u);
}

/** The member a bucket belongs to, or undefined when there is none. Ties go to the lower name. */
export function ownerOf(bucket: number, members: readonly Candidate[]): string | undefined {
  let best: string | undefined;
  let bestScore = -1;
  const positive = members.some((m) => m.weight > 0);
  for (const m of members) {
    const s = positive ? score(m, bucket) : score({ name: m.name, weight: 1 }, bucket);
    if (s > bestScore || (s === bestScore && best !== undefined && m.name < best)) {
      best = m.name;
      bestScore = s;
    }
  }
  return best;
}

/**
 * Every member in the order it would own `bucket` (owner first, then the runner-up that takes
 * over when the owner goes, and so on); ties go to the lower name, as in ownerOf.
 */
export function rankFor<T extends Candidate>(bucket: number, members: readonly T[]): T[] {
  const positive = members.some((m) => m.weight > 0);
  const scored = members.map((m) => ({ m, s: positive ? score(m, bucket) : score({ name: m.name, weight: 1 }, bucket) }));
  scored.sort((a, b) => b.s - a.s || (a.m.name < b.m.name ? -1 : a.m.name > b.m.name ? 1 : 0));
  return scored.map((x) => x.m);
}

/** Owner of every bucket (index = bucket), for status and tests. */
export function bucketTable(members: readonly Candidate[]): (string | undefined)[] {
  return Array.from({ length: BUCKETS }, (_, b) => ownerOf(b, members));
}

const tableCache = new WeakMap<readonly Candidate[], (string | undefined)[]>();

/**
 * bucketTable(members), computed once per member list: callers pass lists that are replaced
 * when membership changes, never changed in place (ClusterView.members()).
 */
export function cachedBucketTable(members: readonly Candidate[]): (string | undefined)[] {
  let table = tableCache.get(members);
  if (!table) tableCache.set(members, (table = bucketTable(members)));
  return table;
}

/**
 * The bucket of a pool address (its 32-bit value, hashed): the address partition. Each node
 * prefers the addresses whose bucket it owns among the healthy members, so nodes choosing
 * addresses at the same time, from views that agree, never choose the same one.
 */
export function addressBucket(ip: number): number {
  return mix32((ip ^ 0x5bd1e995) >>> 0) & (BUCKETS - 1);
}

/** How many buckets each member owns. */
export function bucketShares(members: readonly Candidate[]): Map<string, number> {
  const shares = new Map<string, number>(members.map((m) => [m.name, 0]));
  for (const owner of bucketTable(members)) if (owner !== undefined) shares.set(owner, (shares.get(owner) ?? 0) + 1);
  return shares;
}

/** What the deciding node knows about the cluster when it decides. */
export interface DesignationView {
  /** This node's name. */
  self: string;
  /** Healthy members (store lease alive), this node included when it is registered. */
  members: readonly Candidate[];
  /** `secs` at or above which any node answers (cluster dhcp policy takeoverSecs). */
  takeoverSecs: number;
}

export type Designation =
  | { answer: true; why: 'single-node' | 'designated' | 'secs' | 'no-members'; bucket: number; owner?: string }
  | { answer: false; bucket: number; owner: string };

/**
 * Should this node answer a client that every node hears? It answers when the client's bucket
 * is its own among the healthy members, or when the client says it has waited `takeoverSecs`
 * or more. A designated node that is down is no healthy member (its lease lapsed, so it is out
 * of `members` for everyone): its buckets then belong to each bucket's runner-up, so exactly
 * one surviving node takes each of them over, without any node deciding anything.
 * `secs` alone is never relied on: some PXE ROMs send 0 in every retry.
 */
export function designate(mac: string, secs: number, view: DesignationView): Designation {
  return designateBucket(bucketOfMac(mac), secs, view);
}

/** designate() for a client whose bucket is known (e.g. hashed from the raw chaddr bytes). */
export function designateBucket(bucket: number, secs: number, view: DesignationView): Designation {
  if (view.members.length === 0) return { answer: true, why: 'no-members', bucket };
  if (view.members.length === 1 && view.members[0]!.name === view.self) return { answer: true, why: 'single-node', bucket, owner: view.self };
  const owner = ownerOf(bucket, view.members)!;
  if (owner === view.self) return { answer: true, why: 'designated', bucket, owner };
  if (view.takeoverSecs > 0 && secs >= view.takeoverSecs) return { answer: true, why: 'secs', bucket, owner };
  return { answer: false, bucket, owner };
}
