#!/usr/bin/env bash
# Shared by bench/*/run.sh (sourced, not run): runs a bench's TypeScript entry point in the
# background so the traps below fire on Ctrl-C or SIGTERM, and afterwards removes whatever
# network namespaces the bench recorded in $PXEHA_BENCH_STATE and still exist, with the
# processes left in them, even if the bench process itself died without cleaning up.
#
# Usage (from the repository root):
#   source bench/lib/run-bench.sh; bench_require_root bench/x/run.sh; run_bench bench/x/bench.ts "$@"

bench_state=""
bench_child=""

bench_cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ -n "$bench_child" ] && kill -0 "$bench_child" 2>/dev/null; then
    kill -TERM "$bench_child" 2>/dev/null || true
    # Bounded wait: the bench stops its servers and removes its namespaces on SIGTERM.
    for _ in $(seq 50); do kill -0 "$bench_child" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$bench_child" 2>/dev/null || true
  fi
  if [ -n "$bench_state" ] && [ -f "$bench_state" ]; then
    while read -r ns; do
      [ -n "$ns" ] || continue
      if ip netns list | grep -qw -- "$ns"; then
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
      fi
    done <"$bench_state"
    rm -f "$bench_state"
  fi
  exit "$status"
}

# bench_require_root NAME: benches create network namespaces, which needs root.
bench_require_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "$1: run as root (it creates network namespaces)" >&2
    exit 1
  fi
}

# run_bench ENTRY.ts ARGS...
run_bench() {
  local entry=$1
  shift
  bench_state=$(mktemp /tmp/pxeha-bench.XXXXXX)
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  PXEHA_BENCH_STATE="$bench_state" node --import tsx "$entry" "$@" &
  bench_child=$!
  wait "$bench_child"
}
