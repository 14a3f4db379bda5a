/**
 * ProxyDHCP (PXE 2.1 §2.2.4, dnsmasq's proxy mode): beside a foreign DHCP server that owns
 * addressing, answer PXE clients with boot information only: no address, no lease, and
 * option 60 "PXEClient" so the ROM recognises the offer. Serves the broadcast DISCOVER on
 * port 67 and the unicast REQUEST a client sends to the boot server port 4011.
 */
import { MessageType } from '../../protocol/dhcp4/types.js';
import { DropReason, type Handler } from '../chain.js';
import { bootAnswerFor, bootFacts, withBoot } from './boot.js';

export const proxyHandler: Handler = (ctx, draft) => {
  const onBootServerPort = ctx.via.service === 'pxe';
  if (!onBootServerPort && ctx.subnet?.config.mode !== 'proxy') return { kind: 'continue', draft };
  const facts = bootFacts(ctx.request);
  if (!facts.isPxeClient) return { kind: 'drop', reason: DropReason.NOT_PXE };
  const answer = bootAnswerFor(ctx);
  if (!answer) return { kind: 'drop', reason: DropReason.NO_BOOT_FILE };
  const t = ctx.request.messageType;
  let messageType: MessageType;
  if (t === MessageType.DISCOVER && !onBootServerPort) messageType = MessageType.OFFER;
  else if ((t === MessageType.REQUEST || t === MessageType.INFORM) && onBootServerPort) messageType = MessageType.ACK;
  // The REQUEST on port 67 goes to the server that owns the address, not to us.
  else return { kind: 'drop', reason: DropReason.PROXY_NO_ADDRESSES };
  return { kind: 'reply', draft: withBoot({ ...draft, messageType, yiaddr: '0.0.0.0' }, answer) };
};
