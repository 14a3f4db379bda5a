/**
 * Address lifecycle of full-mode subnets (RFC 2131 §4.3): OFFER with a short hold, REQUEST in
 * SELECTING / INIT-REBOOT / RENEWING / REBINDING, DECLINE, RELEASE and INFORM. Reservations
 * come from configuration; dynamic addresses are committed with a compare-and-set in the
 * store, so an ACK is only sent for a binding that is durable and belongs to this client.
 * An OFFER writes nothing: its hold lives in this node's memory (offer-holds.ts), and the
 * address comes from this node's share of the pool, so that nodes offering at the same time
 * do not offer the same address (docs/design.md, "Offers are held in memory").
 */
import type { DhcpPolicy } from '../../config/schema.js';
import { MessageType } from '../../protocol/dhcp4/types.js';
import { ipToInt, networkContains } from '../../util/ipv4.js';
import { candidateAddresses } from '../allocator.js';
import { DropReason, type Handler, type Outcome, type ReplyDraft, type RequestContext } from '../chain.js';
import type { DegradedRenewals } from '../degraded-queue.js';
import type { LeaseBook } from '../lease-book.js';
import { OfferHolds } from '../offer-holds.js';
import { isAvailableTo, isBoundTo, type LeaseRecord, type LeaseState } from '../lease-record.js';
import { inPool, type CompiledSubnet } from '../subnets.js';

export interface AddressHandlerDeps {
  leases: LeaseBook;
  policy: () => DhcpPolicy;
  /**
   * True when this node should offer the address (a 32-bit IPv4 value) before others: its
   * share of the pool among the healthy members. Absent: every address is this node's.
   */
  prefersAddress?: (ip: number) => boolean;
  /** This node's offers, held in memory (one per engine by default). */
  holds?: OfferHolds;
  /** True while the store is unreachable: nothing new is allocated (degraded mode). */
  degraded?: () => boolean;
  /** Renewals ACKed while degraded, written with a compare-and-set when the store returns. */
  degradedRenewals?: DegradedRenewals;
  /**
   * Estimated clock offset of another node (its clock minus ours, never more than the truth):
   * a record's expiry is in its writer's clock, so it is compared with our time translated
   * into that clock, and clock skew between nodes does not make records look expired early.
   */
  clockOffsetMs?: (node: string) => number | undefined;
}

/**
 * TEST ONLY (test/faults, "the suite catches a broken allocator"): a deliberately broken
 * allocator that offers and commits addresses bound to other clients. Honoured only when both
 * variables are set; with them unset (always, outside that test) nothing below changes.
 */
const BROKEN_REUSE_BOUND = process.env['PXEHA_TEST_HOOKS'] === '1' && process.env['PXEHA_TEST_BROKEN_ALLOCATOR'] === 'reuse-bound';

interface Ctx extends RequestContext {
  subnet: CompiledSubnet;
}

export function addressHandler(deps: AddressHandlerDeps): Handler {
  /** Addresses this node is committing right now, and for which client. */
  const inFlight = new Map<string, string>();
  const holds = deps.holds ?? new OfferHolds();

  const leaseSecondsFor = (ctx: Ctx): number => {
    const max = ctx.subnet.config.leaseSeconds;
    const asked = ctx.request.requestedLeaseSeconds;
    return asked !== undefined && asked >= 60 && asked < max ? asked : max;
  };

  const granted = (ctx: Ctx, draft: ReplyDraft, messageType: MessageType, ip: string, leaseSeconds = leaseSecondsFor(ctx)): Outcome => {
    return {
      kind: 'continue',
      draft: {
        ...draft,
        messageType,
        yiaddr: ip,
        leaseSeconds,
        renewalSeconds: Math.floor(leaseSeconds * 0.5),
        rebindingSeconds: Math.floor(leaseSeconds * 0.875),
        includeSubnetOptions: true,
        hostname: ctx.reservation?.hostname,
      },
    };
  };

  /** Our time in the clock of the node that wrote `rec` (expiry times are in the writer's clock). */
  const nowIn = (ctx: Ctx, rec: LeaseRecord | undefined): number =>
    rec !== undefined && rec.node !== ctx.node ? ctx.nowMs + (deps.clockOffsetMs?.(rec.node) ?? 0) : ctx.nowMs;
  const availableTo = (ctx: Ctx, rec: LeaseRecord | undefined, clientKey: string): boolean => isAvailableTo(rec, clientKey, nowIn(ctx, rec));
  const boundTo = (ctx: Ctx, rec: LeaseRecord | undefined, clientKey: string): boolean => isBoundTo(rec, clientKey, nowIn(ctx, rec));

  const nak = (draft: ReplyDraft, message: string): Outcome => ({
    kind: 'reply',
    draft: { ...draft, messageType: MessageType.NAK, yiaddr: '0.0.0.0', message },
  });

  const record = (ctx: Ctx, ip: string, state: LeaseState, expiresAtMs: number, boundAtMs?: number): LeaseRecord => {
    const r: LeaseRecord = {
      ip,
      subnet: ctx.subnet.name,
      state,
      clientKey: ctx.request.clientKey,
      mac: ctx.request.mac,
      expiresAtMs,
      node: ctx.node,
    };
    const hostname = ctx.reservation?.hostname ?? ctx.request.hostname;
    if (hostname !== undefined) r.hostname = hostname;
    if (boundAtMs !== undefined) r.boundAtMs = boundAtMs;
    return r;
  };

  /**
   * Commits the binding `next` for `ip` unless another client holds it: in the store, or by an
   * offer this node holds (or a commit it has out) for another client while the store shows no
   * binding of this client. The store wins over this node's memory and view, which can trail it
   * by a watch delivery (a hold made before the binding was seen is stale), so a NAK ('taken')
   * is only answered after the store itself was read. Retries lost races on the same key.
   */
  const commit = async (ctx: Ctx, ip: string, next: LeaseRecord): Promise<'ok' | 'taken' | 'busy' | 'contended'> => {
    const { subnet, request: r } = ctx;
    const key = `${subnet.name}/${ip}`;
    const committing = inFlight.get(key);
    // The same client's retransmission while its commit is out: that commit answers it (a NAK
    // here would send the client back to DISCOVER although its binding is being written).
    if (committing === r.clientKey) return 'busy';
    const holder = holds.holder(subnet.name, ip, ctx.nowMs);
    const otherHolder = holder !== undefined && holder !== r.clientKey ? holder : undefined;
    if (committing !== undefined || otherHolder !== undefined) {
      const boundHere = boundTo(ctx, deps.leases.get(subnet.name, ip)?.record, r.clientKey);
      if (!boundHere && !boundTo(ctx, (await deps.leases.reread(subnet.name, ip))?.record, r.clientKey)) return 'taken';
      // Bound to this client: the other client's commit is bound to lose; wait for it.
      if (committing !== undefined || inFlight.has(key)) return 'busy';
    }
    inFlight.set(key, r.clientKey);
    try {
      for (let i = 0; i < 3; i++) {
        let current = deps.leases.get(subnet.name, ip);
        if (current && !BROKEN_REUSE_BOUND && !availableTo(ctx, current.record, r.clientKey)) {
          current = await deps.leases.reread(subnet.name, ip);
          if (current && !availableTo(ctx, current.record, r.clientKey)) return 'taken';
        }
        const result = await deps.leases.write(next, current?.modRevision ?? 0);
        if (result.ok) {
          holds.release(subnet.name, r.clientKey);
          if (otherHolder !== undefined) holds.release(subnet.name, otherHolder);
          return 'ok';
        }
      }
      // Three lost races, and the last read still shows the address free for this client:
      // nothing says it is another's, so no NAK; the client's retransmission tries again.
      const current = deps.leases.get(subnet.name, ip);
      return current && !availableTo(ctx, current.record, r.clientKey) ? 'taken' : 'contended';
    } finally {
      inFlight.delete(key);
    }
  };

  const unavailable = (detail: string): Outcome => ({ kind: 'drop', reason: DropReason.STORE_UNAVAILABLE, detail });

  /**
   * Degraded mode: answers only from the last view and writes nothing now. A reservation is
   * configuration; a binding the view knows is ACKed for the time it has left (never beyond
   * what the store holds, so no other node can see the address free while the client uses it)
   * and queued to be recorded when the store returns. Everything else waits for the store.
   */
  const degradedAnswer = (ctx: Ctx, draft: ReplyDraft, messageType: MessageType, ip: string): Outcome => {
    const { request: r, subnet } = ctx;
    if (ctx.reservation) {
      if (ip !== ctx.reservation.address) return unavailable(`degraded: ${ip} is not this client's reservation`);
      const current = deps.leases.get(subnet.name, ip);
      if (current && !availableTo(ctx, current.record, r.clientKey)) return unavailable(`degraded: reserved ${ip} still leased to another client`);
      return granted(ctx, draft, messageType, ip);
    }
    const known = deps.leases.get(subnet.name, ip);
    if (!known || !boundTo(ctx, known.record, r.clientKey) || !inPool(subnet, ipToInt(ip))) {
      return unavailable(`degraded: no known binding of ${ip} to this client`);
    }
    const remaining = Math.floor((known.record.expiresAtMs - nowIn(ctx, known.record)) / 1000);
    if (remaining < 1) return unavailable(`degraded: binding of ${ip} ends now`);
    const leaseSeconds = Math.min(leaseSecondsFor(ctx), remaining);
    if (messageType === MessageType.ACK) {
      deps.degradedRenewals?.add({ record: { ...known.record, node: ctx.node }, expectedModRevision: known.modRevision });
    }
    return granted(ctx, draft, messageType, ip, leaseSeconds);
  };

  const offerDegraded = (ctx: Ctx, draft: ReplyDraft): Outcome => {
    const { request: r, subnet } = ctx;
    if (ctx.reservation) return degradedAnswer(ctx, draft, MessageType.OFFER, ctx.reservation.address);
    const own = deps.leases.forClient(subnet.name, r.clientKey).find((e) => boundTo(ctx, e.record, r.clientKey));
    if (!own) return unavailable('degraded: a new client needs a new binding');
    return degradedAnswer(ctx, draft, MessageType.OFFER, own.record.ip);
  };

  const offer = async (ctx: Ctx, draft: ReplyDraft): Promise<Outcome> => {
    if (deps.degraded?.()) return offerDegraded(ctx, draft);
    const { request: r, subnet, nowMs } = ctx;
    if (ctx.reservation) {
      const current = deps.leases.get(subnet.name, ctx.reservation.address);
      // A dynamic lease granted before the reservation existed keeps the address until it ends.
      if (current && !availableTo(ctx, current.record, r.clientKey)) {
        return { kind: 'drop', reason: DropReason.NO_LEASE, detail: `reserved ${ctx.reservation.address} still leased to ${current.record.clientKey}` };
      }
      return granted(ctx, draft, MessageType.OFFER, ctx.reservation.address);
    }
    const usable = (ip: string): boolean => {
      const n = ipToInt(ip);
      if (!inPool(subnet, n) || subnet.reservedAddresses.has(n)) return false;
      if (BROKEN_REUSE_BOUND) return true;
      const holder = holds.holder(subnet.name, ip, nowMs);
      if (holder !== undefined && holder !== r.clientKey) return false;
      return availableTo(ctx, deps.leases.get(subnet.name, ip)?.record, r.clientKey);
    };
    // A client keeps its address: its valid binding first, then any earlier record of its own.
    const own = deps.leases
      .forClient(subnet.name, r.clientKey)
      .filter((e) => e.record.state !== 'declined')
      .sort((a, b) => Number(boundTo(ctx, b.record, r.clientKey)) - Number(boundTo(ctx, a.record, r.clientKey)));
    for (const e of own) {
      if (boundTo(ctx, e.record, r.clientKey) && inPool(subnet, ipToInt(e.record.ip))) {
        return granted(ctx, draft, MessageType.OFFER, e.record.ip);
      }
    }
    // Nothing is written: the hold is this node's memory (a retransmitted DISCOVER gets the same
    // address again), and the REQUEST's compare-and-set settles any race with another node.
    const offerHeld = (ip: string): Outcome => {
      holds.hold(subnet.name, ip, r.clientKey, nowMs + deps.policy().offerHoldSeconds * 1000, nowMs);
      return granted(ctx, draft, MessageType.OFFER, ip);
    };
    const held = holds.heldFor(subnet.name, r.clientKey, nowMs);
    if (held !== undefined && usable(held)) return offerHeld(held);
    const preferred = [...own.map((e) => e.record.ip), ...(r.requestedIp !== undefined ? [r.requestedIp] : [])];
    for (const ip of preferred) if (usable(ip)) return offerHeld(ip);
    // This node's share of the pool first; any free address once that share is used up.
    const prefers = deps.prefersAddress;
    if (prefers) {
      for (const ip of candidateAddresses(subnet, r.clientKey, usable, prefers)) return offerHeld(ip);
    }
    for (const ip of candidateAddresses(subnet, r.clientKey, usable)) return offerHeld(ip);
    return { kind: 'drop', reason: DropReason.POOL_EXHAUSTED, detail: `subnet ${subnet.name}` };
  };

  /** REQUEST: the address the client asks to use, by client state (RFC 2131 §4.3.2). */
  const request = async (ctx: Ctx, draft: ReplyDraft): Promise<Outcome> => {
    const r = ctx.request;
    let ip: string;
    // Option 54 with ciaddr and no option 50 is a renewal from a client that keeps option 54
    // (RFC 2131 says it must not): it renews ciaddr, whichever member it names.
    if (r.serverId !== undefined && (r.ciaddr === '0.0.0.0' || r.requestedIp !== undefined)) {
      if (r.requestedIp === undefined) return { kind: 'drop', reason: DropReason.MISSING_REQUESTED_IP };
      ip = r.requestedIp; // SELECTING
    } else if (r.ciaddr === '0.0.0.0') {
      if (r.requestedIp === undefined) return { kind: 'drop', reason: DropReason.MISSING_REQUESTED_IP };
      ip = r.requestedIp; // INIT-REBOOT
    } else {
      ip = r.ciaddr; // RENEWING (unicast) or REBINDING (broadcast)
    }
    const n = ipToInt(ip);
    if (!networkContains(ctx.subnet.network, n)) return nak(draft, `${ip} is not on network ${ctx.subnet.config.subnet}`);
    if (ctx.reservation) {
      if (ip !== ctx.reservation.address) return nak(draft, `this client is reserved ${ctx.reservation.address}`);
    } else {
      if (ctx.subnet.reservedAddresses.has(n)) return nak(draft, `${ip} is reserved for another client`);
      if (!inPool(ctx.subnet, n)) return nak(draft, `${ip} is not in a pool of ${ctx.subnet.name}`);
    }
    if (deps.degraded?.()) return degradedAnswer(ctx, draft, MessageType.ACK, ip);
    const leaseMs = leaseSecondsFor(ctx) * 1000;
    const result = await commit(ctx, ip, record(ctx, ip, 'bound', ctx.nowMs + leaseMs, ctx.nowMs));
    if (result === 'busy') return { kind: 'drop', reason: DropReason.IN_PROGRESS, detail: `${ip} is being committed for this client` };
    if (result === 'contended') return { kind: 'drop', reason: DropReason.IN_PROGRESS, detail: `${ip}: three compare-and-set races lost in a row` };
    if (result === 'taken') return nak(draft, `${ip} is leased to another client`);
    return granted(ctx, draft, MessageType.ACK, ip);
  };

  const decline = async (ctx: Ctx): Promise<Outcome> => {
    const ip = ctx.request.requestedIp;
    if (ip === undefined) return { kind: 'drop', reason: DropReason.MISSING_REQUESTED_IP };
    const current = deps.leases.get(ctx.subnet.name, ip);
    // Only the address's holder can decline it; anyone else could empty the pool.
    if (!current || current.record.clientKey !== ctx.request.clientKey) {
      return { kind: 'done', note: `decline of ${ip} by a client that does not hold it` };
    }
    const until = ctx.nowMs + deps.policy().declineQuarantineSeconds * 1000;
    await deps.leases.write(record(ctx, ip, 'declined', until), current.modRevision);
    return { kind: 'done', note: `${ip} declined, quarantined` };
  };

  const release = async (ctx: Ctx): Promise<Outcome> => {
    const ip = ctx.request.ciaddr;
    const current = deps.leases.get(ctx.subnet.name, ip);
    if (!current || !boundTo(ctx, current.record, ctx.request.clientKey)) {
      return { kind: 'done', note: `release of ${ip} by a client that does not hold it` };
    }
    await deps.leases.write(record(ctx, ip, 'released', ctx.nowMs), current.modRevision);
    return { kind: 'done', note: `${ip} released` };
  };

  return async (context, draft) => {
    const ctx = context as Ctx;
    switch (ctx.request.messageType) {
      case MessageType.DISCOVER:
        return offer(ctx, draft);
      case MessageType.REQUEST:
        return request(ctx, draft);
      case MessageType.DECLINE:
        return decline(ctx);
      case MessageType.RELEASE:
        return release(ctx);
      case MessageType.INFORM:
        // RFC 2131 §4.3.5: configuration only, no address and no lease time.
        return { kind: 'continue', draft: { ...draft, messageType: MessageType.ACK, includeSubnetOptions: true } };
      default:
        return { kind: 'drop', reason: DropReason.UNSUPPORTED_MESSAGE };
    }
  };
}
