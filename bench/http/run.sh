#!/usr/bin/env bash
# HTTP artifact benchmark, pxeha vs nginx serving the same directory, inside a network
# namespace (see bench/http/bench.ts for the method). Prints figures; no pass/fail on speed.
#
# Usage: bash bench/http/run.sh [--rounds 3] [--size-mib 100] [--sequential 5] [--parallel 4]
#                               [--wrk-threads 2] [--wrk-connections 64] [--wrk-seconds 10]
#                               [--nginx-workers 1|auto] [--script-seconds 5] [--cpu-prof DIR]
#                               [--only pxeha|nginx] [--json FILE]
#        npm run bench:http -- --rounds 1
#
# Needs root (ip netns) and curl, wrk and nginx (Debian packages curl, wrk, nginx; installed
# here with apt-get when missing). All traffic stays on the loopback of the one namespace the
# run creates; it is removed at the end, on Ctrl-C, and (bench/lib/run-bench.sh) even if the
# bench process dies.
set -euo pipefail
cd "$(dirname "$0")/../.."
source bench/lib/run-bench.sh
bench_require_root bench/http/run.sh

export PATH="$PATH:/usr/sbin:/sbin"
missing=()
for want in "curl curl" "wrk wrk" "nginx nginx" "ip iproute2"; do
  command -v "${want%% *}" >/dev/null 2>&1 || missing+=("${want#* }")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "bench/http/run.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

run_bench bench/http/bench.ts "$@"
