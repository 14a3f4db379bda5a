/**
 * A token bucket in bytes, for a node's replication bandwidth (node config
 * `images.bandwidthBytesPerSecond`). `take(n)` is called before `n` bytes are fetched; it
 * returns at once while the bucket holds credit and otherwise waits until the rate has paid
 * for them. A take larger than the bucket (a 1 MiB chunk, a 256 KiB burst) is allowed to drive
 * the balance negative, and the caller waits out the debt: concurrent takers queue behind it,
 * so over any long run the bytes taken are rate × time + burst, whatever the chunk sizes.
 */
export interface ThrottleClock {
  now(): number;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const realThrottleClock: ThrottleClock = {
  now: () => performance.now(),
  sleep: (ms, signal) =>
    new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason as Error);
      const t = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      const onAbort = (): void => {
        clearTimeout(t);
        reject(signal!.reason as Error);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    }),
};

export class TokenBucket {
  readonly rate: number;
  readonly burst: number;
  #tokens: number;
  #lastMs: number;
  readonly #clock: ThrottleClock;

  /** `rate` bytes per second; `burst` bytes of credit at most (default one second's worth). */
  constructor(rate: number, options: { burst?: number; clock?: ThrottleClock } = {}) {
    if (!(rate > 0)) throw new RangeError(`rate must be positive, got ${rate}`);
    this.rate = rate;
    this.burst = options.burst ?? rate;
    this.#clock = options.clock ?? realThrottleClock;
    this.#tokens = this.burst;
    this.#lastMs = this.#clock.now();
  }

  #refill(): void {
    const now = this.#clock.now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#lastMs) * this.rate) / 1000);
    this.#lastMs = now;
  }

  async take(n: number, signal?: AbortSignal): Promise<void> {
    this.#refill();
    this.#tokens -= n;
    if (this.#tokens >= 0) return;
    await this.#clock.sleep((-this.#tokens / this.rate) * 1000, signal);
  }
}
