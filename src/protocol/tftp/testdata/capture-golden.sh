#!/usr/bin/env bash
# Capture real TFTP packets from real clients and a real server as golden bytes for the codec
# tests (src/protocol/tftp/testdata/*.hex, one packet a file, a comment per field).
#
# Network rule: everything runs inside two network namespaces this script creates and always
# deletes (trap on EXIT), joined by one veth pair. Nothing touches the host's interfaces and
# nothing is sent outside this machine.
#
#   pxtcap-$$-c  client side: vcli 10.99.0.2/24, the clients run here
#   pxtcap-$$-s  server side: vsrv 10.99.0.1/24, tftpd-hpa (in.tftpd -L) answering, tcpdump recording
#
# Scenarios (each its own recording, so a file name says which exchange it came from):
#   tftp-hpa           tftp-hpa client, octet get, no options
#   tftp-hpa-netascii  tftp-hpa client, netascii get of a file with LF, CR and CRLF
#   tftp-hpa-put       tftp-hpa client, put (in.tftpd without -c refuses it)
#   atftp              atftp 0.8 get with blksize, tsize, timeout and windowsize options
#   curl               curl tftp:// get with --tftp-blksize 1468 (curl adds tsize and timeout)
#   curl-missing       curl tftp:// get of a file that does not exist
# Client packets land in <scenario>-<type>.hex, server packets in tftpd-hpa-<type>-to-<scenario>.hex;
# the first packet of each kind is kept. Files are overwritten; ports change every run but are
# not in the payload, so a new capture normally gives the same bytes.
#
# Needs root, iproute2, tcpdump, tftpd-hpa, tftp-hpa, atftp, curl, node.
# Usage: bash src/protocol/tftp/testdata/capture-golden.sh [outdir]   (default: this folder)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${1:-$HERE}"
NS_C="pxtcap-$$-c"
NS_S="pxtcap-$$-s"
TMP="$(mktemp -d /tmp/pxtcap.XXXXXX)"
SERVER_IP="10.99.0.1"
TODAY="$(date -u +%F)"
PIDS=()
export PATH="$PATH:/usr/sbin:/sbin"

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  ip netns del "$NS_C" 2>/dev/null || true
  ip netns del "$NS_S" 2>/dev/null || true
  [ -n "${KEEP_TMP:-}" ] || rm -rf "$TMP"
}
trap cleanup EXIT

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
ip -n "$NS_C" addr add 10.99.0.2/24 dev vcli
ip -n "$NS_C" link set vcli up
ip -n "$NS_S" addr add "$SERVER_IP/24" dev vsrv
ip -n "$NS_S" link set vsrv up

mkdir -p "$TMP/root" "$TMP/client"
printf 'hello, pxeha\n' >"$TMP/root/hello.txt"
printf 'a\nb\rc\r\n' >"$TMP/root/text.txt"
printf 'upload\n' >"$TMP/client/up.txt"

# -L: foreground; -s: chroot-style root; -u root: no user switch needed for the capture.
ip netns exec "$NS_S" in.tftpd -L -a "$SERVER_IP:69" -u root -s "$TMP/root" >"$TMP/tftpd.log" 2>&1 &
PIDS+=($!)
sleep 0.5

TFTPD_DESC="tftpd-hpa ($(in.tftpd -V 2>&1 | head -1))"
TCPDUMP_VERSION="$(tcpdump --version 2>&1 | head -1 | awk '{print $3}')"

capture() {
  local name="$1" desc="$2"
  shift 2
  local pcap="$TMP/$name.pcap"
  ip netns exec "$NS_S" tcpdump -i vsrv -n -U --immediate-mode -s 0 -w "$pcap" udp 2>"$TMP/$name.tcpdump.log" &
  local tcpdump_pid=$!
  PIDS+=("$tcpdump_pid")
  for _ in $(seq 50); do grep -q listening "$TMP/$name.tcpdump.log" && break; sleep 0.1; done
  (cd "$TMP/client" && timeout 20 ip netns exec "$NS_C" "$@") >"$TMP/$name.client.log" 2>&1 || true
  sleep 0.5
  kill -INT "$tcpdump_pid"
  wait "$tcpdump_pid" 2>/dev/null || true
  forget "$tcpdump_pid"
  SCENARIO="$name" CLIENT_DESC="$desc" SERVER_DESC="$TFTPD_DESC" CLIENT_CMD="ip netns exec <client-ns> $*" \
    RECORDER="tcpdump $TCPDUMP_VERSION on the server end of a veth pair" PCAP="$pcap" OUT="$OUT" TODAY="$TODAY" \
    SERVER_IP="$SERVER_IP" PCAP_UDP="$HERE/../../../../scripts/lib/pcap-udp.mjs" node "$TMP/pcap-to-hex.mjs"
}

cat >"$TMP/pcap-to-hex.mjs" <<'EOF'
// pcap (Ethernet link type) -> one annotated .hex per UDP payload. Deliberately independent of
// the codec under test: a plain walk of the RFC 1350 / RFC 2347 layouts.
import { writeFileSync } from 'node:fs';
const env = process.env;
const { hexLines, udpDatagrams } = await import(env.PCAP_UDP);
const OPS = { 1: 'rrq', 2: 'wrq', 3: 'data', 4: 'ack', 5: 'error', 6: 'oack' };
const written = new Set();
for (const { payload: p, srcIp, wire } of udpDatagrams(env.PCAP)) {
  const { lines, row, rows } = hexLines();
  const op = p.readUInt16BE(0);
  const type = OPS[op] ?? `op${op}`;
  row(p.subarray(0, 2), `opcode ${op} ${type.toUpperCase()} (RFC ${op === 6 ? '2347 §2' : '1350 §5'})`);
  let o = 2;
  const cstr = (what) => {
    const z = p.indexOf(0, o);
    const end = z < 0 ? p.length : z;
    rows(p.subarray(o, end), `${what} ${JSON.stringify(p.subarray(o, end).toString('latin1'))}`);
    if (z >= 0) row(p.subarray(z, z + 1), `  NUL`);
    o = end + 1;
  };
  if (op === 1 || op === 2 || op === 6) {
    if (op !== 6) { cstr('filename'); cstr('mode'); }
    while (o < p.length) { cstr('option name (RFC 2347 §2)'); if (o < p.length) cstr('  value'); }
  } else if (op === 3) {
    row(p.subarray(2, 4), `block ${p.readUInt16BE(2)}`);
    rows(p.subarray(4), `data, ${p.length - 4} bytes ${JSON.stringify(p.subarray(4, 40).toString('latin1'))}`);
  } else if (op === 4) {
    row(p.subarray(2, 4), `block ${p.readUInt16BE(2)}`);
  } else if (op === 5) {
    row(p.subarray(2, 4), `error code ${p.readUInt16BE(2)}`);
    o = 4;
    cstr('error message');
  }
  const fromServer = srcIp === env.SERVER_IP;
  const base = fromServer ? `tftpd-hpa-${type}-to-${env.SCENARIO}` : `${env.SCENARIO}-${type}`;
  if (written.has(base)) continue;
  written.add(base);
  const header = [
    `# TFTP ${type.toUpperCase()} sent by ${fromServer ? env.SERVER_DESC : env.CLIENT_DESC}`,
    `# Captured ${env.TODAY} by src/protocol/tftp/testdata/capture-golden.sh inside a private network namespace`,
    `# Recorded with: ${env.RECORDER}`,
    `# Client command: ${env.CLIENT_CMD}`,
    `# Wire: UDP ${wire}, ${p.length} bytes of TFTP payload`,
  ];
  writeFileSync(`${env.OUT}/${base}.hex`, `${header.join('\n')}\n${lines.join('\n')}\n`);
  console.log(`wrote ${base}.hex`);
}
EOF

ATFTP_DESC="atftp $(dpkg-query -W -f='${Version}' atftp 2>/dev/null || echo '?')"
TFTP_DESC="tftp-hpa $(dpkg-query -W -f='${Version}' tftp-hpa 2>/dev/null || echo '?') client"
CURL_DESC="$(curl --version | head -1 | awk '{print $1, $2}')"

capture tftp-hpa "$TFTP_DESC" tftp "$SERVER_IP" -m octet -c get hello.txt
capture tftp-hpa-netascii "$TFTP_DESC" tftp "$SERVER_IP" -m netascii -c get text.txt
capture tftp-hpa-put "$TFTP_DESC" tftp "$SERVER_IP" -m octet -c put up.txt
capture atftp "$ATFTP_DESC" atftp --get -r hello.txt -l hello.out --option "blksize 1468" --option "tsize 0" \
  --option "timeout 3" --option "windowsize 8" "$SERVER_IP"
capture curl "$CURL_DESC" curl -sS -o hello.out --tftp-blksize 1468 "tftp://$SERVER_IP/hello.txt"
capture curl-missing "$CURL_DESC" curl -sS -o missing.out "tftp://$SERVER_IP/missing.bin"
