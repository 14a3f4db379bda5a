#!/usr/bin/env bash
# Capture real DHCPv4 packets from real clients as golden bytes for the codec tests
# (src/protocol/dhcp4/testdata/*.hex, one packet a file, a comment per field).
#
# Network rule: everything runs inside two network namespaces this script creates and always
# deletes (trap on EXIT), joined by one veth pair. Nothing touches the host's interfaces and
# nothing is sent outside this machine.
#
#   pxcap-$$-c  client side: vcli (MAC 52:54:00:12:34:56); 10.99.0.2/24 only for perfdhcp
#   pxcap-$$-s  server side: vsrv 10.99.0.1/24, busybox udhcpd answering, tcpdump recording
#
# Scenarios (each its own recording, so a file name says which exchange it came from):
#   udhcpc       busybox udhcpc, plain DORA
#   udhcpc-pxe   busybox udhcpc with -V PXEClient -x 0x5d:0000 (smee's test client)
#   dhclient     ISC dhclient 4.4, DORA, -sf /bin/true so nothing is configured
#   perfdhcp     Kea perfdhcp acting as a relay (hops 1, giaddr set, from port 67); it sends a
#                DISCOVER and gets udhcpd's OFFER, but does not go on to REQUEST here
#   ipxe         iPXE ROM in QEMU (if installed) against QEMU's own user-mode DHCP, see below
# Client packets land in <scenario>-<type>.hex, replies in <server>-<type>-to-<scenario>.hex;
# the first packet of each kind is kept. Files are overwritten, and xids change every run, so
# a new capture means updating the expected objects in src/protocol/dhcp4/golden.test.ts.
#
# Needs root, iproute2, tcpdump, busybox, isc-dhcp-client, kea-admin (perfdhcp), node;
# optionally qemu-system-x86 and ipxe-qemu.
# Usage: bash scripts/capture-dhcp-golden.sh [outdir]   (default src/protocol/dhcp4/testdata)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/src/protocol/dhcp4/testdata}"
NS_C="pxcap-$$-c"
NS_S="pxcap-$$-s"
TMP="$(mktemp -d /tmp/pxcap.XXXXXX)"
CLIENT_MAC="52:54:00:12:34:56"
SERVER_IP="10.99.0.1"
RELAY_IP="10.99.0.2"
TODAY="$(date -u +%F)"
PIDS=()

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  ip netns del "$NS_C" 2>/dev/null || true
  ip netns del "$NS_S" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

in_c() { ip netns exec "$NS_C" "$@"; }

# Drops a PID that has been reaped, so cleanup never signals a recycled PID.
forget() {
  local keep=() pid
  for pid in "${PIDS[@]}"; do [[ $pid == "$1" ]] || keep+=("$pid"); done
  PIDS=("${keep[@]}")
}

ip netns add "$NS_C"
ip netns add "$NS_S"
ip -n "$NS_C" link set lo up
ip -n "$NS_S" link set lo up
ip -n "$NS_C" link add vcli type veth peer name vsrv netns "$NS_S"
ip -n "$NS_C" link set vcli address "$CLIENT_MAC" up
ip -n "$NS_S" addr add "$SERVER_IP/24" dev vsrv
ip -n "$NS_S" link set vsrv up

# A real server so the clients go on to REQUEST, and so its OFFER/ACK are captured too.
cat >"$TMP/udhcpd.conf" <<EOF
start 10.99.0.100
end 10.99.0.150
interface vsrv
lease_file $TMP/udhcpd.leases
pidfile $TMP/udhcpd.pid
siaddr $SERVER_IP
boot_file pxelinux.0
option subnet 255.255.255.0
option router $SERVER_IP
option dns $SERVER_IP
option lease 3600
EOF
touch "$TMP/udhcpd.leases"
# `ip netns exec` execs the program, so $! is the daemon itself and can be killed by PID.
ip netns exec "$NS_S" busybox udhcpd -f "$TMP/udhcpd.conf" >"$TMP/udhcpd.log" 2>&1 &
PIDS+=($!)
sleep 1

# Turns one pcap into .hex files. $1 scenario, $2 client description, $3 server description,
# $4 how the client was run, $5 how the packets were recorded, $6 the pcap.
convert() {
  SCENARIO="$1" CLIENT_DESC="$2" SERVER_DESC="$3" CLIENT_CMD="$4" RECORDER="$5" PCAP="$6" \
    OUT="$OUT" TODAY="$TODAY" PCAP_UDP="$ROOT/scripts/lib/pcap-udp.mjs" node "$TMP/pcap-to-hex.mjs"
}

# Records port 67/68 on vsrv while the client command runs, then converts the packets.
# $1 scenario name, $2 description of the client, rest the client command (run in the client ns).
capture() {
  local name="$1" desc="$2"
  shift 2
  local pcap="$TMP/$name.pcap"
  ip netns exec "$NS_S" tcpdump -i vsrv -n -U -s 0 -w "$pcap" 'udp port 67 or udp port 68' \
    2>"$TMP/$name.tcpdump.log" &
  local tcpdump_pid=$!
  PIDS+=("$tcpdump_pid")
  for _ in $(seq 50); do grep -q listening "$TMP/$name.tcpdump.log" && break; sleep 0.1; done
  "$@" >"$TMP/$name.client.log" 2>&1 || true
  sleep 1
  kill -INT "$tcpdump_pid"
  wait "$tcpdump_pid" 2>/dev/null || true
  forget "$tcpdump_pid"
  local shown="$*"
  shown="${shown#in_c }"
  shown="${shown#run_for [0-9]* }"
  convert "$name" "$desc" "$UDHCPD_DESC" "ip netns exec <client-ns> $shown" \
    "tcpdump $TCPDUMP_VERSION on the server end of a veth pair" "$pcap"
}

# Runs a long-lived client in the client netns in the background, stops it by PID after $1 s.
run_for() {
  local seconds="$1"
  shift
  ip netns exec "$NS_C" "$@" >/dev/null 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  sleep "$seconds"
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  forget "$pid"
}

cat >"$TMP/pcap-to-hex.mjs" <<'EOF'
// pcap (Ethernet link type) -> one annotated .hex per UDP payload. Deliberately independent of
// the codec under test: fixed RFC 2131 offsets and a plain TLV walk.
import { writeFileSync } from 'node:fs';
const env = process.env;
const { hexLines, ip, udpDatagrams } = await import(env.PCAP_UDP);
const NAMES = { 1: 'subnet mask', 3: 'router', 6: 'DNS servers', 12: 'host name', 15: 'domain name',
  28: 'broadcast address', 42: 'NTP servers', 43: 'vendor specific', 50: 'requested IP', 51: 'lease time',
  52: 'overload', 53: 'message type', 54: 'server id', 55: 'parameter request list', 56: 'message',
  57: 'max message size', 58: 'renewal (T1) time', 59: 'rebinding (T2) time', 60: 'vendor class id',
  61: 'client id', 66: 'TFTP server name', 67: 'bootfile name', 77: 'user class', 82: 'relay agent info',
  93: 'client arch', 94: 'client NDI', 97: 'client UUID', 118: 'subnet selection', 175: 'iPXE encap' };
const TYPES = ['', 'discover', 'offer', 'request', 'decline', 'ack', 'nak', 'release', 'inform'];
const written = new Set();
for (const { payload: p, wire } of udpDatagrams(env.PCAP)) {
  const { lines, row, rows } = hexLines();
  const str = (b) => { const z = b.indexOf(0); return JSON.stringify(b.subarray(0, z < 0 ? b.length : z).toString('latin1')); };
  row(p.subarray(0, 1), `op ${p[0] === 1 ? 'BOOTREQUEST' : 'BOOTREPLY'} (RFC 2131 §2)`);
  row(p.subarray(1, 2), `htype ${p[1]}`);
  row(p.subarray(2, 3), `hlen ${p[2]}`);
  row(p.subarray(3, 4), `hops ${p[3]}`);
  row(p.subarray(4, 8), `xid 0x${p.readUInt32BE(4).toString(16).padStart(8, '0')}`);
  row(p.subarray(8, 10), `secs ${p.readUInt16BE(8)}`);
  row(p.subarray(10, 12), `flags 0x${p.readUInt16BE(10).toString(16).padStart(4, '0')}`);
  for (const [name, at] of [['ciaddr', 12], ['yiaddr', 16], ['siaddr', 20], ['giaddr', 24]]) row(p.subarray(at, at + 4), `${name} ${ip(p.subarray(at, at + 4))}`);
  row(p.subarray(28, 44), `chaddr (16 bytes; first hlen are the MAC)`);
  rows(p.subarray(44, 108), `sname (64 bytes, NUL padded) ${str(p.subarray(44, 108))}`);
  rows(p.subarray(108, 236), `file (128 bytes, NUL padded) ${str(p.subarray(108, 236))}`);
  row(p.subarray(236, 240), 'magic cookie 99.130.83.99 (RFC 2131 §3)');
  let o = 240;
  let type = 'unknown';
  while (o < p.length) {
    const code = p[o];
    if (code === 0) { let e = o; while (e < p.length && p[e] === 0) e++; rows(p.subarray(o, e), `PAD x${e - o}`); o = e; continue; }
    if (code === 255) { row(p.subarray(o, o + 1), 'END'); o += 1; break; }
    const len = p[o + 1];
    const v = p.subarray(o + 2, o + 2 + len);
    if (code === 53) type = TYPES[v[0]] ?? `type${v[0]}`;
    row(p.subarray(o, o + 2), `option ${code} (${NAMES[code] ?? 'unknown'}), length ${len}`);
    if (len > 0) rows(v, `  value${[12, 15, 56, 60, 66, 67].includes(code) ? ` ${JSON.stringify(v.toString('latin1'))}` : ''}`);
    o += 2 + len;
  }
  if (o < p.length) rows(p.subarray(o), `padding after END to ${p.length} bytes`);
  const sender = p[0] === 1 ? env.CLIENT_DESC : env.SERVER_DESC;
  // Client packets are named after the scenario, replies after the server and the scenario.
  // The first packet of each kind is kept (later ones are retransmissions).
  const base = p[0] === 1 ? `${env.SCENARIO}-${type}` : `${env.SERVER_DESC.split(' ')[0]}-${type}-to-${env.SCENARIO}`;
  if (written.has(base)) continue;
  written.add(base);
  const file = `${env.OUT}/${base}.hex`;
  const header = [
    `# DHCP ${type.toUpperCase()} sent by ${sender}`,
    `# Captured ${env.TODAY} by scripts/capture-dhcp-golden.sh inside a private network namespace`,
    `# Recorded with: ${env.RECORDER}`,
    `# Client command: ${env.CLIENT_CMD}`,
    `# Wire: UDP ${wire}, ${p.length} bytes of BOOTP payload`,
  ];
  writeFileSync(file, `${header.join('\n')}\n${lines.join('\n')}\n`);
  console.log(`wrote ${file}`);
}
EOF

mkdir -p "$OUT"
BUSYBOX_VERSION="$(busybox 2>&1 | head -1 | sed 's/ multi-call binary.*//')"
TCPDUMP_VERSION="$(tcpdump --version 2>&1 | head -1 | awk '{print $3}')"
UDHCPD_DESC="udhcpd ($BUSYBOX_VERSION), the answering server"

capture udhcpc "busybox udhcpc ($BUSYBOX_VERSION)" \
  in_c busybox udhcpc -i vcli -n -q -t 3 -T 2 -s /bin/true
capture udhcpc-pxe "busybox udhcpc ($BUSYBOX_VERSION) with PXE options" \
  in_c busybox udhcpc -i vcli -n -q -t 3 -T 2 -s /bin/true -V PXEClient -x 0x5d:0000
capture dhclient "ISC dhclient ($(dhclient --version 2>&1 | head -1))" \
  run_for 4 dhclient -d -1 -sf /bin/true -lf "$TMP/dhclient.leases" -pf "$TMP/dhclient.pid" vcli

ip -n "$NS_C" addr add "$RELAY_IP/24" dev vcli
capture perfdhcp "Kea perfdhcp $(perfdhcp -v 2>&1 | head -1) acting as a relay agent" \
  in_c timeout 6 perfdhcp -4 -l "$RELAY_IP" -r 1 -n 1 -R 1 -W 2000000 "$SERVER_IP"

# iPXE (Debian ipxe-qemu ROM in QEMU, TCG, SeaBIOS network boot). QEMU's user-mode network
# with restrict=on answers DHCP itself and lets nothing out; it runs inside the client netns,
# which has only lo, so nothing could leave anyway. filter-dump records the guest's frames.
# The fixed -uuid shows option 97's byte order: SMBIOS UUID 12345678-9abc-def0-... goes on the
# wire as 78 56 34 12 bc 9a f0 de ... (first three groups little-endian).
if command -v qemu-system-x86_64 >/dev/null && [[ -e /usr/lib/ipxe/qemu/efi-e1000.rom ]]; then
  QEMU_ARGS=(-display none -m 128 -boot n -uuid 12345678-9abc-def0-1234-56789abcdef0
    -netdev user,id=n0,restrict=on -device e1000,netdev=n0,mac=52:54:00:12:34:57
    -object "filter-dump,id=f0,netdev=n0,file=$TMP/ipxe.pcap")
  run_for 20 qemu-system-x86_64 "${QEMU_ARGS[@]}"
  convert ipxe "iPXE ($(dpkg-query -W -f='ipxe-qemu ${Version}' ipxe-qemu 2>/dev/null), e1000 ROM) in QEMU $(qemu-system-x86_64 --version | head -1 | awk '{print $4}')" \
    "qemu-slirp (QEMU user-mode network DHCP server)" "ip netns exec <client-ns> qemu-system-x86_64 ${QEMU_ARGS[*]}" \
    "QEMU filter-dump on the guest NIC" "$TMP/ipxe.pcap"
else
  echo "qemu-system-x86_64 or ipxe-qemu missing: skipping the iPXE capture" >&2
fi
