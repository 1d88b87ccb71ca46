#!/usr/bin/env bash
# Run every fuzz target for a while (default 60s each):
#   scripts/fuzz.sh [DURATION]
# New failing inputs land in the package's testdata/fuzz/, where every
# `go test` replays them.
set -euo pipefail
cd "$(dirname "$0")/.."
TIME=${1:-60s}
targets=(
  "./middleware FuzzClientIP"
  "./middleware FuzzParseKeySource"
  "./middleware FuzzRateLimitHeaders"
  "./gateway FuzzLoad"
  "./gateway FuzzAdmin"
  "./gateway/internal/upstream FuzzHostileUpstream"
)
for t in "${targets[@]}"; do
  set -- $t
  echo "== $2 ($1, $TIME)"
  out=$(go test "$1" -run '^$' -fuzz "^$2\$" -fuzztime "$TIME" 2>&1) || { echo "$out" | tail -30; exit 1; }
  echo "$out" | grep -E 'elapsed' | tail -1
done
