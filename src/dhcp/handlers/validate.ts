import { BootOp, MessageType } from '../../protocol/dhcp4/types.js';
import { DropReason, type Handler } from '../chain.js';

const KNOWN_CLIENT_MESSAGES = new Set<number>([
  MessageType.DISCOVER,
  MessageType.REQUEST,
  MessageType.DECLINE,
  MessageType.RELEASE,
  MessageType.INFORM,
]);

/** Drops what no client should send: replies, BOOTP without option 53, odd hardware addresses. */
export const validateRequest: Handler = (ctx, draft) => {
  const r = ctx.request;
  if (r.op !== BootOp.BOOTREQUEST) return { kind: 'drop', reason: DropReason.NOT_A_REQUEST };
  if (r.messageType === undefined) return { kind: 'drop', reason: DropReason.NO_MESSAGE_TYPE };
  if (!KNOWN_CLIENT_MESSAGES.has(r.messageType)) return { kind: 'drop', reason: DropReason.UNSUPPORTED_MESSAGE };
  // Ethernet (RFC 1700 type 1) is all PXE and pxeha serve; anything else has no MAC to key on.
  if (r.htype !== 1 || r.hlen !== 6 || r.mac === '00:00:00:00:00:00') {
    return { kind: 'drop', reason: DropReason.BAD_HARDWARE_ADDRESS };
  }
  return { kind: 'continue', draft };
};
