/**
 * The node's API (Fastify). For now it serves what the CLI needs from a running node — the
 * cluster configuration, leases, health and metrics — on a Unix socket in the data dir, which
 * reaches the node from any network namespace and is guarded by file permissions. The REST
 * API on TCP (boot-serving issue) mounts these same routes.
 * Errors use one envelope: {statusCode, code, error, message, issues?}.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { STATUS_CODES } from 'node:http';
import { readClusterConfig, writeClusterConfig } from '../config/cluster-store.js';
import { parseClusterConfig } from '../config/load.js';
import { LEASE_PREFIX, parseLeaseRecord, type LeaseRecord } from '../dhcp/lease-record.js';
import { ConfigError, PxehaError } from '../errors.js';
import type { Metrics } from '../obs/metrics.js';
import type { Store } from '../store/store.js';

export interface ApiDeps {
  store: Store;
  metrics: Metrics;
  node: string;
}

export function errorEnvelope(err: unknown): { statusCode: number; body: Record<string, unknown> } {
  if (err instanceof PxehaError) {
    const body: Record<string, unknown> = {
      statusCode: err.statusCode,
      code: err.code,
      error: STATUS_CODES[err.statusCode] ?? 'Error',
      message: err.message,
    };
    if (err instanceof ConfigError) body.issues = err.issues;
    return { statusCode: err.statusCode, body };
  }
  const e = err as { statusCode?: number; message?: string };
  const statusCode = typeof e.statusCode === 'number' && e.statusCode >= 400 ? e.statusCode : 500;
  return {
    statusCode,
    body: { statusCode, code: statusCode < 500 ? 'PXE_ERR_BAD_REQUEST' : 'PXE_ERR_INTERNAL', error: STATUS_CODES[statusCode] ?? 'Error', message: e.message ?? String(err) },
  };
}

export async function listLeases(store: Store, subnet?: string): Promise<LeaseRecord[]> {
  const { kvs } = await store.range(subnet ? `${LEASE_PREFIX}${subnet}/` : LEASE_PREFIX, { prefix: true });
  return kvs.map((kv) => parseLeaseRecord(kv.value)).filter((r): r is LeaseRecord => r !== undefined);
}

export function buildApi(deps: ApiDeps): FastifyInstance {
  const app = Fastify({ logger: false, bodyLimit: 8 * 1024 * 1024 });
  app.setErrorHandler((err, _req, reply) => {
    const { statusCode, body } = errorEnvelope(err);
    void reply.code(statusCode).send(body);
  });

  app.get('/healthz', async () => {
    await deps.store.revision();
    return { status: 'ok', node: deps.node };
  });

  app.get('/metrics', async (_req, reply) => {
    void reply.header('content-type', deps.metrics.registry.contentType);
    return deps.metrics.registry.metrics();
  });

  app.get('/api/v1/config/cluster', async () => {
    const stored = await readClusterConfig(deps.store);
    return { revision: stored.revision, config: stored.config };
  });

  app.put('/api/v1/config/cluster', async (req) => {
    const config = parseClusterConfig(req.body, 'cluster configuration');
    return { revision: await writeClusterConfig(deps.store, config) };
  });

  app.get<{ Querystring: { subnet?: string } }>('/api/v1/leases', async (req) => listLeases(deps.store, req.query.subnet));

  return app;
}
