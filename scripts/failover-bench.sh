#!/usr/bin/env bash
# The failover run of docs/benchmarks.md (issue 15): IssueCoupon in an open loop at
# 5,000/s for 30 s on the three-node Kafka cluster (scripts/services.sh up --kafka-nodes 3),
# one producer and one consumer; 10 s in, the broker leading the campaign's partition is
# SIGKILLed, and restarted 5 s later. Leaves coupon-bench's JSON, text and charts in
# bench-results/failover/, and prints the run's figures and the unavailability window:
# the seconds in which fewer than half the rate was accepted (docs/benchmarks.md, "On a
# replicated three-node Kafka cluster").
#   scripts/failover-bench.sh            # FAILOVER_ACTION=pause freezes the leader instead
set -euo pipefail
cd "$(dirname "$0")/.."
mode=distributed
export BENCH_KAFKA_NODES=3
out=bench-results/failover
mkdir -p "$out"
port=18180
url=http://127.0.0.1:$port
cargo build --release --workspace --bins >&2
source scripts/bench-server.sh
services() { scripts/services.sh --kafka-nodes 3 "$@"; }

# The node leading the partition that holds the campaign (the topic's only records).
campaign_leader() {
  local partition="" i
  for i in $(seq 60); do
    partition=$(services kafka-cmd org.apache.kafka.tools.GetOffsetShell \
      --bootstrap-server "$KAFKA_BROKERS" --topic "$COUPON_TOPIC" 2>/dev/null |
      awk -F: '$3 > 0 {print $2; exit}')
    [[ -n $partition ]] && break
    sleep 0.5
  done
  [[ -n $partition ]] || { echo "the campaign never reached the topic" >&2; exit 1; }
  services kafka-cmd org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BROKERS" \
    --describe --topic "$COUPON_TOPIC" 2>/dev/null |
    awk -v p="$partition" '$3 == "Partition:" && $4 == p {for (i = 1; i < NF; i++) if ($i == "Leader:") print $(i + 1)}'
}

start_server
echo "== failover: open loop 5,000/s for 30 s on $KAFKA_BROKERS" >&2
started=$SECONDS
target/release/coupon-bench --target "$url" --quiet --json "$out/failover.json" --svg "$out/charts" \
  --mode open --rate 5000 --duration 30 --coupons 10000000 >"$out/failover.txt" &
bench_pid=$!
leader=$(campaign_leader)
while (( SECONDS - started < 10 )); do sleep 0.1; done
if [[ ${FAILOVER_ACTION:-kill} == pause ]]; then
  services pause-kafka "$leader"; sleep 10; services resume-kafka "$leader"
else
  services kill-kafka "$leader"; sleep 5; services restart-kafka "$leader"
fi
rc=0
wait "$bench_pid" || rc=$?
cat "$out/failover.txt"
python3 - "$out/failover.json" "$leader" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
rate = r["rate"] or 0
low = [i for i, n in enumerate(r["accepted_per_second"]) if n < rate / 2]
# The last second is partial: a low count there is the run's end, not the failover.
low = [i for i in low if i < len(r["accepted_per_second"]) - 1]
print(f"leader {sys.argv[2]} of the campaign's partition: {len(low)} s below half the rate "
      f"(seconds {low} of the issue phase); "
      f"accepted {r['accepted_per_s']:.0f}/s, ratio to health {r['ratio_to_health']:.2f}, "
      f"accept p99 {r['accept_latency_ms']['p99']:.1f} ms, refused {r['refused']}")
PY
exit "$rc"
