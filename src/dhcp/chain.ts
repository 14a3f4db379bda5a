/**
 * A DHCP decision is an ordered chain of small handlers (after coredhcp's handler chain).
 * Each sees the interpreted request and the reply drafted so far and either passes a draft
 * on, answers now, stops without an answer (a handled RELEASE), or drops the packet with a
 * reason the adapter counts as `pxeha_dhcp_dropped_total{reason}`.
 */
import type { BootTarget } from '../boot/rules.js';
import type { ReservationConfig } from '../config/schema.js';
import type { MessageType } from '../protocol/dhcp4/types.js';
import type { DhcpRequest } from './request.js';
import type { CompiledCluster, CompiledSubnet } from './subnets.js';

export const DropReason = {
  NOT_A_REQUEST: 'not-a-request',
  NO_MESSAGE_TYPE: 'no-message-type',
  BAD_HARDWARE_ADDRESS: 'bad-hardware-address',
  UNSUPPORTED_MESSAGE: 'unsupported-message',
  RATE_LIMITED: 'rate-limited',
  NO_SUBNET: 'no-subnet',
  OTHER_SERVER: 'other-server',
  NOT_PXE: 'not-pxe-client',
  /** A REQUEST on port 67 in proxy mode: addresses belong to the foreign server. */
  PROXY_NO_ADDRESSES: 'proxy-no-addresses',
  NO_BOOT_FILE: 'no-boot-file',
  POOL_EXHAUSTED: 'pool-exhausted',
  NO_LEASE: 'no-lease',
  STORE_ERROR: 'store-error',
  MISSING_REQUESTED_IP: 'missing-requested-ip',
  DECODE_ERROR: 'decode-error',
  ENCODE_ERROR: 'encode-error',
  SEND_ERROR: 'send-error',
  NO_ANSWER: 'no-answer',
  /** Several nodes hear the client; another healthy node is designated to answer it (designation.ts). */
  NOT_DESIGNATED: 'not-designated',
  /** The store is unreachable and the request needs a new binding: nothing new is allocated while degraded. */
  STORE_UNAVAILABLE: 'store-unavailable',
  /** A retransmitted REQUEST whose binding for the same client is being committed: that commit answers. */
  IN_PROGRESS: 'in-progress',
  /** More requests than the server answers: a DISCOVER that waited too long, or a full queue (receive-queue.ts). */
  OVERLOADED: 'overloaded',
} as const;
export type DropReason = (typeof DropReason)[keyof typeof DropReason];

/** Where and how a request arrived. */
export interface ReceiveInfo {
  ifname: string;
  /** IPv4 address of the receiving interface (our server identifier on that link). */
  interfaceAddress: string | undefined;
  /** 'dhcp' for port 67, 'pxe' for the PXE boot server port 4011. */
  service: 'dhcp' | 'pxe';
  source: { address: string; port: number };
}

export interface RequestContext {
  request: DhcpRequest;
  via: ReceiveInfo;
  /** Our server identifier (option 54) on the receiving link. */
  serverId: string;
  /** This node's name, recorded on the leases it writes. */
  node: string;
  /** Address clients fetch boot files from (advertised, or the receiving interface's). */
  nodeAddress: string;
  httpPort: number;
  /**
   * Where a network-boot client is sent instead (a healthy node holding its files, chosen by
   * src/boot/servers.ts); undefined means this node.
   */
  bootTarget?: (ctx: RequestContext) => BootTarget | undefined;
  cluster: CompiledCluster;
  nowMs: number;
  /** Filled by the subnet handler. */
  subnet?: CompiledSubnet;
  /** Filled by the subnet handler when the client has a reservation there. */
  reservation?: ReservationConfig;
}

/** What the reply will say, in typed form; reply.ts is the one place that encodes it. */
export interface ReplyDraft {
  messageType?: MessageType;
  yiaddr: string;
  siaddr: string;
  /** Boot file (BOOTP `file`); long URLs also go in option 67 by reply.ts. */
  file?: string;
  leaseSeconds?: number;
  renewalSeconds?: number;
  rebindingSeconds?: number;
  /** Include the subnet's and reservation's configured options. */
  includeSubnetOptions: boolean;
  hostname?: string;
  /** Option 60 to send back (PXEClient / HTTPClient). */
  vendorClass?: string;
  /** PXE option 43 discovery control (PXE 2.1 §2.4.1.1): 8 = boot the file in this offer. */
  pxeDiscoveryControl?: number;
  /** iPXE option 175.176 = 1: no ProxyDHCP wait. */
  ipxeSkipProxyWait?: boolean;
  /** Option 56, for NAKs. */
  message?: string;
}

export type Outcome =
  | { kind: 'continue'; draft: ReplyDraft }
  | { kind: 'reply'; draft: ReplyDraft }
  | { kind: 'done'; note: string }
  | { kind: 'drop'; reason: DropReason; detail?: string };

export type Handler = (ctx: RequestContext, draft: ReplyDraft) => Outcome | Promise<Outcome>;

export function emptyDraft(): ReplyDraft {
  return { yiaddr: '0.0.0.0', siaddr: '0.0.0.0', includeSubnetOptions: false };
}

/** Runs handlers in order until one answers, stops or drops; a draft left at the end is the answer. */
export async function runChain(handlers: readonly Handler[], ctx: RequestContext): Promise<Exclude<Outcome, { kind: 'continue' }>> {
  let draft = emptyDraft();
  for (const handler of handlers) {
    const outcome = await handler(ctx, draft);
    if (outcome.kind !== 'continue') return outcome;
    draft = outcome.draft;
  }
  if (draft.messageType === undefined) return { kind: 'drop', reason: DropReason.NO_ANSWER };
  return { kind: 'reply', draft };
}
