# Sourced by scripts/bench.sh and scripts/overload.sh: starts a fresh server of $mode
# (embedded, or producer + consumer on the local PostgreSQL and Kafka) on $port, with
# its logs and data under $out, and stops it on exit. Extra arguments go to the API
# binary (coupon or producer). Sets $server_pid to the API process, $hold_target to
# what scripts/hold-decisions.sh holds back (the data dir, or the consumer's pid), and
# $worker_metrics to the /metrics of the process that decides (the node itself, or the
# consumer's, on the next port).
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

start_server() {
  cleanup; pids=()
  case $mode in
    embedded)
      rm -rf "$out/data"
      target/release/coupon --listen "127.0.0.1:$port" --data-dir "$out/data" "$@" 2>"$out/server.log" &
      pids+=($!); server_pid=$!; hold_target=$out/data; worker_metrics=$url/metrics ;;
    distributed)
      # BENCH_KAFKA_NODES=3: on the replicated three-node cluster (scripts/services.sh).
      eval "$(scripts/services.sh up --kafka-nodes "${BENCH_KAFKA_NODES:-1}")"
      export DATABASE_URL KAFKA_BROKERS
      local topic=bench-$RANDOM$RANDOM
      local key; key=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
      export COUPON_TOPIC=$topic COUPON_SECRET_KEY=$key COUPON_PARTITIONS=8
      psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS coupon_bench WITH (FORCE)" -c "CREATE DATABASE coupon_bench" >/dev/null
      export DATABASE_URL=${DATABASE_URL%/*}/coupon_bench
      RUST_LOG=${BENCH_PRODUCER_LOG:-info} target/release/producer --listen "127.0.0.1:$port" "$@" 2>"$out/producer.log" & pids+=($!); server_pid=$!
      RUST_LOG=${BENCH_CONSUMER_LOG:-info} target/release/consumer --group "$topic" \
        --metrics-listen "127.0.0.1:$((port + 1))" 2>"$out/consumer.log" & pids+=($!)
      hold_target=$!; worker_metrics=http://127.0.0.1:$((port + 1))/metrics ;;
    *) echo "usage: $0 embedded|distributed" >&2; exit 2 ;;
  esac
  for _ in $(seq 100); do
    curl -sf -H 'Content-Type: application/json' -d '{}' "$url/grpc.health.v1.Health/Check" >/dev/null && return
    sleep 0.2
  done
  echo "server did not start" >&2; exit 1
}

