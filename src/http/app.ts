/**
 * The node's HTTP server (Fastify): boot scripts and files for iPXE, boot artifacts, the REST
 * API with its OpenAPI document, Prometheus metrics and health. Request validation uses the
 * same Ajv validators as configuration files; every error answers with one envelope,
 * {statusCode, code, error, message, issues?}, and rejected requests are counted. Who may call
 * what is decided in one hook (src/http/access-control.ts) from each route's `config.role`.
 */
import swagger from '@fastify/swagger';
import type { TSchema } from '@sinclair/typebox';
import Fastify, { type FastifyInstance } from 'fastify';
import { access } from 'node:fs/promises';
import { STATUS_CODES } from 'node:http';
import { registerApiRoutes } from '../api/routes.js';
import { registerAuthRoutes } from '../api/auth-routes.js';
import { Auth } from '../auth/auth.js';
import { resolveArtifact } from '../artifacts/resolve.js';
import { referencedArtifacts } from '../boot/servers.js';
import { compileChecker } from '../config/load.js';
import { ConfigError, PxehaError } from '../errors.js';
import { registerAccessControl, type Listener } from './access-control.js';
import { ArtifactFastPath, createServerWithFastPath, type NodeServerOptions } from './artifact-fast-path.js';
import type { HttpContext } from './context.js';
import { registerArtifactRoutes } from './routes/artifacts.js';
import { registerBootRoutes } from './routes/boot.js';
import { registerImageRoutes } from './routes/images.js';
import { registerImageLifecycleRoutes } from './routes/image-lifecycle.js';
import { registerImageFileRoutes } from './routes/image-files.js';
import { SmallFileCache } from './small-file-cache.js';

export function errorEnvelope(err: unknown): { statusCode: number; body: Record<string, unknown> } {
  if (err instanceof PxehaError) {
    const body: Record<string, unknown> = { statusCode: err.statusCode, code: err.code, error: STATUS_CODES[err.statusCode] ?? 'Error', message: err.message };
    if (err instanceof ConfigError) body.issues = err.issues;
    return { statusCode: err.statusCode, body };
  }
  const e = err as { statusCode?: number; message?: string };
  const statusCode = typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 600 ? e.statusCode : 500;
  const code = statusCode === 404 ? 'PXE_ERR_NOT_FOUND' : statusCode < 500 ? 'PXE_ERR_BAD_REQUEST' : 'PXE_ERR_INTERNAL';
  return { statusCode, body: { statusCode, code, error: STATUS_CODES[statusCode] ?? 'Error', message: e.message ?? String(err) } };
}

/** Artifacts the configuration tells clients to fetch from this node, which must be present. */
export function advertisedArtifacts(ctx: HttpContext): string[] {
  return referencedArtifacts(ctx.inventory.listProfiles(), ctx.cluster().boot);
}

export interface HttpAppOptions {
  /**
   * Which listener this app serves (src/http/access-control.ts): 'local', the root-only Unix
   * socket (admin); 'tcp' (default), plain HTTP; 'tls', the HTTPS API listener.
   */
  listener?: Listener;
  /** PEM certificate chain and key, for the 'tls' listener. */
  https?: { cert: Buffer; key: Buffer };
  /** On the 'tcp' listener: the API is served over HTTPS on this port, so refuse it here. */
  httpsPort?: number;
}

export async function buildHttpApp(ctx: HttpContext, options: HttpAppOptions = {}): Promise<FastifyInstance> {
  const listener = options.listener ?? 'tcp';
  // Small artifacts in memory, filled by the artifacts route; plain GET/HEAD hits are answered
  // in front of Fastify (src/http/artifact-fast-path.ts; the boot-storm request, bench/http).
  const smallFiles = new SmallFileCache();
  const fastPath = new ArtifactFastPath(ctx, smallFiles);
  const app = Fastify({
    logger: false,
    bodyLimit: 8 * 1024 * 1024,
    return503OnClosing: true,
    ...(options.https ? { https: options.https } : {}),
    serverFactory: (handler, serverOptions) => createServerWithFastPath(handler, serverOptions as NodeServerOptions, fastPath),
  }) as unknown as FastifyInstance;
  app.addHook('preClose', (done) => {
    fastPath.close();
    done();
  });
  // A node shares one Auth between its listeners; an app built alone (tests) opens its own.
  let auth = ctx.auth;
  if (!auth) {
    const own = await Auth.open(ctx.store, { onError: (err) => ctx.log.error({ err }, 'token watch failed') });
    app.addHook('onClose', async () => own.close());
    auth = own;
  }
  registerAccessControl(app, {
    listener,
    auth,
    metrics: ctx.metrics,
    clock: ctx.clock,
    ...(options.httpsPort !== undefined ? { httpsPort: options.httpsPort } : {}),
  });

  app.setValidatorCompiler(({ schema, httpPart }) => {
    const check = compileChecker(schema as TSchema);
    return (data: unknown) => {
      const issues = check(data);
      return issues.length === 0 ? { value: data } : { error: new ConfigError(`request ${httpPart ?? 'body'}`, issues) };
    };
  });
  app.setErrorHandler((err, req, reply) => {
    const { statusCode, body } = errorEnvelope(err);
    if (statusCode < 500) ctx.metrics.apiRejected.inc({ route: req.routeOptions.url ?? 'unknown' });
    else ctx.log.error({ err, url: req.url }, 'request failed');
    void reply.code(statusCode).send(body);
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({ statusCode: 404, code: 'PXE_ERR_NOT_FOUND', error: 'Not Found', message: `no route ${req.method} ${req.url.split('?')[0]}` });
  });
  app.addHook('onResponse', async (req, reply) => {
    ctx.metrics.httpRequests.inc({ route: req.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) });
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'pxeha API', version: '1', description: 'Cluster objects of a pxeha boot cluster' },
    },
  });

  app.get('/api/openapi.json', { schema: { hide: true }, config: { role: 'viewer' } }, async () => app.swagger());

  app.get('/metrics', { schema: { hide: true } }, async (_req, reply) => {
    void reply.header('content-type', ctx.metrics.registry.contentType);
    return ctx.metrics.registry.metrics();
  });

  // Alive: the process answers. The CLI uses it to find a running node, ready or not.
  // Open on every listener (no token, plain HTTP even with http.tls): peers' dashboards read a
  // node's own view of its health here. Nothing in it is secret.
  app.get('/livez', { schema: { hide: true } }, async () => {
    const health = ctx.health?.();
    return { status: 'alive', node: ctx.nodeName, state: health?.state ?? 'ok', ...(health?.reason !== undefined ? { reason: health.reason } : {}) };
  });

  // Ready only when the store answers and every artifact this node advertises is here.
  app.get('/healthz', { schema: { hide: true } }, async (_req, reply) => {
    const problems: string[] = [];
    try {
      await ctx.store.revision();
    } catch (err) {
      problems.push(`store: ${(err as Error).message}`);
    }
    await access(ctx.artifactsRoot).catch(() => problems.push(`artifacts directory ${ctx.artifactsRoot} is missing`));
    for (const f of advertisedArtifacts(ctx)) {
      const r = await resolveArtifact(ctx.artifactsRoot, f);
      if (!r.ok) problems.push(`artifact ${f}: ${r.message}`);
    }
    return reply.code(problems.length === 0 ? 200 : 503).send({ status: problems.length === 0 ? 'ready' : 'not-ready', node: ctx.nodeName, problems });
  });

  registerBootRoutes(app, ctx, auth);
  registerArtifactRoutes(app, ctx, smallFiles);
  registerApiRoutes(app, ctx);
  registerImageRoutes(app, ctx);
  registerImageLifecycleRoutes(app, ctx);
  registerImageFileRoutes(app, ctx);
  registerAuthRoutes(app, ctx, auth, { secureCookie: listener === 'tls' });
  (await import('../api/dashboard-routes.js')).registerDashboardRoutes(app, ctx); // the web dashboard, /ui/ and its API
  return app;
}
