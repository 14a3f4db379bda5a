/**
 * Schemas of pxeha's two configuration documents, with their defaults:
 * - NodeConfig: what makes one node itself (name, interfaces, store, data dir). Read from a
 *   YAML file by `pxeha serve --config`.
 * - ClusterConfig: what every node shares (subnets, pools, reservations, boot rules). Written
 *   into the store by `pxeha apply -f` and watched by every node, so nodes cannot drift.
 * Documented for operators in docs/configuration.md; keep the two in step.
 */
import { Type, type Static } from '@sinclair/typebox';

const Ipv4 = Type.String({ format: 'ipv4', description: 'Dotted-quad IPv4 address' });
const Cidr = Type.String({
  pattern: '^(\\d{1,3}\\.){3}\\d{1,3}/(\\d|[12]\\d|3[0-2])$',
  description: 'IPv4 network in CIDR form, e.g. 10.99.0.0/24',
});
const Mac = Type.String({
  pattern: '^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$',
  description: 'Ethernet hardware address, e.g. 52:54:00:12:34:56',
});
const HexBytes = Type.String({
  pattern: '^[0-9a-fA-F]{2}(:?[0-9a-fA-F]{2})*$',
  description: 'Bytes in hex, optionally colon separated',
});
const Name = Type.String({ pattern: '^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$', description: 'Object name' });

export const CustomOptionSchema = Type.Object(
  {
    code: Type.Integer({ minimum: 1, maximum: 254 }),
    hex: Type.Optional(HexBytes),
    text: Type.Optional(Type.String({ maxLength: 1024 })),
    ipv4: Type.Optional(Type.Array(Ipv4, { minItems: 1 })),
  },
  { additionalProperties: false, description: 'A raw DHCP option: exactly one of hex, text or ipv4' },
);

export const DhcpOptionsSchema = Type.Object(
  {
    routers: Type.Optional(Type.Array(Ipv4)),
    dnsServers: Type.Optional(Type.Array(Ipv4)),
    domainName: Type.Optional(Type.String({ minLength: 1, maxLength: 253 })),
    ntpServers: Type.Optional(Type.Array(Ipv4)),
    broadcastAddress: Type.Optional(Ipv4),
    custom: Type.Optional(Type.Array(CustomOptionSchema)),
  },
  { additionalProperties: false },
);

/** Per-host boot overrides (applied on top of the cluster boot rules). */
export const BootOverrideSchema = Type.Object(
  {
    /** Boot file sent to a PXE ROM instead of the arch-based default. */
    file: Type.Optional(Type.String({ minLength: 1, maxLength: 127 })),
    /** URL iPXE is sent to instead of the default script URL. */
    script: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
    /** TFTP/next server instead of the answering node. */
    nextServer: Type.Optional(Ipv4),
    /**
     * A file an iPXE client loads by TFTP first (e.g. `undionly.kpxe`, to run the iPXE build of
     * the node instead of the one in the NIC's ROM); the iPXE it loads then gets the script.
     * The loop is broken statelessly, see docs/design.md "Chainloading from an iPXE ROM".
     */
    ipxeChainFile: Type.Optional(Type.String({ minLength: 1, maxLength: 127 })),
  },
  { additionalProperties: false },
);

export const ReservationSchema = Type.Object(
  {
    mac: Type.Optional(Mac),
    clientId: Type.Optional(HexBytes),
    address: Ipv4,
    hostname: Type.Optional(Type.String({ pattern: '^[a-zA-Z0-9]([a-zA-Z0-9-]{0,62})$' })),
    options: Type.Optional(DhcpOptionsSchema),
    boot: Type.Optional(BootOverrideSchema),
  },
  { additionalProperties: false },
);

export const PoolSchema = Type.Object({ start: Ipv4, end: Ipv4 }, { additionalProperties: false });

export const SubnetSchema = Type.Object(
  {
    name: Name,
    subnet: Cidr,
    /**
     * full: hand out addresses and boot information. proxy: answer PXE clients with boot
     * information only, beside a foreign DHCP server that owns addressing (dnsmasq's proxy mode).
     */
    mode: Type.Union([Type.Literal('full'), Type.Literal('proxy')], { default: 'full' }),
    pools: Type.Array(PoolSchema, { default: [] }),
    leaseSeconds: Type.Integer({ minimum: 60, maximum: 31_536_000, default: 3600 }),
    options: Type.Optional(DhcpOptionsSchema),
    reservations: Type.Array(ReservationSchema, { default: [] }),
  },
  { additionalProperties: false },
);

export const BootRulesSchema = Type.Object(
  {
    /** Boot files by client architecture (RFC 4578 option 93), relative to the TFTP root. */
    files: Type.Object(
      {
        bios: Type.String({ default: 'undionly.kpxe' }),
        efiX64: Type.String({ default: 'ipxe.efi' }),
        efiIa32: Type.String({ default: 'ipxe.efi' }),
        // No default: Debian's ipxe package has no ARM64 build, and a node advertises only what it holds.
        efiArm64: Type.Optional(Type.String()),
      },
      { additionalProperties: false, default: {} },
    ),
    /**
     * URL an iPXE client is sent to. `{node}` is replaced by the answering node's advertised
     * address and `{httpPort}` by its HTTP port; iPXE itself expands `${...}` settings.
     */
    ipxeScriptUrl: Type.String({
      default: 'http://{node}:{httpPort}/boot.ipxe?mac=${net0/mac}&uuid=${uuid}&arch=${buildarch}&serial=${serial}&asset=${asset}',
    }),
    /** Boot file URL for UEFI HTTP Boot clients (vendor class HTTPClient). */
    httpBootUrl: Type.String({ default: 'http://{node}:{httpPort}/artifacts/ipxe.efi' }),
    /** Profile for machines pxeha does not know (they are recorded as discovered); none: exit to the next boot device. */
    defaultProfile: Type.Optional(Name),
  },
  { additionalProperties: false, default: {} },
);

const Labels = Type.Record(Type.String({ pattern: '^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$' }), Type.String({ maxLength: 253 }), {
  description: 'Free-form key/value labels',
});

/**
 * A profile's image: `<name>@<channel>` or `<name>@<64-hex version id>` (names as the images
 * catalog's; a channel name is at most 63 characters, so it never reads as a version id).
 */
export const IMAGE_REF_PATTERN = '^[a-z0-9][a-z0-9._-]{0,62}@([a-z0-9][a-z0-9._-]{0,62}|[0-9a-f]{64})$';

/**
 * What a machine boots. Exactly one way to boot per profile (`boot.kind`):
 * - kernel: kernel + initrds + args, fetched over HTTP from the node (or absolute URLs)
 * - script: an iPXE script template rendered per machine
 * - chain: chainload another URL (template)
 * - localboot: boot from the local disk (`exit` to the next BIOS/UEFI boot device, or `sanboot`)
 * - sanboot: boot a disk image over HTTP (iPXE `sanboot`, Range requests), every holder listed
 *
 * With `image` (`<name>@<channel>` or `<name>@<version id>`), kernel, initrd and disk paths are
 * paths inside that image version, served from the chunk store; the channel is resolved once per
 * boot script, whose URLs all name the version it resolved to (src/images/image-ref.ts).
 */
export const ProfileSchema = Type.Object(
  {
    name: Name,
    description: Type.Optional(Type.String({ maxLength: 1024 })),
    image: Type.Optional(Type.String({ pattern: IMAGE_REF_PATTERN, maxLength: 128, description: '<name>@<channel> or <name>@<64-hex version id>' })),
    boot: Type.Union([
      Type.Object(
        {
          kind: Type.Literal('kernel'),
          kernel: Type.String({ minLength: 1, maxLength: 1024 }),
          // No schema defaults inside a union (Ajv cannot tell which branch they belong to).
          initrds: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 1024 }))),
          args: Type.Optional(Type.String({ maxLength: 4096 })),
        },
        { additionalProperties: false },
      ),
      Type.Object(
        { kind: Type.Literal('script'), script: Type.String({ minLength: 1, maxLength: 65536 }) },
        { additionalProperties: false },
      ),
      Type.Object(
        { kind: Type.Literal('chain'), url: Type.String({ minLength: 1, maxLength: 2048 }) },
        { additionalProperties: false },
      ),
      Type.Object(
        // The disk is attached as a SAN drive read over HTTP Range requests (diskless machines).
        { kind: Type.Literal('sanboot'), disk: Type.String({ minLength: 1, maxLength: 1024 }) },
        { additionalProperties: false },
      ),
      Type.Object(
        {
          kind: Type.Literal('localboot'),
          method: Type.Optional(Type.Union([Type.Literal('exit'), Type.Literal('sanboot')])),
        },
        { additionalProperties: false },
      ),
    ]),
    /**
     * Labels that select this profile for machines that name no profile of their own: a machine
     * whose labels include all of these boots it (the most specific selector wins).
     */
    selector: Type.Optional(Labels),
    /** Install once: after the machine calls back "done", it boots from local disk until reprovisioned. */
    once: Type.Boolean({ default: false }),
    /** How a finished `once` machine boots locally. */
    localboot: Type.Union([Type.Literal('exit'), Type.Literal('sanboot')], { default: 'sanboot' }),
    /** Per-machine files (kickstart, preseed, cloud-init, autoinstall), rendered from templates. */
    files: Type.Record(Type.String({ pattern: '^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$' }), Type.String({ maxLength: 262144 }), {
      default: {},
    }),
  },
  { additionalProperties: false },
);

/** A machine pxeha knows, matched by MAC or by client UUID (option 97). */
export const MachineSchema = Type.Object(
  {
    name: Name,
    mac: Type.Optional(Mac),
    uuid: Type.Optional(
      Type.String({ pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' }),
    ),
    /** The profile it boots; without one, a profile whose selector matches its labels, else the default. */
    profile: Type.Optional(Name),
    hostname: Type.Optional(Type.String({ pattern: '^[a-zA-Z0-9]([a-zA-Z0-9-]{0,62})$' })),
    labels: Type.Optional(Labels),
  },
  { additionalProperties: false },
);

export const DhcpPolicySchema = Type.Object(
  {
    /** How long an OFFERed address is held for the client before another may get it. */
    offerHoldSeconds: Type.Integer({ minimum: 1, maximum: 600, default: 30 }),
    /** How long an address a client DECLINEd (found in use) is kept out of the pool. */
    declineQuarantineSeconds: Type.Integer({ minimum: 1, maximum: 86_400, default: 600 }),
    /** Packets per second accepted from one MAC before the rest are dropped. */
    perClientRatePerSecond: Type.Integer({ minimum: 1, maximum: 10_000, default: 20 }),
    /** Whether a server answers REQUESTs for addresses it does not know (RFC 2131 §4.3.2). */
    authoritative: Type.Boolean({ default: true }),
    /**
     * A client whose `secs` (time since it began acquiring) reaches this is answered by any
     * node, not only its designated one (RFC 3074 §2 "seconds" takeover); 0 disables it.
     */
    takeoverSecs: Type.Integer({ minimum: 0, maximum: 65_535, default: 3 }),
    /**
     * When a node comes back (or joins), whether it takes its share of clients (DHCP and boot
     * serving) at once (auto) or when an operator runs `pxeha cluster rebalance` (manual). A
     * node that goes down always loses its share at once (src/cluster/placement.ts).
     */
    rebalance: Type.Union([Type.Literal('auto'), Type.Literal('manual')], { default: 'auto' }),
  },
  { additionalProperties: false, default: {} },
);

export const ClusterConfigSchema = Type.Object(
  {
    subnets: Type.Array(SubnetSchema, { default: [] }),
    boot: BootRulesSchema,
    dhcp: DhcpPolicySchema,
  },
  { additionalProperties: false },
);

export const StoreConfigSchema = Type.Union([
  Type.Object(
    {
      kind: Type.Literal('embedded'),
      /** SQLite file; default `<dataDir>/store.db`. */
      path: Type.Optional(Type.String({ minLength: 1 })),
    },
    { additionalProperties: false },
  ),
  /**
   * An etcd v3 cluster (3.4+). Defaults live in src/store/etcd/etcd-store.ts, not here: Ajv
   * cannot tell which branch of a union a default belongs to. Cross-field rules (certFile with
   * keyFile, username with a password, https with tls) are checked when the store opens.
   */
  Type.Object(
    {
      kind: Type.Literal('etcd'),
      /** Client URLs of the members, all http:// or all https://. */
      endpoints: Type.Array(Type.String({ pattern: '^https?://[^\\s/]+/?$', maxLength: 512 }), { minItems: 1, maxItems: 32 }),
      /** PEM files: caFile verifies the members, certFile + keyFile authenticate this node. */
      tls: Type.Optional(
        Type.Object(
          {
            caFile: Type.Optional(Type.String({ minLength: 1 })),
            certFile: Type.Optional(Type.String({ minLength: 1 })),
            keyFile: Type.Optional(Type.String({ minLength: 1 })),
          },
          { additionalProperties: false },
        ),
      ),
      /** etcd user (RBAC), with password or passwordFile (first line of the file). */
      username: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
      password: Type.Optional(Type.String({ maxLength: 1024 })),
      passwordFile: Type.Optional(Type.String({ minLength: 1 })),
      /** How long start-up tries to reach the cluster before failing; default 5000. */
      dialTimeoutMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 600_000 })),
      /** Deadline of each store call; default 5000. */
      requestTimeoutMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 600_000 })),
      /** How often connectivity is checked when idle; default 2000. */
      healthCheckIntervalMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 600_000 })),
    },
    { additionalProperties: false },
  ),
]);

export const NodeConfigSchema = Type.Object(
  {
    name: Name,
    /** This node's labels (e.g. site: a), published in its membership record; image placement selects nodes by them. */
    labels: Type.Optional(Labels),
    dataDir: Type.String({ minLength: 1, default: '/var/lib/pxeha' }),
    store: Type.Optional(StoreConfigSchema),
    /** Address clients are told to use for TFTP/HTTP; default: the receiving interface's. */
    advertiseAddress: Type.Optional(Ipv4),
    dhcp: Type.Object(
      {
        enabled: Type.Boolean({ default: true }),
        /** Interfaces to answer on, one socket each. */
        interfaces: Type.Array(Type.String({ minLength: 1, maxLength: 15 }), { minItems: 1 }),
        port: Type.Integer({ minimum: 1, maximum: 65535, default: 67 }),
        /** PXE boot server port (PXE spec 2.1 §2.2.2); 0 disables it. */
        proxyPort: Type.Integer({ minimum: 0, maximum: 65535, default: 4011 }),
        /** Port replies to clients go to; 68 except in tests. */
        clientPort: Type.Integer({ minimum: 1, maximum: 65535, default: 68 }),
      },
      { additionalProperties: false },
    ),
    http: Type.Object(
      {
        /** Address to listen on; default all. */
        address: Type.String({ default: '0.0.0.0' }),
        port: Type.Integer({ minimum: 0, maximum: 65535, default: 8080 }),
        /**
         * Serve the API and dashboard over HTTPS on a port of their own. Boot paths stay on the
         * plain port (firmware iPXE has no HTTPS), which then refuses the API and dashboard.
         */
        tls: Type.Optional(
          Type.Object(
            {
              /** PEM certificate (chain) and its key. */
              certFile: Type.String({ minLength: 1 }),
              keyFile: Type.String({ minLength: 1 }),
              port: Type.Integer({ minimum: 0, maximum: 65535, default: 8443 }),
              /** Address of the HTTPS listener; default http.address. */
              address: Type.Optional(Type.String({ minLength: 1 })),
            },
            { additionalProperties: false },
          ),
        ),
      },
      { additionalProperties: false, default: {} },
    ),
    tftp: Type.Object(
      {
        enabled: Type.Boolean({ default: true }),
        /** UDP port of read requests; each transfer then gets an ephemeral port of its own. */
        port: Type.Integer({ minimum: 0, maximum: 65535, default: 69 }),
        /** Address to listen on (and to answer from); default advertiseAddress, else 0.0.0.0. */
        address: Type.Optional(Ipv4),
      },
      { additionalProperties: false, default: {} },
    ),
    /** Membership, health and leader-only jobs (src/cluster/); see docs/configuration.md. */
    cluster: Type.Object(
      {
        /** This node's relative share of DHCP clients (and boot traffic) in the cluster; published in its membership record. */
        weight: Type.Integer({ minimum: 0, maximum: 10_000, default: 100 }),
        /**
         * TTL of the node's store lease: a node that stops renewing it is gone for everyone this
         * long after (plus etcd's 500 ms expiry scan), and its DHCP clients go to the others. 2 is
         * etcd's smallest lease TTL at its default timings (1.5 election timeouts, rounded up).
         */
        memberTtlSeconds: Type.Integer({ minimum: 1, maximum: 60, default: 2 }),
        /** How often the node rewrites its membership record (load, clock). */
        publishIntervalMs: Type.Integer({ minimum: 100, maximum: 600_000, default: 5000 }),
        /** Clock difference between nodes above which `pxeha cluster status` warns. */
        clockSkewWarnMs: Type.Integer({ minimum: 1, maximum: 3_600_000, default: 2000 }),
        /** The store's own leader election timeout (etcd --election-timeout), part of the failover window. */
        storeElectionTimeoutMs: Type.Integer({ minimum: 0, maximum: 600_000, default: 1000 }),
        /** How often the leader removes offered and released lease records that ended. */
        leaseExpiryIntervalMs: Type.Integer({ minimum: 100, maximum: 3_600_000, default: 10_000 }),
        /** How long past its end such a record is kept. */
        leaseExpiryGraceSeconds: Type.Integer({ minimum: 0, maximum: 31_536_000, default: 60 }),
      },
      { additionalProperties: false, default: {} },
    ),
    /** Image replication (src/images/replicator.ts): chunks pulled from peers into `<dataDir>/chunks`. */
    images: Type.Object(
      {
        /** Replication bandwidth limit of this node, bytes per second (all peers together); default none. */
        bandwidthBytesPerSecond: Type.Optional(Type.Integer({ minimum: 1024 })),
        /** Chunks fetched at once, spread over the peers that hold them. */
        parallelFetches: Type.Integer({ minimum: 1, maximum: 64, default: 4 }),
        /**
         * Replicate only between these local times (e.g. 22:00–06:00, wrapping midnight); default
         * always. Pulls pause between chunks when it closes (src/images/window.ts).
         */
        window: Type.Optional(
          Type.Object(
            {
              start: Type.String({ pattern: '^([01][0-9]|2[0-3]):[0-5][0-9]$' }),
              end: Type.String({ pattern: '^([01][0-9]|2[0-3]):[0-5][0-9]$' }),
            },
            { additionalProperties: false },
          ),
        ),
      },
      { additionalProperties: false, default: {} },
    ),
    /** Directory boot artifacts are served from (TFTP root). */
    artifactsDir: Type.String({ minLength: 1, default: '/usr/lib/ipxe' }),
    log: Type.Object(
      {
        level: Type.Union(
          ['fatal', 'error', 'warn', 'info', 'debug', 'trace'].map((l) => Type.Literal(l)),
          { default: 'info' },
        ),
        /** json: one JSON object a line (journald, log shippers); pretty: aligned text for a terminal. */
        format: Type.Union([Type.Literal('json'), Type.Literal('pretty')], { default: 'json' }),
      },
      { additionalProperties: false, default: {} },
    ),
  },
  { additionalProperties: false },
);

export type ClusterConfig = Static<typeof ClusterConfigSchema>;
export type Profile = Static<typeof ProfileSchema>;
export type Machine = Static<typeof MachineSchema>;
export type SubnetConfig = Static<typeof SubnetSchema>;
export type ReservationConfig = Static<typeof ReservationSchema>;
export type DhcpOptionsConfig = Static<typeof DhcpOptionsSchema>;
export type BootRules = Static<typeof BootRulesSchema>;
export type BootOverride = Static<typeof BootOverrideSchema>;
export type DhcpPolicy = Static<typeof DhcpPolicySchema>;
export type NodeConfig = Static<typeof NodeConfigSchema>;
export type StoreConfig = Static<typeof StoreConfigSchema>;
