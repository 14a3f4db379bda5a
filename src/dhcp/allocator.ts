/**
 * Candidate addresses for a new dynamic lease. Pure: the caller passes a lookup into its
 * local lease view. Each client starts its scan at a hash of its key, so concurrent
 * allocations (on one node or many) spread over the pool instead of all racing for the
 * lowest free address; the compare-and-set in the store settles the rare collision.
 */
import { intToIp } from '../util/ipv4.js';
import type { CompiledSubnet } from './subnets.js';

/** 32-bit FNV-1a: cheap, well spread, stable across nodes and versions. */
export function fnv1a32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * Yields pool addresses (dotted) that `isFree` accepts, starting at the client's hash
 * position and wrapping once around all pools. Reserved addresses are never yielded, nor
 * addresses (as 32-bit values) that `accept`, when given, refuses.
 */
export function* candidateAddresses(
  subnet: CompiledSubnet,
  clientKey: string,
  isFree: (ip: string) => boolean,
  accept?: (ipInt: number) => boolean,
): Generator<string> {
  if (subnet.poolSize === 0) return;
  const start = fnv1a32(clientKey) % subnet.poolSize;
  for (let i = 0; i < subnet.poolSize; i++) {
    const ipInt = addressAt(subnet, (start + i) % subnet.poolSize);
    if (subnet.reservedAddresses.has(ipInt)) continue;
    if (accept && !accept(ipInt)) continue;
    const ip = intToIp(ipInt);
    if (isFree(ip)) yield ip;
  }
}

/** The n-th address across the subnet's pools, in configuration order. */
function addressAt(subnet: CompiledSubnet, n: number): number {
  let rest = n;
  for (const p of subnet.pools) {
    const size = p.end - p.start + 1;
    if (rest < size) return p.start + rest;
    rest -= size;
  }
  throw new RangeError(`pool index ${n} out of range`);
}
