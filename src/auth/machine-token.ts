/**
 * Per-machine callback tokens. Boot paths carry no credentials (firmware has none), but the URL
 * a machine is told to call back on (`/boot/done?mac=…&token=…`, in its script and files) holds
 * HMAC-SHA256(cluster callback secret, mac): only that MAC's token changes that MAC's state, so
 * a machine (or an installer log that leaked its URL) cannot report another machine installed.
 * Every node derives the same token from the one secret in the store, so a callback can land on
 * any node. What it does not stop: someone who can fetch a script while claiming a MAC gets
 * that MAC's URL, as boot paths are open by design (docs/design.md, "Access control").
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

/** The token of one machine (`mac` normalised: lower case, colons). */
export function machineToken(key: Buffer, mac: string): string {
  return createHmac('sha256', key).update(`pxeha-callback:${mac}`, 'utf8').digest('base64url');
}

/** Whether `token` is `mac`'s token, compared in constant time. */
export function machineTokenMatches(key: Buffer, mac: string, token: string): boolean {
  const want = Buffer.from(machineToken(key, mac), 'utf8');
  const got = Buffer.from(token, 'utf8');
  return want.length === got.length && timingSafeEqual(want, got);
}
