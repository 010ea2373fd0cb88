#!/usr/bin/env bash
# Ten times the sustainable rate against one node (issue 6): an open-loop phase at the
# base rate, a flood at 10x, and the base rate again, on one server, while its resident
# memory is sampled every 250 ms. Each phase is a full coupon-bench run (its own
# campaign, every accepted ticket polled to a final status, DESIGN §5 verified).
#   scripts/overload.sh embedded|distributed [BASE_RATE]      (default 5000/s)
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

start_server
(
  while kill -0 "$server_pid" 2>/dev/null; do
    echo "$(date +%s.%N) $(awk '/VmRSS/{print $2}' "/proc/$server_pid/status" 2>/dev/null)"
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
# 128 connections: the client may hold 8,192 requests in flight, twice the server's cap.
phase flood --mode open --rate $((base_rate * 10)) --duration 15 --connections 128 --coupons 10000000
phase after --mode open --rate "$base_rate" --duration 10 --coupons 10000000

python3 - "$out" <<'PY'
import json, re, sys
out = sys.argv[1]
rss = [tuple(map(float, l.split())) for l in open(f"{out}/rss.txt") if len(l.split()) == 2]

def buckets(path, metric, labels):
    """Cumulative histogram buckets {le: count} of one series in a /metrics scrape."""
    prefix = re.escape(metric + "_bucket{" + (labels + "," if labels else ""))
    found = {}
    for line in open(path):
        m = re.match(prefix + r'le="([^"]+)"\} (\S+)', line)
        if m:
            found[float(m.group(1))] = float(m.group(2))
    return found

def server_p99(name, metric, labels=""):
    """p99 upper bound (ms) of a histogram over one phase, from the scrapes around it."""
    before = buckets(f"{out}/{name}.metrics-before", metric, labels)
    after = buckets(f"{out}/{name}.metrics-after", metric, labels)
    delta = sorted((le, after[le] - before.get(le, 0)) for le in after)
    total = delta[-1][1] if delta else 0
    for le, count in delta:
        if total and count >= 0.99 * total:
            return le * 1000
    return float("nan")

print(f"{'phase':7} {'offered/s':>9} {'accepted/s':>10} {'refused (OVERLOADED)':>20} {'acc p50':>8} "
      f"{'acc p99':>8} {'final p99':>9} {'srv wait p99':>12} {'srv issue p99':>13} {'peak RSS':>9}")
for name in ("before", "flood", "after"):
    r = json.load(open(f"{out}/{name}.json"))
    start, end = (float(open(f"{out}/{name}.{e}").read()) for e in ("start", "end"))
    peak = max((kb for t, kb in rss if start <= t <= end), default=0) / 1024
    refused = sum(r["refused"].values())
    wait = server_p99(name, "coupon_admission_wait_seconds")
    issue = server_p99(name, "coupon_rpc_duration_seconds",
                       'procedure="/coupon.v1.CouponService/IssueCoupon"')
    print(f"{name:7} {r['rate']:>9} {r['accepted_per_s']:>10.0f} {refused:>20} "
          f"{r['accept_latency_ms']['p50']:>8.1f} {r['accept_latency_ms']['p99']:>8.1f} "
          f"{r['final_latency_ms']['p99']:>9.1f} {wait:>10.1f}ms {issue:>11.1f}ms {peak:>6.0f} MB"
          f"  violations: {len(r['violations'])}")
print("acc/final: client-side, from when each request was due; srv: the server's own histograms"
      " (bucket upper bounds), wait for a turn and the IssueCoupon handler")
PY
