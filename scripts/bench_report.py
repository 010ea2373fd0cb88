#!/usr/bin/env python3
"""Figures from coupon-bench's JSON reports and the servers' /metrics scrapes.

  scripts/bench_report.py summary DIR   # the runs of scripts/bench.sh: median, best, worst

Used by scripts/bench.sh and scripts/overload.sh; standard library only.
"""
import glob
import json
import os
import re
import statistics
import sys


def buckets(path, metric, labels=""):
    """Cumulative histogram buckets {le: count} of one series in a /metrics scrape."""
    prefix = re.escape(metric + "_bucket{" + (labels + "," if labels else ""))
    found = {}
    if not os.path.exists(path):
        return found
    for line in open(path):
        m = re.match(prefix + r'le="([^"]+)"\} (\S+)', line)
        if m:
            found[float(m.group(1))] = float(m.group(2))
    return found


def histogram_p99(after, metric, labels="", before=None):
    """p99 upper bound (ms) of a histogram: the smallest bucket holding 99 % of what
    was recorded between two scrapes (or since the start, without `before`)."""
    start = buckets(before, metric, labels) if before else {}
    delta = sorted((le, count - start.get(le, 0)) for le, count in buckets(after, metric, labels).items())
    total = delta[-1][1] if delta else 0
    for le, count in delta:
        if total and count >= 0.99 * total:
            return le * 1000
    return float("nan")


ISSUE = 'procedure="/coupon.v1.CouponService/IssueCoupon"'

# (column, unit, where to read it, better when higher)
COLUMNS = [
    ("health/s", "", lambda r, m: r["health_per_s"], True),
    ("accepted/s", "", lambda r, m: r["accepted_per_s"], True),
    ("ratio", "", lambda r, m: r["ratio_to_health"], True),
    ("accept p50", "ms", lambda r, m: r["accept_latency_ms"]["p50"], False),
    ("accept p99", "ms", lambda r, m: r["accept_latency_ms"]["p99"], False),
    ("accept max", "ms", lambda r, m: r["accept_latency_ms"]["max"], False),
    ("final p99", "ms", lambda r, m: r["final_latency_ms"]["p99"], False),
    ("GetCampaign p99", "ms", lambda r, m: r["get_campaign_latency_ms"]["p99"] or None, False),
    ("srv IssueCoupon p99 ≤", "ms", lambda r, m: histogram_p99(m("api"), "coupon_rpc_duration_seconds", ISSUE), False),
    ("srv append p99 ≤", "ms", lambda r, m: histogram_p99(m("api"), "coupon_log_append_seconds"), False),
    ("worker batch p99 ≤", "ms", lambda r, m: histogram_p99(m("worker"), "coupon_decision_latency_seconds"), False),
]


def fmt(value):
    if value is None or value != value:  # None or NaN
        return "—"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if value < 1 else f"{value:.1f}"


def summary(out):
    """One row per scenario: the median of its runs, then [best–worst]."""
    runs = {}
    for path in sorted(glob.glob(f"{out}/*.run*.json")):
        name, number = re.match(r".*/(.+)\.run(\d+)\.json$", path).groups()
        runs.setdefault(name, []).append((path, number))
    print("| run | runs | " + " | ".join(c for c, _, _, _ in COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for name, paths in runs.items():
        cells = []
        for _, unit, read, higher_is_better in COLUMNS:
            values = []
            for path, number in paths:
                report = json.load(open(path))
                scrape = lambda side: f"{out}/{name}.run{number}.{side}.metrics"
                value = read(report, scrape)
                if value is not None and value == value:
                    values.append(value)
            if not values:
                cells.append("—")
                continue
            best, worst = (max(values), min(values)) if higher_is_better else (min(values), max(values))
            cells.append(f"**{fmt(statistics.median(values))}** [{fmt(best)}–{fmt(worst)}]")
        print(f"| {name} | {len(paths)} | " + " | ".join(cells) + " |")
    machine = sorted(glob.glob(f"{out}/machine.*.json"))
    for path in machine:
        m = json.load(open(path))
        print(f"\nmachine ({os.path.basename(path)[8:-5]}): sha256 {m['sha256_mb_s']:.0f} MB/s on one core, "
              f"a 4 KiB write + fdatasync {m['fsync_ms']:.2f} ms, {m['cores']} cores, load {m['load1']}")
    print("\nEach cell: the median of the runs, then [best–worst]. health/s and accepted/s are "
          "client-side closed loops; srv/worker: the servers' own histograms (bucket upper bounds).")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "summary":
        sys.exit(__doc__)
    summary(sys.argv[2])
