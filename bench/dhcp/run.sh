#!/usr/bin/env bash
# DHCPv4 benchmark, pxeha vs ISC Kea under the same perfdhcp load, inside network namespaces
# (see bench/dhcp/bench.ts for the method). Prints figures; no pass/fail on speed.
#
# Usage: bash bench/dhcp/run.sh [--seconds 8] [--rate 20000] [--clients 1000000] [--rounds 3]
#                               [--ladder 1000,2000,4000,8000] [--ladder-seconds 4]
#                               [--no-capture] [--json FILE] [--kea-threads N] [--only pxeha|kea]
#                               [--warmup-seconds 2] [--cpu-prof DIR]
#        npm run bench:dhcp -- --rounds 1 --ladder ''
#
# Needs root (ip netns). All traffic stays in the two namespaces the run creates; they are
# removed at the end, on Ctrl-C, and (bench/lib/run-bench.sh) even if the node process dies.
set -euo pipefail
cd "$(dirname "$0")/../.."
source bench/lib/run-bench.sh
bench_require_root bench/dhcp/run.sh

for tool in perfdhcp kea-dhcp4 tcpdump ip; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    bash scripts/install-deps.sh
    break
  fi
done

run_bench bench/dhcp/bench.ts "$@"
