/**
 * The lease record kept in the store, one key per address, and the pure rules that say who
 * may use an address. Every change to a record is one store revision, so the store's
 * history is the full, ordered lease history that invariant checks read.
 */

export const LEASE_PREFIX = '/pxeha/leases/';

export type LeaseState =
  /** Held for a client between OFFER and REQUEST. */
  | 'offered'
  /** Committed to a client until expiresAtMs. */
  | 'bound'
  /** Given back by the client (RELEASE). */
  | 'released'
  /** Reported in use by someone else (DECLINE); kept out of the pool until expiresAtMs. */
  | 'declined';

export interface LeaseRecord {
  ip: string;
  subnet: string;
  state: LeaseState;
  /** Who holds it: client identifier (hex) if the client sent one, else its MAC. */
  clientKey: string;
  mac: string;
  hostname?: string;
  /** Wall-clock end of the hold, binding or quarantine, in Unix ms. */
  expiresAtMs: number;
  /** Wall-clock start of the current binding, in Unix ms. */
  boundAtMs?: number;
  /** Node that wrote this version of the record. */
  node: string;
}

export function leaseKey(subnet: string, ip: string): string {
  return `${LEASE_PREFIX}${subnet}/${ip}`;
}

/**
 * The identity a lease is bound to: the client identifier (option 61) when the client sends
 * one, else the hardware address (RFC 2131 §4.2). A client identifier that is only the
 * Ethernet address (type 1 + chaddr) names the same interface as the MAC, so it maps to the
 * MAC's key: a PXE ROM that sends no option 61 and the iPXE it loads, which does, then hold one
 * lease between them instead of two.
 */
export function clientKeyOf(mac: string, clientIdHex: string | undefined): string {
  if (clientIdHex === undefined || clientIdHex.toLowerCase() === `01${mac.replaceAll(':', '').toLowerCase()}`) return `mac:${mac}`;
  return `id:${clientIdHex}`;
}

/** True while the record keeps the address from anyone but its holder. */
export function isHeld(record: LeaseRecord, nowMs: number): boolean {
  if (record.state === 'released') return false;
  return record.expiresAtMs > nowMs;
}

/** May `clientKey` be given this address? */
export function isAvailableTo(record: LeaseRecord | undefined, clientKey: string, nowMs: number): boolean {
  if (record === undefined) return true;
  if (record.state === 'declined') return !isHeld(record, nowMs);
  return record.clientKey === clientKey || !isHeld(record, nowMs);
}

/** Is this a valid binding of the address to `clientKey`? */
export function isBoundTo(record: LeaseRecord | undefined, clientKey: string, nowMs: number): boolean {
  return record !== undefined && record.state === 'bound' && record.clientKey === clientKey && record.expiresAtMs > nowMs;
}

export function parseLeaseRecord(value: string): LeaseRecord | undefined {
  try {
    const r = JSON.parse(value) as LeaseRecord;
    return typeof r.ip === 'string' && typeof r.clientKey === 'string' ? r : undefined;
  } catch {
    return undefined;
  }
}
