/**
 * Browser sessions for the dashboard: after `POST /api/v1/session` with a token, the browser
 * holds a cookie `pxeha_session=<id>.<expiresAtMs>.<mac>` where mac is HMAC-SHA256 of the first
 * two parts under the cluster's session secret. The cookie names the token, never its secret;
 * each request checks the MAC, the expiry and that the token still exists, so revoking the
 * token ends its sessions too. (EventSource cannot send an Authorization header; a cookie it
 * sends by itself.) The cookie is HttpOnly, SameSite=Strict, and Secure on the HTTPS listener.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export const SESSION_COOKIE = 'pxeha_session';
export const SESSION_TTL_MS = 12 * 3600 * 1000;

function mac(key: Buffer, payload: string): string {
  return createHmac('sha256', key).update(`pxeha-session:${payload}`, 'utf8').digest('base64url');
}

export function signSession(key: Buffer, tokenId: string, expiresAtMs: number): string {
  const payload = `${tokenId}.${expiresAtMs}`;
  return `${payload}.${mac(key, payload)}`;
}

/** The token id of a session cookie value that is genuine and unexpired. */
export function readSession(key: Buffer, value: string, nowMs: number): { tokenId: string; expiresAtMs: number } | undefined {
  const m = /^([0-9a-f]{16})\.(\d{1,15})\.([A-Za-z0-9_-]{43})$/.exec(value);
  if (!m) return undefined;
  const payload = `${m[1]}.${m[2]}`;
  const want = Buffer.from(mac(key, payload), 'utf8');
  const got = Buffer.from(m[3]!, 'utf8');
  if (want.length !== got.length || !timingSafeEqual(want, got)) return undefined;
  const expiresAtMs = Number(m[2]);
  return expiresAtMs > nowMs ? { tokenId: m[1]!, expiresAtMs } : undefined;
}

/** One cookie's value from a Cookie header. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}
