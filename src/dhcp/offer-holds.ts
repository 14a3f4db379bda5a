/**
 * Offers this node has made and not yet seen REQUESTed, held in memory only (as Kea does):
 * an OFFER writes nothing to the store. While a hold lasts, the address is not offered to
 * another client of this node and a REQUEST for it from another client is refused; the
 * REQUEST's compare-and-set bind in the store is what guarantees that no address is bound
 * twice, across nodes too (docs/design.md, "Offers are held in memory").
 */

interface Hold {
  ip: string;
  clientKey: string;
  untilMs: number;
}

export class OfferHolds {
  /** `subnet/ip` → hold, in the order the holds were made (or renewed): oldest first. */
  readonly #byAddress = new Map<string, Hold>();
  /** `subnet/clientKey` → the address held for that client. */
  readonly #byClient = new Map<string, string>();

  get size(): number {
    return this.#byAddress.size;
  }

  /** The client a live hold keeps `ip` for, if any. */
  holder(subnet: string, ip: string, nowMs: number): string | undefined {
    const h = this.#byAddress.get(`${subnet}/${ip}`);
    return h && h.untilMs > nowMs ? h.clientKey : undefined;
  }

  /** The address a live hold keeps for `clientKey`, if any. */
  heldFor(subnet: string, clientKey: string, nowMs: number): string | undefined {
    const ip = this.#byClient.get(`${subnet}/${clientKey}`);
    return ip !== undefined && this.holder(subnet, ip, nowMs) === clientKey ? ip : undefined;
  }

  /** Holds `ip` for `clientKey` until `untilMs`, replacing the client's earlier hold. */
  hold(subnet: string, ip: string, clientKey: string, untilMs: number, nowMs: number): void {
    this.#expire(nowMs);
    this.release(subnet, clientKey);
    const key = `${subnet}/${ip}`;
    const previous = this.#byAddress.get(key);
    if (previous) this.#byClient.delete(`${subnet}/${previous.clientKey}`);
    this.#byAddress.delete(key); // re-inserted at the end: the map stays ordered by expiry
    this.#byAddress.set(key, { ip, clientKey, untilMs });
    this.#byClient.set(`${subnet}/${clientKey}`, ip);
  }

  /** Ends the client's hold (it was bound, or it went elsewhere). */
  release(subnet: string, clientKey: string): void {
    const clientSlot = `${subnet}/${clientKey}`;
    const ip = this.#byClient.get(clientSlot);
    if (ip === undefined) return;
    this.#byClient.delete(clientSlot);
    const key = `${subnet}/${ip}`;
    if (this.#byAddress.get(key)?.clientKey === clientKey) this.#byAddress.delete(key);
  }

  /** Drops ended holds from the oldest on (every hold lasts the same offerHoldSeconds). */
  #expire(nowMs: number): void {
    for (const [key, h] of this.#byAddress) {
      if (h.untilMs > nowMs) break;
      this.#byAddress.delete(key);
      const subnet = key.slice(0, key.length - h.ip.length - 1);
      const clientSlot = `${subnet}/${h.clientKey}`;
      if (this.#byClient.get(clientSlot) === h.ip) this.#byClient.delete(clientSlot);
    }
  }
}
