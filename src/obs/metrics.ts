/**
 * The node's Prometheus metrics, on a registry of its own (never prom-client's global one),
 * so several nodes in one test process keep separate figures.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class Metrics {
  readonly registry = new Registry();

  readonly dhcpReceived = new Counter({
    name: 'pxeha_dhcp_received_total',
    help: 'DHCP messages received, by message type',
    labelNames: ['type'] as const,
    registers: [this.registry],
  });
  readonly dhcpReplies = new Counter({
    name: 'pxeha_dhcp_replies_total',
    help: 'DHCP replies sent, by message type',
    labelNames: ['type'] as const,
    registers: [this.registry],
  });
  readonly dhcpDropped = new Counter({
    name: 'pxeha_dhcp_dropped_total',
    help: 'DHCP messages dropped, by reason',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly dhcpDecisionSeconds = new Histogram({
    name: 'pxeha_dhcp_decision_seconds',
    help: 'Time from receiving a DHCP message to sending its reply',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });
  readonly httpRequests = new Counter({
    name: 'pxeha_http_requests_total',
    help: 'HTTP requests answered, by route and status code',
    labelNames: ['route', 'status'] as const,
    registers: [this.registry],
  });
  readonly httpArtifactBytes = new Counter({
    name: 'pxeha_http_artifact_bytes_total',
    help: 'Bytes of boot artifacts sent over HTTP',
    registers: [this.registry],
  });
  readonly artifactRefused = new Counter({
    name: 'pxeha_artifact_refused_total',
    help: 'Artifact requests refused by the path rules, by protocol and reason',
    labelNames: ['protocol', 'reason'] as const,
    registers: [this.registry],
  });
  // TFTP, counted by src/tftp/server.ts.
  readonly tftpTransfers = new Counter({
    name: 'pxeha_tftp_transfers_total',
    help: 'TFTP read transfers finished, by result (ok, timeout, client-error, aborted, read-error, protocol-error)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly tftpBytes = new Counter({
    name: 'pxeha_tftp_bytes_total',
    help: 'TFTP DATA payload bytes sent, re-sends included',
    registers: [this.registry],
  });
  readonly tftpRetransmits = new Counter({
    name: 'pxeha_tftp_retransmits_total',
    help: 'TFTP DATA and OACK packets sent again after a timeout or partial ACK',
    registers: [this.registry],
  });
  readonly tftpRefused = new Counter({
    name: 'pxeha_tftp_refused_total',
    help: 'TFTP requests refused, by reason (path rules, write-request, bad-mode, malformed, busy)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly tftpDropped = new Counter({
    name: 'pxeha_tftp_dropped_total',
    help: 'TFTP datagrams dropped or answered with an error, by reason (malformed, unknown-tid, not-a-request, duplicate-request)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly tftpActive = new Gauge({
    name: 'pxeha_tftp_active_transfers',
    help: 'TFTP transfers in progress',
    registers: [this.registry],
  });
  readonly apiRejected = new Counter({
    name: 'pxeha_api_rejected_total',
    help: 'API requests rejected as invalid, by route',
    labelNames: ['route'] as const,
    registers: [this.registry],
  });
  // Access control (src/http/access-control.ts, src/http/routes/boot.ts).
  readonly apiDenied = new Counter({
    name: 'pxeha_api_denied_total',
    help: 'API requests refused by access control, by reason (missing, invalid, role, plain-http, origin)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly tlsReloads = new Counter({
    name: 'pxeha_tls_reloads_total',
    help: 'Changed API certificate files: reloaded, or refused (not a usable pair; the old one is kept)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly bootCallbackRefused = new Counter({
    name: 'pxeha_boot_callback_refused_total',
    help: 'Machine callbacks (/boot/done) refused, by reason (missing: no token, mismatch: not the token of that MAC)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly storeOpSeconds = new Histogram({
    name: 'pxeha_store_op_seconds',
    help: 'Latency of store operations, by operation',
    labelNames: ['op'] as const,
    buckets: [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1],
    registers: [this.registry],
  });
  readonly bootServerChoices = new Counter({
    name: 'pxeha_boot_server_choice_total',
    help: 'Boot servers chosen for a machine, by whether some node held every file it needs (held) or none did (none-holds: every node ranked)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly bootStages = new Counter({
    name: 'pxeha_boot_stage_total',
    help: 'Machines reaching a boot stage (script, done)',
    labelNames: ['stage'] as const,
    registers: [this.registry],
  });

  /** Where the lease gauge reads its value at scrape time. */
  leaseCount: () => number = () => 0;
  readonly leases: Gauge = new Gauge({
    name: 'pxeha_dhcp_lease_records',
    help: 'Lease records in the local view of the store',
    registers: [this.registry],
    collect: () => this.leases.set(this.leaseCount()),
  });
  readonly configRevision = new Gauge({
    name: 'pxeha_config_revision',
    help: 'Store revision of the cluster configuration this node applied',
    registers: [this.registry],
  });
  // Cluster (src/cluster/).
  readonly nodeDegraded = new Gauge({
    name: 'pxeha_node_degraded',
    help: '1 while this node cannot reach the store (it serves from its local view), else 0',
    registers: [this.registry],
  });
  readonly dhcpDegraded = new Gauge({
    name: 'pxeha_dhcp_degraded',
    help: '1 while the DHCP engine allocates no new dynamic address (store unreachable; renewals of known bindings and reservations still answered), else 0',
    registers: [this.registry],
  });
  readonly dhcpDegradedRenewals = new Counter({
    name: 'pxeha_dhcp_degraded_renewals_total',
    help: 'Renewals ACKed while degraded and later recorded in the store, by result (written, conflict)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly clusterLeader = new Gauge({
    name: 'pxeha_cluster_leader',
    help: '1 while this node is the elected leader running cluster-wide jobs, else 0',
    registers: [this.registry],
  });
  /** Where the members gauge reads its value at scrape time. */
  memberCount: () => number = () => 0;
  readonly clusterMembers: Gauge = new Gauge({
    name: 'pxeha_cluster_members',
    help: 'Nodes registered in the cluster, as this node sees them',
    registers: [this.registry],
    collect: () => this.clusterMembers.set(this.memberCount()),
  });
  readonly leaseRecordsExpired = new Counter({
    name: 'pxeha_lease_records_expired_total',
    help: 'Offered and released lease records the leader removed after they ended',
    registers: [this.registry],
  });
  // Image replication (src/images/replicator.ts, chunk-store.ts).
  readonly imageChunksFetched = new Counter({
    name: 'pxeha_image_chunks_fetched_total',
    help: 'Image chunks fetched from peers, verified and stored, by peer',
    labelNames: ['peer'] as const,
    registers: [this.registry],
  });
  readonly imageBytesFetched = new Counter({
    name: 'pxeha_image_bytes_fetched_total',
    help: 'Bytes of image chunks fetched from peers, verified and stored, by peer (payload only)',
    labelNames: ['peer'] as const,
    registers: [this.registry],
  });
  readonly imageChunksRejected = new Counter({
    name: 'pxeha_image_chunks_rejected_total',
    help: 'Image chunk fetches refused (transport or HTTP error, wrong size, bytes not matching the hash), by peer',
    labelNames: ['peer'] as const,
    registers: [this.registry],
  });
  readonly imageChunksCorrupt = new Counter({
    name: 'pxeha_image_chunks_corrupt_total',
    help: 'Image chunks on this node\'s disk found corrupt on read and quarantined (never served)',
    registers: [this.registry],
  });

  constructor(options: { processMetrics?: boolean } = {}) {
    if (options.processMetrics) collectDefaultMetrics({ register: this.registry });
  }
}
