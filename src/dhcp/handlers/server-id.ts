import { MessageType } from '../../protocol/dhcp4/types.js';
import { DropReason, type Handler } from '../chain.js';

/**
 * A REQUEST, DECLINE or RELEASE that names another server is not ours to act on
 * (RFC 2131 §4.3.2: the client chose another server's offer).
 */
export const serverIdHandler: Handler = (ctx, draft) => {
  const r = ctx.request;
  const addressed =
    r.messageType === MessageType.REQUEST || r.messageType === MessageType.DECLINE || r.messageType === MessageType.RELEASE;
  if (addressed && r.serverId !== undefined && r.serverId !== ctx.serverId) {
    return { kind: 'drop', reason: DropReason.OTHER_SERVER };
  }
  return { kind: 'continue', draft };
};
