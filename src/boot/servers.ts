/**
 * Which nodes serve a machine's boot files (pure: no clock, no I/O).
 *
 * The candidates are the eligible members (healthy, and placed: src/cluster/placement.ts) that
 * hold every artifact the machine needs. They are ranked for the machine by the same weighted
 * rendezvous hash over its RFC 3074 bucket that decides who answers its DHCP, so:
 * - the node that answers a client's DHCP is also its boot server whenever it holds the files,
 * - load spreads by the operator's weights,
 * - a node that dies loses only its own machines (each goes to its runner-up), and a node that
 *   returns takes back exactly those (rebalance needs no bookkeeping),
 * - the runners-up are the fallbacks an iPXE script tries when the first one fails mid-boot.
 * When no node holds everything, every eligible node is ranked instead (the boot may still work
 * from absolute URLs or partly-held files), and the caller logs and counts it.
 *
 * Files of an image-backed profile are pinned image paths (`images/<name>/<version>/<path>`); a
 * node holds them when its record lists the version in `images` (held whole and verified), so a
 * node that joined and has not caught up is never named. Since a node refuses a version it does
 * not hold, image files get no "rank everyone" fallback: no holder, no server.
 */
import type { BootRules, Profile } from '../config/schema.js';
import { bucketOfMac, rankFor } from '../dhcp/designation.js';
import { ipToInt, networkContains, type Ipv4Network } from '../util/ipv4.js';
import { parsePinnedPath, pinnedImagePath, type ResolvedImage } from '../images/image-ref.js';
import type { ServingNode } from './render.js';

/** How many servers a script names for one file: the first and two fallbacks. */
export const MAX_BOOT_SERVERS = 3;

export interface BootNodeInfo {
  name: string;
  weight: number;
  /** Addresses the node is reached at; the first is its default. */
  addresses: readonly string[];
  httpPort: number;
  /** Artifacts (paths relative to the artifacts root) the node holds. */
  holds: ReadonlySet<string>;
  /** Image version ids the node holds whole and verified (its record's `images`). */
  images?: ReadonlySet<string>;
}

export interface BootServers {
  /** Best first; empty only when there is no eligible node. */
  servers: ServingNode[];
  /** False when no node holds every needed artifact (the list then ranks every node). */
  complete: boolean;
}

/** An artifact reference names a file the nodes serve (not an absolute URL elsewhere). */
export function isLocalArtifact(ref: string): boolean {
  return !/^[a-z][a-z0-9+.-]*:\/\//i.test(ref);
}

function relativeRef(ref: string): string {
  return ref.replace(/^\/+/, '');
}

/**
 * The served files a profile's boot needs (kernel and initrds, or a sanboot disk; scripts name
 * their own). For an image-backed profile they are the pinned paths in `image`, the version its
 * reference resolved to; without one, none (they are not files of the artifacts directory).
 */
export function profileArtifacts(profile: Profile | undefined, image?: ResolvedImage): string[] {
  const boot = profile?.boot;
  const refs = boot?.kind === 'kernel' ? [boot.kernel, ...(boot.initrds ?? [])] : boot?.kind === 'sanboot' ? [boot.disk] : [];
  const local = refs.filter(isLocalArtifact).map(relativeRef);
  if (profile?.image === undefined) return local;
  return image ? local.map((ref) => pinnedImagePath(image, ref)) : [];
}

/** Whether `node` serves `ref`: an artifact it holds, or a file of a version it holds whole. */
export function nodeHolds(node: Pick<BootNodeInfo, 'holds' | 'images'>, ref: string): boolean {
  const pinned = parsePinnedPath(ref);
  if (pinned === undefined) return node.holds.has(ref);
  return !('refused' in pinned) && (node.images?.has(pinned.version) ?? false);
}

/** Every served file the configuration names: what a node reports holding is taken from these. */
export function referencedArtifacts(profiles: Iterable<Profile>, boot: BootRules): string[] {
  const refs = new Set<string>();
  for (const file of Object.values(boot.files)) if (typeof file === 'string' && file !== '') refs.add(relativeRef(file));
  for (const p of profiles) for (const ref of profileArtifacts(p)) refs.add(ref);
  return [...refs].sort();
}

/**
 * The address of `node` a client should use: one inside the client's subnet when the node has
 * one there (a multi-homed node serving several segments), else its first address.
 */
export function addressFor(node: Pick<BootNodeInfo, 'addresses'>, clientNetworks: readonly Ipv4Network[]): string | undefined {
  for (const net of clientNetworks) {
    const inside = node.addresses.find((a) => networkContains(net, ipToInt(a)));
    if (inside !== undefined) return inside;
  }
  return node.addresses[0];
}

export function bootServersFor(
  mac: string,
  needed: readonly string[],
  nodes: readonly BootNodeInfo[],
  clientNetworks: readonly Ipv4Network[] = [],
  max = MAX_BOOT_SERVERS,
): BootServers {
  const holders = nodes.filter((n) => needed.every((ref) => nodeHolds(n, ref)));
  const complete = holders.length > 0;
  if (!complete && needed.some((ref) => parsePinnedPath(ref) !== undefined)) return { servers: [], complete };
  const ranked = rankFor(bucketOfMac(mac), complete ? holders : nodes);
  const servers: ServingNode[] = [];
  for (const n of ranked) {
    const address = addressFor(n, clientNetworks);
    if (address === undefined || n.httpPort <= 0) continue;
    servers.push({ name: n.name, address, httpPort: n.httpPort });
    if (servers.length === max) break;
  }
  return { servers, complete };
}
