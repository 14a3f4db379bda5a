/** Tokens, cluster secrets, machine callback tokens and session cookies, on an embedded store. */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openStore } from '../store/open.js';
import type { Store } from '../store/store.js';
import { machineToken, machineTokenMatches } from './machine-token.js';
import { requiredRole, roleAllows } from './roles.js';
import { ensureSecret, SECRETS_PREFIX } from './secrets.js';
import { cookieValue, readSession, signSession } from './session.js';
import { createToken, listTokens, parseToken, revokeToken, TokenBook, TOKENS_PREFIX } from './tokens.js';

describe('auth', () => {
  let dir: string;
  let store: Store;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pxeha-auth-'));
    store = await openStore({ kind: 'embedded', path: join(dir, 'store.db') });
  });
  after(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('orders roles: admin ⊇ operator ⊇ viewer; undeclared API routes fail closed', () => {
    assert.equal(roleAllows('admin', 'operator'), true);
    assert.equal(roleAllows('operator', 'admin'), false);
    assert.equal(roleAllows('viewer', 'viewer'), true);
    assert.equal(roleAllows('viewer', 'public'), true);
    assert.equal(requiredRole('GET', undefined), 'viewer');
    assert.equal(requiredRole('HEAD', undefined), 'viewer');
    assert.equal(requiredRole('DELETE', undefined), 'admin');
    assert.equal(requiredRole('POST', 'operator'), 'operator');
  });

  it('creates a token shown once, stored as a SHA-256 only; lists and revokes it', async () => {
    const t = await createToken(store, { role: 'operator', name: 'ci' }, 1000);
    assert.match(t.token, /^pxeha_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    assert.deepEqual(parseToken(t.token), { id: t.id, secret: t.token.slice(-43) });
    const kv = await store.get(`${TOKENS_PREFIX}${t.id}`);
    const record = JSON.parse(kv!.value) as Record<string, unknown>;
    assert.deepEqual(Object.keys(record).sort(), ['createdAtMs', 'name', 'role', 'sha256']);
    assert.ok(!kv!.value.includes(t.token.slice(-43)), 'the secret is not stored');
    assert.deepEqual(await listTokens(store), [{ id: t.id, name: 'ci', role: 'operator', createdAtMs: 1000 }]);
    const book = await TokenBook.open(store, { onError: (err) => assert.fail(err) });
    try {
      assert.deepEqual(await book.verify(t.token), { id: t.id, name: 'ci', role: 'operator' });
      assert.equal(await book.verify(`${t.token.slice(0, -1)}${t.token.endsWith('A') ? 'B' : 'A'}`), undefined);
      assert.equal(await book.verify('pxeha_0000000000000000_' + 'A'.repeat(43)), undefined);
      assert.equal(await revokeToken(store, t.token), true, 'revoke by the token text works too');
      assert.equal(await book.verify(t.token), undefined);
      assert.equal(await revokeToken(store, t.id), false);
      await assert.rejects(revokeToken(store, 'nope'), /not a token id/);
    } finally {
      await book.close();
    }
  });

  it('checks against its watch-fed copy while the store is away', async () => {
    let offline = false;
    const book = await TokenBook.open(store, { onError: (err) => assert.fail(err), offline: () => offline });
    try {
      const t = await createToken(store, { role: 'viewer' });
      const deadline = Date.now() + 2000;
      offline = true;
      while ((await book.verify(t.token)) === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      assert.equal((await book.verify(t.token))?.role, 'viewer');
    } finally {
      await book.close();
    }
  });

  it('creates a cluster secret once, whoever asks first (create-only transaction)', async () => {
    const all = await Promise.all(Array.from({ length: 8 }, () => ensureSecret(store, 'race')));
    assert.equal(all[0]!.length, 32);
    for (const k of all) assert.ok(k.equals(all[0]!));
    const { kvs } = await store.range(`${SECRETS_PREFIX}race`);
    assert.equal(kvs[0]!.version, 1, 'written once');
    assert.ok((await ensureSecret(store, 'race')).equals(all[0]!));
  });

  it("derives a machine's callback token from the secret and its MAC only", () => {
    const key = Buffer.alloc(32, 1);
    const a = machineToken(key, '52:54:00:00:00:0a');
    assert.match(a, /^[A-Za-z0-9_-]{43}$/);
    assert.notEqual(a, machineToken(key, '52:54:00:00:00:0b'));
    assert.notEqual(a, machineToken(Buffer.alloc(32, 2), '52:54:00:00:00:0a'));
    assert.equal(machineTokenMatches(key, '52:54:00:00:00:0a', a), true);
    assert.equal(machineTokenMatches(key, '52:54:00:00:00:0b', a), false);
    assert.equal(machineTokenMatches(key, '52:54:00:00:00:0a', a.slice(1)), false);
  });

  it('signs session cookies that expire and cannot be altered', () => {
    const key = Buffer.alloc(32, 3);
    const v = signSession(key, '0123456789abcdef', 5000);
    assert.deepEqual(readSession(key, v, 4999), { tokenId: '0123456789abcdef', expiresAtMs: 5000 });
    assert.equal(readSession(key, v, 5000), undefined, 'expired');
    assert.equal(readSession(Buffer.alloc(32, 4), v, 0), undefined, 'another secret');
    assert.equal(readSession(key, v.replace('5000', '9000'), 0), undefined, 'expiry changed');
    assert.equal(readSession(key, v.replace('0123', '1123'), 0), undefined, 'token id changed');
    assert.equal(cookieValue('a=1; pxeha_session=xyz; b=2', 'pxeha_session'), 'xyz');
    assert.equal(cookieValue(undefined, 'pxeha_session'), undefined);
  });
});
