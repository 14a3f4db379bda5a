/**
 * What the web dashboard (ui/) needs beyond the REST API: the dashboard itself at /ui/ (static
 * files of the built ui/dist, under the same path rules as artifacts), a server-sent-events
 * stream of cluster events (GET /api/v1/events, src/api/dashboard-hub.ts), views that join
 * several objects for one page (cluster with down and degraded nodes, machines with their
 * leases and placement, lease utilisation per pool, the boot funnel), and the operator actions
 * drain, undrain and set weight (src/cluster/node-overrides.ts) and change a machine's profile.
 *
 * Every route declares its role in `config.role` (viewer: reads; operator: actions; the static
 * files are public), which the access-control hook (src/http/access-control.ts) enforces.
 */
import send from '@fastify/send';
import { Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { resolveArtifact } from '../artifacts/resolve.js';
import type { MachineStatus } from '../boot/render.js';
import type { ClusterNodeStatus, ClusterStatus } from '../cluster/member-record.js';
import { updateNodeOverride, type NodeOverride } from '../cluster/node-overrides.js';
import type { PlacementStatus } from '../cluster/placement.js';
import { readClusterConfig } from '../config/cluster-store.js';
import type { Machine } from '../config/schema.js';
import { PxehaError } from '../errors.js';
import type { HttpContext } from '../http/context.js';
import { ipToInt } from '../util/ipv4.js';
import { DashboardHub, FUNNEL_STAGES, type FunnelStage } from './dashboard-hub.js';
import { listLeases } from './routes.js';

const NameParams = Type.Object({ name: Type.String({ pattern: '^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$' }) }, { additionalProperties: false });
const viewer = { role: 'viewer' as const };
const operator = { role: 'operator' as const };
/** The dashboard's files hold no data: they load before a token is pasted. */
const open = { role: 'public' as const };
const PROBE_TIMEOUT_MS = 800;
const PROBE_CACHE_MS = 1000;

/** One hub per node context (the TCP and Unix-socket apps share it), closed with the last app. */
const hubs = new WeakMap<HttpContext, { hub: DashboardHub; apps: number }>();

function hubOf(app: FastifyInstance, ctx: HttpContext): DashboardHub {
  let entry = hubs.get(ctx);
  if (!entry) {
    entry = { hub: new DashboardHub({ store: ctx.store, log: ctx.log, now: () => ctx.clock.now(), ...(ctx.health ? { health: ctx.health } : {}) }), apps: 0 };
    hubs.set(ctx, entry);
  }
  entry.apps++;
  const e = entry;
  app.addHook('onClose', async () => {
    if (--e.apps === 0) {
      hubs.delete(ctx);
      await e.hub.close();
    }
  });
  return e.hub;
}

/** The built dashboard: $PXEHA_UI_DIR, else ui/dist of the checkout this module runs from. */
export function uiDistDir(): string {
  if (process.env.PXEHA_UI_DIR) return resolve(process.env.PXEHA_UI_DIR);
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'pxeha') return join(dir, 'ui', 'dist');
      } catch {
        // not ours; keep looking
      }
    }
    dir = dirname(dir);
  }
  return resolve('ui', 'dist');
}

const NOT_BUILT_PAGE = `<!doctype html><meta charset="utf-8"><title>pxeha dashboard</title>
<body style="font:16px system-ui,sans-serif;margin:3em;max-width:40em">
<h1>The pxeha dashboard is not built</h1>
<p>This node serves the dashboard from <code>ui/dist</code>, which does not exist yet. Build it in the
checkout with <code>npm run build:ui</code> (or point <code>PXEHA_UI_DIR</code> at a built copy) and reload.</p>
<p>The REST API answers at <a href="/api/openapi.json">/api/openapi.json</a>.</p>`;

export interface DashboardNode {
  name: string;
  state: 'up' | 'down' | 'degraded';
  /** The node answered this node's status probe (undefined: not probed, i.e. the observer). */
  reachable?: boolean;
  reason?: string;
  leader: boolean;
  addresses: string[];
  httpPort: number;
  version: string;
  weight: number;
  drained: boolean;
  override?: NodeOverride;
  configRevision: number;
  behind: boolean;
  clockOffsetMs?: number;
  load?: ClusterNodeStatus['load'];
  downSinceMs?: number;
  placed?: boolean;
  buckets?: number;
  machines?: number;
  /** What is off about this node: configuration behind, clock skew, another version. */
  drift: string[];
}

export function registerDashboardRoutes(app: FastifyInstance, ctx: HttpContext): void {
  const hub = hubOf(app, ctx);
  const tags = { tags: ['dashboard'] };

  // ---- the dashboard itself ------------------------------------------------------------------
  const uiRoot = uiDistDir();
  app.get('/ui', { schema: { hide: true }, config: open }, async (_req, reply) => reply.redirect('/ui/'));
  app.route<{ Params: { '*': string } }>({
    method: ['GET', 'HEAD'],
    url: '/ui/*',
    schema: { hide: true },
    config: open,
    handler: async (req, reply) => {
      const requested = req.params['*'] || 'index.html';
      if (!existsSync(join(uiRoot, 'index.html'))) {
        return reply.code(503).type('text/html; charset=utf-8').header('cache-control', 'no-store').send(NOT_BUILT_PAGE);
      }
      const resolved = await resolveArtifact(uiRoot, requested);
      if (!resolved.ok) {
        const status = resolved.reason === 'not-found' ? 404 : 403;
        return reply.code(status).send({ statusCode: status, code: status === 404 ? 'PXE_ERR_NOT_FOUND' : 'PXE_ERR_PATH_REFUSED', error: status === 404 ? 'Not Found' : 'Forbidden', message: resolved.message });
      }
      const urlPath = `/${relative(uiRoot, resolved.path).split(sep).map(encodeURIComponent).join('/')}`;
      const result = await send(req.raw, urlPath, { root: uiRoot, dotfiles: 'deny', index: false, etag: true, lastModified: true });
      if (result.type !== 'file') {
        const status = result.statusCode;
        return reply.code(status).send({ statusCode: status, code: status === 404 ? 'PXE_ERR_NOT_FOUND' : 'PXE_ERR_BAD_REQUEST', error: 'Error', message: `cannot send ${requested}` });
      }
      // Hashed asset names change with their content; index.html must be fetched again.
      result.headers['Cache-Control'] = urlPath.startsWith('/assets/') ? 'public, max-age=31536000, immutable' : 'no-cache';
      return reply.code(result.statusCode).headers(result.headers).send(result.stream);
    },
  });

  // ---- live events -----------------------------------------------------------------------------
  // Server-sent events; `Last-Event-ID` (or ?lastEventId=) resumes after the events kept.
  const streams = new Set<import('node:http').ServerResponse>();
  app.addHook('preClose', async () => {
    for (const res of streams) res.destroy();
  });
  app.get<{ Querystring: { lastEventId?: string } }>(
    '/api/v1/events',
    { schema: { ...tags, querystring: Type.Object({ lastEventId: Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$' })) }, { additionalProperties: false }) }, config: viewer },
    async (req, reply) => {
      const header = req.headers['last-event-id'];
      const lastText = (typeof header === 'string' && /^[0-9]{1,15}$/.test(header) ? header : undefined) ?? req.query.lastEventId;
      await hub.ready;
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
      res.socket?.setNoDelay(true);
      if (!hub.subscribe(res, lastText !== undefined ? Number(lastText) : undefined)) {
        res.end('event: refused\ndata: {"message":"too many event subscribers"}\n\n');
        return;
      }
      streams.add(res);
      res.on('close', () => streams.delete(res));
    },
  );
  app.get<{ Querystring: { after?: number } }>(
    '/api/v1/events/recent',
    { schema: { ...tags, querystring: Type.Object({ after: Type.Optional(Type.Integer({ minimum: 0 })) }, { additionalProperties: false }) }, config: viewer },
    async (req) => hub.recent(req.query.after ?? 0),
  );

  // ---- page views ----------------------------------------------------------------------------
  const probes = new Map<string, { atMs: number; result: Promise<{ state?: string; reason?: string } | undefined> }>();
  const probe = (name: string, address: string, port: number): Promise<{ state?: string; reason?: string } | undefined> => {
    const cached = probes.get(name);
    if (cached && Date.now() - cached.atMs < PROBE_CACHE_MS) return cached.result;
    const host = address.includes(':') ? `[${address}]` : address;
    // /livez is open and on the plain port even when the API is HTTPS-only (http.tls).
    const result = fetch(`http://${host}:${port}/livez`, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) })
      .then(async (r) => (r.ok ? ((await r.json()) as { state?: string; reason?: string }) : { state: 'unknown' }))
      .catch(() => undefined);
    probes.set(name, { atMs: Date.now(), result });
    return result;
  };

  app.get('/api/v1/dashboard/cluster', { schema: tags, config: viewer }, async (req) => {
    await Promise.race([hub.ready, new Promise((r) => setTimeout(r, 1000))]);
    const status: ClusterStatus | undefined = ctx.clusterStatus ? await ctx.clusterStatus() : undefined;
    const placement: PlacementStatus | undefined = ctx.placement?.();
    const overrides = hub.overrides();
    const health = ctx.health?.() ?? { state: 'ok' as const, leader: false };
    const up = new Map((status?.nodes ?? []).map((n) => [n.name, n]));
    const known = hub.members();
    const names = [...new Set([...up.keys(), ...known.keys()])].sort();
    const observerVersion = up.get(ctx.nodeName)?.version;
    const nodes = await Promise.all(
      names.map(async (name): Promise<DashboardNode> => {
        const live = up.get(name);
        const record = live ?? known.get(name)?.record;
        const self = name === ctx.nodeName;
        const answer = self ? undefined : record && record.addresses[0] ? await probe(name, record.addresses[0], record.httpPort) : undefined;
        let state: DashboardNode['state'];
        if (self) state = health.state === 'degraded' ? 'degraded' : 'up';
        else if (answer?.state === 'degraded') state = 'degraded';
        else state = live ? 'up' : 'down';
        const p = placement?.nodes.find((n) => n.name === name);
        const drift: string[] = [];
        if (live?.behind) drift.push(`applied configuration ${live.configRevision}, store has ${status?.configRevision}`);
        if (live?.clockOffsetMs !== undefined && status && Math.abs(live.clockOffsetMs) > status.clockSkewThresholdMs) drift.push(`clock off by ${live.clockOffsetMs} ms`);
        if (live && observerVersion && live.version !== observerVersion) drift.push(`version ${live.version} (this node: ${observerVersion})`);
        return {
          name,
          state,
          ...(self ? {} : { reachable: answer !== undefined }),
          ...(self && health.reason ? { reason: health.reason } : answer?.reason ? { reason: answer.reason } : {}),
          leader: status?.leader === name,
          addresses: record?.addresses ?? [],
          httpPort: record?.httpPort ?? 0,
          version: record?.version ?? 'unknown',
          weight: record?.weight ?? 100,
          drained: record?.drained === true || overrides[name]?.drained === true,
          ...(overrides[name] ? { override: overrides[name] } : {}),
          configRevision: record?.configRevision ?? 0,
          behind: live?.behind ?? false,
          ...(live?.clockOffsetMs !== undefined ? { clockOffsetMs: live.clockOffsetMs } : {}),
          ...(record ? { load: record.load } : {}),
          ...(known.get(name)?.downSinceMs !== undefined && !live ? { downSinceMs: known.get(name)!.downSinceMs! } : {}),
          ...(p ? { placed: p.placed, buckets: p.buckets, machines: p.machines } : {}),
          drift,
        };
      }),
    );
    return {
      observer: ctx.nodeName,
      observedAtMs: ctx.clock.now(),
      leader: status?.leader ?? hub.leader(),
      configRevision: status?.configRevision ?? (await readClusterConfig(ctx.store)).revision,
      ...(status?.clockSkewMs !== undefined ? { clockSkewMs: status.clockSkewMs } : {}),
      clockSkewThresholdMs: status?.clockSkewThresholdMs ?? 0,
      store: status?.store ?? { kind: ctx.store.kind, reachable: true },
      degraded: health.state === 'degraded',
      warnings: status?.warnings ?? [],
      clustered: status !== undefined,
      placement: placement ? { mode: placement.mode, ...(placement.record ? { record: placement.record } : {}) } : undefined,
      nodes,
    };
  });

  app.get('/api/v1/dashboard/machines', { schema: tags, config: viewer }, async () => {
    const [leases, cluster] = await Promise.all([listLeases(ctx.store), readClusterConfig(ctx.store)]);
    const byMac = new Map<string, { ip: string; subnet: string; state: string; expiresAtMs: number; node: string }>();
    for (const l of leases) {
      const known = byMac.get(l.mac);
      if (!known || (l.state === 'bound' && known.state !== 'bound') || l.expiresAtMs > known.expiresAtMs) {
        byMac.set(l.mac, { ip: l.ip, subnet: l.subnet, state: l.state, expiresAtMs: l.expiresAtMs, node: l.node });
      }
    }
    const placed = new Map((ctx.placement?.().machines ?? []).map((m) => [m.mac, m]));
    const machines: Machine[] = ctx.inventory.listMachines();
    const statuses = new Map(ctx.inventory.listStatuses().map((s) => [s.mac, s]));
    const row = (mac: string | undefined, machine: Machine | undefined, status: MachineStatus | undefined) => {
      const profile = ctx.inventory.profileFor(machine, cluster.config);
      const p = mac ? placed.get(mac) : undefined;
      const lease = mac ? byMac.get(mac) : undefined;
      return {
        ...(machine ? { name: machine.name } : {}),
        ...(mac ? { mac } : {}),
        known: machine !== undefined,
        ...(machine?.hostname ? { hostname: machine.hostname } : {}),
        ...(profile ? { profile: profile.name } : {}),
        profileSource: machine?.profile ? 'machine' : profile ? 'selector or default' : 'none',
        ...(status ? { status } : {}),
        ...(lease ? { lease } : {}),
        ...(p?.server ? { server: p.server } : {}),
        ...(p ? { fallbacks: p.fallbacks } : {}),
      };
    };
    const rows = machines.map((m) => row(m.mac, m, m.mac ? statuses.get(m.mac) : undefined));
    const seen = new Set(machines.flatMap((m) => (m.mac ? [m.mac] : [])));
    for (const s of statuses.values()) if (!seen.has(s.mac)) rows.push(row(s.mac, undefined, s));
    return { machines: rows, profiles: ctx.inventory.listProfiles().map((p) => p.name) };
  });

  app.get('/api/v1/dashboard/leases', { schema: tags, config: viewer }, async () => {
    const [leases, cluster] = await Promise.all([listLeases(ctx.store), readClusterConfig(ctx.store)]);
    const now = ctx.clock.now();
    const subnets = cluster.config.subnets.map((s) => {
      const mine = leases.filter((l) => l.subnet === s.name);
      const pools = s.pools.map((pool) => {
        const lo = ipToInt(pool.start);
        const hi = ipToInt(pool.end);
        const inPool = mine.filter((l) => {
          const ip = ipToInt(l.ip);
          return ip >= lo && ip <= hi && l.expiresAtMs > now;
        });
        const count = (state: string) => inPool.filter((l) => l.state === state).length;
        return { start: pool.start, end: pool.end, size: hi - lo + 1, bound: count('bound'), offered: count('offered'), declined: count('declined') };
      });
      return {
        name: s.name,
        subnet: s.subnet,
        mode: s.mode,
        pools,
        reservations: s.reservations.length,
        leases: mine
          .filter((l) => l.expiresAtMs > now && l.state !== 'released')
          .sort((a, b) => ipToInt(a.ip) - ipToInt(b.ip))
          .slice(0, 500),
      };
    });
    return { observedAtMs: now, subnets };
  });

  app.get('/api/v1/dashboard/funnel', { schema: tags, config: viewer }, async () => {
    await Promise.race([hub.ready, new Promise((r) => setTimeout(r, 1000))]);
    const leases = await listLeases(ctx.store);
    const statuses = ctx.inventory.listStatuses();
    const withStatus = new Set(statuses.map((s) => s.mac));
    const now = ctx.clock.now();
    // Where machines stop: the last stage each reached; a bound lease with no boot status
    // stopped after DHCP (it never fetched its script).
    const stopped: Record<FunnelStage, number> = { dhcp: 0, tftp: 0, script: 0, kernel: 0, done: 0 };
    for (const s of statuses) {
      const stage = (FUNNEL_STAGES as readonly string[]).includes(s.lastStage ?? '') ? (s.lastStage as FunnelStage) : undefined;
      if (stage) stopped[stage]++;
    }
    const dhcpOnly = new Set(leases.filter((l) => l.state === 'bound' && l.expiresAtMs > now && !withStatus.has(l.mac)).map((l) => l.mac));
    stopped.dhcp += dhcpOnly.size;
    return { stages: FUNNEL_STAGES, minutes: hub.funnel(), stopped, machines: statuses.length + dhcpOnly.size, observedAtMs: now };
  });

  // ---- operator actions ------------------------------------------------------------------------
  const knownNode = async (name: string): Promise<void> => {
    if (hub.members().has(name) || name === ctx.nodeName) return;
    const status = await ctx.clusterStatus?.();
    if (!status?.nodes.some((n) => n.name === name)) throw new PxehaError('PXE_ERR_NOT_FOUND', `node ${name} is not a known cluster member`);
  };
  /** Who changed an override: the token's name when access control says, else the API. */
  const by = (req: FastifyRequest): string => {
    const who = (req as { principal?: { kind: string; name?: string } }).principal;
    return `${who?.kind === 'token' && who.name ? who.name : 'api'} on ${ctx.nodeName}`;
  };
  app.put<{ Params: { name: string }; Body: { weight: number } }>(
    '/api/v1/nodes/:name/weight',
    {
      schema: { ...tags, params: NameParams, body: Type.Object({ weight: Type.Integer({ minimum: 0, maximum: 10_000 }) }, { additionalProperties: false }) },
      config: operator,
    },
    async (req) => {
      await knownNode(req.params.name);
      return updateNodeOverride(ctx.store, req.params.name, (o) => ({ ...o, weight: req.body.weight, atMs: ctx.clock.now(), by: by(req) }));
    },
  );
  app.delete<{ Params: { name: string } }>('/api/v1/nodes/:name/weight', { schema: { ...tags, params: NameParams }, config: operator }, async (req) =>
    updateNodeOverride(ctx.store, req.params.name, ({ weight: _, ...o }) => ({ ...o, atMs: ctx.clock.now(), by: by(req) })),
  );
  for (const action of ['drain', 'undrain'] as const) {
    app.post<{ Params: { name: string } }>(`/api/v1/nodes/:name/${action}`, { schema: { ...tags, params: NameParams }, config: operator }, async (req) => {
      await knownNode(req.params.name);
      return updateNodeOverride(ctx.store, req.params.name, (o) => ({ ...o, drained: action === 'drain', atMs: ctx.clock.now(), by: by(req) }));
    });
  }
  app.get('/api/v1/node-overrides', { schema: tags, config: viewer }, async () => {
    await hub.ready;
    return hub.overrides();
  });
  // Change only the profile of a machine (the rest of its object is kept); null: none (selectors or default).
  app.put<{ Params: { name: string }; Body: { profile: string | null } }>(
    '/api/v1/machines/:name/profile',
    {
      schema: {
        tags: ['machines'],
        params: NameParams,
        body: Type.Object({ profile: Type.Union([NameParams.properties.name, Type.Null()]) }, { additionalProperties: false }),
      },
      config: operator,
    },
    async (req) => {
      const machine = ctx.inventory.machine(req.params.name);
      if (!machine) throw new PxehaError('PXE_ERR_NOT_FOUND', `machine ${req.params.name} does not exist`);
      if (req.body.profile !== null && !ctx.inventory.profile(req.body.profile)) throw new PxehaError('PXE_ERR_NOT_FOUND', `profile ${req.body.profile} does not exist`);
      const { profile: _, ...rest } = machine;
      return ctx.inventory.putMachine(req.body.profile === null ? rest : { ...rest, profile: req.body.profile });
    },
  );
}

