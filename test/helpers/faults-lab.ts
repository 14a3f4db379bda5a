/**
 * The fault suite's lab (test/faults/, issue 8): the HA lab of test/helpers/ha-lab.ts (3 pxeha
 * nodes on a 3-member etcd, one bridge, all in namespaces of a Sandbox) plus clients of three
 * kinds, each keeping its own record of what it was told, so the suite can check invariants over
 * the store (etcd's whole lease history) AND over the clients' records:
 *
 *   c0 10.99.0.50 (+ .51)  perfdhcp load through a relay fan-out to every node (bounded runs)
 *   c1 10.99.0.60          renewing clients: one Node process acting as a relay agent for K
 *                          simulated clients that DISCOVER, REQUEST and then renew every
 *                          renewMs; every ACK, NAK and wait is printed as a JSON line
 *   c2 10.99.0.70          fetch clients: HTTP (curl) and TFTP (tftp-hpa) downloads of lab
 *                          artifacts from each node in turn, SHA-256 of each download recorded
 *   c3 (DHCP)              udhcpc, for the broken-allocator proof
 *   bridge namespace       QEMU BIOS machines on taps (SeaBIOS reboot-timeout: boot retry)
 *
 * Everything is bounded in count and time, every process is the sandbox's (killed by PID).
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MachineStatus } from '../../src/boot/render.js';
import { bucketOfMac, DEFAULT_WEIGHT, rankFor } from '../../src/dhcp/designation.js';
import type { LeaseRecord } from '../../src/dhcp/lease-record.js';
import { prepareUefiVars, qemuArgs, readConsole, writeSerconPort } from '../../src/lab/qemu.js';
import { ENABLE_IPV6_NO_DAD_SH, routerAdvertiserArgv } from '../../src/lab/router-advertiser.js';
import { defaultHaCluster, HaLab, serverIp } from './ha-lab.js';
import { REPO_ROOT, type Netns, type NetnsProcess, type Sandbox } from './netns.js';

export const FORM: 'short' | 'long' = process.env['PXEHA_FAULTS'] === 'long' ? 'long' : 'short';
export const LOAD_ADDRESS = '10.99.0.50';
export const FANOUT_ADDRESS = '10.99.0.51';
export const RENEW_ADDRESS = '10.99.0.60';
export const FETCH_ADDRESS = '10.99.0.70';
export const NODE_NAMES = ['node1', 'node2', 'node3'];
export const LIBFAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';

/** The files the lab places on every node; fetch clients and machines check them by SHA-256. */
export interface PlacedArtifacts {
  files: Record<string, Buffer>;
  sha256: Record<string, string>;
}

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * The machines' "kernel": an iPXE script that reports the boot complete to whichever node
 * answers (the same file for every machine; its per-machine callback file carries the token).
 */
function stage2Script(): string {
  const done = NODE_NAMES.map((_, i) => `chain http://${serverIp(i)}:8080/machines/\${net0/mac}/files/done.ipxe`).join(' || ');
  return ['#!ipxe', 'echo pxeha-faults: stage2 running', done, 'echo pxeha-faults: booted', 'exit', ''].join('\n');
}

export function placedArtifacts(initrdMiB: number): PlacedArtifacts {
  const files: Record<string, Buffer> = {
    'faults/stage2.ipxe': Buffer.from(stage2Script()),
    'faults/initrd.bin': randomBytes(initrdMiB * 1024 * 1024),
    'faults/blob.bin': randomBytes(256 * 1024),
    // The real iPXE, so a machine whose ROM is told to chain it over TFTP boots through it
    // (BIOS), and the one OVMF's own PXE client loads (UEFI).
    'undionly.kpxe': readFileSync('/usr/lib/ipxe/undionly.kpxe'),
    'snponly.efi': readFileSync('/usr/lib/ipxe/snponly.efi'),
  };
  return { files, sha256: Object.fromEntries(Object.entries(files).map(([k, v]) => [k, sha256(v)])) };
}

export interface PublishedImageFile {
  /** The file's pinned path on every node (HTTP under /, TFTP as is). */
  path: string;
  /** SHA-256 of the bytes published. */
  sha256: string;
}

const PXEHA = path.join(REPO_ROOT, 'bin', 'pxeha.js');

/**
 * Publishes a 3 MiB image `faults` (one file, a few chunks) on node1 with `pxeha images push`
 * and waits until every node holds the version whole: its file is then served by each node
 * from its own chunk store.
 */
export async function publishFaultsImage(ha: HaLab): Promise<PublishedImageFile> {
  const n1 = ha.nodes[0]!;
  const draft = path.join(n1.workDir, 'faults-image');
  mkdirSync(draft, { recursive: true });
  const bytes = randomBytes(3 * 1024 * 1024 + 4099);
  writeFileSync(path.join(draft, 'disk.img'), bytes);
  const r = await n1.ns.exec([process.execPath, PXEHA, 'images', 'push', draft, '--name', 'faults', '--channel', 'stable', '-o', 'json', '--config', n1.nodeFile], {
    timeoutMs: 60_000,
    allowFailure: true,
  });
  if (r.code !== 0) throw new Error(`pxeha images push failed:\n${r.stdout}${r.stderr}`);
  const id = (JSON.parse(r.stdout) as { id: string }).id;
  const deadline = Date.now() + 60_000;
  for (;;) {
    const status = await n1.api<{ versions: Array<{ id: string; holders: Record<string, { state: string }> }> }>('/api/v1/images').catch(() => undefined);
    const holders = Object.values(status?.versions.find((v) => v.id === id)?.holders ?? {});
    if (holders.length === NODE_NAMES.length && holders.every((h) => h.state === 'held')) break;
    if (Date.now() > deadline) throw new Error(`image faults@${id} not held by every node within 60 s: ${JSON.stringify(status)}`);
    await sleep(200);
  }
  return { path: `images/faults/${id}/disk.img`, sha256: sha256(bytes) };
}

/** A MAC (52:54:00:99:<hi>:<lo>, from `base`) whose bucket `owner` owns among the three nodes, `runnerUp` next. */
export function macRankedFor(owner: string, runnerUp: string | undefined, base: number, nth = 0, names: readonly string[] = NODE_NAMES): string {
  const members = names.map((name) => ({ name, weight: DEFAULT_WEIGHT }));
  for (let i = 0; i < 4096; i++) {
    const n = base + i;
    const mac = `52:54:00:99:${(n >> 8).toString(16).padStart(2, '0')}:${(n & 0xff).toString(16).padStart(2, '0')}`;
    const ranked = rankFor(bucketOfMac(mac), members).map((m) => m.name);
    if (ranked[0] === owner && (runnerUp === undefined || ranked[1] === runnerUp) && nth-- === 0) return mac;
  }
  throw new Error(`no MAC found for ${owner}`);
}

/** The cluster document: the HA lab's pool, a kernel profile whose initrd takes seconds to fetch, a TFTP-chaining reservation. */
export function faultsCluster(tftpMachines: readonly { mac: string; address: string }[]): Record<string, unknown> {
  const base = defaultHaCluster() as { subnets: Array<Record<string, unknown>> };
  return {
    ...base,
    subnets: base.subnets.map((s) => ({
      ...s,
      reservations: tftpMachines.map((m) => ({ mac: m.mac, address: m.address, boot: { ipxeChainFile: 'undionly.kpxe' } })),
    })),
    boot: {
      files: { bios: 'undionly.kpxe', efiX64: 'snponly.efi' },
      ipxeScriptUrl: 'http://{node}:{httpPort}/boot.ipxe?mac=${net0/mac}&uuid=${uuid}&arch=${buildarch}',
      defaultProfile: 'faults-kernel',
    },
    profiles: [
      {
        name: 'faults-kernel',
        boot: { kind: 'kernel', kernel: 'faults/stage2.ipxe', initrds: ['faults/initrd.bin'] },
        files: { 'done.ipxe': '#!ipxe\nchain {{callbackUrl}}\n' },
      },
    ],
  };
}

// ---------------------------------------------------------------------------------------------
// Renewing clients (their own records of ACKs and NAKs)

/** One line of a renewing client's record. */
export interface ClientEvent {
  ev: 'ack' | 'nak' | 'expired';
  mac: string;
  /** The address ACKed or NAKed (the one asked for). */
  ip: string;
  server: string;
  /** Probe's wall clock (host clock: the probe is not under faketime). */
  t: number;
  /** ACK: lease seconds granted; 'select' (first binding) or 'renew'. */
  lease?: number;
  kind?: 'select' | 'renew';
  /** ACK: ms from the first unanswered attempt of this exchange to the ACK. */
  waitMs?: number;
  /** NAK: until when the client's last ACK said its lease was valid (0: none). */
  validUntil?: number;
}

/**
 * The clients, as a relay agent at giaddr (so every reply comes back to port 67 of its own
 * address, whatever the client's address, and no address has to be configured per client):
 * each message goes to every node, as a relay with one helper address per node delivers a
 * broadcast. A client in BOUND renews (REQUEST, ciaddr = its address, no option 54/50: RFC 2131
 * REBINDING as relayed) every renewMs, retransmitting every attemptMs until ACK or NAK; a NAK
 * or the end of its lease sends it back to INIT. NAKs for any of the client's last exchanges
 * are recorded (a second node NAKing a renewal another node ACKed counts).
 */
const RENEWER_SOURCE = (targets: readonly string[], giaddr: string, renewMs: number, attemptMs: number) => `
import dgram from 'node:dgram';
import readline from 'node:readline';
const targets = ${JSON.stringify(targets)};
const giaddr = ${JSON.stringify(giaddr)};
const sock = dgram.createSocket({ type: 'udp4' });
await new Promise((r) => sock.bind(67, giaddr, r));
const clients = new Map();
let running = true;
const out = (o) => console.log(JSON.stringify(o));
const ipOf = (b, o) => b[o] + '.' + b[o + 1] + '.' + b[o + 2] + '.' + b[o + 3];
const ipBytes = (s) => Buffer.from(s.split('.').map(Number));
function packet(c, type, ciaddr, extra) {
  const b = Buffer.alloc(300);
  b[0] = 1; b[1] = 1; b[2] = 6; b[3] = 1; b.writeUInt32BE(c.xid, 4);
  b.writeUInt16BE(Math.min(65535, Math.floor((Date.now() - c.since) / 1000)), 8);
  if (ciaddr) ipBytes(ciaddr).copy(b, 12);
  ipBytes(giaddr).copy(b, 24);
  Buffer.from(c.mac.replace(/:/g, ''), 'hex').copy(b, 28);
  b.writeUInt32BE(0x63825363, 236);
  let o = 240;
  const opt = (code, v) => { b[o++] = code; b[o++] = v.length; v.copy(b, o); o += v.length; };
  opt(53, Buffer.from([type]));
  opt(61, Buffer.concat([Buffer.from([1]), Buffer.from(c.mac.replace(/:/g, ''), 'hex')]));
  for (const [code, v] of extra) opt(code, v);
  b[o] = 255;
  return b;
}
function send(c) {
  if (!running) return;
  c.xid = (Math.random() * 0xffffffff) >>> 0;
  c.xids.push(c.xid); if (c.xids.length > 20) c.xids.shift();
  let p;
  if (c.state === 'init') p = packet(c, 1, undefined, []);
  else if (c.state === 'selecting') p = packet(c, 3, undefined, [[50, ipBytes(c.offer.ip)], [54, ipBytes(c.offer.server)]]);
  else p = packet(c, 3, c.ip, []);
  for (const t of targets) sock.send(p, 67, t, () => undefined);
  c.sentAt = Date.now();
}
function toInit(c) { c.state = 'init'; c.ip = undefined; c.validUntil = 0; c.since = Date.now(); c.pendingSince = Date.now(); send(c); }
sock.on('message', (msg) => {
  if (msg.length < 240 || msg[0] !== 2) return;
  const mac = [...msg.subarray(28, 34)].map((x) => x.toString(16).padStart(2, '0')).join(':');
  const c = clients.get(mac);
  if (!c) return;
  const xid = msg.readUInt32BE(4);
  let type, server, lease;
  for (let o = 240; o < msg.length && msg[o] !== 255; ) {
    if (msg[o] === 0) { o++; continue; }
    const code = msg[o], len = msg[o + 1], v = msg.subarray(o + 2, o + 2 + len);
    if (code === 53) type = v[0];
    if (code === 54) server = ipOf(v, 0);
    if (code === 51) lease = v.readUInt32BE(0);
    o += 2 + len;
  }
  const now = Date.now();
  if (type === 6 && c.xids.includes(xid)) {
    const asked = c.state === 'selecting' && xid === c.xid ? c.offer.ip : (c.askedIp ?? c.ip ?? '');
    out({ ev: 'nak', mac, ip: asked, server, t: now, validUntil: c.validUntil });
    if (xid === c.xid) toInit(c);
    return;
  }
  if (xid !== c.xid) return;
  const yiaddr = ipOf(msg, 16);
  if (type === 2 && c.state === 'init') {
    c.state = 'selecting'; c.offer = { ip: yiaddr, server }; send(c);
  } else if (type === 5 && (c.state === 'selecting' || c.state === 'renewing')) {
    const kind = c.state === 'selecting' ? 'select' : 'renew';
    c.ip = yiaddr; c.askedIp = yiaddr; c.state = 'bound'; c.validUntil = now + lease * 1000; c.xid = -1;
    out({ ev: 'ack', mac, ip: yiaddr, server, t: now, lease, kind, waitMs: now - c.pendingSince });
    c.pendingSince = undefined;
  }
});
const tick = setInterval(() => {
  const now = Date.now();
  for (const c of clients.values()) {
    if (c.state === 'bound') {
      if (now - (c.boundAt ??= now) >= ${renewMs}) { c.boundAt = undefined; c.state = 'renewing'; c.pendingSince = now; send(c); }
      continue;
    }
    if (c.state === 'renewing' && c.validUntil && now >= c.validUntil) { out({ ev: 'expired', mac: c.mac, ip: c.ip, server: '', t: now }); toInit(c); continue; }
    // A SELECTING REQUEST unanswered for 2 s goes back to DISCOVER (its server may be the dead one).
    if (c.state === 'selecting' && now - c.selectingSince > 2000) { c.state = 'init'; c.since = now; }
    if (now - c.sentAt >= ${attemptMs}) send(c);
    if (c.state === 'selecting') c.selectingSince ??= now; else c.selectingSince = undefined;
  }
}, 50);
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const [cmd, mac] = line.trim().split(' ');
  if (cmd === 'add' && mac && !clients.has(mac)) {
    const c = { mac, xids: [], state: 'init', since: Date.now(), pendingSince: Date.now(), validUntil: 0 };
    clients.set(mac, c); send(c);
  } else if (cmd === 'stop') {
    running = false; clearInterval(tick); console.log('stopped'); setTimeout(() => process.exit(0), 200);
  }
});
console.log('renewer ready');
`;

export class RenewingClients {
  private constructor(readonly proc: NetnsProcess, readonly macs: string[]) {}

  static async start(ns: Netns, targets: readonly string[], options: { renewMs: number; attemptMs?: number }): Promise<RenewingClients> {
    const proc = ns.spawnNodeScript(RENEWER_SOURCE(targets, RENEW_ADDRESS, options.renewMs, options.attemptMs ?? 300), {
      tsx: false,
      label: 'renewing clients',
    });
    await proc.waitForLine(/^renewer ready$/, { timeoutMs: 10_000 });
    return new RenewingClients(proc, []);
  }

  add(mac: string): void {
    this.macs.push(mac);
    this.proc.write(`add ${mac}\n`);
  }

  events(): ClientEvent[] {
    return this.proc.lines().filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as ClientEvent);
  }

  /** Waits until every client has a first ACK. */
  async waitAllBound(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const bound = new Set(this.events().filter((e) => e.ev === 'ack').map((e) => e.mac));
      if (this.macs.every((m) => bound.has(m))) return;
      await sleep(100);
    }
    throw new Error(`renewing clients not all bound after ${timeoutMs} ms\n${this.proc.describe(3000)}`);
  }

  /** Waits for the first ACK of `mac` after `sinceMs` (a fresh client's first binding, a takeover). */
  async waitAck(mac: string, sinceMs: number, timeoutMs: number): Promise<ClientEvent> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const e = this.events().find((x) => x.ev === 'ack' && x.mac === mac && x.t >= sinceMs);
      if (e) return e;
      await sleep(50);
    }
    throw new Error(`${mac}: no ACK within ${timeoutMs} ms`);
  }

  async stop(): Promise<void> {
    if (this.proc.status) return;
    const from = this.proc.lines().length;
    this.proc.write('stop\n');
    await this.proc.waitForLine(/^stopped$/, { from, timeoutMs: 5000 }).catch(() => undefined);
    await this.proc.stop(2000);
  }
}

/** Renewal gaps of the clients between `fromMs` and `toMs`: the longest wait for an ACK, and how many clients waited over 1 s. */
export function availabilityGap(events: readonly ClientEvent[], fromMs: number, toMs: number): { maxWaitMs: number; clientsOver1s: number; acks: number } {
  const acks = events.filter((e) => e.ev === 'ack' && e.t >= fromMs && e.t <= toMs + 60_000 && e.t - (e.waitMs ?? 0) <= toMs);
  const over = new Set(acks.filter((e) => (e.waitMs ?? 0) > 1000).map((e) => e.mac));
  return { maxWaitMs: Math.max(0, ...acks.map((e) => e.waitMs ?? 0)), clientsOver1s: over.size, acks: acks.length };
}

/**
 * The clients' side of the invariants, one line per violation:
 * - no client NAKed while its lease was valid (its own record: the last ACK's lease not over);
 * - no committed lease lost: every client's last ACK still valid is a bound record of that
 *   client in the store (the clients never release; expiry is checked by the probe's clock).
 */
export function clientViolations(events: readonly ClientEvent[], leases: readonly LeaseRecord[], nowMs: number): string[] {
  const out: string[] = [];
  for (const e of events) {
    if (e.ev === 'nak' && (e.validUntil ?? 0) > e.t) {
      out.push(`${e.mac}: NAKed by ${e.server} for ${e.ip} at ${e.t} while its lease was valid until ${e.validUntil}`);
    }
  }
  const last = new Map<string, ClientEvent>();
  for (const e of events) if (e.ev === 'ack' || e.ev === 'expired' || e.ev === 'nak') last.set(e.mac, e);
  const byIp = new Map(leases.map((l) => [l.ip, l]));
  for (const [mac, e] of last) {
    if (e.ev !== 'ack' || e.t + (e.lease ?? 0) * 1000 <= nowMs) continue;
    const rec = byIp.get(e.ip);
    if (!rec || rec.state !== 'bound' || rec.mac !== mac) {
      out.push(`${mac}: ACKed ${e.ip} by ${e.server} at ${e.t} for ${e.lease} s, store holds ${rec ? `${rec.state} to ${rec.mac} (by ${rec.node})` : 'nothing'}`);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Fetch clients (HTTP and TFTP), SHA-256 of every download

export interface FetchRecord {
  ok: boolean;
  proto: 'http' | 'tftp';
  server: string;
  file: string;
  sha: string;
  t: number;
}

/**
 * A bounded loop in `ns`: `rounds` rounds, each fetching every file by HTTP and by TFTP, trying
 * (a file under `images/` is an image file's pinned path, served from the chunk store; any
 * other is under the node's artifacts directory)
 * the nodes in turn (first from a rotating start) until one answers, as iPXE's `||` does. Each
 * try prints `ok|fail <proto> <server> <file> <sha256> <ms>`.
 */
export function startFetchLoop(ns: Netns, dir: string, files: readonly string[], rounds: number, pauseS: number): NetnsProcess {
  const servers = NODE_NAMES.map((_, i) => serverIp(i));
  const script = `
set -u
cd ${JSON.stringify(dir)}
servers="${servers.join(' ')}"
for round in $(seq 1 ${rounds}); do
  for f in ${files.join(' ')}; do
    for proto in http tftp; do
      start=$(( round % 3 ))
      for k in 0 1 2; do
        idx=$(( (start + k) % 3 + 1 ))
        s=$(echo $servers | cut -d' ' -f$idx)
        rm -f out.bin
        case $f in images/*) url="http://$s:8080/$f" ;; *) url="http://$s:8080/artifacts/$f" ;; esac
        if [ $proto = http ]; then timeout 5 curl -sf --max-time 4 -o out.bin "$url"; rc=$?
        else
          # tftp-hpa exits 0 after an ERROR packet mid-transfer (a node stopping says ERROR 0),
          # leaving a partial file: anything it prints is a failed transfer.
          msg=$(timeout 5 tftp -m binary "$s" -c get "$f" out.bin 2>&1); rc=$?
          if [ $rc = 0 ] && [ -n "$msg" ]; then rc=1; fi
        fi
        t=$(date +%s%3N)
        if [ $rc = 0 ] && [ -s out.bin ]; then echo "ok $proto $s $f $(sha256sum out.bin | cut -d' ' -f1) $t"; break
        else echo "fail $proto $s $f - $t"; fi
      done
    done
  done
  sleep ${pauseS}
done
echo "fetch done"
`;
  mkdirSync(dir, { recursive: true });
  return ns.spawn(['bash', '-c', script], { label: 'fetch clients (curl, tftp)' });
}

export function fetchRecords(proc: NetnsProcess): FetchRecord[] {
  return proc
    .lines()
    .map((l) => l.split(' '))
    .filter((p) => p[0] === 'ok' || p[0] === 'fail')
    .map(([r, proto, server, file, sha, t]) => ({ ok: r === 'ok', proto: proto as 'http' | 'tftp', server: server!, file: file!, sha: sha!, t: Number(t) }));
}

// ---------------------------------------------------------------------------------------------
// QEMU machines

export interface BootResult {
  name: string;
  mac: string;
  stage: string;
  booted: boolean;
  killedAfterMs: number | undefined;
  doneAfterMs: number | undefined;
  lastNode: string | undefined;
  /** Times the firmware started over (SeaBIOS reboot-timeout retries). */
  reboots: number;
  console: string;
}

let taps = 0;

/** The router advertiser iPXE needs to stop waiting for IPv6 (as test/e2e/ha-boot.test.ts). */
export async function startRouterAdvertiser(ha: HaLab): Promise<void> {
  const srv = ha.lab.servers[0]!;
  await srv.exec(['sh', '-c', `${ENABLE_IPV6_NO_DAD_SH}; echo 0 > /proc/sys/net/ipv6/conf/eth0/accept_dad; echo 0 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6`]);
  const ra = srv.spawn(routerAdvertiserArgv('eth0'), { label: 'router advertiser' });
  await ra.waitForLine(/router advertisements on eth0/, { timeoutMs: 10_000 });
}

/**
 * Boots a machine on a new tap: BIOS (SeaBIOS + iPXE ROM, reboot-timeout 1 s) or UEFI (OVMF's
 * own PXE client → TFTP snponly.efi → iPXE, `firmware: 'uefi'`); `onProgress`
 * runs every 20 ms with the console and the machine's status until it returns true (the fault
 * was injected) or the machine is done. Resolves when the callback arrived (status 'done' at a
 * live node) or the bounded wait passed; the machine is stopped either way.
 */
export async function bootMachine(
  ha: HaLab,
  name: string,
  mac: string,
  stage: string,
  timeoutMs: number,
  onProgress?: (console: string, status: MachineStatus | undefined) => Promise<boolean> | boolean,
  firmware: 'bios' | 'uefi' = 'bios',
): Promise<BootResult> {
  const dir = path.join(ha.nodes[0]!.workDir, 'vm', name);
  mkdirSync(dir, { recursive: true });
  const consoleFile = path.join(dir, 'console.log');
  const serconFile = path.join(dir, 'sercon-port');
  writeSerconPort(serconFile);
  writeFileSync(consoleFile, '');
  const br = ha.lab.bridge;
  const tap = `ftap${taps++}`;
  await br.ns.ip(['tuntap', 'add', 'dev', tap, 'mode', 'tap']);
  await br.ns.attachToBridge(tap, br.name);
  const startedAt = Date.now();
  const uefiVarsFile = path.join(dir, 'OVMF_VARS.fd');
  if (firmware === 'uefi') prepareUefiVars(uefiVarsFile);
  const argv =
    firmware === 'bios'
      ? qemuArgs({ firmware, mac, tap, consoleFile, serconFile, rebootTimeoutMs: 1000 })
      : qemuArgs({ firmware, mac, tap, consoleFile, uefiVarsFile });
  const vm = br.ns.spawn(['qemu-system-x86_64', '-name', name, ...argv], { label: `qemu ${name} (${firmware}, ${mac})` });
  const statusOf = async (): Promise<MachineStatus | undefined> => {
    for (const n of ha.nodes.filter((x) => x.running)) {
      const all = await n.api<MachineStatus[]>('/api/v1/machine-status').catch(() => undefined);
      if (all) return all.find((s) => s.mac === mac);
    }
    return undefined;
  };
  let killedAt: number | undefined;
  let pending = onProgress;
  let done: MachineStatus | undefined;
  try {
    while (Date.now() - startedAt < timeoutMs && !vm.status) {
      const status = await statusOf();
      if (status?.lastStage === 'done') {
        done = status;
        break;
      }
      if (pending && (await pending(readConsole(consoleFile), status))) {
        killedAt = Date.now();
        pending = undefined;
      }
      await sleep(pending ? 20 : 250);
    }
  } finally {
    await vm.stop(2000);
  }
  const text = readConsole(consoleFile);
  return {
    name,
    mac,
    stage,
    booted: done !== undefined && /pxeha-faults: stage2 running/.test(text),
    killedAfterMs: killedAt !== undefined ? killedAt - startedAt : undefined,
    doneAfterMs: done ? (done.lastStageMs ?? Date.now()) - startedAt : undefined,
    lastNode: done?.lastNode,
    reboots: Math.max(0, (text.match(/SeaBIOS \(version/g) ?? []).length - 1),
    console: text,
  };
}

/** iPXE's download lines, in order: "<server> <path> <outcome>". */
export function fetchesOf(text: string): string[] {
  return [...text.matchAll(/(?:http|tftp):\/\/(10\.99\.0\.\d+)(?::8080)?\/([\w./-]+?)(?:\?\S*)?\.\.\. ?(ok|\S+)/g)].map((m) => `${m[1]} ${m[2]} ${m[3]}`);
}

// ---------------------------------------------------------------------------------------------
// Figures (printed, never asserted)

export interface Figures {
  form: string;
  startedAt: string;
  takeoverMs: Array<{ victim: string; ms: number; by: string }>;
  availabilityGapMs: Record<string, { maxWaitMs: number; clientsOver1s: number; acks: number }>;
  leasesPerSecond: Record<string, { rate: number; sent: number; completed: number; seconds: number }>;
  boots: Array<{ stage: string; booted: boolean; killedAfterMs?: number; doneAfterMs?: number; reboots: number; lastNode?: string }>;
  fetches: { ok: number; failedTries: number; hashMismatches: number };
  notes: string[];
}

export function newFigures(): Figures {
  return { form: FORM, startedAt: new Date().toISOString(), takeoverMs: [], availabilityGapMs: {}, leasesPerSecond: {}, boots: [], fetches: { ok: 0, failedTries: 0, hashMismatches: 0 }, notes: [] };
}

export function formatFigures(f: Figures): string {
  const lines = [`fault suite figures (${f.form} form, ${f.startedAt})`];
  for (const t of f.takeoverMs) lines.push(`  takeover after kill -9 of ${t.victim}: ${t.ms} ms (fresh client designated to it, ACKed by ${t.by})`);
  for (const [k, g] of Object.entries(f.availabilityGapMs)) lines.push(`  DHCP availability gap during ${k}: longest wait ${g.maxWaitMs} ms, ${g.clientsOver1s} clients waited > 1 s (${g.acks} ACKs)`);
  for (const [k, r] of Object.entries(f.leasesPerSecond)) lines.push(`  leases/s during ${k}: ${r.rate.toFixed(1)} (${r.completed}/${r.sent} exchanges in ${r.seconds.toFixed(1)} s)`);
  const booted = f.boots.filter((b) => b.booted).length;
  lines.push(`  boot success: ${booted}/${f.boots.length} machines`);
  for (const b of f.boots) lines.push(`    ${b.stage}: ${b.booted ? 'booted' : 'FAILED'}; killed at ${b.killedAfterMs ?? '-'} ms, callback at ${b.doneAfterMs ?? '-'} ms via ${b.lastNode ?? '-'}, ${b.reboots} firmware retries`);
  lines.push(`  artifact fetches: ${f.fetches.ok} ok, ${f.fetches.failedTries} failed tries (dead/cut node), ${f.fetches.hashMismatches} SHA-256 mismatches`);
  for (const n of f.notes) lines.push(`  ${n}`);
  return lines.join('\n');
}

/** Starts the HA lab for the suite. */
export async function startFaultsLab(
  sandbox: Sandbox,
  options: { tftpMachines: readonly { mac: string; address: string }[]; artifacts: PlacedArtifacts },
): Promise<HaLab> {
  const ha = await HaLab.start(sandbox, {
    nodes: 3,
    clients: 4,
    clientAddresses: [`${LOAD_ADDRESS}/16`, `${RENEW_ADDRESS}/16`, `${FETCH_ADDRESS}/16`, undefined],
    cluster: faultsCluster(options.tftpMachines),
    memberTtlSeconds: 2,
    node: { cluster: { memberTtlSeconds: 2, publishIntervalMs: 1000 } },
    artifacts: () => options.artifacts.files,
  });
  await startRouterAdvertiser(ha);
  return ha;
}
