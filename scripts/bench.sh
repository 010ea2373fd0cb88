#!/usr/bin/env bash
# Runs the recorded benchmarks (docs/benchmarks.md) against a fresh server of the given
# mode on loopback, and leaves each run's JSON in bench-results/<mode>/.
#   scripts/bench.sh embedded
#   scripts/bench.sh distributed      # starts PostgreSQL + Kafka with scripts/services.sh
#   scripts/bench.sh embedded poll    # the poll-storm set only (issue 13)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-embedded}
set_name=${2:-all}
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

hold() { echo "scripts/hold-decisions.sh $1 $mode $hold_target"; }

poll_set() {
  # 100,000 users on 10,000 coupons, each long-polling its ticket to a final status.
  run poll-long   --scenario poll-storm --poll long --wait-ms 10000 --users 100000 --coupons 10000 \
                  --connections 64 --http2
  # The same storm short-polling, honouring retryAfterMs.
  run poll-short  --scenario poll-storm --poll short --users 100000 --coupons 10000 --connections 64 --http2
  # PENDING polls as fast as they go (the worker held back), then 20,000 long-polls
  # waiting at once on one node (h2c, 100 connections), with the node's memory.
  start_server
  echo "== $mode / poll-held" >&2
  "$bench" --target "$url" --quiet --json "$out/poll-held.json" --scenario poll-storm \
    --users 10000 --coupons 10000 --connections 100 --http2 --wait-ms 10000 \
    --pause-cmd "$(hold hold)" --resume-cmd "$(hold release)" --server-pid "$server_pid" \
    --pending-poll-secs 5 --pending-tickets 1000 --waiters 20000 | tee "$out/poll-held.txt"
}
if [[ $set_name == poll ]]; then poll_set; exit; fi

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
