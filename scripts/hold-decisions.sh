#!/usr/bin/env bash
# Holds a server's issuing worker back so that accepted tickets stay PENDING, for the
# poll benchmarks (coupon-bench --pause-cmd/--resume-cmd) and by hand:
#   scripts/hold-decisions.sh hold embedded DATA_DIR      # write-locks DATA_DIR/coupon.sqlite
#   scripts/hold-decisions.sh release embedded DATA_DIR
#   scripts/hold-decisions.sh hold distributed CONSUMER_PID     # SIGSTOP
#   scripts/hold-decisions.sh release distributed CONSUMER_PID  # SIGCONT
# Embedded: the API keeps accepting (the log is another file) while the worker's commit
# waits on the lock; past the worker's 10 s busy timeout the batch is retried (back-off up
# to 5 s), so keep holds short. Distributed: past the consumer's session timeout (6 s) its
# partitions are reassigned when it resumes.
set -euo pipefail
action=${1:?hold|release} mode=${2:?embedded|distributed} target=${3:?DATA_DIR or PID}

case $mode/$action in
  embedded/hold)
    ready=$target/.hold.ready; rm -f "$ready"
    python3 - "$target/coupon.sqlite" "$ready" <<'PY' &
import sqlite3, sys, time, pathlib
db = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
db.execute("BEGIN IMMEDIATE")
pathlib.Path(sys.argv[2]).touch()
time.sleep(3600)
PY
    echo $! >"$target/.hold.pid"
    for _ in $(seq 300); do [[ -e $ready ]] && exit 0; sleep 0.1; done
    echo "hold-decisions: the state database was not locked within 30 s" >&2; exit 1 ;;
  embedded/release)
    kill "$(cat "$target/.hold.pid")"; rm -f "$target/.hold.pid" "$target/.hold.ready" ;;
  distributed/hold) kill -STOP "$target" ;;
  distributed/release) kill -CONT "$target" ;;
  *) echo "usage: $0 hold|release embedded DATA_DIR | distributed CONSUMER_PID" >&2; exit 2 ;;
esac
