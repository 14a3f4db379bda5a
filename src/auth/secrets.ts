/**
 * Cluster-wide secrets in the store (`/pxeha/secrets/<name>`): 32 random bytes, created once by
 * whichever node (or CLI) first finds none, with a create-only transaction (compare version == 0),
 * so two nodes starting together still agree on one value. They are part of a backup, so a
 * restored cluster keeps accepting the callback URLs and sessions it handed out.
 */
import { randomBytes } from 'node:crypto';
import { PxehaError } from '../errors.js';
import type { Store } from '../store/store.js';

export const SECRETS_PREFIX = '/pxeha/secrets/';

interface SecretRecord {
  key: string;
  createdAtMs: number;
}

function parseSecret(value: string, name: string): Buffer {
  try {
    const r = JSON.parse(value) as SecretRecord;
    const key = Buffer.from(r.key, 'base64url');
    if (key.length >= 32) return key;
  } catch {
    // reported below
  }
  throw new PxehaError('PXE_ERR_INTERNAL', `store key ${SECRETS_PREFIX}${name} does not hold a valid secret`);
}

/** The secret `name`, created if the store has none yet. */
export async function ensureSecret(store: Store, name: string, nowMs = Date.now()): Promise<Buffer> {
  const key = `${SECRETS_PREFIX}${name}`;
  const fresh: SecretRecord = { key: randomBytes(32).toString('base64url'), createdAtMs: nowMs };
  const r = await store.txn({
    compare: [{ key, target: 'version', op: '==', value: 0 }],
    success: [{ type: 'put', key, value: JSON.stringify(fresh) }],
    failure: [{ type: 'range', key }],
  });
  if (r.succeeded) return Buffer.from(fresh.key, 'base64url');
  const existing = r.responses[0];
  const kv = existing?.type === 'range' ? existing.result.kvs[0] : undefined;
  if (!kv) throw new PxehaError('PXE_ERR_CONFLICT', `store key ${key} changed while it was read; try again`);
  return parseSecret(kv.value, name);
}

/**
 * A secret read once and kept: `current()` is memoised; `reload()` reads the store again, for
 * when a check fails with the kept value (a restore may have replaced the secret).
 */
export class SecretKey {
  #value: Promise<Buffer> | undefined;

  constructor(
    private readonly store: Store,
    readonly name: string,
  ) {}

  current(): Promise<Buffer> {
    if (!this.#value) {
      const p = ensureSecret(this.store, this.name);
      this.#value = p;
      p.catch(() => {
        if (this.#value === p) this.#value = undefined;
      });
    }
    return this.#value;
  }

  async reload(): Promise<Buffer> {
    this.#value = undefined;
    return this.current();
  }
}
