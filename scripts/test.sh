#!/usr/bin/env bash
# The project's test command: installs build dependencies, starts the real PostgreSQL
# and Kafka the distributed tests use (scripts/services.sh), and runs every test of
# the workspace. Extra arguments go to `cargo test` (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-build-deps.sh
# chromium and chromedriver, for the console's browser test (tests/console_browser.rs).
scripts/install-browser.sh
eval "$(scripts/services.sh up)"
export DATABASE_URL KAFKA_BROKERS
# The replicated cluster's tests (tests/kafka_cluster.rs) run on three more brokers, on
# their own ports, beside the single one the other distributed tests share.
KAFKA_CLUSTER_BROKERS=$(scripts/services.sh up --kafka-nodes 3 | sed -n 's/^KAFKA_BROKERS=//p')
export KAFKA_CLUSTER_BROKERS
echo "test: DATABASE_URL=$DATABASE_URL KAFKA_BROKERS=$KAFKA_BROKERS KAFKA_CLUSTER_BROKERS=$KAFKA_CLUSTER_BROKERS" >&2
# The distributed tests run the built `producer` and `consumer` binaries as processes.
cargo build --workspace --release --bins
# Every test binary runs even when one fails, so one run reports every failure.
cargo test --workspace --release --no-fail-fast "$@"
