#!/usr/bin/env bash
# The three-node lab cluster, in network namespaces it creates (nothing touches the host's own
# interfaces): a LAN bridge in pxclu-lan, three servers pxclu-srv1..3 with eth0 at
# 10.99.0.1/.2/.3, each running one etcd member and one pxeha node on that address
# (examples/lab-cluster/), and a client namespace pxclu-cli on the same LAN.
#
#   scripts/lab-cluster.sh up       start everything, apply cluster.yaml, print cluster status
#   scripts/lab-cluster.sh status   pxeha cluster status, asked of node1
#   scripts/lab-cluster.sh lease    a DHCP client in pxclu-cli asks for an address
#   scripts/lab-cluster.sh down     stop what `up` started (by PID) and delete the namespaces
#
# `up` records every PID it starts, with its command line, in $work/pids; `down` kills only PIDs
# whose command line still matches, then deletes the namespaces by name and removes $work.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "lab-cluster.sh must run as root (it creates network namespaces)" >&2; exit 1; }

work=/tmp/pxeha-lab-cluster
pids="$work/pids"
lan=pxclu-lan
cli=pxclu-cli
servers=(pxclu-srv1 pxclu-srv2 pxclu-srv3)
peers="m1=http://10.99.0.1:2380,m2=http://10.99.0.2:2380,m3=http://10.99.0.3:2380"

# A process's command line as one line, or nothing when it is gone.
cmdline() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | sed 's/ *$//' || true; }

# Starts a command in a namespace in the background and records its PID and command line.
spawn() {
  local ns=$1 log=$2
  shift 2
  ip netns exec "$ns" "$@" >"$log" 2>&1 &
  local pid=$!
  sleep 0.2
  echo "$pid $(cmdline "$pid")" >>"$pids"
}

down() {
  if [ -f "$pids" ]; then
    # Newest first: pxeha nodes before the etcd members they need to resign.
    tac "$pids" | while read -r pid cmd; do
      [ -n "$pid" ] || continue
      now=$(cmdline "$pid")
      [ -n "$now" ] && [ "$now" = "$cmd" ] || continue
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    done
  fi
  for ns in "$cli" "${servers[@]}" "$lan"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$work"
}

up() {
  bash scripts/install-deps.sh
  command -v etcd >/dev/null || { echo "etcd is not installed (apt-get install etcd-server)" >&2; exit 1; }
  if ip netns list | grep -qw "$lan"; then echo "the lab cluster is already up (scripts/lab-cluster.sh down)" >&2; exit 1; fi
  mkdir -p "$work"
  : >"$pids"
  trap 'echo "up failed; cleaning up" >&2; down' ERR

  ip netns add "$lan"
  ip -n "$lan" link add br0 type bridge
  ip -n "$lan" link set br0 up
  for ns in "${servers[@]}" "$cli"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip -n "$ns" link add eth0 type veth peer name "p-$ns" netns "$lan"
    ip -n "$lan" link set "p-$ns" master br0 up
  done
  for i in 1 2 3; do
    ns=${servers[$((i - 1))]}
    ip -n "$ns" addr add "10.99.0.$i/24" dev eth0
    ip -n "$ns" link set eth0 up
    spawn "$ns" "$work/etcd$i.log" etcd --name "m$i" --data-dir "$work/etcd$i" \
      --listen-client-urls "http://10.99.0.$i:2379" --advertise-client-urls "http://10.99.0.$i:2379" \
      --listen-peer-urls "http://10.99.0.$i:2380" --initial-advertise-peer-urls "http://10.99.0.$i:2380" \
      --initial-cluster "$peers" --initial-cluster-state new --initial-cluster-token pxeha-lab-cluster
  done
  ip -n "$cli" link set eth0 address 52:54:00:99:00:10
  ip -n "$cli" link set eth0 up

  for i in 1 2 3; do
    sed "s#^dataDir: .*#dataDir: $work/node$i#" "examples/lab-cluster/node$i.yaml" >"$work/node$i.yaml"
  done
  echo "--- waiting for etcd"
  for _ in $(seq 1 100); do
    ip netns exec "${servers[0]}" etcdctl --endpoints=http://10.99.0.1:2379 endpoint health >/dev/null 2>&1 && break
    sleep 0.2
  done
  ip netns exec "${servers[0]}" node bin/pxeha.js apply -f examples/lab-cluster/cluster.yaml --config "$work/node1.yaml"
  for i in 1 2 3; do
    spawn "${servers[$((i - 1))]}" "$work/node$i.log" node bin/pxeha.js serve --config "$work/node$i.yaml"
  done
  echo "--- waiting for three members"
  for _ in $(seq 1 150); do
    n=$(ip netns exec "${servers[0]}" node bin/pxeha.js cluster status --config "$work/node1.yaml" -o json 2>/dev/null |
      node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{try{console.log(JSON.parse(s).nodes.length)}catch{console.log(0)}})')
    [ "$n" = 3 ] && break
    sleep 0.2
  done
  trap - ERR
  status
  echo "the lab cluster is up; logs in $work; try: scripts/lab-cluster.sh lease, then down"
}

status() {
  ip netns exec "${servers[0]}" node bin/pxeha.js cluster status --config "$work/node1.yaml"
}

lease() {
  ip netns exec "$cli" busybox udhcpc -i eth0 -n -q -f -t 5 -T 1 -s /bin/true
  ip netns exec "${servers[0]}" node bin/pxeha.js leases --config "$work/node1.yaml"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  lease) lease ;;
  *) echo "usage: $0 up|status|lease|down" >&2; exit 2 ;;
esac
