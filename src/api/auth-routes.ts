/**
 * Tokens and dashboard sessions over the API (roles: src/auth/roles.ts).
 *
 *   POST   /api/v1/tokens        admin   {role, name?} → the token text, shown this once
 *   GET    /api/v1/tokens        admin   id, name, role, createdAtMs of each (never the hash)
 *   DELETE /api/v1/tokens/:id    admin   revoke
 *   POST   /api/v1/session       public  {token} → a session cookie for the dashboard
 *   GET    /api/v1/session       viewer  who the caller is
 *   DELETE /api/v1/session       public  forget the cookie
 */
import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { Auth } from '../auth/auth.js';
import { ROLES, type Role } from '../auth/roles.js';
import { SESSION_COOKIE } from '../auth/session.js';
import { createToken, listTokens, revokeToken } from '../auth/tokens.js';
import { PxehaError } from '../errors.js';
import type { HttpContext } from '../http/context.js';

const RoleSchema = Type.Union(ROLES.map((r) => Type.Literal(r)));
const TokenName = Type.String({ pattern: '^[a-zA-Z0-9][a-zA-Z0-9_.@-]{0,62}$' });
const admin = { role: 'admin' as const };

export function registerAuthRoutes(app: FastifyInstance, ctx: HttpContext, auth: Auth, options: { secureCookie: boolean }): void {
  const tags = { tags: ['access'] };

  app.post<{ Body: { role: Role; name?: string } }>(
    '/api/v1/tokens',
    { schema: { ...tags, body: Type.Object({ role: RoleSchema, name: Type.Optional(TokenName) }, { additionalProperties: false }) }, config: admin },
    async (req, reply) => {
      const created = await createToken(ctx.store, req.body, ctx.clock.now());
      ctx.log.info({ tokenId: created.id, name: created.name, role: created.role, by: req.principal?.kind === 'token' ? req.principal.id : 'local' }, 'api token created');
      return reply.code(201).header('cache-control', 'no-store').send(created);
    },
  );
  app.get('/api/v1/tokens', { schema: tags, config: admin }, async () => listTokens(ctx.store));
  app.delete<{ Params: { id: string } }>(
    '/api/v1/tokens/:id',
    { schema: { ...tags, params: Type.Object({ id: Type.String({ pattern: '^[0-9a-f]{16}$' }) }, { additionalProperties: false }) }, config: admin },
    async (req) => {
      const deleted = await revokeToken(ctx.store, req.params.id);
      if (deleted) ctx.log.info({ tokenId: req.params.id, by: req.principal?.kind === 'token' ? req.principal.id : 'local' }, 'api token revoked');
      return { deleted };
    },
  );

  app.post<{ Body: { token: string } }>(
    '/api/v1/session',
    { schema: { ...tags, body: Type.Object({ token: Type.String({ maxLength: 256 }) }, { additionalProperties: false }) }, config: { role: 'public' } },
    async (req, reply) => {
      const who = await auth.tokens.verify(req.body.token);
      if (!who) {
        ctx.metrics.apiDenied.inc({ reason: 'invalid' });
        throw new PxehaError('PXE_ERR_UNAUTHORIZED', 'the token is not valid (unknown, revoked or mistyped)');
      }
      const session = await auth.newSession(who.id, ctx.clock.now());
      const maxAge = Math.floor((session.expiresAtMs - ctx.clock.now()) / 1000);
      const cookie = `${SESSION_COOKIE}=${session.value}; Path=/; Max-Age=${maxAge}; HttpOnly; SameSite=Strict${options.secureCookie ? '; Secure' : ''}`;
      return reply.header('set-cookie', cookie).header('cache-control', 'no-store').send({ ...who, expiresAtMs: session.expiresAtMs });
    },
  );
  app.get('/api/v1/session', { schema: tags, config: { role: 'viewer' } }, async (req) => {
    const p = req.principal;
    return p?.kind === 'token' ? { kind: p.kind, via: p.via, id: p.id, name: p.name, role: p.role } : { kind: 'local', role: 'admin' };
  });
  app.delete('/api/v1/session', { schema: tags, config: { role: 'public' } }, async (_req, reply) =>
    reply.header('set-cookie', `${SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict${options.secureCookie ? '; Secure' : ''}`).send({ deleted: true }),
  );
}
