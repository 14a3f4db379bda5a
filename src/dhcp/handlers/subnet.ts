import { DropReason, type Handler } from '../chain.js';
import { findReservation, selectSubnet } from '../subnets.js';

/** Puts the request's subnet (and the client's reservation there) into the context. */
export const selectSubnetHandler: Handler = (ctx, draft) => {
  const r = ctx.request;
  const subnet = selectSubnet(ctx.cluster, {
    giaddr: r.giaddr,
    linkSelection: r.linkSelection,
    subnetSelection: r.subnetSelection,
    interfaceAddress: ctx.via.interfaceAddress,
    ciaddr: r.ciaddr,
  });
  if (!subnet) return { kind: 'drop', reason: DropReason.NO_SUBNET };
  ctx.subnet = subnet;
  ctx.reservation = findReservation(subnet, r.mac, r.clientIdHex);
  return { kind: 'continue', draft };
};
