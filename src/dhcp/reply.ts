/**
 * The one place a reply draft becomes a DHCP message (RFC 2131 §4.3.1 Table 3): header fields
 * copied from the request as the RFC says, options written 53 and 54 first, then lease times,
 * network options, boot options, and the relay's option 82 echoed unchanged (the codec writes
 * it last, RFC 3046 §2.2).
 */
import type { DhcpOptionsConfig } from '../config/schema.js';
import { buildPxeVendorOptions, ipxeNoPxeDhcp, PxeVendorSubOption, setOption } from '../protocol/dhcp4/options.js';
import { BootOp, MessageType, OptionCode, type Dhcp4Message } from '../protocol/dhcp4/types.js';
import { broadcastOf, intToIp } from '../util/ipv4.js';
import type { ReplyDraft, RequestContext } from './chain.js';
import type { CompiledSubnet } from './subnets.js';

/** BOOTP `file` is 128 bytes with a terminating NUL (RFC 951). */
const FILE_FIELD_MAX = 127;

export function buildReply(request: Dhcp4Message, draft: ReplyDraft, ctx: RequestContext): Dhcp4Message {
  const type = draft.messageType ?? MessageType.NAK;
  const isNak = type === MessageType.NAK;
  const file = !isNak && draft.file !== undefined && Buffer.byteLength(draft.file) <= FILE_FIELD_MAX ? draft.file : '';
  const reply: Dhcp4Message = {
    op: BootOp.BOOTREPLY,
    htype: request.htype,
    hlen: request.hlen,
    hops: 0,
    xid: request.xid,
    secs: 0,
    flags: request.flags,
    // Table 3: ciaddr is echoed in an ACK (INFORM, renewals), zero otherwise.
    ciaddr: type === MessageType.ACK ? request.ciaddr : '0.0.0.0',
    yiaddr: isNak ? '0.0.0.0' : draft.yiaddr,
    siaddr: isNak ? '0.0.0.0' : draft.siaddr,
    giaddr: request.giaddr,
    chaddr: request.chaddr,
    sname: '',
    file,
    options: new Map(),
  };
  setOption(reply, OptionCode.MESSAGE_TYPE, type);
  setOption(reply, OptionCode.SERVER_ID, ctx.serverId);
  if (isNak) {
    if (draft.message !== undefined) setOption(reply, OptionCode.MESSAGE, draft.message);
    echoRelayInfo(request, reply);
    return reply;
  }
  if (draft.leaseSeconds !== undefined) setOption(reply, OptionCode.LEASE_TIME, draft.leaseSeconds);
  if (draft.renewalSeconds !== undefined) setOption(reply, OptionCode.RENEWAL_TIME, draft.renewalSeconds);
  if (draft.rebindingSeconds !== undefined) setOption(reply, OptionCode.REBINDING_TIME, draft.rebindingSeconds);
  if (draft.includeSubnetOptions && ctx.subnet) {
    const reservationOptions = ctx.reservation?.options;
    const network =
      reservationOptions === undefined || Object.keys(reservationOptions).length === 0
        ? subnetOptionBytes(ctx.subnet)
        : networkOptionBytes(ctx.subnet, { ...ctx.subnet.config.options, ...reservationOptions });
    for (const [code, bytes] of network) reply.options.set(code, bytes);
  }
  if (draft.hostname !== undefined) setOption(reply, OptionCode.HOSTNAME, draft.hostname);
  if (draft.vendorClass !== undefined) setOption(reply, OptionCode.VENDOR_CLASS_ID, draft.vendorClass);
  // A boot file too long for the BOOTP field (iPXE script URLs) travels in option 67 only;
  // one that fits goes in both, since some ROMs read only the field and iPXE prefers 67.
  if (draft.file !== undefined && (file === '' || request.options.get(OptionCode.PARAMETER_REQUEST_LIST)?.includes(OptionCode.BOOTFILE_NAME))) {
    setOption(reply, OptionCode.BOOTFILE_NAME, draft.file);
  }
  if (draft.pxeDiscoveryControl !== undefined) {
    reply.options.set(
      OptionCode.VENDOR_SPECIFIC,
      buildPxeVendorOptions([{ code: PxeVendorSubOption.DISCOVERY_CONTROL, data: Buffer.from([draft.pxeDiscoveryControl]) }]),
    );
    // PXE 2.1 §2.2.1: a PXE offer carries the client's machine identifier back.
    const uuid = request.options.get(OptionCode.CLIENT_UUID);
    if (uuid !== undefined) reply.options.set(OptionCode.CLIENT_UUID, uuid);
  }
  if (draft.ipxeSkipProxyWait) setOption(reply, OptionCode.IPXE_ENCAP, [ipxeNoPxeDhcp()]);
  echoRelayInfo(request, reply);
  return reply;
}

/**
 * A subnet's network options encoded once per compiled subnet (a new configuration compiles
 * new subnets), since every OFFER and ACK carries the same bytes. Shared buffers: encodeDhcp4
 * copies option values and nothing writes into them.
 */
const subnetOptionCache = new WeakMap<CompiledSubnet, ReadonlyMap<number, Buffer>>();

function subnetOptionBytes(subnet: CompiledSubnet): ReadonlyMap<number, Buffer> {
  let bytes = subnetOptionCache.get(subnet);
  if (bytes === undefined) {
    bytes = networkOptionBytes(subnet, subnet.config.options ?? {});
    subnetOptionCache.set(subnet, bytes);
  }
  return bytes;
}

/** Subnet mask, then the network options, in the order they go on the wire. */
function networkOptionBytes(subnet: CompiledSubnet, o: DhcpOptionsConfig): Map<number, Buffer> {
  const reply: Pick<Dhcp4Message, 'options'> = { options: new Map() };
  setOption(reply, OptionCode.SUBNET_MASK, intToIp(subnet.network.mask));
  writeNetworkOptions(reply, o, intToIp(broadcastOf(subnet.network)));
  return reply.options;
}

function writeNetworkOptions(reply: Pick<Dhcp4Message, 'options'>, o: DhcpOptionsConfig, broadcast: string): void {
  if (o.routers?.length) setOption(reply, OptionCode.ROUTER, o.routers);
  if (o.dnsServers?.length) setOption(reply, OptionCode.DNS_SERVERS, o.dnsServers);
  if (o.domainName !== undefined) setOption(reply, OptionCode.DOMAIN_NAME, o.domainName);
  setOption(reply, OptionCode.BROADCAST_ADDRESS, o.broadcastAddress ?? broadcast);
  if (o.ntpServers?.length) setOption(reply, OptionCode.NTP_SERVERS, o.ntpServers);
  for (const c of o.custom ?? []) {
    const value =
      c.hex !== undefined
        ? Buffer.from(c.hex.replaceAll(':', ''), 'hex')
        : c.text !== undefined
          ? Buffer.from(c.text, 'utf8')
          : Buffer.concat((c.ipv4 ?? []).map((ip) => Buffer.from(ip.split('.').map(Number))));
    reply.options.set(c.code, value);
  }
}

/** RFC 3046 §2.2: the relay agent information goes back exactly as it came. */
function echoRelayInfo(request: Dhcp4Message, reply: Dhcp4Message): void {
  const info = request.options.get(OptionCode.RELAY_AGENT_INFO);
  if (info !== undefined) reply.options.set(OptionCode.RELAY_AGENT_INFO, info);
}
