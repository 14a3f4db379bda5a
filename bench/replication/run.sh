#!/usr/bin/env bash
# Replication benchmark, pxeha vs rsync (daemon on node1, clients on node2 and node3) in the
# HA lab's network namespaces (see bench/replication/bench.ts for the method). Prints figures;
# no pass/fail on speed.
#
# Usage: bash bench/replication/run.sh [--size-mib 1024] [--delta-size-mib 256] [--rounds 1] [--parallel 4]
#        npm run bench:replication -- --rounds 2
#
# Needs root (ip netns), rsync, etcd and curl (scripts/install-deps.sh installs them). Traffic
# stays inside the namespaces the run creates; they are removed at the end, on Ctrl-C, and
# (bench/lib/run-bench.sh) even if the bench process dies.
set -euo pipefail
cd "$(dirname "$0")/../.."
source bench/lib/run-bench.sh
bench_require_root bench/replication/run.sh
export PATH="$PATH:/usr/sbin:/sbin"
for want in rsync etcd etcdctl curl ip; do
  command -v "$want" >/dev/null 2>&1 || { echo "bench/replication/run.sh: $want missing (bash scripts/install-deps.sh)" >&2; exit 1; }
done
run_bench bench/replication/bench.ts "$@"
