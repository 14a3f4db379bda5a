/**
 * What the web dashboard streams and counts, fed by store watches (one set per node):
 *
 * - cluster events: a member joins or leaves (node up / down, with the takeover of its DHCP
 *   buckets by the survivors), its weight or drain flag or applied configuration changes, the
 *   leader changes, an operator override or the placement record (rebalance) changes, and this
 *   node's own store connectivity (degraded);
 * - boot images: a version is published or removed, a channel moves (set, rollback, promote),
 *   a node comes to hold a version whole or stops holding it (its membership record's images);
 * - machine boot stages as they are recorded, and lease changes summarized once a second;
 * - per-minute counts of boot stages (the boot funnel): DHCP bindings from the lease watch,
 *   the other stages from machine-status writes.
 *
 * Memory is bounded: the last RECENT_EVENTS events are kept for clients that reconnect
 * (Last-Event-ID), FUNNEL_MINUTES minutes of counts, and each server-sent-events subscriber
 * may have at most MAX_SUBSCRIBER_BUFFER bytes waiting in its socket: a client that falls
 * further behind is dropped (it reconnects and resumes from what is kept), never buffered.
 */
import type { ServerResponse } from 'node:http';
import { MEMBERS_PREFIX, LEADER_ELECTION, leaderNameOf, parseMemberRecord, type MemberRecord } from '../cluster/member-record.js';
import { NODE_OVERRIDES_PREFIX, parseNodeOverride, type NodeOverride } from '../cluster/node-overrides.js';
import { PLACEMENT_KEY, parsePlacement } from '../cluster/placement.js';
import { bucketShares } from '../dhcp/designation.js';
import { LEASE_PREFIX, parseLeaseRecord } from '../dhcp/lease-record.js';
import { STATUS_PREFIX } from '../inventory/inventory.js';
import type { MachineStatus } from '../boot/render.js';
import { IMAGES_PREFIX, parseImageKey } from '../images/catalog.js';
import { DEFAULT_ELECTION_PREFIX, leader as currentLeader } from '../store/election.js';
import type { Store, WatchEvent, Watcher } from '../store/store.js';
import type { Logger } from '../obs/log.js';

export const RECENT_EVENTS = 500;
export const FUNNEL_MINUTES = 60;
export const MAX_SUBSCRIBER_BUFFER = 256 * 1024;
export const MAX_SUBSCRIBERS = 64;
export const FUNNEL_STAGES = ['dhcp', 'tftp', 'script', 'kernel', 'done'] as const;
export type FunnelStage = (typeof FUNNEL_STAGES)[number];

export type DashboardEventKind =
  | 'node-up'
  | 'node-down'
  | 'node-changed'
  | 'takeover'
  | 'leader'
  | 'override'
  | 'placement'
  | 'self'
  | 'machine-stage'
  | 'leases'
  | 'images';

export interface DashboardEvent {
  id: number;
  atMs: number;
  kind: DashboardEventKind;
  severity: 'info' | 'warn' | 'error';
  message: string;
  data?: Record<string, unknown>;
}

export interface FunnelMinute {
  minuteMs: number;
  counts: Record<FunnelStage, number>;
}

/** A member as the hub last saw it; `downSinceMs` once its record is gone. */
export interface KnownMember {
  record: MemberRecord;
  downSinceMs?: number;
}

interface Subscriber {
  res: ServerResponse;
  close(): void;
}

const zeroCounts = (): Record<FunnelStage, number> => ({ dhcp: 0, tftp: 0, script: 0, kernel: 0, done: 0 });

export class DashboardHub {
  readonly #store: Store;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #events: DashboardEvent[] = [];
  #nextId = 1;
  readonly #epoch = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  readonly #subscribers = new Set<Subscriber>();
  readonly #members = new Map<string, KnownMember>();
  readonly #overrides = new Map<string, NodeOverride>();
  readonly #leases = new Map<string, { state: string; clientKey: string }>();
  /** Image version id → image name; channel key → the version id it serves. */
  readonly #imageVersions = new Map<string, string>();
  readonly #imageChannels = new Map<string, string>();
  readonly #stages = new Map<string, { stage?: string; atMs?: number }>();
  readonly #funnel = new Map<number, Record<FunnelStage, number>>();
  #leaseSummary = new Map<string, Record<string, number>>();
  #leader: string | undefined;
  #placementAt = 0;
  #watchers: Watcher[] = [];
  #timers: NodeJS.Timeout[] = [];
  #closed = false;
  #selfState: string | undefined;
  readonly ready: Promise<void>;

  constructor(options: { store: Store; log: Logger; now: () => number; health?: () => { state: string; reason?: string } }) {
    this.#store = options.store;
    this.#log = options.log;
    this.#now = options.now;
    this.ready = this.#open().catch((err: unknown) => {
      this.#log.warn({ err: (err as Error).message }, 'dashboard watches not opened; retrying');
      this.#retry();
    });
    const tick = setInterval(() => {
      this.#flushLeaseSummary();
      const health = options.health?.();
      if (health && health.state !== this.#selfState) {
        if (this.#selfState !== undefined || health.state !== 'ok') {
          this.#emit('self', health.state === 'ok' ? 'info' : 'warn', health.state === 'ok' ? 'this node reaches the store again' : `this node is degraded: ${health.reason ?? 'store unreachable'}`, {
            state: health.state,
          });
        }
        this.#selfState = health.state;
      }
    }, 1000);
    tick.unref();
    this.#timers.push(tick);
  }

  /** Events kept, oldest first; those after `afterId` when given. */
  recent(afterId = 0): DashboardEvent[] {
    return this.#events.filter((e) => e.id > afterId);
  }

  members(): Map<string, KnownMember> {
    return this.#members;
  }

  overrides(): Record<string, NodeOverride> {
    return Object.fromEntries(this.#overrides);
  }

  leader(): string | undefined {
    return this.#leader;
  }

  /** Per-minute stage counts, oldest first, the last `minutes` minutes (empty minutes included). */
  funnel(minutes = FUNNEL_MINUTES): FunnelMinute[] {
    const nowMinute = Math.floor(this.#now() / 60_000) * 60_000;
    const out: FunnelMinute[] = [];
    for (let i = minutes - 1; i >= 0; i--) {
      const minuteMs = nowMinute - i * 60_000;
      out.push({ minuteMs, counts: { ...(this.#funnel.get(minuteMs) ?? zeroCounts()) } });
    }
    return out;
  }

  /**
   * Streams events to one HTTP response (already hijacked, headers written) until it closes.
   * Refused (false) when too many subscribers are connected.
   */
  subscribe(res: ServerResponse, lastEventId: number | undefined): boolean {
    if (this.#subscribers.size >= MAX_SUBSCRIBERS) return false;
    const heartbeat = setInterval(() => this.#write(sub, ': keep-alive\n\n'), 15_000);
    heartbeat.unref();
    const sub: Subscriber = {
      res,
      close: () => {
        clearInterval(heartbeat);
        this.#subscribers.delete(sub);
        if (!res.destroyed) res.end();
      },
    };
    this.#subscribers.add(sub);
    res.on('close', () => sub.close());
    // The epoch tells a client whose ids came from an earlier run of this node to start over.
    this.#write(sub, `retry: 2000\nevent: hello\ndata: ${JSON.stringify({ epoch: this.#epoch, lastId: this.#nextId - 1 })}\n\n`);
    const resumable = lastEventId !== undefined && lastEventId < this.#nextId;
    const replay = resumable ? this.recent(lastEventId) : this.recent().slice(-50);
    for (const e of replay) this.#write(sub, format(e));
    return true;
  }

  get subscriberCount(): number {
    return this.#subscribers.size;
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const t of this.#timers) clearTimeout(t);
    for (const s of [...this.#subscribers]) s.close();
    await Promise.all(this.#watchers.map((w) => w.cancel().catch(() => undefined)));
    this.#watchers = [];
  }

  // -------------------------------------------------------------------------------------------

  #write(sub: Subscriber, chunk: string): void {
    if (sub.res.destroyed || sub.res.writableEnded) return sub.close();
    // A slow reader: its socket buffer is full. Drop it rather than hold its backlog.
    if (sub.res.writableLength > MAX_SUBSCRIBER_BUFFER) {
      this.#log.info({ buffered: sub.res.writableLength }, 'dashboard event subscriber fell behind; dropped');
      sub.res.destroy();
      return sub.close();
    }
    sub.res.write(chunk);
  }

  #emit(kind: DashboardEventKind, severity: DashboardEvent['severity'], message: string, data?: Record<string, unknown>): void {
    const event: DashboardEvent = { id: this.#nextId++, atMs: this.#now(), kind, severity, message, ...(data ? { data } : {}) };
    this.#events.push(event);
    if (this.#events.length > RECENT_EVENTS) this.#events.splice(0, this.#events.length - RECENT_EVENTS);
    const text = format(event);
    for (const sub of [...this.#subscribers]) this.#write(sub, text);
  }

  #count(stage: FunnelStage, atMs: number): void {
    const minuteMs = Math.floor(atMs / 60_000) * 60_000;
    const oldest = Math.floor(this.#now() / 60_000) * 60_000 - (FUNNEL_MINUTES - 1) * 60_000;
    if (minuteMs < oldest) return;
    const counts = this.#funnel.get(minuteMs) ?? zeroCounts();
    counts[stage]++;
    this.#funnel.set(minuteMs, counts);
    for (const m of this.#funnel.keys()) if (m < oldest) this.#funnel.delete(m);
  }

  #retry(): void {
    if (this.#closed) return;
    const t = setTimeout(() => {
      void this.#open().catch(() => this.#retry());
    }, 2000);
    t.unref();
    this.#timers.push(t);
  }

  /** Snapshot of every followed prefix, then one watch each from the revision after it. */
  async #open(): Promise<void> {
    for (const w of this.#watchers) await w.cancel().catch(() => undefined);
    this.#watchers = [];
    const first = this.#members.size === 0 && this.#leases.size === 0;
    const follow = async (prefix: string, apply: (kvs: { key: string; value: string }[]) => void, onEvents: (events: WatchEvent[]) => void): Promise<void> => {
      const snapshot = await this.#store.range(prefix, { prefix: true });
      apply(snapshot.kvs);
      const watcher = await this.#store.watch(prefix, { prefix: true, startRevision: snapshot.revision + 1 });
      if (this.#closed) return void (await watcher.cancel());
      this.#watchers.push(watcher);
      watcher.on('events', (events) => {
        try {
          onEvents(events);
        } catch (err) {
          this.#log.warn({ err: (err as Error).message }, 'dashboard event not processed');
        }
      });
      watcher.on('error', (err) => {
        this.#log.warn({ err: err.message, prefix }, 'dashboard watch ended; reopening');
        this.#retry();
      });
    };
    await follow(
      MEMBERS_PREFIX,
      (kvs) => {
        const present = new Set<string>();
        for (const kv of kvs) {
          const r = parseMemberRecord(kv.value);
          if (!r) continue;
          present.add(r.name);
          const known = this.#members.get(r.name);
          if (known?.downSinceMs !== undefined && !first) this.#memberUp(r);
          this.#members.set(r.name, { record: r });
        }
        for (const [name, m] of this.#members) if (!present.has(name) && m.downSinceMs === undefined) this.#memberDown(name);
      },
      (events) => {
        for (const e of events) {
          const name = e.kv.key.slice(MEMBERS_PREFIX.length);
          if (e.type === 'delete') {
            this.#memberDown(name);
            continue;
          }
          const r = parseMemberRecord(e.kv.value);
          if (!r) continue;
          const known = this.#members.get(r.name);
          if (!known || known.downSinceMs !== undefined) this.#memberUp(r);
          else {
            this.#imagesHeldChanged(known.record, r);
            this.#memberChanged(known.record, r);
          }
          this.#members.set(r.name, { record: r });
        }
      },
    );
    await follow(
      NODE_OVERRIDES_PREFIX,
      (kvs) => {
        this.#overrides.clear();
        for (const kv of kvs) {
          const o = parseNodeOverride(kv.value);
          if (o) this.#overrides.set(kv.key.slice(NODE_OVERRIDES_PREFIX.length), o);
        }
      },
      (events) => {
        for (const e of events) {
          const name = e.kv.key.slice(NODE_OVERRIDES_PREFIX.length);
          const o = e.type === 'put' ? parseNodeOverride(e.kv.value) : undefined;
          if (o) this.#overrides.set(name, o);
          else this.#overrides.delete(name);
          const what = !o ? 'override removed' : o.drained ? 'drained' : o.weight !== undefined ? `weight set to ${o.weight}` : 'undrained';
          this.#emit('override', 'info', `${name}: ${what}${o?.by ? ` (${o.by})` : ''}`, { node: name, ...(o ? { override: o } : {}) });
        }
      },
    );
    await follow(
      PLACEMENT_KEY,
      (kvs) => {
        this.#placementAt = parsePlacement(kvs[0]?.value)?.atMs ?? 0;
      },
      (events) => {
        for (const e of events) {
          if (e.kv.key !== PLACEMENT_KEY) continue;
          const p = e.type === 'put' ? parsePlacement(e.kv.value) : undefined;
          if (p && p.atMs === this.#placementAt) continue;
          this.#placementAt = p?.atMs ?? 0;
          this.#emit('placement', 'info', p ? `placement: ${p.by}; placed ${p.members.join(', ') || 'nobody'}` : 'placement record removed', p ? { ...p } : undefined);
        }
      },
    );
    await follow(
      IMAGES_PREFIX,
      (kvs) => {
        this.#imageVersions.clear();
        this.#imageChannels.clear();
        for (const kv of kvs) {
          const k = parseImageKey(kv.key);
          if (k?.kind === 'version') this.#imageVersions.set(k.id, k.name);
          else if (k?.kind === 'channel') {
            const version = channelVersionOf(kv.value);
            if (version) this.#imageChannels.set(kv.key, version);
          }
        }
      },
      (events) => {
        for (const e of events) {
          const k = parseImageKey(e.kv.key);
          if (k?.kind === 'version') {
            if (e.type === 'delete') {
              if (!this.#imageVersions.delete(k.id)) continue;
              this.#emit('images', 'info', `${k.name}: version ${shortId(k.id)} removed`, { image: k.name, version: k.id, change: 'removed' });
            } else {
              if (this.#imageVersions.has(k.id)) continue;
              this.#imageVersions.set(k.id, k.name);
              this.#emit('images', 'info', `${k.name}: version ${shortId(k.id)} published`, { image: k.name, version: k.id, change: 'published' });
            }
          } else if (k?.kind === 'channel') {
            const previous = this.#imageChannels.get(e.kv.key);
            if (e.type === 'delete') {
              if (!this.#imageChannels.delete(e.kv.key)) continue;
              this.#emit('images', 'info', `${k.name}@${k.channel} removed`, { image: k.name, channel: k.channel, change: 'channel-removed' });
              continue;
            }
            const version = channelVersionOf(e.kv.value);
            if (!version || version === previous) continue;
            this.#imageChannels.set(e.kv.key, version);
            const rollback = channelChangeOf(e.kv.value) === 'rollback';
            this.#emit(
              'images',
              rollback ? 'warn' : 'info',
              `${k.name}@${k.channel} → ${shortId(version)}${previous ? ` (was ${shortId(previous)})` : ''}${rollback ? ', rolled back' : ''}`,
              { image: k.name, channel: k.channel, version, ...(previous ? { previous } : {}), change: rollback ? 'rollback' : 'set' },
            );
          }
        }
      },
    );
    const electionPrefix = `${DEFAULT_ELECTION_PREFIX}/${LEADER_ELECTION}/`;
    this.#leader = leaderNameOf((await currentLeader(this.#store, LEADER_ELECTION))?.value);
    await follow(electionPrefix, () => undefined, () => {
      void currentLeader(this.#store, LEADER_ELECTION).then(
        (kv) => {
          const name = leaderNameOf(kv?.value);
          if (name === this.#leader) return;
          const previous = this.#leader;
          this.#leader = name;
          this.#emit('leader', name ? 'info' : 'warn', name ? `${name} leads${previous ? ` (was ${previous})` : ''}` : `no leader (${previous ?? 'nobody'} resigned or went down)`, {
            ...(name ? { leader: name } : {}),
            ...(previous ? { previous } : {}),
          });
        },
        () => undefined,
      );
    });
    await follow(
      STATUS_PREFIX,
      (kvs) => {
        for (const kv of kvs) {
          const s = parseStatus(kv.value);
          if (!s) continue;
          const known = this.#stages.get(s.mac);
          if (first && s.lastStage && s.lastStageMs) this.#count(stageOf(s.lastStage), s.lastStageMs);
          else if (s.lastStage && s.lastStageMs && (known?.stage !== s.lastStage || known.atMs !== s.lastStageMs)) this.#count(stageOf(s.lastStage), s.lastStageMs);
          this.#stages.set(s.mac, { ...(s.lastStage ? { stage: s.lastStage } : {}), ...(s.lastStageMs ? { atMs: s.lastStageMs } : {}) });
        }
      },
      (events) => {
        for (const e of events) {
          if (e.type !== 'put') continue;
          const s = parseStatus(e.kv.value);
          if (!s?.lastStage) continue;
          const known = this.#stages.get(s.mac);
          if (known?.stage === s.lastStage && known.atMs === s.lastStageMs) continue;
          this.#stages.set(s.mac, { stage: s.lastStage, ...(s.lastStageMs ? { atMs: s.lastStageMs } : {}) });
          this.#count(stageOf(s.lastStage), s.lastStageMs ?? this.#now());
          this.#emit('machine-stage', 'info', `${s.mac} reached ${s.lastStage}${s.lastNode ? ` at ${s.lastNode}` : ''}`, {
            mac: s.mac,
            stage: s.lastStage,
            ...(s.lastNode ? { node: s.lastNode } : {}),
          });
        }
      },
    );
    await follow(
      LEASE_PREFIX,
      (kvs) => {
        for (const kv of kvs) {
          const l = parseLeaseRecord(kv.value);
          if (!l) continue;
          if (first && l.state === 'bound' && l.boundAtMs) this.#count('dhcp', l.boundAtMs);
          this.#leases.set(kv.key, { state: l.state, clientKey: l.clientKey });
        }
      },
      (events) => {
        for (const e of events) {
          const subnet = e.kv.key.slice(LEASE_PREFIX.length).split('/')[0] ?? '?';
          const summary = this.#leaseSummary.get(subnet) ?? {};
          const before = this.#leases.get(e.kv.key);
          if (e.type === 'delete') {
            this.#leases.delete(e.kv.key);
            summary.removed = (summary.removed ?? 0) + 1;
          } else {
            const l = parseLeaseRecord(e.kv.value);
            if (!l) continue;
            this.#leases.set(e.kv.key, { state: l.state, clientKey: l.clientKey });
            if (l.state === 'bound' && (before?.state !== 'bound' || before.clientKey !== l.clientKey)) this.#count('dhcp', this.#now());
            const label = l.state === 'bound' && before?.state === 'bound' && before.clientKey === l.clientKey ? 'renewed' : l.state;
            summary[label] = (summary[label] ?? 0) + 1;
          }
          this.#leaseSummary.set(subnet, summary);
        }
      },
    );
  }

  #memberUp(r: MemberRecord): void {
    const before = this.#shares();
    this.#members.set(r.name, { record: r });
    this.#emit('node-up', 'info', `${r.name} is up (${r.addresses.join(', ') || 'no address'}, weight ${r.weight ?? 100})`, {
      node: r.name,
      shares: Object.fromEntries(this.#shares()),
      sharesBefore: Object.fromEntries(before),
    });
  }

  #memberDown(name: string): void {
    const known = this.#members.get(name);
    if (!known || known.downSinceMs !== undefined) return;
    const before = this.#shares();
    known.downSinceMs = this.#now();
    const after = this.#shares();
    this.#emit('node-down', 'error', `${name} is down (its membership lease lapsed or it stopped)`, { node: name });
    const lost = before.get(name) ?? 0;
    if (lost > 0) {
      const gains = [...after].filter(([n]) => n !== name).map(([n, s]) => `${n} +${s - (before.get(n) ?? 0)}`);
      this.#emit('takeover', 'warn', `${name}'s ${lost} DHCP buckets taken over: ${gains.join(', ') || 'nobody left'}`, {
        node: name,
        buckets: lost,
        shares: Object.fromEntries(after),
      });
    }
  }

  #memberChanged(old: MemberRecord, r: MemberRecord): void {
    const changes: string[] = [];
    if ((old.weight ?? 100) !== (r.weight ?? 100)) changes.push(`weight ${old.weight ?? 100} → ${r.weight ?? 100}`);
    if (Boolean(old.drained) !== Boolean(r.drained)) changes.push(r.drained ? 'drained' : 'undrained');
    if (old.configRevision !== r.configRevision) changes.push(`applied configuration revision ${r.configRevision}`);
    if (old.version !== r.version) changes.push(`version ${r.version}`);
    if (changes.length === 0) return;
    const before = this.#shares();
    this.#members.set(r.name, { record: r });
    const rebalanced = changes.some((c) => c.startsWith('weight') || c.endsWith('drained'));
    this.#emit(rebalanced ? 'placement' : 'node-changed', 'info', `${r.name}: ${changes.join(', ')}`, {
      node: r.name,
      ...(rebalanced ? { shares: Object.fromEntries(this.#shares()), sharesBefore: Object.fromEntries(before) } : {}),
    });
  }

  /** A node came to hold image versions whole, or stopped holding them. */
  #imagesHeldChanged(old: MemberRecord, r: MemberRecord): void {
    const before = new Set(old.images ?? []);
    const after = new Set(r.images ?? []);
    const label = (id: string): string => `${this.#imageVersions.get(id) ?? 'image'} ${shortId(id)}`;
    const gained = [...after].filter((id) => !before.has(id));
    const lost = [...before].filter((id) => !after.has(id));
    if (gained.length === 0 && lost.length === 0) return;
    const parts = [...(gained.length ? [`holds ${gained.map(label).join(', ')}`] : []), ...(lost.length ? [`no longer holds ${lost.map(label).join(', ')}`] : [])];
    this.#emit('images', 'info', `${r.name} ${parts.join('; ')}`, { node: r.name, gained, lost });
  }

  #shares(): Map<string, number> {
    const up = [...this.#members.values()].filter((m) => m.downSinceMs === undefined).map((m) => ({ name: m.record.name, weight: m.record.weight ?? 100 }));
    return bucketShares(up);
  }

  #flushLeaseSummary(): void {
    if (this.#leaseSummary.size === 0) return;
    const summary = this.#leaseSummary;
    this.#leaseSummary = new Map();
    const parts = [...summary].map(([subnet, counts]) => `${subnet}: ${Object.entries(counts).map(([k, n]) => `${n} ${k}`).join(', ')}`);
    this.#emit('leases', 'info', `leases changed — ${parts.join('; ')}`, { subnets: Object.fromEntries(summary) });
  }
}

function format(e: DashboardEvent): string {
  return `id: ${e.id}\nevent: ${e.kind}\ndata: ${JSON.stringify(e)}\n\n`;
}

function parseStatus(value: string): MachineStatus | undefined {
  try {
    const s = JSON.parse(value) as MachineStatus;
    return typeof s.mac === 'string' ? s : undefined;
  } catch {
    return undefined;
  }
}

function shortId(id: string): string {
  return id.slice(0, 12);
}

function channelVersionOf(value: string): string | undefined {
  try {
    const r = JSON.parse(value) as { version?: unknown };
    return typeof r.version === 'string' ? r.version : undefined;
  } catch {
    return undefined;
  }
}

function channelChangeOf(value: string): string | undefined {
  try {
    const r = JSON.parse(value) as { change?: unknown };
    return typeof r.change === 'string' ? r.change : undefined;
  } catch {
    return undefined;
  }
}

function stageOf(stage: string): FunnelStage {
  return (FUNNEL_STAGES as readonly string[]).includes(stage) ? (stage as FunnelStage) : 'script';
}
