import type { NodeHealth } from '../cluster/cluster-node.js';
import type { ClusterStatus } from '../cluster/member-record.js';
import type { DhcpStatus } from '../dhcp/engine.js';
import type { Logger } from '../obs/log.js';
import type { Metrics } from '../obs/metrics.js';
import type { ClusterConfig } from '../config/schema.js';
import type { Inventory } from '../inventory/inventory.js';
import type { Store } from '../store/store.js';
import type { Clock } from '../util/clock.js';

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
  /** DHCP degraded mode and bucket share (DhcpEngine.status). */
  dhcp?: () => DhcpStatus;
}
