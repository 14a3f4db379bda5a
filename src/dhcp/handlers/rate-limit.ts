import { DropReason, type Handler } from '../chain.js';

interface Bucket {
  tokens: number;
  lastMs: number;
}

/**
 * A token bucket per MAC: a client stuck in a DISCOVER loop (or a flood forging one MAC)
 * costs at most `perSecond` decisions a second, and every other client is still served.
 */
export function rateLimitHandler(perSecond: () => number, maxTracked = 100_000): Handler {
  const buckets = new Map<string, Bucket>();
  return (ctx, draft) => {
    const rate = perSecond();
    const now = ctx.nowMs;
    let b = buckets.get(ctx.request.mac);
    if (!b) {
      if (buckets.size >= maxTracked) forgetIdle(buckets, now, rate);
      b = { tokens: rate, lastMs: now };
      buckets.set(ctx.request.mac, b);
    }
    b.tokens = Math.min(rate, b.tokens + ((now - b.lastMs) / 1000) * rate);
    b.lastMs = now;
    if (b.tokens < 1) return { kind: 'drop', reason: DropReason.RATE_LIMITED };
    b.tokens -= 1;
    return { kind: 'continue', draft };
  };
}

/** Drops buckets that have refilled completely: they carry no information. */
function forgetIdle(buckets: Map<string, Bucket>, nowMs: number, rate: number): void {
  for (const [mac, b] of buckets) {
    if (b.tokens + ((nowMs - b.lastMs) / 1000) * rate >= rate) buckets.delete(mac);
  }
  if (buckets.size > 0 && buckets.size >= 100_000) buckets.clear();
}
