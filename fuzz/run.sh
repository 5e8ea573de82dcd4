#!/usr/bin/env bash
# Runs every fuzz target for SECS seconds (default 60), starting from the committed corpus in
# corpus/<target>/ (read only: new inputs go to a scratch directory). A crash stops the run and
# leaves the input in artifacts/<target>/; turn it into a regression test before fixing it.
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
#   fuzz/run.sh          # one minute per target
#   fuzz/run.sh 3600     # an hour per target
set -euo pipefail
cd "$(dirname "$0")"
SECS=${1:-60}
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
for target in catalog routes credentials json_bodies; do
  mkdir -p "$SCRATCH/$target"
  echo "== fuzz $target for ${SECS}s"
  cargo +nightly fuzz run "$target" "$SCRATCH/$target" "corpus/$target" -- \
    -max_total_time="$SECS" -max_len=131072 -print_final_stats=1 2>&1 \
    | grep -E "^(stat::number_of_executed_units|stat::new_units_added|==[0-9]+==|SUMMARY|INFO: a crash|Done)" || true
  if ls artifacts/"$target"/crash-* > /dev/null 2>&1; then
    echo "fuzz target $target crashed: see fuzz/artifacts/$target/" >&2
    exit 1
  fi
done
