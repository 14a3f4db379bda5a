import type { Auth } from '../auth/auth.js';
import type { NodeHealth } from '../cluster/cluster-node.js';
import type { ClusterStatus } from '../cluster/member-record.js';
import type { DhcpStatus } from '../dhcp/engine.js';
import type { Logger } from '../obs/log.js';
import type { Metrics } from '../obs/metrics.js';
import type { ClusterConfig, Profile } from '../config/schema.js';
import type { ServingNode } from '../boot/render.js';
import type { PlacementStatus, RebalanceResult } from '../cluster/placement.js';
import type { Inventory } from '../inventory/inventory.js';
import type { Store } from '../store/store.js';
import type { Clock } from '../util/clock.js';
import type { ChunkStore, GcResult } from '../images/chunk-store.js';
import type { ImagesStatus } from '../images/status.js';
import type { ImageFileSources } from '../images/serve.js';
import type { ResolvedImage } from '../images/image-ref.js';

/** What the node's HTTP routes need; built once by the node. */
export interface HttpContext {
  nodeName: string;
  /** Address machines are told to use; default: the address they reached us at. */
  advertiseAddress: string | undefined;
  httpPort: number;
  /** Real path of the artifacts directory. */
  artifactsRoot: string;
  store: Store;
  inventory: Inventory;
  cluster: () => ClusterConfig;
  metrics: Metrics;
  log: Logger;
  clock: Clock;
  /** The cluster as this node sees it (src/cluster/); absent in tests that build the app alone. */
  clusterStatus?: () => Promise<ClusterStatus>;
  /** Whether this node reaches the store and leads. */
  health?: () => NodeHealth;
  /**
   * A machine's boot servers, best first (src/boot/servers.ts), given its profile and address;
   * absent on a single node, which serves everything itself.
   */
  bootServers?: (mac: string, profile: Profile | undefined, clientIp: string | undefined, image?: ResolvedImage) => ServingNode[];
  /**
   * The version an image reference (`name@channel` or `name@id`, a profile's `image`) names now,
   * from the node's watch of the catalog; undefined when unknown. Called once per script.
   */
  resolveImage?: (ref: string) => ResolvedImage | undefined;
  /** Pinned image files served from the chunk store (`/images/…`, src/images/serve.ts). */
  imageFiles?: ImageFileSources;
  /** An artifact was fetched from its start by `clientIp` (boot stage `kernel` when it is one). */
  onArtifactFetched?: (clientIp: string, relativePath: string) => void;
  /** Which node serves which machines (src/cluster/placement.ts); absent on a single node. */
  placement?: () => PlacementStatus;
  /** `pxeha cluster rebalance`: place every healthy member; returns the machines that move. */
  rebalance?: () => Promise<RebalanceResult>;
  /** DHCP degraded mode and bucket share (DhcpEngine.status). */
  dhcp?: () => DhcpStatus;
  /**
   * Tokens, sessions and machine callback tokens (src/auth/), shared by the node's listeners;
   * absent in tests that build one app alone, which then opens its own.
   */
  auth?: Auth;
  /** The node's image chunks (`<dataDir>/chunks`), served to peers for replication. */
  chunks?: ChunkStore;
  /** The replication matrix (src/images/status.ts). */
  images?: () => ImagesStatus;
  /**
   * This node's chunk garbage collection, keeping what placement says it must
   * (src/images/placement.ts chunksToKeep); absent: keep every recorded version's chunks.
   */
  imagesGc?: (graceMs: number) => Promise<GcResult>;
}
