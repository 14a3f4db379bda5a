/**
 * API tokens. A token is shown once, when it is created: `pxeha_<id>_<secret>`, where id is 8
 * random bytes in hex (it names the token in `pxeha tokens ls` and `revoke`) and secret is 32
 * random bytes in base64url. The store keeps only its SHA-256 (`/pxeha/tokens/<id>`:
 * `{name, role, sha256, createdAtMs}`), so neither the store nor a backup of it can be used to
 * call the API. A presented secret is hashed and compared in constant time.
 *
 * Checks read the store, so a revoked token is refused at once on every node; a node that cannot
 * reach the store checks against its watch-fed copy instead (src/store/prefix-cache.ts), so an
 * operator can still see why a degraded node is degraded.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { withDeadline } from '../cluster/session.js';
import { PxehaError } from '../errors.js';
import { PrefixCache } from '../store/prefix-cache.js';
import type { Store } from '../store/store.js';
import { isRole, type Role } from './roles.js';

export const TOKENS_PREFIX = '/pxeha/tokens/';
const TOKEN_PATTERN = /^pxeha_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;
const ID_PATTERN = /^[0-9a-f]{16}$/;
/** How long a token check waits for the store before it uses the node's copy. */
const STORE_CHECK_DEADLINE_MS = 1000;

export interface TokenRecord {
  name: string;
  role: Role;
  /** SHA-256 of the secret part, hex. */
  sha256: string;
  createdAtMs: number;
}

/** What `pxeha tokens ls` shows: never the hash. */
export interface TokenInfo {
  id: string;
  name: string;
  role: Role;
  createdAtMs: number;
}

export interface CreatedToken extends TokenInfo {
  /** The token text; shown once, stored nowhere. */
  token: string;
}

function sha256Hex(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

export function parseTokenRecord(value: string): TokenRecord | undefined {
  try {
    const r = JSON.parse(value) as Partial<TokenRecord>;
    if (typeof r.name !== 'string' || !isRole(r.role) || typeof r.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(r.sha256)) return undefined;
    return { name: r.name, role: r.role, sha256: r.sha256, createdAtMs: typeof r.createdAtMs === 'number' ? r.createdAtMs : 0 };
  } catch {
    return undefined;
  }
}

/** Splits a token into id and secret; undefined when it is not shaped like one. */
export function parseToken(text: string): { id: string; secret: string } | undefined {
  const m = TOKEN_PATTERN.exec(text.trim());
  return m ? { id: m[1]!, secret: m[2]! } : undefined;
}

/** Whether `secret` hashes to the record's hash (constant time). */
export function secretMatches(record: TokenRecord, secret: string): boolean {
  const want = Buffer.from(record.sha256, 'hex');
  const got = createHash('sha256').update(secret, 'utf8').digest();
  return want.length === got.length && timingSafeEqual(want, got);
}

export async function createToken(store: Store, input: { role: Role; name?: string }, nowMs = Date.now()): Promise<CreatedToken> {
  if (!isRole(input.role)) throw new PxehaError('PXE_ERR_CONFIG_INVALID', `role must be one of viewer, operator, admin (not ${String(input.role)})`);
  const id = randomBytes(8).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  const name = input.name ?? `${input.role}-${id.slice(0, 6)}`;
  const record: TokenRecord = { name, role: input.role, sha256: sha256Hex(secret), createdAtMs: nowMs };
  const key = `${TOKENS_PREFIX}${id}`;
  const r = await store.txn({
    compare: [{ key, target: 'version', op: '==', value: 0 }],
    success: [{ type: 'put', key, value: JSON.stringify(record) }],
  });
  if (!r.succeeded) throw new PxehaError('PXE_ERR_CONFLICT', `token id ${id} exists already; try again`);
  return { id, name, role: input.role, createdAtMs: nowMs, token: `pxeha_${id}_${secret}` };
}

export async function listTokens(store: Store): Promise<TokenInfo[]> {
  const { kvs } = await store.range(TOKENS_PREFIX, { prefix: true });
  return kvs.flatMap((kv) => {
    const r = parseTokenRecord(kv.value);
    return r ? [{ id: kv.key.slice(TOKENS_PREFIX.length), name: r.name, role: r.role, createdAtMs: r.createdAtMs }] : [];
  });
}

/** Deletes a token; true when it existed. Accepts the id or the whole token text. */
export async function revokeToken(store: Store, idOrToken: string): Promise<boolean> {
  const id = parseToken(idOrToken)?.id ?? idOrToken;
  if (!ID_PATTERN.test(id)) throw new PxehaError('PXE_ERR_CONFIG_INVALID', `${id} is not a token id (16 hex digits)`);
  const { deleted } = await store.delete(`${TOKENS_PREFIX}${id}`);
  return deleted > 0;
}

/** Who a valid credential belongs to. */
export interface TokenPrincipal {
  id: string;
  name: string;
  role: Role;
}

/** Checks tokens for a node's API (see the module comment for where it reads). */
export class TokenBook {
  private constructor(
    private readonly store: Store,
    private readonly copy: PrefixCache<TokenRecord>,
    private readonly offline: () => boolean,
  ) {}

  static async open(store: Store, options: { onError: (err: Error) => void; offline?: () => boolean }): Promise<TokenBook> {
    const copy = await PrefixCache.open(store, TOKENS_PREFIX, (v) => parseTokenRecord(v), options.onError);
    return new TokenBook(store, copy, options.offline ?? (() => false));
  }

  /** The record of token `id`: from the store, or from the node's copy when the store is away. */
  async record(id: string): Promise<TokenRecord | undefined> {
    if (!ID_PATTERN.test(id)) return undefined;
    if (this.offline()) return this.copy.get(id);
    try {
      const kv = await withDeadline(this.store.get(`${TOKENS_PREFIX}${id}`), STORE_CHECK_DEADLINE_MS, 'token check');
      return kv ? parseTokenRecord(kv.value) : undefined;
    } catch {
      return this.copy.get(id);
    }
  }

  /** The principal of a token text, or undefined for anything not a live token. */
  async verify(text: string): Promise<TokenPrincipal | undefined> {
    const parsed = parseToken(text);
    if (!parsed) return undefined;
    const record = await this.record(parsed.id);
    if (!record || !secretMatches(record, parsed.secret)) return undefined;
    return { id: parsed.id, name: record.name, role: record.role };
  }

  close(): Promise<void> {
    return this.copy.close();
  }
}
