#!/usr/bin/env bash
# Runs the recorded benchmarks (docs/benchmarks.md) against a fresh server of the given
# mode on loopback, and leaves each run's JSON in bench-results/<mode>/.
#   scripts/bench.sh embedded
#   scripts/bench.sh distributed      # starts PostgreSQL + Kafka with scripts/services.sh
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-embedded}
out=bench-results/$mode
mkdir -p "$out"
cargo build --release --workspace --bins >&2
bench=target/release/coupon-bench
port=18180
url=http://127.0.0.1:$port
source scripts/bench-server.sh

run() {  # name, bench flags...
  local name=$1; shift
  start_server
  echo "== $mode / $name: coupon-bench $*" >&2
  "$bench" --target "$url" --quiet --json "$out/$name.json" "$@" | tee "$out/$name.txt"
}

# Throughput: as fast as it goes, every request accepted (a campaign bigger than the load).
# 128 requests in flight: with 64, each waiting ~3 ms for its group commit, the cores
# idle ~20 % of the time and the run measures latency, not capacity.
run closed-h1   --mode closed --connections 128 --duration 10 --coupons 10000000
run closed-h2c  --mode closed --connections 128 --http2 --duration 10 --coupons 10000000
# Latency at a fixed 5,000/s.
run open-5000   --mode open --rate 5000 --duration 10 --coupons 10000000
# A 100,000-coupon campaign under a 200,000-user flood; GetCampaign of the result.
run flood-100k  --mode closed --connections 64 --requests 200000 --duration 120 --coupons 100000 --users 200000 --campaign-reads 5
# GetCampaign of a 10,000-coupon campaign, 50 times.
run campaign-10k --mode closed --connections 64 --requests 10000 --duration 60 --coupons 10000 --campaign-reads 50
