/**
 * What the DHCP engine needs to know about the cluster, as an interface the engine reads on
 * every packet (memory only): the healthy members with their weights and addresses, the
 * addresses of members seen earlier, and whether this node is cut off from the store. node.ts
 * builds it from Membership; tests build it from a table.
 */
import { DEFAULT_WEIGHT, type Candidate } from './designation.js';

export interface MemberInfo extends Candidate {
  addresses: readonly string[];
  /** Estimated offset of the member's clock from ours (estimateOffsetMs: never above the truth). */
  clockOffsetMs?: number;
}

export interface ClusterView {
  /** This node's name. */
  readonly self: string;
  /** Healthy members (store lease alive) that take a share of the clients, this node included while it is registered and placed. */
  members(): readonly MemberInfo[];
  /**
   * The member an address belongs to: `healthy` when it is a member now, false when it was one
   * earlier in this process's life (its lease lapsed); undefined for an address never seen.
   */
  memberByAddress(ip: string): { name: string; healthy: boolean } | undefined;
  /** The store is unreachable: allocate nothing new, answer what is safe from the last view. */
  degraded(): boolean;
  /** Last estimated clock offset of a member (current or former), if any was measured. */
  clockOffsetMs(node: string): number | undefined;
}

/** Follows a membership source; recomputes its indexes only when the member list changes. */
export class MembershipClusterView implements ClusterView {
  #members: MemberInfo[] = [];
  readonly #byAddress = new Map<string, { name: string; healthy: boolean }>();
  readonly #offsets = new Map<string, number>();

  constructor(
    readonly self: string,
    private readonly isDegraded: () => boolean,
  ) {}

  /**
   * Call with the full member list whenever it changes; `placed` (src/cluster/placement.ts)
   * narrows who takes a share of the clients, while every healthy member's address stays ours.
   */
  update(members: readonly MemberInfo[], placed?: ReadonlySet<string>): void {
    const sorted = [...members].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    this.#members = placed ? sorted.filter((m) => placed.has(m.name)) : sorted;
    for (const entry of this.#byAddress.values()) entry.healthy = false;
    for (const m of sorted) {
      for (const a of m.addresses) this.#byAddress.set(a, { name: m.name, healthy: true });
      if (m.clockOffsetMs !== undefined) this.#offsets.set(m.name, m.clockOffsetMs);
    }
  }

  clockOffsetMs(node: string): number | undefined {
    return node === this.self ? 0 : this.#offsets.get(node);
  }

  members(): readonly MemberInfo[] {
    return this.#members;
  }

  memberByAddress(ip: string): { name: string; healthy: boolean } | undefined {
    const e = this.#byAddress.get(ip);
    return e ? { ...e } : undefined;
  }

  degraded(): boolean {
    return this.isDegraded();
  }
}

/** A fixed view for tests and tools. */
export function staticClusterView(
  self: string,
  members: readonly (Omit<MemberInfo, 'weight'> & { weight?: number })[],
  options: { degraded?: () => boolean; formerMembers?: readonly MemberInfo[] } = {},
): MembershipClusterView {
  const view = new MembershipClusterView(self, options.degraded ?? (() => false));
  if (options.formerMembers) view.update(options.formerMembers);
  view.update(members.map((m) => ({ ...m, weight: m.weight ?? DEFAULT_WEIGHT })));
  return view;
}
