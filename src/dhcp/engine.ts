/**
 * The DHCP decision core of one node: the handler chains for the DHCP port and the PXE boot
 * server port, over the cluster configuration currently applied. No sockets here; the
 * adapter (server.ts) feeds it interpreted requests and sends what it decides.
 */
import type { ClusterConfig } from '../config/schema.js';
import type { Clock } from '../util/clock.js';
import { MessageType } from '../protocol/dhcp4/types.js';
import { DropReason, runChain, type Handler, type Outcome, type ReceiveInfo, type RequestContext } from './chain.js';
import { addressHandler } from './handlers/address.js';
import { bootHandler } from './handlers/boot.js';
import { proxyHandler } from './handlers/proxy.js';
import { rateLimitHandler } from './handlers/rate-limit.js';
import { designationHandler } from './handlers/designation.js';
import { clusterServerIdHandler } from './handlers/server-id.js';
import type { ClusterView } from './cluster-view.js';
import { DegradedRenewals, type FlushResult } from './degraded-queue.js';
import { addressBucket, BUCKETS, bucketShares, cachedBucketTable, designateBucket, loadBalanceHash } from './designation.js';
import { selectSubnetHandler } from './handlers/subnet.js';
import { validateRequest } from './handlers/validate.js';
import type { LeaseBook } from './lease-book.js';
import { peekRequest, type PeekedRequest } from './peek.js';
import type { DhcpRequest } from './request.js';
import { compileCluster, findReservation, selectSubnet, type CompiledCluster } from './subnets.js';

export interface EngineOptions {
  node: string;
  /** Fixed address to send clients to for TFTP/HTTP; default: the receiving interface's. */
  advertiseAddress: string | undefined;
  httpPort: number;
  leases: LeaseBook;
  clock: Clock;
  /**
   * The cluster as this node sees it (membership, degraded). Absent on a single node with the
   * embedded store: that node answers everything and is never degraded.
   */
  cluster?: ClusterView;
  /** Picks the node a network-boot client fetches from (node.ts); default this node. */
  bootTarget?: RequestContext['bootTarget'];
}

export interface DhcpStatus {
  /** No new dynamic address is allocated: the store is unreachable. */
  degraded: boolean;
  /** Renewals ACKed while degraded, not yet recorded in the store. */
  queuedRenewals: number;
  takeoverSecs: number;
  /** Buckets (of 256) designated to this node: 256 on a single node. */
  buckets: number;
  /** Buckets per healthy member, as this node sees them. */
  bucketsByNode?: Record<string, number>;
}

export type Decision = Exclude<Outcome, { kind: 'continue' }>;

export class DhcpEngine {
  private cluster: CompiledCluster;
  private readonly dhcpChain: Handler[];
  private readonly pxeChain: Handler[];
  /** Renewals ACKed while degraded, recorded when the store returns (flushDegradedRenewals). */
  readonly degradedRenewals = new DegradedRenewals();

  constructor(
    private readonly options: EngineOptions,
    config: ClusterConfig,
  ) {
    this.cluster = compileCluster(config);
    const rateLimit = rateLimitHandler(() => this.cluster.config.dhcp.perClientRatePerSecond);
    this.dhcpChain = [
      validateRequest,
      rateLimit,
      selectSubnetHandler,
      clusterServerIdHandler(() => options.cluster),
      designationHandler({ view: () => options.cluster, takeoverSecs: () => this.cluster.config.dhcp.takeoverSecs, leases: options.leases }),
      proxyHandler,
      addressHandler({
        leases: options.leases,
        policy: () => this.cluster.config.dhcp,
        prefersAddress: (ip) => this.prefersAddress(ip),
        degraded: () => this.degraded,
        degradedRenewals: this.degradedRenewals,
        clockOffsetMs: (node) => options.cluster?.clockOffsetMs(node),
      }),
      bootHandler,
    ];
    // Port 4011 serves boot information only; the client may be on a network we do not
    // address, so a subnet is looked up for its reservation but not required.
    const optionalSubnet: Handler = (ctx, draft) => {
      const subnet = selectSubnet(this.cluster, {
        giaddr: ctx.request.giaddr,
        linkSelection: ctx.request.linkSelection,
        subnetSelection: ctx.request.subnetSelection,
        interfaceAddress: ctx.via.interfaceAddress,
        ciaddr: ctx.request.ciaddr,
      });
      if (subnet) {
        ctx.subnet = subnet;
        ctx.reservation = findReservation(subnet, ctx.request.mac, ctx.request.clientIdHex);
      }
      return { kind: 'continue', draft };
    };
    this.pxeChain = [validateRequest, rateLimit, optionalSubnet, proxyHandler];
  }

  /** Switches to a new cluster configuration; requests in flight finish on the old one. */
  applyConfig(config: ClusterConfig): void {
    this.cluster = compileCluster(config);
  }

  get config(): ClusterConfig {
    return this.cluster.config;
  }

  /**
   * Is this pool address (32-bit) in this node's share of the pool: its address bucket is ours
   * among the healthy members? Every address is ours on a single node, with no membership view,
   * or while this node is no member (it then answers only clients that waited takeoverSecs).
   */
  private prefersAddress(ip: number): boolean {
    const cluster = this.options.cluster;
    const members = cluster?.members();
    if (!cluster || !members || members.length <= 1 || !members.some((m) => m.name === cluster.self)) return true;
    return cachedBucketTable(members)[addressBucket(ip)] === cluster.self;
  }

  /** True while the store is unreachable: no new dynamic address is allocated. */
  get degraded(): boolean {
    return this.options.cluster?.degraded() ?? false;
  }

  /** For /api/v1/status: degraded mode and this node's share of the 256 client buckets. */
  status(): DhcpStatus {
    const cluster = this.options.cluster;
    const members = cluster?.members() ?? [];
    const shares = members.length > 0 ? bucketShares(members) : undefined;
    return {
      degraded: this.degraded,
      queuedRenewals: this.degradedRenewals.size,
      takeoverSecs: this.cluster.config.dhcp.takeoverSecs,
      buckets: shares ? (shares.get(this.options.node) ?? 0) : BUCKETS,
      ...(shares ? { bucketsByNode: Object.fromEntries(shares) } : {}),
    };
  }

  /** Writes the renewals ACKed while degraded, each a compare-and-set on the record it knew. */
  flushDegradedRenewals(onConflict?: (key: string) => void): Promise<FlushResult> {
    return this.degradedRenewals.flush(this.options.leases, onConflict);
  }

  /**
   * The drop decide() would make, read from the raw packet without decoding it, for the two
   * kinds of request that every node of a cluster hears and all but one drop: a DISCOVER
   * designated to another node (`not-designated`) and a SELECTING REQUEST naming another
   * healthy member (`other-server`). Undefined whenever decide() has to look: any other
   * message, anything unusual in the packet, no cluster view, port 4011. The handlers that
   * decide() runs before designation only ever drop, so a packet dropped here would be
   * dropped there (the reason may differ, e.g. `no-subnet` there).
   */
  quickDrop(buf: Uint8Array, via: ReceiveInfo, peeked: PeekedRequest | undefined = peekRequest(buf)): { reason: DropReason; type: MessageType; detail?: string } | undefined {
    const cluster = this.options.cluster;
    if (!cluster || via.service !== 'dhcp') return undefined;
    const p = peeked;
    if (!p) return undefined;
    if (p.type === MessageType.DISCOVER) {
      const d = designateBucket(loadBalanceHash(buf.subarray(28, 34)), p.secs, {
        self: cluster.self,
        members: cluster.members(),
        takeoverSecs: this.cluster.config.dhcp.takeoverSecs,
      });
      return d.answer ? undefined : { reason: DropReason.NOT_DESIGNATED, type: p.type, detail: `bucket ${d.bucket} belongs to ${d.owner}` };
    }
    if (p.type === MessageType.REQUEST && p.serverId !== undefined && p.ciaddrZero) {
      const ours = via.interfaceAddress ?? this.options.advertiseAddress ?? '0.0.0.0';
      if (p.serverId === ours || p.serverId === (this.options.advertiseAddress ?? ours)) return undefined;
      const member = cluster.memberByAddress(p.serverId);
      if (member && member.healthy && member.name !== cluster.self) {
        return { reason: DropReason.OTHER_SERVER, type: p.type, detail: `offer of member ${member.name}` };
      }
    }
    return undefined;
  }

  async decide(request: DhcpRequest, via: ReceiveInfo): Promise<{ decision: Decision; context: RequestContext }> {
    const serverId = via.interfaceAddress ?? this.options.advertiseAddress ?? '0.0.0.0';
    const context: RequestContext = {
      request,
      via,
      serverId,
      node: this.options.node,
      nodeAddress: this.options.advertiseAddress ?? serverId,
      httpPort: this.options.httpPort,
      ...(this.options.bootTarget ? { bootTarget: this.options.bootTarget } : {}),
      cluster: this.cluster,
      nowMs: this.options.clock.now(),
    };
    const decision = await runChain(via.service === 'pxe' ? this.pxeChain : this.dhcpChain, context);
    return { decision, context };
  }
}
