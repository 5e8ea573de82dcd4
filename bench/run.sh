#!/usr/bin/env bash
# Every benchmark in one run, on one machine, so that the ratios in BENCHMARKS.md come from the
# same run: the in-process hot path (criterion means, then each call timed alone for p50/p99),
# permgate against Cedar, Rego and casbin on one model (every answer checked first), and the HTTP
# load runs (hello-world hyper, the decision API, nginx plain, the gateway, nginx + auth_request).
# Writes everything to target/bench-results/<UTC time>.txt as well as the terminal.
# Needs what bench/http.sh needs (wrk, nginx, curl, jq). Usage: bench/run.sh [seconds per HTTP run]
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target/bench-results
OUT=target/bench-results/$(date -u +%Y-%m-%dT%H%M%SZ).txt
{
  echo "# permgate benchmarks, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "# $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(free -g | awk '/Mem:/ {print $2}') GiB; $(rustc --version)"
  echo "== in process: criterion (cargo bench -p permgate-core --bench decide)"
  cargo bench -q -p permgate-core --bench decide -- --warm-up-time 2 --measurement-time 5 2>&1 | grep -E "^[a-z].*|time:" | grep -v "^Benchmarking"
  echo "== in process: each call timed alone (cargo bench -p permgate-core --bench latency)"
  cargo bench -q -p permgate-core --bench latency
  echo "== against the peers (cargo bench --manifest-path bench/peers/Cargo.toml)"
  cargo bench -q --manifest-path bench/peers/Cargo.toml -- --warm-up-time 1 --measurement-time 4 2>&1 | grep -E "^[a-zA-Z0-9].*|time:" | grep -v "^Benchmarking"
  echo "== HTTP (bench/http.sh)"
  bench/http.sh "${1:-8}"
} 2>&1 | tee "$OUT"
echo "results in $OUT"
