/**
 * Which node answers a client every node hears (designation.ts): DISCOVER, INIT-REBOOT and
 * REBINDING go to the client's designated node, to any node once the client's `secs` reaches
 * the takeover threshold, and to the runner-up when the designated node is no healthy member.
 * A SELECTING REQUEST reaching here names this node (server-id handler) and is answered. A
 * RENEWING REQUEST is unicast to the node that last wrote the client's binding, which answers
 * it whoever is designated; DECLINE, RELEASE and INFORM are answered by whoever receives them.
 */
import { MessageType } from '../../protocol/dhcp4/types.js';
import { DropReason, type Handler } from '../chain.js';
import type { ClusterView } from '../cluster-view.js';
import { designate } from '../designation.js';
import type { LeaseBook } from '../lease-book.js';

export interface DesignationDeps {
  view: () => ClusterView | undefined;
  takeoverSecs: () => number;
  leases: LeaseBook;
}

export function designationHandler(deps: DesignationDeps): Handler {
  return (ctx, draft) => {
    const cluster = deps.view();
    if (!cluster) return { kind: 'continue', draft };
    const r = ctx.request;
    if (r.messageType === MessageType.REQUEST) {
      if (r.serverId !== undefined && r.ciaddr === '0.0.0.0') return { kind: 'continue', draft }; // SELECTING, ours
      if (r.ciaddr !== '0.0.0.0' && ctx.subnet) {
        // RENEWING goes by unicast to the server that last answered: the writer of the binding.
        if (deps.leases.get(ctx.subnet.name, r.ciaddr)?.record.node === cluster.self) return { kind: 'continue', draft };
      }
    } else if (r.messageType !== MessageType.DISCOVER) {
      return { kind: 'continue', draft };
    }
    const d = designate(r.mac, r.secs, { self: cluster.self, members: cluster.members(), takeoverSecs: deps.takeoverSecs() });
    if (d.answer) return { kind: 'continue', draft };
    return { kind: 'drop', reason: DropReason.NOT_DESIGNATED, detail: `bucket ${d.bucket} belongs to ${d.owner}` };
  };
}
