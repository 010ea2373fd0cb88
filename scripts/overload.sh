#!/usr/bin/env bash
# Ten times the sustainable rate against one node (issue 6): an open-loop phase at the
# base rate, a flood at 10x, and the base rate again, on one server, while its resident
# memory is sampled every 250 ms. Each phase is a full coupon-bench run (its own
# campaign, every accepted ticket polled to a final status, DESIGN §5 verified).
#   scripts/overload.sh embedded|distributed [BASE_RATE [SERVER FLAGS...]]   (default 5000/s)
# OVERLOAD_FLOOD_SECS sets the flood's length (default 15 s).
# Leaves JSON, text and rss.txt in bench-results/overload-<mode>/ and prints a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-embedded}
base_rate=${2:-5000}
out=bench-results/overload-$mode
mkdir -p "$out"
cargo build --release --workspace --bins >&2
bench=target/release/coupon-bench
port=18181
url=http://127.0.0.1:$port
source scripts/bench-server.sh

start_server "${@:3}"
(
  while kill -0 "$server_pid" 2>/dev/null; do
    lag=$(curl -s --max-time 1 "$url/metrics" | awk '/^coupon_decision_lag_seconds/{print $2; exit}' || true)
    mem=$(awk '/^RssAnon/{a=$2} /^RssFile/{f=$2} END{print a+0, f+0}' "/proc/$server_pid/status" 2>/dev/null || true)
    echo "$(date +%s.%N) ${mem:-0 0} ${lag:-0}"
    sleep 0.25
  done
) >"$out/rss.txt" &
pids+=($!)

phase() {  # name, bench flags...
  local name=$1; shift
  echo "== overload / $mode / $name: coupon-bench $*" >&2
  date +%s.%N >"$out/$name.start"
  curl -s "$url/metrics" >"$out/$name.metrics-before"
  "$bench" --target "$url" --quiet --health-duration 1 --json "$out/$name.json" "$@" | tee "$out/$name.txt"
  curl -s "$url/metrics" >"$out/$name.metrics-after"
  date +%s.%N >"$out/$name.end"
}

phase before --mode open --rate "$base_rate" --duration 10 --coupons 10000000
# h2c, 128 connections: the client may hold 8,192 requests in flight and HTTP/2 lets them
# all reach the server (over HTTP/1.1 they would queue in the client's connection pool),
# beyond the server's default 512 running + 4,096 waiting.
phase flood --mode open --rate $((base_rate * 10)) --duration "${OVERLOAD_FLOOD_SECS:-15}" --connections 128 --http2 --coupons 10000000
phase after --mode open --rate "$base_rate" --duration 10 --coupons 10000000

python3 - "$out" <<'PY'
import json, sys
sys.path.insert(0, "scripts")
from bench_report import histogram_p99
out = sys.argv[1]
samples = [tuple(map(float, l.split())) for l in open(f"{out}/rss.txt") if len(l.split()) == 4]

def server_p99(name, metric, labels=""):
    """p99 upper bound (ms) of a histogram over one phase, from the scrapes around it."""
    return histogram_p99(f"{out}/{name}.metrics-after", metric, labels, before=f"{out}/{name}.metrics-before")

print(f"{'phase':7} {'offered/s':>9} {'accepted/s':>10} {'refused (OVERLOADED)':>20} {'acc p50':>8} "
      f"{'acc p99':>8} {'final p99':>9} {'srv wait p99':>12} {'srv issue p99':>13} {'max lag':>8} {'RSS anon/file':>14}")
for name in ("before", "flood", "after"):
    r = json.load(open(f"{out}/{name}.json"))
    start, end = (float(open(f"{out}/{name}.{e}").read()) for e in ("start", "end"))
    anon = max((a for t, a, _, _ in samples if start <= t <= end), default=0) / 1024
    file = max((f for t, _, f, _ in samples if start <= t <= end), default=0) / 1024
    lag = max((s for t, _, _, s in samples if start <= t <= end), default=0) * 1000
    refused = sum(r["refused"].values())
    wait = server_p99(name, "coupon_admission_wait_seconds")
    issue = server_p99(name, "coupon_rpc_duration_seconds",
                       'procedure="/coupon.v1.CouponService/IssueCoupon"')
    print(f"{name:7} {r['rate']:>9} {r['accepted_per_s']:>10.0f} {refused:>20} "
          f"{r['accept_latency_ms']['p50']:>8.1f} {r['accept_latency_ms']['p99']:>8.1f} "
          f"{r['final_latency_ms']['p99']:>9.1f} {wait:>10.1f}ms {issue:>11.1f}ms {lag:>6.0f}ms {anon:>5.0f}/{file:.0f} MB"
          f"  violations: {len(r['violations'])}")
print("acc/final: client-side, from when each request was due; srv: the server's own histograms"
      " (bucket upper bounds), wait for a turn and the IssueCoupon handler; max lag: the largest"
      " decision lag sampled (append to decision of the last decided request)")
PY
