/**
 * The REST API (JSON under /api/v1): cluster configuration, subnets and their reservations,
 * profiles, machines and their boot status, leases, and node status. Every body and parameter
 * is validated by the same schemas as configuration files; unknown fields are refused with
 * the JSON pointer of the field. The OpenAPI document is generated from these schemas.
 */
import { Type, type TSchema } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { readClusterConfig, updateClusterConfig, writeClusterConfig } from '../config/cluster-store.js';
import { parseClusterConfig } from '../config/load.js';
import {
  ClusterConfigSchema,
  MachineSchema,
  ProfileSchema,
  ReservationSchema,
  SubnetSchema,
  type ClusterConfig,
  type ReservationConfig,
  type SubnetConfig,
} from '../config/schema.js';
import { LEASE_PREFIX, parseLeaseRecord, type LeaseRecord } from '../dhcp/lease-record.js';
import { PxehaError } from '../errors.js';
import type { HttpContext } from '../http/context.js';
import type { Store } from '../store/store.js';
import { formatBackup, takeBackup } from '../cluster/backup.js';
import { withDeadline } from '../cluster/session.js';
import { PXEHA_VERSION } from '../cluster/version.js';

/** How long the status route waits for the store before reporting it unreachable. */
const STATUS_STORE_DEADLINE_MS = 1500;

export async function listLeases(store: Store, subnet?: string): Promise<LeaseRecord[]> {
  const { kvs } = await store.range(subnet ? `${LEASE_PREFIX}${subnet}/` : LEASE_PREFIX, { prefix: true });
  return kvs.map((kv) => parseLeaseRecord(kv.value)).filter((r): r is LeaseRecord => r !== undefined);
}

const NameParams = Type.Object({ name: Type.String({ pattern: '^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$' }) }, { additionalProperties: false });
const ReservationParams = Type.Object(
  { name: NameParams.properties.name, address: Type.String({ format: 'ipv4' }) },
  { additionalProperties: false },
);
const Deleted = Type.Object({ deleted: Type.Boolean() });
// Roles (src/auth/roles.ts): viewer reads; operator acts on machines and the cluster; admin
// changes configuration (cluster, subnets, reservations, profiles, machines) and takes backups
// (which hold token hashes and the cluster secrets).
const viewer = { role: 'viewer' as const };
const operator = { role: 'operator' as const };
const admin = { role: 'admin' as const };
const Revision = Type.Object({ revision: Type.Integer() });

function notFound(what: string): PxehaError {
  return new PxehaError('PXE_ERR_NOT_FOUND', `${what} does not exist`);
}

function sameName(pathName: string, body: { name: string }, what: string): void {
  if (pathName !== body.name) {
    throw new PxehaError('PXE_ERR_CONFIG_INVALID', `${what} name in the body (${body.name}) differs from the path (${pathName})`);
  }
}

function subnetOf(config: ClusterConfig, name: string): SubnetConfig {
  const s = config.subnets.find((x) => x.name === name);
  if (!s) throw notFound(`subnet ${name}`);
  return s;
}

export function registerApiRoutes(app: FastifyInstance, ctx: HttpContext): void {
  const tags = (t: string): { tags: string[] } => ({ tags: [t] });
  const body = (schema: TSchema) => schema;

  // Answers even when the store does not (bounded reads): a cut-off node must say it is degraded.
  app.get('/api/v1/status', { schema: { ...tags('node') }, config: viewer }, async () => {
    const health = ctx.health?.() ?? { state: 'ok' as const, leader: false };
    const reads = await withDeadline(
      Promise.all([ctx.store.revision(), readClusterConfig(ctx.store)]),
      STATUS_STORE_DEADLINE_MS,
      'status',
    ).catch((err: Error) => err);
    return {
      node: ctx.nodeName,
      state: health.state,
      ...(health.reason !== undefined ? { reason: health.reason } : {}),
      leader: health.leader,
      store: reads instanceof Error
        ? { kind: ctx.store.kind, reachable: false, error: reads.message }
        : { kind: ctx.store.kind, reachable: true, revision: reads[0] },
      ...(reads instanceof Error ? {} : { configRevision: reads[1].revision }),
      ...(ctx.dhcp ? { dhcp: ctx.dhcp() } : {}),
      uptimeSeconds: Math.round(process.uptime()),
      version: PXEHA_VERSION,
    };
  });

  // The cluster as this node sees it: members, leader, applied revisions, clock skew, store health.
  app.get('/api/v1/cluster', { schema: tags('cluster'), config: viewer }, async () => {
    if (!ctx.clusterStatus) throw new PxehaError('PXE_ERR_NOT_FOUND', 'this node runs without cluster membership');
    return ctx.clusterStatus();
  });
  // Which node serves which machines, and who takes a share (src/cluster/placement.ts).
  app.get('/api/v1/cluster/placement', { schema: tags('cluster'), config: viewer }, async () => {
    if (!ctx.placement) throw new PxehaError('PXE_ERR_NOT_FOUND', 'this node runs without cluster membership: it serves every machine itself');
    return ctx.placement();
  });
  app.post('/api/v1/cluster/rebalance', { schema: tags('cluster'), config: operator }, async () => {
    if (!ctx.rebalance) throw new PxehaError('PXE_ERR_NOT_FOUND', 'this node runs without cluster membership: there is nothing to rebalance');
    return ctx.rebalance();
  });
  // A consistent snapshot of all durable cluster state (pxeha backup), as JSON lines.
  app.get('/api/v1/backup', { schema: tags('cluster'), config: admin }, async (_req, reply) => {
    const text = formatBackup(await takeBackup(ctx.store, ctx.clock.now()));
    return reply.type('application/x-ndjson').send(text);
  });

  // Cluster configuration as one document (what `pxeha apply` writes).
  app.get('/api/v1/config/cluster', { schema: tags('config'), config: viewer }, async () => {
    const stored = await readClusterConfig(ctx.store);
    return { revision: stored.revision, config: stored.config };
  });
  app.put('/api/v1/config/cluster', { schema: { ...tags('config'), body: body(ClusterConfigSchema), response: { 200: Revision } }, config: admin }, async (req) => ({
    revision: await writeClusterConfig(ctx.store, parseClusterConfig(req.body, 'cluster configuration')),
  }));

  // Subnets and reservations: edits of the configuration document, compare-and-set.
  app.get('/api/v1/subnets', { schema: tags('subnets'), config: viewer }, async () => (await readClusterConfig(ctx.store)).config.subnets);
  app.get<{ Params: { name: string } }>('/api/v1/subnets/:name', { schema: { ...tags('subnets'), params: NameParams }, config: viewer }, async (req) =>
    subnetOf((await readClusterConfig(ctx.store)).config, req.params.name),
  );
  app.put<{ Params: { name: string }; Body: SubnetConfig }>(
    '/api/v1/subnets/:name',
    { schema: { ...tags('subnets'), params: NameParams, body: body(SubnetSchema), response: { 200: Revision } }, config: admin },
    async (req) => {
      sameName(req.params.name, req.body, 'subnet');
      const { revision } = await updateClusterConfig(ctx.store, (c) => {
        const i = c.subnets.findIndex((s) => s.name === req.params.name);
        if (i >= 0) c.subnets[i] = req.body;
        else c.subnets.push(req.body);
      });
      return { revision };
    },
  );
  app.delete<{ Params: { name: string } }>('/api/v1/subnets/:name', { schema: { ...tags('subnets'), params: NameParams }, config: admin }, async (req) => {
    let deleted = false;
    await updateClusterConfig(ctx.store, (c) => {
      const before = c.subnets.length;
      c.subnets = c.subnets.filter((s) => s.name !== req.params.name);
      deleted = c.subnets.length !== before;
    });
    return { deleted };
  });
  app.get<{ Params: { name: string } }>('/api/v1/subnets/:name/reservations', { schema: { ...tags('subnets'), params: NameParams }, config: viewer }, async (req) =>
    subnetOf((await readClusterConfig(ctx.store)).config, req.params.name).reservations,
  );
  app.put<{ Params: { name: string; address: string }; Body: ReservationConfig }>(
    '/api/v1/subnets/:name/reservations/:address',
    { schema: { ...tags('subnets'), params: ReservationParams, body: body(ReservationSchema), response: { 200: Revision } }, config: admin },
    async (req) => {
      if (req.body.address !== req.params.address) {
        throw new PxehaError('PXE_ERR_CONFIG_INVALID', `reservation address in the body (${req.body.address}) differs from the path (${req.params.address})`);
      }
      const { revision } = await updateClusterConfig(ctx.store, (c) => {
        const s = subnetOf(c, req.params.name);
        s.reservations = [...s.reservations.filter((r) => r.address !== req.params.address), req.body];
      });
      return { revision };
    },
  );
  app.delete<{ Params: { name: string; address: string } }>(
    '/api/v1/subnets/:name/reservations/:address',
    { schema: { ...tags('subnets'), params: ReservationParams, response: { 200: Deleted } }, config: admin },
    async (req) => {
      let deleted = false;
      await updateClusterConfig(ctx.store, (c) => {
        const s = subnetOf(c, req.params.name);
        const before = s.reservations.length;
        s.reservations = s.reservations.filter((r) => r.address !== req.params.address);
        deleted = s.reservations.length !== before;
      });
      return { deleted };
    },
  );

  // Profiles and machines: one store key each.
  app.get('/api/v1/profiles', { schema: tags('profiles'), config: viewer }, async () => ctx.inventory.listProfiles());
  app.get<{ Params: { name: string } }>('/api/v1/profiles/:name', { schema: { ...tags('profiles'), params: NameParams }, config: viewer }, async (req) => {
    const p = ctx.inventory.profile(req.params.name);
    if (!p) throw notFound(`profile ${req.params.name}`);
    return p;
  });
  app.put<{ Params: { name: string }; Body: { name: string } }>(
    '/api/v1/profiles/:name',
    { schema: { ...tags('profiles'), params: NameParams, body: body(ProfileSchema) }, config: admin },
    async (req) => {
      sameName(req.params.name, req.body, 'profile');
      return ctx.inventory.putProfile(req.body);
    },
  );
  app.delete<{ Params: { name: string } }>('/api/v1/profiles/:name', { schema: { ...tags('profiles'), params: NameParams, response: { 200: Deleted } }, config: admin }, async (req) => ({
    deleted: await ctx.inventory.deleteProfile(req.params.name),
  }));

  app.get('/api/v1/machines', { schema: tags('machines'), config: viewer }, async () => ctx.inventory.listMachines());
  app.get<{ Params: { name: string } }>('/api/v1/machines/:name', { schema: { ...tags('machines'), params: NameParams }, config: viewer }, async (req) => {
    const m = ctx.inventory.machine(req.params.name);
    if (!m) throw notFound(`machine ${req.params.name}`);
    return { ...m, status: m.mac ? ctx.inventory.status(m.mac) : undefined };
  });
  app.put<{ Params: { name: string }; Body: { name: string } }>(
    '/api/v1/machines/:name',
    { schema: { ...tags('machines'), params: NameParams, body: body(MachineSchema) }, config: admin },
    async (req) => {
      sameName(req.params.name, req.body, 'machine');
      return ctx.inventory.putMachine(req.body);
    },
  );
  app.delete<{ Params: { name: string } }>('/api/v1/machines/:name', { schema: { ...tags('machines'), params: NameParams, response: { 200: Deleted } }, config: admin }, async (req) => ({
    deleted: await ctx.inventory.deleteMachine(req.params.name),
  }));
  app.post<{ Params: { name: string } }>('/api/v1/machines/:name/reprovision', { schema: { ...tags('machines'), params: NameParams }, config: operator }, async (req) =>
    ctx.inventory.reprovision(req.params.name, ctx.clock.now()),
  );
  app.get('/api/v1/machine-status', { schema: tags('machines'), config: viewer }, async () => ctx.inventory.listStatuses());

  app.get<{ Querystring: { subnet?: string } }>(
    '/api/v1/leases',
    { schema: { ...tags('leases'), querystring: Type.Object({ subnet: Type.Optional(NameParams.properties.name) }, { additionalProperties: false }) }, config: viewer },
    async (req) => listLeases(ctx.store, req.query.subnet),
  );
}
