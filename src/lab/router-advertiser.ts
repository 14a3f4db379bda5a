/**
 * A minimal IPv6 router advertiser for the lab segment.
 *
 * iPXE configures IPv6 beside DHCPv4 and its `ifconf` waits until every configurator has
 * finished, so on a segment without a router it spends ~13 s soliciting before it boots. One
 * Router Advertisement with neither M nor O set finishes its IPv6 configurator at once
 * (ipxe `src/net/ipv6.c` ipv6conf_rx_router_advertisement), without giving it any prefix.
 *
 * Node has no raw ICMPv6 sockets, so the sender is a few lines of Python (already needed by
 * node-gyp for the native addon). It advertises to ff02::1 every second and answers each
 * Router Solicitation at once; router lifetime 0, so no machine takes it as a default router.
 * It runs inside the lab's server namespace on the segment's interface, which needs IPv6 on
 * and DAD off (so the link-local source address is usable at once).
 */

export const ROUTER_ADVERTISER_PY = String.raw`
import select, socket, struct, sys, time
ifname = sys.argv[1]
idx = socket.if_nametoindex(ifname)
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)  # RFC 4861 4.2: hop limit 255
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, idx)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, socket.inet_pton(socket.AF_INET6, 'ff02::2') + struct.pack('@I', idx))
# type 134, code 0, checksum (kernel), cur hop limit 64, flags 0 (no M/O), lifetime 0, reachable 0, retrans 0
ra = struct.pack('!BBHBBHII', 134, 0, 0, 64, 0, 0, 0, 0)
sent = 0
def send():
    global sent
    try:
        s.sendto(ra, ('ff02::1', 0, 0, idx))
        sent += 1
        if sent == 1:
            print('router advertisements on ' + ifname, flush=True)
    except OSError as e:
        print('router advertisement not sent: %s' % e, file=sys.stderr, flush=True)
due = 0.0
while True:
    now = time.monotonic()
    if now >= due:
        send()
        due = now + 1.0
    ready, _, _ = select.select([s], [], [], max(0.0, due - now))
    if ready:
        data = s.recv(1500)
        if data[:1] == b'\x85':  # 133: Router Solicitation
            send()
`;

/** argv that runs the advertiser on one interface (inside the right namespace). */
export function routerAdvertiserArgv(ifname: string): string[] {
  return ['python3', '-u', '-c', ROUTER_ADVERTISER_PY, ifname];
}

/**
 * Shell text that lets a namespace's interfaces send the advertisements: IPv6 on, and DAD off
 * so a link-local address is usable the moment its link comes up. Run inside the namespace
 * before its interfaces are created.
 */
export const ENABLE_IPV6_NO_DAD_SH = [
  'echo 0 > /proc/sys/net/ipv6/conf/all/disable_ipv6',
  'echo 0 > /proc/sys/net/ipv6/conf/default/disable_ipv6',
  'echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad',
  'echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad',
].join('; ');
