import { MessageType } from '../../protocol/dhcp4/types.js';
import { DropReason, type Handler } from '../chain.js';
import type { ClusterView } from '../cluster-view.js';

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

/**
 * In a cluster, any member's address (current, or a member that has since gone) counts as ours
 * wherever the binding in the store, not the server that wrote it, decides: a renewing or
 * rebinding REQUEST that carries option 54, a DECLINE or a RELEASE. A SELECTING REQUEST naming
 * a healthy member chose that member's offer and is left to it; one naming a member that is
 * gone is taken over (its offer record is in the store, so the binding is committed as usual).
 * Addresses of no member are other servers, as on a single node.
 */
export function clusterServerIdHandler(view: () => ClusterView | undefined): Handler {
  return (ctx, draft) => {
    const r = ctx.request;
    const addressed =
      r.messageType === MessageType.REQUEST || r.messageType === MessageType.DECLINE || r.messageType === MessageType.RELEASE;
    if (!addressed || r.serverId === undefined || r.serverId === ctx.serverId || r.serverId === ctx.nodeAddress) {
      return { kind: 'continue', draft };
    }
    const cluster = view();
    const member = cluster?.memberByAddress(r.serverId);
    if (!cluster || !member) return { kind: 'drop', reason: DropReason.OTHER_SERVER };
    if (member.name === cluster.self) return { kind: 'continue', draft };
    const selecting = r.messageType === MessageType.REQUEST && r.ciaddr === '0.0.0.0';
    if (selecting && member.healthy) return { kind: 'drop', reason: DropReason.OTHER_SERVER, detail: `offer of member ${member.name}` };
    return { kind: 'continue', draft };
  };
}
