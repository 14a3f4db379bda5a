#!/usr/bin/env bash
# Runs every test file with Node's own runner. Node 20's `node --test DIR` finds no .ts files
# and still exits 0, so we list the files ourselves and fail when none ran.
# Usage: scripts/test.sh [unit|integration|all|faults] (default all)
# faults: only test/faults/ (the fault suite; `all` runs its short form, PXEHA_FAULTS=long its
# long form).
set -euo pipefail
cd "$(dirname "$0")/.."
scope="${1:-all}"

if [ "$scope" != unit ]; then
  bash scripts/install-deps.sh
fi

unit=$(find src -name '*.test.ts' | sort)
integration=$(find test -name '*.test.ts' -not -path 'test/faults/*' | sort)
faults=$(find test/faults -name '*.test.ts' | sort)
case "$scope" in
  unit) files="$unit" ;;
  integration) files="$integration" ;;
  all) files="$unit $integration $faults" ;;
  faults) files="$faults" ;;
  *) echo "unknown scope: $scope" >&2; exit 2 ;;
esac
[ -n "${files// /}" ] || { echo "no test files found" >&2; exit 1; }

npx tsc -p tsconfig.json --noEmit
# The dashboard (ui/, served at /ui/) is built for the tests that load it in Chromium.
if [ "$scope" != unit ]; then npm run --silent build:ui; fi

report=$(mktemp)
trap 'rm -f "$report"' EXIT
# One file at a time: the integration, end-to-end and fault tests time real firmware and
# real failovers on a 2-core machine, and share it badly.
set +e
node --import tsx --test --test-concurrency=1 --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$report" $files
status=$?
set -e
tests=$(grep -E '^# tests [0-9]+' "$report" | awk '{print $3}' | tail -1)
echo "tests run: ${tests:-0}"
if [ "${tests:-0}" -eq 0 ]; then echo "no tests ran" >&2; exit 1; fi
exit $status
