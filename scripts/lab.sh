#!/usr/bin/env bash
# The main job: a lab network in network namespaces (server 10.99.0.1/24 on eth0, one client
# across a veth pair), pxeha serving it with examples/lab/, and busybox udhcpc getting a lease
# from it. Serves until Ctrl-C (or exits at once with --once), then removes everything it made.
# Nothing touches the host's own interfaces.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "lab.sh must run as root (it creates network namespaces)" >&2; exit 1; }
bash scripts/install-deps.sh

once=false
[ "${1:-}" = "--once" ] && once=true
id=$$
srv="pxlab-srv-$id"
cli="pxlab-cli-$id"
work=$(mktemp -d /tmp/pxeha-lab.XXXXXX)
server_pid=""

cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  ip netns del "$cli" 2>/dev/null || true
  ip netns del "$srv" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$srv"
ip netns add "$cli"
ip -n "$srv" link add eth0 type veth peer name eth0 netns "$cli"
ip -n "$srv" link set lo up
ip -n "$cli" link set lo up
ip -n "$srv" addr add 10.99.0.1/24 dev eth0
ip -n "$srv" link set eth0 up
ip -n "$cli" link set eth0 address 52:54:00:99:00:10
ip -n "$cli" link set eth0 up

sed "s#^dataDir: .*#dataDir: $work/lab1#" examples/lab/node.yaml > "$work/node.yaml"
node bin/pxeha.js apply -f examples/lab/cluster.yaml --config "$work/node.yaml"
ip netns exec "$srv" node bin/pxeha.js serve --config "$work/node.yaml" &
server_pid=$!

# Wait until the server's DHCP socket is bound in its namespace.
for _ in $(seq 1 100); do
  ip netns exec "$srv" ss -Hlun 'sport = :67' | grep -q . && break
  sleep 0.1
done

cat > "$work/udhcpc.sh" <<'SCRIPT'
#!/bin/sh
[ "$1" = bound ] && echo "client got $ip/$mask router $router dns $dns lease ${lease}s from $serverid"
exit 0
SCRIPT
chmod +x "$work/udhcpc.sh"
echo "--- a reserved client (52:54:00:99:00:10) asks for an address"
ip netns exec "$cli" busybox udhcpc -i eth0 -n -q -f -t 5 -T 1 -s "$work/udhcpc.sh"
ip -n "$cli" link set eth0 address 52:54:00:99:00:77
echo "--- a dynamic client (52:54:00:99:00:77) asks for an address"
ip netns exec "$cli" busybox udhcpc -i eth0 -n -q -f -t 5 -T 1 -s "$work/udhcpc.sh"
echo "--- pxeha leases"
node bin/pxeha.js leases --config "$work/node.yaml"

if ! $once; then
  echo "pxeha is serving 10.99.0.0/24 in namespace $srv; try: ip netns exec $cli busybox udhcpc -i eth0 -n -q -f"
  echo "Ctrl-C to stop and remove the lab"
  wait "$server_pid"
fi
