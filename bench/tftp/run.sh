#!/usr/bin/env bash
# TFTP benchmark, pxeha vs in.tftpd (tftpd-hpa) serving the same directory, inside a network
# namespace (see bench/tftp/bench.ts for the method). Prints figures; no pass/fail on speed.
#
# Usage: bash bench/tftp/run.sh [--rounds 3] [--size-mib 32] [--blksize 1468] [--windowsize 16]
#                               [--concurrent 200] [--concurrent-size-mib 4] [--rtt-ms 1]
#                               [--rtt-size-mib 2] [--churn 2000] [--cpu-prof DIR]
#        npm run bench:tftp -- --rounds 1
#
# Needs root (ip netns), curl and tftpd-hpa (scripts/install-deps.sh installs them). All
# traffic stays on the loopback of the one namespace the run creates; it is removed at the end,
# on Ctrl-C, and (bench/lib/run-bench.sh) even if the bench process dies.
set -euo pipefail
cd "$(dirname "$0")/../.."
source bench/lib/run-bench.sh
bench_require_root bench/tftp/run.sh
export PATH="$PATH:/usr/sbin:/sbin"
for want in curl in.tftpd ip; do
  command -v "$want" >/dev/null 2>&1 || { echo "bench/tftp/run.sh: $want missing (bash scripts/install-deps.sh)" >&2; exit 1; }
done
run_bench bench/tftp/bench.ts "$@"
