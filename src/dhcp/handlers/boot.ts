import { decideBoot, IPXE_CHAIN_MARK, type BootAnswer, type BootFacts } from '../../boot/rules.js';
import { MessageType } from '../../protocol/dhcp4/types.js';
import type { DhcpRequest } from '../request.js';
import type { Handler, ReplyDraft, RequestContext } from '../chain.js';

/** PXE 2.1 §2.4.1.1 discovery control bit 3: boot the file named in this offer, no menu. */
export const PXE_BOOT_FILE_IN_OFFER = 0x08;

export function bootFacts(r: DhcpRequest): BootFacts {
  return {
    isPxeClient: r.vendorClass?.startsWith('PXEClient') ?? false,
    isHttpClient: r.vendorClass?.startsWith('HTTPClient') ?? false,
    isIpxe: r.isIpxe,
    arch: r.clientArch,
    chainedByPxeha: r.vendorClass === IPXE_CHAIN_MARK,
  };
}

export function bootAnswerFor(ctx: RequestContext): BootAnswer | undefined {
  const facts = bootFacts(ctx.request);
  // Most clients do not network-boot: do not rank boot servers for them.
  if (!facts.isPxeClient && !facts.isHttpClient && !facts.isIpxe) return undefined;
  return decideBoot(
    facts,
    ctx.cluster.config.boot,
    ctx.bootTarget?.(ctx) ?? { nodeAddress: ctx.nodeAddress, httpPort: ctx.httpPort },
    ctx.reservation?.boot,
  );
}

export function withBoot(draft: ReplyDraft, answer: BootAnswer): ReplyDraft {
  return {
    ...draft,
    file: answer.file,
    siaddr: answer.nextServer,
    vendorClass: answer.vendorClass,
    pxeDiscoveryControl: answer.vendorClass === 'PXEClient' ? PXE_BOOT_FILE_IN_OFFER : undefined,
    ipxeSkipProxyWait: answer.ipxeSkipProxyWait,
  };
}

/** Adds boot information to a full-mode OFFER or ACK when the client network-boots. */
export const bootHandler: Handler = (ctx, draft) => {
  if (draft.messageType !== MessageType.OFFER && draft.messageType !== MessageType.ACK) return { kind: 'continue', draft };
  const answer = bootAnswerFor(ctx);
  return { kind: 'continue', draft: answer ? withBoot(draft, answer) : draft };
};
