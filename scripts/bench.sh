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
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

start_server() {
  cleanup; pids=()
  case $mode in
    embedded)
      rm -rf "$out/data"
      target/release/coupon --listen "127.0.0.1:$port" --data-dir "$out/data" 2>"$out/server.log" &
      pids+=($!) ;;
    distributed)
      eval "$(scripts/services.sh up)"
      export DATABASE_URL KAFKA_BROKERS
      local topic=bench-$RANDOM$RANDOM
      local key; key=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
      export COUPON_TOPIC=$topic COUPON_SECRET_KEY=$key COUPON_PARTITIONS=8
      psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS coupon_bench WITH (FORCE)" -c "CREATE DATABASE coupon_bench" >/dev/null
      export DATABASE_URL=${DATABASE_URL%/*}/coupon_bench
      target/release/producer --listen "127.0.0.1:$port" 2>"$out/producer.log" & pids+=($!)
      RUST_LOG=${BENCH_CONSUMER_LOG:-info} target/release/consumer --group "$topic" 2>"$out/consumer.log" & pids+=($!) ;;
    *) echo "usage: $0 embedded|distributed" >&2; exit 2 ;;
  esac
  for _ in $(seq 100); do
    curl -sf -H 'Content-Type: application/json' -d '{}' "$url/grpc.health.v1.Health/Check" >/dev/null && return
    sleep 0.2
  done
  echo "server did not start" >&2; exit 1
}

run() {  # name, bench flags...
  local name=$1; shift
  start_server
  echo "== $mode / $name: coupon-bench $*" >&2
  "$bench" --target "$url" --quiet --json "$out/$name.json" "$@" | tee "$out/$name.txt"
}

# Throughput: as fast as it goes, every request accepted (a campaign bigger than the load).
run closed-h1   --mode closed --connections 64 --duration 10 --coupons 10000000
run closed-h2c  --mode closed --connections 16 --http2 --duration 10 --coupons 10000000
# Latency at a fixed 5,000/s.
run open-5000   --mode open --rate 5000 --duration 10 --coupons 10000000
# A 100,000-coupon campaign under a 200,000-user flood; GetCampaign of the result.
run flood-100k  --mode closed --connections 64 --requests 200000 --duration 120 --coupons 100000 --users 200000 --campaign-reads 5
# GetCampaign of a 10,000-coupon campaign, 50 times.
run campaign-10k --mode closed --connections 64 --requests 10000 --duration 60 --coupons 10000 --campaign-reads 50
