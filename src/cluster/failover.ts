/**
 * The failover window and the configuration warnings it implies. When a node dies, its
 * membership lease must lapse (memberTtlSeconds) and, if the store lost a member too, the
 * store must elect its own leader (storeElectionTimeoutMs) before the cluster is whole again.
 * A DHCP client in REBINDING (after T2, RFC 2131 §4.4.5: 0.875 of the lease by default)
 * broadcasts to any server until its lease ends; if that last eighth of the lease is shorter
 * than the failover window, a client that starts rebinding just as a node fails can lose its
 * address before another node answers. That is a warning, not an error: the configuration is
 * valid and the window is an estimate.
 */
import type { ClusterConfig } from '../config/schema.js';

export interface FailoverSettings {
  memberTtlSeconds: number;
  storeElectionTimeoutMs: number;
}

/** Defaults of the node configuration's `cluster` section, for callers without a node config. */
export const DEFAULT_FAILOVER: FailoverSettings = { memberTtlSeconds: 2, storeElectionTimeoutMs: 1000 };

export function failoverWindowMs(settings: FailoverSettings): number {
  return settings.memberTtlSeconds * 1000 + settings.storeElectionTimeoutMs;
}

/** Lease time from T2 (rebinding) to expiry, RFC 2131's default 1/8 of the lease. */
export function rebindingWindowMs(leaseSeconds: number): number {
  return (leaseSeconds * 1000) / 8;
}

/** One warning per full-mode subnet whose leases cannot outlive a failover. Pure. */
export function failoverWarnings(config: ClusterConfig, settings: FailoverSettings): string[] {
  const windowMs = failoverWindowMs(settings);
  return config.subnets.flatMap((s, i) => {
    if (s.mode !== 'full') return [];
    const rebindMs = rebindingWindowMs(s.leaseSeconds);
    if (rebindMs >= windowMs) return [];
    return [
      `/subnets/${i}/leaseSeconds: subnet ${s.name} leases of ${s.leaseSeconds}s leave ${Math.round(rebindMs)} ms between ` +
        `rebinding (T2) and expiry, shorter than the ${windowMs} ms failover window ` +
        `(memberTtlSeconds ${settings.memberTtlSeconds}s + store election ${settings.storeElectionTimeoutMs} ms)`,
    ];
  });
}
