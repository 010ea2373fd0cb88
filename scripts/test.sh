#!/usr/bin/env bash
# The project's test command: installs build dependencies, starts the real PostgreSQL
# and Kafka the distributed tests use (scripts/services.sh), and runs every test of
# the workspace. Extra arguments go to `cargo test` (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-build-deps.sh
eval "$(scripts/services.sh up)"
export DATABASE_URL KAFKA_BROKERS
echo "test: DATABASE_URL=$DATABASE_URL KAFKA_BROKERS=$KAFKA_BROKERS" >&2
# The distributed tests run the built `producer` and `consumer` binaries as processes.
cargo build --workspace --release --bins
cargo test --workspace --release "$@"
