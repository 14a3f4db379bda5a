/**
 * Node-to-node credentials: replication traffic (a node pulling image chunks from its peers,
 * GET /api/v1/chunks/:hash) is authenticated with a bearer every node derives from the cluster
 * secret `node` in the store: `pxeha-node.<name>.<HMAC-SHA256(secret, "pxeha-node:" + name)>`.
 * Any node checks it with the same secret, without a token per node in the store. It passes
 * only routes that declare `config: { role: 'node' }` (and admin tokens pass those too); it is
 * never a viewer, operator or admin token. Rotating it is deleting `/pxeha/secrets/node`
 * (every node re-reads the secret when a check fails).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export const NODE_TOKEN_PREFIX = 'pxeha-node.';
/** Node names (NodeConfig.name); base64url has no '.', so the last '.' ends the name. */
const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/;

function mac(key: Buffer, name: string): string {
  return createHmac('sha256', key).update(`pxeha-node:${name}`, 'utf8').digest('base64url');
}

/** The bearer of node `name`. */
export function nodeToken(key: Buffer, name: string): string {
  return `${NODE_TOKEN_PREFIX}${name}.${mac(key, name)}`;
}

export function isNodeToken(token: string): boolean {
  return token.startsWith(NODE_TOKEN_PREFIX);
}

/** The node a bearer names, if its HMAC is right (constant-time compare), else undefined. */
export function nodeTokenName(key: Buffer, token: string): string | undefined {
  if (!isNodeToken(token)) return undefined;
  const rest = token.slice(NODE_TOKEN_PREFIX.length);
  const dot = rest.lastIndexOf('.');
  if (dot <= 0) return undefined;
  const name = rest.slice(0, dot);
  if (!NAME_RE.test(name)) return undefined;
  const want = Buffer.from(mac(key, name), 'utf8');
  const got = Buffer.from(rest.slice(dot + 1), 'utf8');
  return want.length === got.length && timingSafeEqual(want, got) ? name : undefined;
}
