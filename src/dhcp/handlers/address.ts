/**
 * Address lifecycle of full-mode subnets (RFC 2131 §4.3): OFFER with a short hold, REQUEST in
 * SELECTING / INIT-REBOOT / RENEWING / REBINDING, DECLINE, RELEASE and INFORM. Reservations
 * come from configuration; dynamic addresses are committed with a compare-and-set in the
 * store, so an ACK is only sent for a binding that is durable and belongs to this client.
 */
import type { DhcpPolicy } from '../../config/schema.js';
import { MessageType } from '../../protocol/dhcp4/types.js';
import { ipToInt, networkContains } from '../../util/ipv4.js';
import { candidateAddresses } from '../allocator.js';
import { DropReason, type Handler, type Outcome, type ReplyDraft, type RequestContext } from '../chain.js';
import type { LeaseBook } from '../lease-book.js';
import { isAvailableTo, isBoundTo, type LeaseRecord, type LeaseState } from '../lease-record.js';
import { inPool, type CompiledSubnet } from '../subnets.js';

export interface AddressHandlerDeps {
  leases: LeaseBook;
  policy: () => DhcpPolicy;
  /** How many addresses one request may try to commit before giving up. */
  maxAttempts?: number;
}

interface Ctx extends RequestContext {
  subnet: CompiledSubnet;
}

export function addressHandler(deps: AddressHandlerDeps): Handler {
  const maxAttempts = deps.maxAttempts ?? 16;
  /** Addresses this node is committing right now: concurrent requests try others instead. */
  const inFlight = new Set<string>();

  const leaseSecondsFor = (ctx: Ctx): number => {
    const max = ctx.subnet.config.leaseSeconds;
    const asked = ctx.request.requestedLeaseSeconds;
    return asked !== undefined && asked >= 60 && asked < max ? asked : max;
  };

  const granted = (ctx: Ctx, draft: ReplyDraft, messageType: MessageType, ip: string): Outcome => {
    const leaseSeconds = leaseSecondsFor(ctx);
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

  /** Commits `next` for `ip` unless someone else holds it; retries lost races on the same key. */
  const commit = async (ctx: Ctx, ip: string, next: LeaseRecord): Promise<'ok' | 'taken'> => {
    const key = `${ctx.subnet.name}/${ip}`;
    if (inFlight.has(key)) return 'taken';
    inFlight.add(key);
    try {
      for (let i = 0; i < 3; i++) {
        const current = deps.leases.get(ctx.subnet.name, ip);
        if (current && !isAvailableTo(current.record, ctx.request.clientKey, ctx.nowMs)) return 'taken';
        const result = await deps.leases.write(next, current?.modRevision ?? 0);
        if (result.ok) return 'ok';
      }
      return 'taken';
    } finally {
      inFlight.delete(key);
    }
  };

  const offer = async (ctx: Ctx, draft: ReplyDraft): Promise<Outcome> => {
    const { request: r, subnet, nowMs } = ctx;
    if (ctx.reservation) {
      const current = deps.leases.get(subnet.name, ctx.reservation.address);
      // A dynamic lease granted before the reservation existed keeps the address until it ends.
      if (current && !isAvailableTo(current.record, r.clientKey, nowMs)) {
        return { kind: 'drop', reason: DropReason.NO_LEASE, detail: `reserved ${ctx.reservation.address} still leased to ${current.record.clientKey}` };
      }
      return granted(ctx, draft, MessageType.OFFER, ctx.reservation.address);
    }
    const usable = (ip: string): boolean => {
      const n = ipToInt(ip);
      if (!inPool(subnet, n) || subnet.reservedAddresses.has(n)) return false;
      return isAvailableTo(deps.leases.get(subnet.name, ip)?.record, r.clientKey, nowMs);
    };
    // A client keeps its address: its valid binding first, then any earlier record of its own.
    const own = deps.leases
      .forClient(subnet.name, r.clientKey)
      .filter((e) => e.record.state !== 'declined')
      .sort((a, b) => Number(isBoundTo(b.record, r.clientKey, nowMs)) - Number(isBoundTo(a.record, r.clientKey, nowMs)));
    for (const e of own) {
      if (isBoundTo(e.record, r.clientKey, nowMs) && inPool(subnet, ipToInt(e.record.ip))) {
        return granted(ctx, draft, MessageType.OFFER, e.record.ip);
      }
    }
    const preferred = [...own.map((e) => e.record.ip), ...(r.requestedIp !== undefined ? [r.requestedIp] : [])];
    const holdUntil = nowMs + deps.policy().offerHoldSeconds * 1000;
    let attempts = 0;
    const tryIp = async (ip: string): Promise<Outcome | undefined> => {
      attempts++;
      const result = await commit(ctx, ip, record(ctx, ip, 'offered', holdUntil));
      return result === 'ok' ? granted(ctx, draft, MessageType.OFFER, ip) : undefined;
    };
    for (const ip of preferred) {
      if (!usable(ip)) continue;
      const done = await tryIp(ip);
      if (done) return done;
    }
    for (const ip of candidateAddresses(subnet, r.clientKey, usable)) {
      if (attempts >= maxAttempts) break;
      const done = await tryIp(ip);
      if (done) return done;
    }
    return { kind: 'drop', reason: DropReason.POOL_EXHAUSTED, detail: `subnet ${subnet.name}` };
  };

  /** REQUEST: the address the client asks to use, by client state (RFC 2131 §4.3.2). */
  const request = async (ctx: Ctx, draft: ReplyDraft): Promise<Outcome> => {
    const r = ctx.request;
    let ip: string;
    if (r.serverId !== undefined) {
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
    const leaseMs = leaseSecondsFor(ctx) * 1000;
    const result = await commit(ctx, ip, record(ctx, ip, 'bound', ctx.nowMs + leaseMs, ctx.nowMs));
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
    if (!current || !isBoundTo(current.record, ctx.request.clientKey, ctx.nowMs)) {
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
