/**
 * One pxeha node, composed: store, cluster configuration (watched), lease view, DHCP engine
 * and sockets. `pxeha serve` runs one; integration tests run them in network namespaces.
 */
import { chmod, mkdir, readFile, realpath, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { Auth } from '../auth/auth.js';
import { PxehaError } from '../errors.js';
import { buildHttpApp } from '../http/app.js';
import type { HttpContext } from '../http/context.js';
import { Inventory } from '../inventory/inventory.js';
import { instrumentStore } from '../store/instrumented.js';
import { join } from 'node:path';
import { readClusterConfig, watchClusterConfig } from '../config/cluster-store.js';
import type { NodeConfig } from '../config/schema.js';
import { DhcpEngine } from '../dhcp/engine.js';
import { MembershipClusterView } from '../dhcp/cluster-view.js';
import { LeaseBook } from '../dhcp/lease-book.js';
import { DhcpServer } from '../dhcp/server.js';
import { openInterfaceSocket, openUnicastSocket } from '../dhcp/socket.js';
import type { Logger } from '../obs/log.js';
import { Metrics } from '../obs/metrics.js';
import { EtcdStore } from '../store/etcd/etcd-store.js';
import { openStore, type StoreConfig } from '../store/open.js';
import type { Store, Watcher } from '../store/store.js';
import { systemClock, type Clock } from '../util/clock.js';
import { startTftpServer } from '../tftp/server.js';
import { ClusterNode } from '../cluster/cluster-node.js';
import { failoverWarnings } from '../cluster/failover.js';
import { leaseExpiryJob } from '../cluster/lease-expiry.js';
import { estimateOffsetMs, memberKey } from '../cluster/member-record.js';
import { ArtifactHoldings } from '../artifacts/holdings.js';
import { NodeOverrideWatch, effectiveWeight } from '../cluster/node-overrides.js';
import {
  PLACEMENT_KEY,
  movedMachines,
  parsePlacement,
  placedMembers,
  placementJob,
  placementStatus,
  rebalance,
  type PlacementStatus,
  type RebalanceResult,
} from '../cluster/placement.js';
import { PrefixCache } from '../store/prefix-cache.js';
import { pxeFileForArch, type BootTarget } from '../boot/rules.js';
import type { ServingNode } from '../boot/render.js';
import { bootServersFor, isLocalArtifact, profileArtifacts, referencedArtifacts, type BootNodeInfo } from '../boot/servers.js';
import type { RequestContext } from '../dhcp/chain.js';
import type { Profile } from '../config/schema.js';
import { ipToInt, networkContains, parseCidr, type Ipv4Network } from '../util/ipv4.js';
import { ChunkStore } from '../images/chunk-store.js';
import { IMAGES_PREFIX } from '../images/catalog.js';
import { ManifestCache } from '../images/manifest-store.js';
import { parseImageEntry, versionInfos, wantedVersions, type ImageEntry } from '../images/image-watch.js';
import { httpBatchFetcher, httpChunkFetcher, Replicator } from '../images/replicator.js';
import { imagesStatusOf } from '../images/status.js';
import { parsePinnedPath, resolveImageRef, type ResolvedImage } from '../images/image-ref.js';
import type { ImageFileSources } from '../images/serve.js';
import { TokenBucket } from '../images/throttle.js';
import {
  chunksToKeep,
  imagePlacementJob,
  parsePlacementRecord,
  parsePlanRecord,
  placedOn,
  PLACEMENT_PREFIX,
  PLAN_PREFIX,
  type PlacementRecord,
  type PlanRecord,
} from '../images/placement.js';
import { inWindow, msUntilWindowOpens } from '../images/window.js';
import { tlsFilesIdentity, watchTlsFiles, type SecureContextTarget } from './tls-reloader.js';

/** How often renewals queued while degraded are tried again once the store is back. */
const DEGRADED_FLUSH_RETRY_MS = 1000;
/** How often a node looks again at which artifacts it holds (a stat per named file). */
const HOLDINGS_REFRESH_MS = 2000;

export interface RunningNode {
  store: Store;
  engine: DhcpEngine;
  metrics: Metrics;
  /** Membership, health and leader-only jobs. */
  cluster: ClusterNode;
  close(): Promise<void>;
}

/** Where the node's cluster state lives: its own SQLite file by default, or an etcd cluster. */
export function storeConfigOf(config: NodeConfig): StoreConfig {
  const store = config.store;
  if (store?.kind === 'etcd') return store;
  return { kind: 'embedded', path: store?.path ?? join(config.dataDir, 'store.db') };
}

/** A short name of the store for messages: the SQLite file or the etcd endpoints. */
export function describeStore(store: StoreConfig): string {
  return store.kind === 'embedded' ? store.path : store.endpoints.join(',');
}

/** The node's local API socket: reachable from any network namespace, root-only. */
export function apiSocketOf(config: NodeConfig): string {
  return join(config.dataDir, 'pxeha.sock');
}

export async function startNode(config: NodeConfig, log: Logger, clock: Clock = systemClock): Promise<RunningNode> {
  await mkdir(config.dataDir, { recursive: true });
  const metrics = new Metrics({ processMetrics: true });
  const rawStore = await openStore(storeConfigOf(config));
  const store = instrumentStore(rawStore, metrics.storeOpSeconds);
  const cleanups: (() => Promise<void>)[] = [() => rawStore.close()];
  const closeAll = async (): Promise<void> => {
    for (const c of cleanups.reverse()) await c().catch((err: unknown) => log.warn({ err }, 'close failed'));
  };
  try {
    const initial = await readClusterConfig(store);
    metrics.configRevision.set(initial.revision);
    const leases = await LeaseBook.open(store, (err) => log.error({ err }, 'lease watch failed'));
    cleanups.push(() => leases.close());
    const inventory = await Inventory.open(store, (err) => log.error({ err: err.message }, 'invalid object in the store skipped'));
    cleanups.push(() => inventory.close());
    // What this node holds of the files the configuration names, published with its record.
    const artifactsRoot = await realpath(config.artifactsDir).catch(() => config.artifactsDir);
    let currentConfig = initial.config;
    const holdings = new ArtifactHoldings(artifactsRoot, () => referencedArtifacts(inventory.listProfiles(), currentConfig.boot));
    await holdings.refresh();
    // Image chunks (src/images/): held under the data dir, replicated from peers once the
    // cluster and access control are up (below).
    const chunks = await ChunkStore.open(config.dataDir, {
      onCorrupt: (report) => {
        metrics.imageChunksCorrupt.inc();
        log.error(report, 'corrupt image chunk quarantined');
        // No longer held: a pass now drops the versions it belonged to and fetches it again.
        replicator?.kick();
      },
    });
    let replicator: Replicator | undefined;
    // Version ids of an image, for the leader's placement planning (set once the watch is open).
    let imageVersionsOf = (_image: string): string[] => [];
    // The catalog as this node's watch sees it (set once the watch is open, below): profiles'
    // image references resolve against it, once per boot script or DHCP answer.
    let imageEntries = (): readonly ImageEntry[] => [];
    const resolveImage = (ref: string): ResolvedImage | undefined => {
      try {
        return resolveImageRef(ref, imageEntries());
      } catch {
        return undefined; // a malformed reference (the schema prevents it) names nothing
      }
    };
    // Operator overrides (drain, weight; src/cluster/node-overrides.ts): republished at once.
    let republish = (): void => undefined;
    const overrides = await NodeOverrideWatch.open(store, config.name, (err) => log.error({ err }, 'node override watch failed'), () => republish());
    cleanups.push(() => overrides.close());
    // Closed before the store (cleanups run in reverse): jobs stop and the node resigns first.
    const cluster = await ClusterNode.start(
      store,
      {
        name: config.name,
        advertiseAddress: config.advertiseAddress,
        httpPort: config.http.port,
        weight: () => effectiveWeight(config.cluster.weight, overrides.current),
        drained: () => overrides.drained,
        memberTtlSeconds: config.cluster.memberTtlSeconds,
        publishIntervalMs: config.cluster.publishIntervalMs,
        clockSkewWarnMs: config.cluster.clockSkewWarnMs,
        jobs: [
          leaseExpiryJob({
            clock,
            intervalMs: config.cluster.leaseExpiryIntervalMs,
            graceMs: config.cluster.leaseExpiryGraceSeconds * 1000,
            onRemoved: (n) => metrics.leaseRecordsExpired.inc(n),
          }),
          placementJob({ mode: () => currentConfig.dhcp.rebalance, now: () => clock.now(), self: config.name }),
          imagePlacementJob({ self: config.name, now: () => clock.now(), versionsOf: (image) => imageVersionsOf(image) }),
        ],
        clock,
        log,
        leaseRecords: () => leases.size,
        artifacts: () => holdings.held(),
        images: () => replicator?.held() ?? [],
        ...(config.labels ? { labels: config.labels } : {}),
        onHealth: (health) => {
          metrics.nodeDegraded.set(health.state === 'degraded' ? 1 : 0);
          metrics.clusterLeader.set(health.leader ? 1 : 0);
        },
      },
      initial.revision,
    );
    cleanups.push(() => cluster.close());
    // In a cluster every lease write is fenced by this node's session: its membership key must
    // still be on the session lease the node holds now (a write delivered after a partition
    // healed finds the key gone or on a new lease and fails).
    if (store.kind !== 'embedded') {
      leases.setFence(() => {
        const lease = cluster.session.leaseId;
        return lease === undefined ? undefined : { key: memberKey(config.name), target: 'lease', op: '==', value: lease };
      });
    }
    republish = () => void cluster.membership.publish();
    metrics.memberCount = () => cluster.membership.members().length;
    const warnFailover = (c: typeof initial.config): void => {
      for (const warning of failoverWarnings(c, config.cluster)) log.warn({ warning }, 'lease time shorter than the failover window');
    };
    warnFailover(initial.config);
    // Who answers which client, and degraded mode, follow the membership view. The embedded
    // store is one node's own file: that node answers everything and is never degraded.
    // Degraded for DHCP as soon as the etcd client reports the store unreachable, not only once
    // the session has missed a whole TTL: no new address is allocated from that moment.
    let storeDisconnected = false;
    const dhcpView =
      store.kind === 'embedded' ? undefined : new MembershipClusterView(config.name, () => storeDisconnected || cluster.membership.degraded);
    // Boot servers are chosen among the healthy, placed members that hold a machine's files.
    let bootNodes: BootNodeInfo[] = [];
    let healthyBootNodes: BootNodeInfo[] = [];
    let updateDhcpView = (): void => undefined;
    const placement = await PrefixCache.open(store, PLACEMENT_KEY, (v) => parsePlacement(v), (err) => log.error({ err }, 'placement watch failed'), () =>
      updateDhcpView(),
    );
    cleanups.push(() => placement.close());
    updateDhcpView = (): void => {
      const healthy = cluster.membership.members();
      const names = healthy.map((m) => ({ name: m.record.name }));
      const placed = new Set(placedMembers(names, currentConfig.dhcp.rebalance, placement.get('')).map((m) => m.name));
      healthyBootNodes = healthy.map((m) => ({
        name: m.record.name,
        weight: m.record.weight ?? 100,
        addresses: m.record.addresses,
        httpPort: m.record.httpPort,
        holds: new Set(m.record.artifacts),
        images: new Set(m.record.images),
      }));
      bootNodes = healthyBootNodes.filter((n) => placed.has(n.name));
      dhcpView?.update(
        cluster.membership.members().map((m) => {
          const clockOffsetMs = estimateOffsetMs(m);
          return { name: m.record.name, weight: m.record.weight ?? 100, addresses: m.record.addresses, ...(clockOffsetMs !== undefined ? { clockOffsetMs } : {}) };
        }),
        placed,
      );
    };
    const bootServersOf = (mac: string, needed: readonly string[], networks: readonly Ipv4Network[], max?: number): ServingNode[] => {
      const choice = bootServersFor(mac, needed, bootNodes, networks, max);
      metrics.bootServerChoices.inc({ result: choice.complete ? 'held' : 'none-holds' });
      return choice.servers;
    };
    const holdingsTimer = setInterval(() => {
      void holdings.refresh().then((changed) => {
        if (changed) {
          log.info({ artifacts: holdings.held() }, 'artifacts held changed');
          void cluster.membership.publish();
        }
      }, (err: unknown) => log.warn({ err }, 'artifact holdings not refreshed'));
    }, HOLDINGS_REFRESH_MS);
    holdingsTimer.unref();
    cleanups.push(async () => clearInterval(holdingsTimer));
    updateDhcpView();
    cluster.membership.on('change', updateDhcpView);
    const engine = new DhcpEngine(
      {
        node: config.name,
        advertiseAddress: config.advertiseAddress,
        httpPort: config.http.port,
        leases,
        clock,
        cluster: dhcpView,
        // In a cluster a network-boot client is sent to its boot server, which is this node
        // whenever it is also the client's designated node and holds the client's files.
        ...(dhcpView
          ? {
              bootTarget: (ctx: RequestContext): BootTarget | undefined => {
                const machine = inventory.findMachine(ctx.request.mac, undefined);
                const profile = inventory.profileFor(machine, ctx.cluster.config);
                // Image files count only on nodes holding the version the image resolves to now.
                const needed = profileArtifacts(profile, profile?.image !== undefined ? resolveImage(profile.image) : undefined);
                if (!ctx.request.isIpxe) {
                  const file = pxeFileForArch(ctx.request.clientArch, ctx.cluster.config.boot.files);
                  if (file !== undefined && isLocalArtifact(file)) needed.push(file.replace(/^\/+/, ''));
                }
                const [server] = bootServersOf(ctx.request.mac, needed, ctx.subnet ? [ctx.subnet.network] : [], 1);
                return server ? { nodeAddress: server.address, httpPort: server.httpPort } : undefined;
              },
            }
          : {}),
      },
      initial.config,
    );
    metrics.dhcpDegraded.set(engine.degraded ? 1 : 0);
    let flushing = false;
    const onDhcpHealth = (): void => {
      metrics.dhcpDegraded.set(engine.degraded ? 1 : 0);
      if (engine.degraded || engine.degradedRenewals.size === 0 || flushing) return;
      // Back in touch with the store: record the renewals ACKed meanwhile (compare-and-set each).
      // One flush at a time, so each result is counted once.
      flushing = true;
      void engine
        .flushDegradedRenewals((key) => log.warn({ key }, 'lease changed in the store while degraded; renewal not recorded'))
        .then((r) => {
          metrics.dhcpDegradedRenewals.inc({ result: 'written' }, r.written);
          metrics.dhcpDegradedRenewals.inc({ result: 'conflict' }, r.conflicts.length);
          if (r.written + r.conflicts.length > 0) log.info(r, 'renewals made while degraded recorded');
        })
        .catch((err: unknown) => log.warn({ err }, 'renewals made while degraded not recorded'))
        .finally(() => (flushing = false));
    };
    cluster.membership.on('state', onDhcpHealth);
    // A flush can fail on its first try after the store returns (the session's new lease not yet
    // on the membership key fences the write): try again while renewals stay queued.
    const flushRetry = setInterval(() => {
      if (!engine.degraded && engine.degradedRenewals.size > 0) onDhcpHealth();
    }, DEGRADED_FLUSH_RETRY_MS);
    flushRetry.unref();
    cleanups.push(async () => clearInterval(flushRetry));
    if (rawStore instanceof EtcdStore) {
      rawStore.on('state', (state) => {
        storeDisconnected = state === 'disconnected';
        onDhcpHealth();
      });
    }
    const configWatch: Watcher = await watchClusterConfig(
      store,
      initial.readRevision,
      (next) => {
        engine.applyConfig(next.config);
        currentConfig = next.config;
        updateDhcpView(); // the rebalance mode may have changed
        metrics.configRevision.set(next.revision);
        cluster.membership.setAppliedRevision(next.revision);
        warnFailover(next.config);
        log.info({ revision: next.revision, subnets: next.config.subnets.length }, 'cluster configuration applied');
      },
      (err) => log.error({ err: err.message }, 'cluster configuration in the store is invalid; keeping the current one'),
    );
    cleanups.push(() => configWatch.cancel());
    metrics.leaseCount = () => leases.size;

    if (config.dhcp.enabled) {
      const server = new DhcpServer({ engine, metrics, log, serverPort: config.dhcp.port, clientPort: config.dhcp.clientPort });
      cleanups.push(() => server.close());
      for (const ifname of config.dhcp.interfaces) {
        const socket = await openInterfaceSocket({ ifname, port: config.dhcp.port });
        server.addInterface(socket);
        if (config.dhcp.proxyPort !== 0 && socket.localAddress !== undefined) {
          server.addBootServer(await openUnicastSocket({ address: socket.localAddress, port: config.dhcp.proxyPort, ifname }));
        }
        log.info({ iface: ifname, address: socket.localAddress, port: config.dhcp.port }, 'dhcp listening');
      }
    }
    const placementNow = (record = placement.get('')): PlacementStatus => {
      const configured = inventory.listMachines().flatMap((m) => (m.mac ? [{ mac: m.mac, name: m.name, machine: m }] : []));
      const known = new Set(configured.map((m) => m.mac));
      const discovered = inventory.listStatuses().filter((st) => !known.has(st.mac)).map((st) => ({ mac: st.mac, machine: undefined }));
      return placementStatus({
        mode: currentConfig.dhcp.rebalance,
        record,
        healthy: healthyBootNodes,
        machines: [...configured, ...discovered].map((m) => {
          const lastNode = inventory.status(m.mac)?.lastNode;
          const profile = inventory.profileFor(m.machine, currentConfig);
          const image = profile?.image !== undefined ? resolveImage(profile.image) : undefined;
          return { mac: m.mac, ...('name' in m ? { name: m.name } : {}), ...(profile ? { profile } : {}), ...(image ? { image } : {}), ...(lastNode ? { lastNode } : {}) };
        }),
      });
    };
    // Tokens, sessions, machine callback tokens; the cluster secrets are created here if none exist.
    const auth = await Auth.open(store, {
      onError: (err) => log.error({ err }, 'token watch failed'),
      offline: () => cluster.health().state === 'degraded',
    });
    cleanups.push(() => auth.close());
    // TFTP transfers and kernel fetches name no machine: the bound lease of the client's address
    // does. Recorded as boot stages (machine status, the dashboard's funnel); best effort.
    // Artifact paths that are some profile's kernel: plain paths, and `name\0path` inside an image.
    const imageKernelKey = (image: string, path: string): string => `${image}\0${path}`;
    let kernels: { generation: number; paths: Set<string> } | undefined;
    const kernelPaths = (): Set<string> => {
      if (kernels?.generation === inventory.profilesGeneration) return kernels.paths;
      const paths = new Set<string>();
      for (const p of inventory.listProfiles()) {
        if (p.boot.kind !== 'kernel' || !isLocalArtifact(p.boot.kernel)) continue;
        const path = p.boot.kernel.replace(/^\/+/, '');
        paths.add(p.image === undefined ? path : imageKernelKey(p.image.slice(0, p.image.indexOf('@')), path));
      }
      kernels = { generation: inventory.profilesGeneration, paths };
      return paths;
    };
    const recordStageAt = (clientIp: string, stage: 'tftp' | 'kernel'): void => {
      const ip = clientIp.replace(/^::ffff:/, '');
      const mac = currentConfig.subnets.map((sub) => leases.get(sub.name, ip)?.record).find((r) => r?.state === 'bound')?.mac;
      if (mac === undefined) return;
      metrics.bootStages.inc({ stage });
      void inventory.recordStage(mac, stage, config.name, clock.now()).catch((err: unknown) => log.warn({ err, mac, stage }, 'boot stage not recorded'));
    };
    // Replication: hold every recorded version whole, pulling chunks from peers that hold them.
    const images = await PrefixCache.open<ImageEntry>(
      store,
      IMAGES_PREFIX,
      (value, key) => {
        try {
          return parseImageEntry(value, key);
        } catch (err) {
          log.error({ key, err: (err as Error).message }, 'invalid image record in the store skipped');
          return undefined;
        }
      },
      (err) => log.error({ err }, 'image watch failed'),
      () => replicator?.kick(),
    );
    cleanups.push(() => images.close());
    imageEntries = () => images.values();
    // Placement (src/images/placement.ts): which images this node is to pull. A node pulls only
    // images placed on it, advertises any version it holds whole, and gc keeps a version not
    // placed here until its planned holders hold it.
    const parseLogged =
      <T>(parse: (value: string, key: string) => T) =>
      (value: string, key: string): T | undefined => {
        try {
          return parse(value, key);
        } catch (err) {
          log.error({ key, err: (err as Error).message }, 'invalid image placement record in the store skipped');
          return undefined;
        }
      };
    const imagePlacements = await PrefixCache.open<PlacementRecord>(store, PLACEMENT_PREFIX, parseLogged(parsePlacementRecord), (err) => log.error({ err }, 'image placement watch failed'), () =>
      replicator?.kick(),
    );
    cleanups.push(() => imagePlacements.close());
    const imagePlans = await PrefixCache.open<PlanRecord>(store, PLAN_PREFIX, parseLogged(parsePlanRecord), (err) => log.error({ err }, 'image plan watch failed'), () => replicator?.kick());
    cleanups.push(() => imagePlans.close());
    const versionEntries = () => images.values().flatMap((e) => (e.kind === 'version' ? [e] : []));
    imageVersionsOf = (image) => versionEntries().flatMap((e) => (e.name === image ? [e.id] : []));
    const selfPlacement = { name: config.name, ...(config.labels ? { labels: config.labels } : {}) };
    const placedHere = (image: string): boolean => placedOn(selfPlacement, imagePlacements.get(image), imagePlans.get(image));
    const replicationWindow = config.images.window;
    const bandwidth = config.images.bandwidthBytesPerSecond;
    // Manifests are pages in the chunk store (src/images/manifest-store.ts), loaded by the
    // replicator and kept in memory for serving, gc and `images show`.
    const manifests = new ManifestCache(chunks);
    replicator = new Replicator({
      chunks,
      manifests,
      known: () => wantedVersions(versionEntries()),
      onBadManifest: (id, err) => log.error({ version: id, err: err.message }, 'image manifest refused: its pages are not the version'),
      wanted: () => wantedVersions(images.values().filter((e) => e.kind !== 'version' || placedHere(e.name))),
      offered: () => wantedVersions(versionEntries().filter((e) => !placedHere(e.name))),
      ...(replicationWindow
        ? {
            mayFetch: () => inWindow(new Date(clock.now()), replicationWindow),
            // Asked again at least every minute (a clock set, a window edited by a restart).
            waitMs: () => Math.min(60_000, Math.max(1000, msUntilWindowOpens(new Date(clock.now()), replicationWindow))),
          }
        : {}),
      peers: () =>
        cluster.membership
          .members()
          .filter((m) => m.record.name !== config.name && m.record.images.length > 0 && m.record.addresses.length > 0)
          .map((m) => ({ name: m.record.name, baseUrl: `http://${m.record.addresses[0]}:${m.record.httpPort}`, versions: new Set(m.record.images) })),
      fetchChunk: httpChunkFetcher(() => auth.nodeToken(config.name)),
      fetchBatch: httpBatchFetcher(() => auth.nodeToken(config.name)),
      parallel: config.images.parallelFetches,
      ...(bandwidth !== undefined ? { throttle: new TokenBucket(bandwidth) } : {}),
      onHeldChange: (held) => {
        log.info({ images: held }, 'image versions held whole changed');
        void cluster.membership.publish();
      },
      onReject: (peer, hash, err) => {
        metrics.imageChunksRejected.inc({ peer });
        log.warn({ peer, hash, err: err.message }, 'image chunk fetch failed; trying another holder');
      },
      onBatchUnsupported: (peer, err) => log.info({ peer, err: err.message }, 'peer has no chunk batch endpoint (an older version?); fetching from it chunk by chunk'),
      onFetched: (peer, _hash, bytes) => {
        metrics.imageChunksFetched.inc({ peer });
        metrics.imageBytesFetched.inc({ peer }, bytes);
      },
    });
    const replicatorNow = replicator;
    cluster.membership.on('change', () => replicatorNow.kick());
    replicatorNow.start((err) => log.error({ err }, 'image replication pass failed'));
    cleanups.push(() => replicatorNow.close());
    const imageFiles: ImageFileSources = {
      held: () => replicatorNow.held(),
      manifestOf: (name, version) => (images.get(`${name}/versions/${version}`)?.kind === 'version' ? manifests.get(version) : undefined),
      recorded: (name, version) => images.get(`${name}/versions/${version}`)?.kind === 'version',
      chunks,
    };
    const httpContext: HttpContext = {
      chunks,
      imageFiles,
      resolveImage,
      images: () => ({
        ...imagesStatusOf({
          observer: config.name,
          versions: versionInfos(images.values()),
          members: cluster.membership.members().map((m) => ({ name: m.record.name, images: m.record.images })),
          progress: replicatorNow.progress(),
          placed: (image, node) => {
            const labels = cluster.membership.members().find((m) => m.record.name === node)?.record.labels;
            return placedOn({ name: node, ...(labels ? { labels } : {}) }, imagePlacements.get(image), imagePlans.get(image));
          },
        }),
        ...(replicationWindow
          ? { window: { ...replicationWindow, open: inWindow(new Date(clock.now()), replicationWindow), waiting: replicatorNow.waiting() } }
          : {}),
      }),
      imagesGc: async (graceMs) => {
        const versions = versionEntries();
        const names = [...new Set(versions.map((v) => v.name))];
        const keep = chunksToKeep({
          self: selfPlacement,
          versions: versions.map((v) => ({ name: v.name, id: v.id, ref: v.record.manifest, manifest: manifests.get(v.id) })),
          placements: new Map(names.flatMap((n) => (imagePlacements.get(n) ? [[n, imagePlacements.get(n)!] as const] : []))),
          plans: new Map(names.flatMap((n) => (imagePlans.get(n) ? [[n, imagePlans.get(n)!] as const] : []))),
          members: cluster.membership.members().map((m) => ({ name: m.record.name, images: m.record.images, ...(m.record.labels ? { labels: m.record.labels } : {}) })),
        });
        const result = await chunks.gc(keep, { graceMs });
        replicatorNow.kick(); // versions no longer whole here stop being advertised
        log.info({ deleted: result.deleted.length, deletedBytes: result.deletedBytes, spared: result.spared }, 'image chunks collected');
        return result;
      },
      auth,
      nodeName: config.name,
      advertiseAddress: config.advertiseAddress,
      httpPort: config.http.port,
      artifactsRoot,
      // Every artifact GET asks this (the boot storm's hot path): a set lookup, rebuilt only
      // when a profile changes.
      onArtifactFetched: (clientIp, relativePath) => {
        const pinned = parsePinnedPath(relativePath);
        const key = pinned === undefined || 'refused' in pinned ? relativePath : imageKernelKey(pinned.name, pinned.path);
        if (kernelPaths().has(key)) recordStageAt(clientIp, 'kernel');
      },
      store,
      inventory,
      cluster: () => engine.config,
      metrics,
      log,
      clock,
      clusterStatus: () => cluster.status(),
      health: () => cluster.health(),
      dhcp: () => engine.status(),
      ...(dhcpView
        ? {
            placement: () => placementNow(),
            rebalance: async (): Promise<RebalanceResult> => {
              const before = placementNow();
              const record = await rebalance(store, config.name, clock.now());
              const after = placementNow(record);
              return { mode: after.mode, record, moved: movedMachines(before, after) };
            },
            bootServers: (mac: string, profile: Profile | undefined, clientIp: string | undefined, image?: ResolvedImage): ServingNode[] => {
              const ip = clientIp !== undefined && /^\d+\.\d+\.\d+\.\d+$/.test(clientIp) ? ipToInt(clientIp) : undefined;
              const networks = ip === undefined ? [] : currentConfig.subnets.map((sub) => parseCidr(sub.subnet)).filter((net) => networkContains(net, ip));
              // A SAN disk lists every holder (iPXE multipath); kernels and initrds the best three.
              const max = profile?.boot.kind === 'sanboot' ? Number.MAX_SAFE_INTEGER : undefined;
              return bootServersOf(mac, profileArtifacts(profile, image), networks, max);
            },
          }
        : {}),
    };
    if (config.tftp.enabled) {
      const tftp = await startTftpServer({
        root: httpContext.artifactsRoot,
        port: config.tftp.port,
        address: config.tftp.address ?? config.advertiseAddress ?? '0.0.0.0',
        metrics,
        log,
        onTransferDone: (clientIp) => recordStageAt(clientIp, 'tftp'),
        images: imageFiles,
      });
      cleanups.push(() => tftp.close());
      log.info({ addresses: tftp.addresses, root: httpContext.artifactsRoot }, 'tftp listening');
    }
    // The same routes on TCP for machines and operators (API callers with a token), and on a
    // root-only Unix socket that the CLI reaches from any network namespace (trusted as admin).
    // With http.tls the API and dashboard move to an HTTPS listener of their own, and the plain
    // port keeps only what firmware fetches (src/http/access-control.ts).
    let httpsPort: number | undefined;
    const tls = config.http.tls;
    if (tls) {
      const loadedIdentity = await tlsFilesIdentity(tls);
      const [cert, key] = await Promise.all(
        [tls.certFile, tls.keyFile].map((f) =>
          readFile(f).catch((err: Error) => {
            throw new PxehaError('PXE_ERR_CONFIG_READ', `http.tls: cannot read ${f}: ${err.message}`);
          }),
        ),
      );
      const secure = await buildHttpApp(httpContext, { listener: 'tls', https: { cert: cert!, key: key! } });
      cleanups.push(() => secure.close());
      await secure.listen({ host: tls.address ?? config.http.address, port: tls.port });
      httpsPort = (secure.server.address() as AddressInfo).port;
      const reloader = await watchTlsFiles(tls, secure.server as unknown as SecureContextTarget, {
        loadedIdentity,
        log,
        onResult: (result) => metrics.tlsReloads.inc({ result }),
      });
      cleanups.push(async () => reloader.close());
      log.info({ address: tls.address ?? config.http.address, port: httpsPort }, 'https api listening');
    }
    const http = await buildHttpApp(httpContext, { listener: 'tcp', ...(httpsPort !== undefined ? { httpsPort } : {}) });
    cleanups.push(() => http.close());
    await http.listen({ host: config.http.address, port: config.http.port });
    const local = await buildHttpApp(httpContext, { listener: 'local' });
    cleanups.push(() => local.close());
    const socketPath = apiSocketOf(config);
    await rm(socketPath, { force: true }); // a stale socket from a killed node
    await local.listen({ path: socketPath });
    await chmod(socketPath, 0o600);
    log.info({ address: config.http.address, port: config.http.port }, 'http listening');
    log.info({ revision: initial.revision, leases: leases.size, store: store.kind, api: socketPath }, 'node started');
    return { store, engine, metrics, cluster, close: closeAll };
  } catch (err) {
    await closeAll();
    throw err;
  }
}
