/**
 * The one place API access is decided (an onRequest hook, after routing, before validation):
 *
 * - On the node's Unix socket (root-only, mode 0600, like docker.sock) the caller is local root
 *   and acts as admin.
 * - Over TCP a route that declares a role (`config: { role }`, src/auth/roles.ts), and every
 *   route under /api/, needs a credential: `Authorization: Bearer pxeha_…`, or the dashboard's
 *   session cookie. None: 401; not a live token: 401; a live token of too weak a role: 403.
 *   Each refusal answers with the API's error envelope and is counted in
 *   pxeha_api_denied_total{reason}.
 * - Routes that declare `node` (image chunks for replication) take a peer's node bearer
 *   (`pxeha-node.…`, src/auth/node-token.ts) or an admin token, and stay on the plain port with
 *   http.tls; a node bearer opens no other route (403).
 * - Boot paths (scripts, per-machine files, the callback, artifacts, pinned image files) and
 *   /healthz, /livez, /metrics stay open: firmware has no credentials. When the node serves its API over HTTPS
 *   (http.tls), its plain-HTTP listener serves only those paths and refuses the rest (403,
 *   reason "plain-http"), so no token ever crosses the network in clear.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Auth } from '../auth/auth.js';
import { requiredRole, roleAllows, type Role } from '../auth/roles.js';
import { isNodeToken } from '../auth/node-token.js';
import { cookieValue, SESSION_COOKIE } from '../auth/session.js';
import { PxehaError, type ErrorCode } from '../errors.js';
import type { Metrics } from '../obs/metrics.js';
import type { Clock } from '../util/clock.js';

/** Which listener an app serves: the root-only Unix socket, plain TCP, or the HTTPS API port. */
export type Listener = 'local' | 'tcp' | 'tls';

export type Principal =
  | { kind: 'local'; role: 'admin' }
  | { kind: 'token'; via: 'bearer' | 'session'; id: string; name: string; role: Role }
  /** A peer node, by its node-to-node bearer (src/auth/node-token.ts); passes `node` routes only. */
  | { kind: 'node'; name: string };

declare module 'fastify' {
  interface FastifyRequest {
    /** Who is calling, once access control let the request through (API routes only). */
    principal?: Principal;
  }
}

/** Routes machines and monitoring use without credentials, on every listener. */
const OPEN_ROUTES = new Set(['/boot.ipxe', '/boot/done', '/machines/:mac/files/:name', '/artifacts/*', '/images/*', '/healthz', '/livez', '/metrics']);

export type DenyReason = 'missing' | 'invalid' | 'role' | 'plain-http' | 'origin';

export interface AccessControlOptions {
  listener: Listener;
  /** Set on the plain listener when the API is served over HTTPS on this port. */
  httpsPort?: number;
  auth: Auth;
  metrics: Metrics;
  clock: Clock;
}

function deny(reply: FastifyReply, metrics: Metrics, reason: DenyReason, code: ErrorCode, message: string): FastifyReply {
  metrics.apiDenied.inc({ reason });
  const err = new PxehaError(code, message);
  if (err.statusCode === 401) void reply.header('www-authenticate', 'Bearer realm="pxeha"');
  return reply.code(err.statusCode).send({ statusCode: err.statusCode, code: err.code, error: err.statusCode === 401 ? 'Unauthorized' : 'Forbidden', message });
}

/** A cookie-authenticated change must come from a page of this origin (CSRF), if the browser says. */
function sameOrigin(req: FastifyRequest): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  try {
    return new URL(origin).host === req.headers.host;
  } catch {
    return false;
  }
}

export function registerAccessControl(app: FastifyInstance, options: AccessControlOptions): void {
  const { listener, auth, metrics } = options;
  app.addHook('onRequest', async (req, reply) => {
    // The matched route's pattern, not the raw URL: `/%61pi/…` must not slip past a prefix check.
    const route = req.routeOptions.url;
    const path = route ?? req.url.split('?')[0] ?? '/';
    if (route !== undefined && OPEN_ROUTES.has(route)) return;
    const declared = req.routeOptions.config?.role;
    // Node-to-node routes stay on the plain port too: peers are published with it, and what they
    // carry (image chunks) is served to firmware in clear anyway.
    if (listener === 'tcp' && options.httpsPort !== undefined && declared !== 'node') {
      return deny(reply, metrics, 'plain-http', 'PXE_ERR_HTTPS_REQUIRED', `the API and dashboard are served over HTTPS on port ${options.httpsPort}; this port serves boot files only`);
    }
    if (declared === undefined && !path.startsWith('/api/')) return;
    const need = requiredRole(req.method, declared);
    if (listener === 'local') {
      req.principal = { kind: 'local', role: 'admin' };
      return;
    }
    const header = req.headers.authorization;
    const bearer = header !== undefined && /^bearer\s+/i.test(header) ? header.replace(/^bearer\s+/i, '').trim() : undefined;
    const cookie = bearer === undefined ? cookieValue(req.headers.cookie, SESSION_COOKIE) : undefined;
    if (need === 'public') {
      // Open routes (logging in) still learn who calls, if anyone says.
      const who = bearer !== undefined ? await auth.tokens.verify(bearer) : cookie !== undefined ? await auth.verifySession(cookie, options.clock.now()) : undefined;
      if (who) req.principal = { kind: 'token', via: bearer !== undefined ? 'bearer' : 'session', ...who };
      return;
    }
    if (bearer === undefined && cookie === undefined) {
      return deny(reply, metrics, 'missing', 'PXE_ERR_UNAUTHORIZED', 'this API needs a token: send "Authorization: Bearer pxeha_…" (create one with `pxeha tokens create`)');
    }
    if (bearer !== undefined && isNodeToken(bearer)) {
      const peer = await auth.verifyNodeToken(bearer);
      if (peer === undefined) return deny(reply, metrics, 'invalid', 'PXE_ERR_UNAUTHORIZED', 'the node credential is not valid');
      if (need !== 'node') return deny(reply, metrics, 'role', 'PXE_ERR_FORBIDDEN', `${req.method} ${path} needs the ${need} role; a node credential (${peer}) only reads chunks`);
      req.principal = { kind: 'node', name: peer };
      return;
    }
    const who = bearer !== undefined ? await auth.tokens.verify(bearer) : await auth.verifySession(cookie ?? '', options.clock.now());
    if (!who) {
      return deny(reply, metrics, 'invalid', 'PXE_ERR_UNAUTHORIZED', bearer !== undefined ? 'the token is not valid (unknown, revoked or mistyped)' : 'the session is not valid (expired, or its token was revoked)');
    }
    if (bearer === undefined && req.method !== 'GET' && req.method !== 'HEAD' && !sameOrigin(req)) {
      return deny(reply, metrics, 'origin', 'PXE_ERR_FORBIDDEN', `a session may only be used by pages of this node (Origin ${req.headers.origin} is not ${req.headers.host})`);
    }
    if (!roleAllows(who.role, need)) {
      return deny(reply, metrics, 'role', 'PXE_ERR_FORBIDDEN', `${req.method} ${path} needs the ${need} role; token ${who.name} (${who.id}) has ${who.role}`);
    }
    req.principal = { kind: 'token', via: bearer !== undefined ? 'bearer' : 'session', ...who };
  });
}
