/**
 * A node's access control state: its token book and the cluster secrets behind machine
 * callback tokens and dashboard sessions. Built once per node and shared by its listeners.
 */
import type { Store } from '../store/store.js';
import { machineToken, machineTokenMatches } from './machine-token.js';
import { nodeToken, nodeTokenName } from './node-token.js';
import { SecretKey } from './secrets.js';
import { readSession, signSession, SESSION_TTL_MS } from './session.js';
import { TokenBook, type TokenPrincipal } from './tokens.js';

export class Auth {
  private constructor(
    readonly tokens: TokenBook,
    private readonly callbackKey: SecretKey,
    private readonly sessionKey: SecretKey,
    private readonly nodeKey: SecretKey,
  ) {}

  /** Reads (or creates) the cluster secrets and opens the token book. */
  static async open(store: Store, options: { onError: (err: Error) => void; offline?: () => boolean }): Promise<Auth> {
    const callbackKey = new SecretKey(store, 'callback');
    const sessionKey = new SecretKey(store, 'session');
    const nodeKey = new SecretKey(store, 'node');
    await Promise.all([callbackKey.current(), sessionKey.current(), nodeKey.current()]);
    const tokens = await TokenBook.open(store, options);
    return new Auth(tokens, callbackKey, sessionKey, nodeKey);
  }

  /** The callback token of machine `mac` (normalised). */
  async machineToken(mac: string): Promise<string> {
    return machineToken(await this.callbackKey.current(), mac);
  }

  /** Whether `token` is `mac`'s; a mismatch re-reads the secret once (a restore may have changed it). */
  async machineTokenOk(mac: string, token: string): Promise<boolean> {
    if (machineTokenMatches(await this.callbackKey.current(), mac, token)) return true;
    return machineTokenMatches(await this.callbackKey.reload().catch(() => Buffer.alloc(0)), mac, token);
  }

  /** The node-to-node bearer of node `name` (src/auth/node-token.ts). */
  async nodeToken(name: string): Promise<string> {
    return nodeToken(await this.nodeKey.current(), name);
  }

  /** The node a node-to-node bearer names, or undefined; a mismatch re-reads the secret once. */
  async verifyNodeToken(token: string): Promise<string | undefined> {
    const name = nodeTokenName(await this.nodeKey.current(), token);
    if (name !== undefined) return name;
    const reloaded = await this.nodeKey.reload().catch(() => undefined);
    return reloaded ? nodeTokenName(reloaded, token) : undefined;
  }

  async newSession(tokenId: string, nowMs: number): Promise<{ value: string; expiresAtMs: number }> {
    const expiresAtMs = nowMs + SESSION_TTL_MS;
    return { value: signSession(await this.sessionKey.current(), tokenId, expiresAtMs), expiresAtMs };
  }

  /** The principal of a session cookie whose token still exists. */
  async verifySession(value: string, nowMs: number): Promise<TokenPrincipal | undefined> {
    let session = readSession(await this.sessionKey.current(), value, nowMs);
    if (!session) {
      const reloaded = await this.sessionKey.reload().catch(() => undefined);
      session = reloaded ? readSession(reloaded, value, nowMs) : undefined;
    }
    if (!session) return undefined;
    const record = await this.tokens.record(session.tokenId);
    return record ? { id: session.tokenId, name: record.name, role: record.role } : undefined;
  }

  close(): Promise<void> {
    return this.tokens.close();
  }
}
