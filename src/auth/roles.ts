/**
 * Who may do what through the API. Three roles, each including the one below it:
 * - viewer: read everything the API shows (status, configuration, machines, leases).
 * - operator: day-to-day actions on machines and nodes (reprovision, change a machine's
 *   profile, rebalance, drain, weights, image promotion).
 * - admin: configuration writes (cluster, subnets, reservations, profiles, machines), tokens,
 *   backup and restore.
 *
 * A route declares the role it needs in its Fastify route config (`config: { role }`); a route
 * under /api/ that declares none needs viewer for GET/HEAD and admin for anything else, so a
 * forgotten declaration fails closed. `public` is for the few routes that must answer without
 * credentials (logging in). `node` is for node-to-node routes (image chunks for replication):
 * a node's bearer (src/auth/node-token.ts) or an admin token passes, nothing else.
 */
export const ROLES = ['viewer', 'operator', 'admin'] as const;
export type Role = (typeof ROLES)[number];
export type RouteRole = Role | 'public' | 'node';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Role a caller needs for this route (src/auth/roles.ts); enforced by src/http/access-control.ts. */
    role?: RouteRole;
  }
}

export function isRole(x: unknown): x is Role {
  return typeof x === 'string' && (ROLES as readonly string[]).includes(x);
}

/** Whether a caller holding `have` may use a route that needs `need`. */
export function roleAllows(have: Role, need: RouteRole): boolean {
  if (need === 'public') return true;
  if (need === 'node') return have === 'admin';
  return ROLES.indexOf(have) >= ROLES.indexOf(need);
}

/** The role a route needs: its declaration, else viewer to read and admin to change anything. */
export function requiredRole(method: string, declared: RouteRole | undefined): RouteRole {
  if (declared !== undefined) return declared;
  return method === 'GET' || method === 'HEAD' ? 'viewer' : 'admin';
}
