#!/usr/bin/env bash
# Local PostgreSQL + Kafka (KRaft: one node, or a replicated cluster of three) for
# development, tests and CI, without docker. Everything binds to 127.0.0.1; all state lives in
# <checkout>/.services/ (git-ignored). Missing packages are installed with
# apt (postgresql, openjdk-17-jre-headless, maven) and the Kafka jars come from
# Maven Central (scripts/kafka/pom.xml), cached in .services/kafka/libs.
#
#   scripts/services.sh up             install what is missing, start both, then print
#                                      DATABASE_URL=... and KAFKA_BROKERS=... (the only stdout)
#   scripts/services.sh up --kafka-nodes 3
#                                      the same with a three-node Kafka cluster on its own
#                                      ports and data (it runs beside the single node):
#                                      three brokers, a controller quorum of three, topics
#                                      replicated three times with min.insync.replicas=2.
#                                      KAFKA_BROKERS lists all three. --kafka-nodes (or
#                                      COUPON_KAFKA_NODES) picks the shape every command acts on.
#   scripts/services.sh down           stop both (data is kept)
#   scripts/services.sh status         one line per service; exit 0 only if both run
#   scripts/services.sh restart-pg     stop + start PostgreSQL (no install)
#   scripts/services.sh restart-kafka [N]  stop + start Kafka, or only node N (no install)
#   scripts/services.sh stop-kafka [N]     stop Kafka (node N); the other shape and
#                                          PostgreSQL keep running
#   scripts/services.sh kill-kafka [N]     SIGKILL the broker, or node N (crash test);
#                                          restart-kafka/up recover
#   scripts/services.sh pause-kafka [N]    SIGSTOP the broker (node N): it holds its connections
#                                          and answers nothing (a frozen machine); resume-kafka
#                                          [N] sends SIGCONT. Without N: every node of the shape.
#   scripts/services.sh kill-pg        SIGKILL the postmaster (crash test); restart-pg/up recover
#   scripts/services.sh reset          stop and wipe all data (cached Kafka jars are kept)
#   scripts/services.sh kafka-cmd CLASS [ARGS...]
#                                      run a Kafka CLI class with the cached jars, e.g.
#                                      kafka-cmd org.apache.kafka.tools.TopicCommand \
#                                        --bootstrap-server 127.0.0.1:59092 --list
#
# Usage from a shell / CI:  eval "$(scripts/services.sh up)"   (or: export $(scripts/services.sh up))
#
# Environment:
#   COUPON_PG_PORT                  PostgreSQL port             (default 55432)
#   COUPON_KAFKA_NODES              Kafka shape: 1 or 3 nodes   (default 1)
#   COUPON_KAFKA_PORT               Kafka client port           (default 59092)
#   COUPON_KAFKA_CONTROLLER_PORT    KRaft controller port       (default client port + 1)
#   COUPON_KAFKA_CLUSTER_PORT       the cluster's first client port (default 29192); node N
#                                   listens on it + 2(N-1), its controller on the next port
#   COUPON_KAFKA_SESSION_TIMEOUT_MS how long a silent broker stays a member (default 3000)
#   COUPON_KAFKA_HEAP_OPTS          broker heap                 (default "-Xms256m -Xmx1g",
#                                   "-Xms256m -Xmx768m" per node of a cluster)
#   COUPON_KAFKA_GC_OPTS            broker garbage collector    (default "-XX:+UseZGC")
#   COUPON_KAFKA_NICE               broker niceness             (default -10; needs root)
#   COUPON_KAFKA_REQUEST_LOG        broker per-request log level (default WARN; DEBUG logs
#                                   each request's time by stage, for profiling)
#   COUPON_SERVICES_DIR             state folder                (default <checkout>/.services)
#   COUPON_SERVICES_TIMEOUT         seconds to wait for each service to answer (default 120)
#   JAVA_HOME                       Java (17+) to use; else `java` on PATH, else apt's openjdk-17
set -euo pipefail

SCRIPTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(dirname "$SCRIPTS_DIR")
SVC_DIR=${COUPON_SERVICES_DIR:-$ROOT/.services}
PG_PORT=${COUPON_PG_PORT:-55432}
KAFKA_NODES=${COUPON_KAFKA_NODES:-1}
SINGLE_PORT=${COUPON_KAFKA_PORT:-59092}
SINGLE_CTRL_PORT=${COUPON_KAFKA_CONTROLLER_PORT:-$((SINGLE_PORT + 1))}
# Below the kernel's ephemeral range (32768-60999), so no client socket holds them.
CLUSTER_PORT=${COUPON_KAFKA_CLUSTER_PORT:-29192}
# ZGC: pauses under a millisecond. With G1 the broker's young collections, whose threads
# share the two cores with the load, paused it 20-110 ms and set the producers' accept
# p99 at 5,000/s (docs/benchmarks.md).
KAFKA_GC_OPTS=${COUPON_KAFKA_GC_OPTS:--XX:+UseZGC}
# A produce request crosses four of the broker's threads (network, I/O, network, socket);
# on two cores shared with the servers, PostgreSQL and the load generator each hop can
# wait for a CPU, which made the accept p99 at 5,000/s 80-150 ms. A higher priority
# stands in for the cores a production broker has to itself (docs/benchmarks.md).
# Lowering the niceness needs root (or CAP_SYS_NICE); without it the broker runs as is.
KAFKA_NICE=${COUPON_KAFKA_NICE:--10}
TIMEOUT=${COUPON_SERVICES_TIMEOUT:-120}

PG_LINK=$SVC_DIR/pg            # a dir owned by postgres, or a symlink to one (see pg_prepare_dir)
K_LIBS=$SVC_DIR/kafka/libs      # shared by every node
K_POM=$SCRIPTS_DIR/kafka/pom.xml
K_LOG4J=$SCRIPTS_DIR/kafka/log4j2.properties

log() { echo "services: $*" >&2; }
die() { echo "services: ERROR: $*" >&2; exit 1; }

is_root() { [[ $EUID -eq 0 ]]; }

# Bash-only TCP probe (no nc needed).
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# PIDs of postgres processes whose working directory is $1. PostgreSQL
# processes (postmaster and backends) chdir into the data dir, so this tells
# whether a cluster is really alive even when postmaster.pid is stale (reboot)
# or its PID got reused.
postgres_pids_in() {
  local p
  for p in /proc/[0-9]*; do
    [[ $(readlink "$p/cwd" 2>/dev/null) == "$1" && $(readlink "$p/exe" 2>/dev/null) == */postgres ]] &&
      echo "${p#/proc/}"
  done
  return 0
}

APT_UPDATED=
apt_install() {
  is_root || die "need root to install: apt-get install $*"
  if [[ -z $APT_UPDATED ]]; then
    log "apt-get update"
    apt-get update -qq >&2
    APT_UPDATED=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

# Serialize concurrent invocations (e.g. parallel test runners calling `up`).
# Daemons are started with 9>&- so they do not keep holding the lock.
take_lock() {
  mkdir -p "$SVC_DIR"
  exec 9>"$SVC_DIR/.lock"
  flock 9
}

# ------------------------------------------------------------------ PostgreSQL

# PostgreSQL refuses to run as root: run its binaries as the `postgres` user.
as_pg() {
  if is_root; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

pg_ensure_installed() {
  if ! dpkg -s postgresql >/dev/null 2>&1 || ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
    apt_install postgresql
  fi
}

# The postgres user must be able to reach its data dir. If the checkout is not
# traversable for it (e.g. under /root), keep the cluster in postgres' home,
# one folder per checkout, and leave a symlink at .services/pg.
pg_prepare_dir() {
  mkdir -p "$SVC_DIR"
  if [[ -L $PG_LINK ]]; then
    local target
    target=$(readlink "$PG_LINK")
    if [[ ! -d $target ]]; then  # e.g. /var/lib/postgresql was wiped: start over
      mkdir -p "$target"
      chown postgres:postgres "$target"
      chmod 700 "$target"
    fi
  elif [[ ! -d $PG_LINK ]]; then
    if ! is_root; then
      mkdir -m 700 "$PG_LINK"
    elif runuser -u postgres -- test -x "$SVC_DIR"; then
      mkdir -m 700 "$PG_LINK"
      chown postgres:postgres "$PG_LINK"
    else
      local base=/var/lib/postgresql/coupon-services target
      target=$base/$(printf '%s' "$SVC_DIR" | sha256sum | cut -c1-16)
      log "$SVC_DIR is not traversable by user postgres: cluster goes to $target (symlinked)"
      mkdir -p "$target"
      chown postgres:postgres "$base" "$target"
      chmod 700 "$target"
      ln -s "$target" "$PG_LINK"
    fi
  fi
}

# Resolve paths. Always use the real path: the postgres user may not be able
# to follow a path through the checkout, and /proc/*/cwd shows real paths.
pg_paths() {
  PG_REAL=$(readlink -f "$PG_LINK")
  PGDATA=$PG_REAL/data
  PG_LOG=$PG_REAL/postgres.log
  PG_RUN=$PG_REAL/run
  # A unix socket path must fit in 107 bytes (".s.PGSQL.<port>" included).
  if (( ${#PG_RUN} > 80 )); then
    PG_RUN=/tmp/coupon-pg-$(printf '%s' "$PG_REAL" | sha256sum | cut -c1-16)
  fi
  # Binaries of the major version the cluster was created with; else the newest installed.
  if [[ -f $PGDATA/PG_VERSION ]]; then
    PG_BIN=/usr/lib/postgresql/$(cat "$PGDATA/PG_VERSION")/bin
  else
    PG_BIN=$(compgen -G '/usr/lib/postgresql/*/bin' | sort -V | tail -n 1 || true)
  fi
}

pg_initdb() {
  [[ -f $PGDATA/PG_VERSION ]] && return 0
  [[ -x $PG_BIN/initdb ]] || die "initdb not found in /usr/lib/postgresql/*/bin"
  log "initdb $PGDATA ($("$PG_BIN/postgres" --version))"
  # local (unix socket, in a 0700 dir) = trust, for the admin steps below; TCP needs a password.
  as_pg "$PG_BIN/initdb" -D "$PGDATA" -U postgres -E UTF8 --locale=C \
    --auth-local=trust --auth-host=scram-sha-256 --no-instructions >/dev/null
  # Our settings live in coupon.conf, rewritten on each start (ports may change).
  echo "include_if_exists = 'coupon.conf'" >>"$PGDATA/postgresql.conf"
}

pg_write_conf() {
  mkdir -p "$PG_RUN"
  is_root && chown postgres:postgres "$PG_RUN"
  chmod 700 "$PG_RUN"
  cat >"$PGDATA/coupon.conf" <<EOF
# Written by scripts/services.sh on every start; edits are lost.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_RUN'
max_connections = 300
shared_buffers = 256MB
# Tests check durability: keep WAL flushing on.
fsync = on
synchronous_commit = on
full_page_writes = on
EOF
  is_root && chown postgres:postgres "$PGDATA/coupon.conf"
  return 0
}

pg_alive() { [[ -d $PGDATA && -n $(postgres_pids_in "$PGDATA") ]]; }

pg_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 2 >/dev/null 2>&1; }

# After a reboot or SIGKILL the lock files can name a PID that is now some
# other process; PostgreSQL would then refuse to start.
pg_clear_stale_locks() {
  if ! pg_alive; then
    rm -f "$PGDATA/postmaster.pid" "$PG_RUN"/.s.PGSQL.*
  fi
}

pg_start() {
  [[ -f $PGDATA/PG_VERSION ]] || die "no PostgreSQL cluster in $PGDATA: run '$0 up' first"
  pg_write_conf
  pg_clear_stale_locks
  port_open "$PG_PORT" && die "port 127.0.0.1:$PG_PORT is already in use (another checkout's PostgreSQL? set COUPON_PG_PORT)"
  log "starting PostgreSQL on 127.0.0.1:$PG_PORT (log: $PG_LOG)"
  if ! as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$PG_LOG" -w -t "$TIMEOUT" start >&2 9>&-; then
    tail -n 30 "$PG_LOG" >&2 || true
    die "PostgreSQL did not start (see $PG_LOG above; port $PG_PORT in use?)"
  fi
  local deadline=$((SECONDS + TIMEOUT))
  until pg_ready; do
    (( SECONDS < deadline )) || { tail -n 30 "$PG_LOG" >&2 || true; die "PostgreSQL not answering on 127.0.0.1:$PG_PORT after ${TIMEOUT}s"; }
    sleep 0.2
  done
}

pg_stop() {
  pg_alive || return 0
  log "stopping PostgreSQL"
  as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w -t "$TIMEOUT" stop >&2 ||
    die "PostgreSQL did not stop (see $PG_LOG)"
}

# Idempotent: role coupon/coupon (SUPERUSER, tests create their own databases) and database coupon.
pg_ensure_role_db() {
  as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_RUN" -p "$PG_PORT" -U postgres -d postgres >&2 <<'SQL'
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'coupon') THEN
    CREATE ROLE coupon;
  END IF;
END
$$;
ALTER ROLE coupon WITH LOGIN SUPERUSER PASSWORD 'coupon';
SELECT 'CREATE DATABASE coupon OWNER coupon'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'coupon') \gexec
SQL
}

pg_up() {
  pg_ensure_installed
  pg_prepare_dir
  pg_paths
  pg_initdb
  if pg_alive && pg_ready; then
    log "PostgreSQL already running on 127.0.0.1:$PG_PORT"
  else
    pg_alive && pg_stop  # alive but not on the requested port: restart with the new config
    pg_start
  fi
  pg_ensure_role_db
}

pg_status() {
  if [[ ! -e $PG_LINK ]]; then echo "postgres: not set up ($PG_LINK missing)"; return 1; fi
  pg_paths
  # Report the port it was last started with, not the one in this shell's env.
  [[ -f $PGDATA/coupon.conf ]] && PG_PORT=$(awk '$1 == "port" {print $3}' "$PGDATA/coupon.conf")
  if pg_alive && pg_ready; then
    echo "postgres: running on 127.0.0.1:$PG_PORT, pid $(head -n 1 "$PGDATA/postmaster.pid"), data $PGDATA"
  elif pg_alive; then
    echo "postgres: running but not answering on 127.0.0.1:$PG_PORT (data $PGDATA, log $PG_LOG)"; return 1
  else
    echo "postgres: stopped (data $PGDATA)"; return 1
  fi
}

# ----------------------------------------------------------------------- Kafka

java_major() {
  "$1" -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}'
}

# Sets JAVA. Kafka 4 brokers need Java 17+.
kafka_ensure_java() {
  local major
  JAVA=${JAVA_HOME:+$JAVA_HOME/bin/java}
  JAVA=${JAVA:-$(command -v java || true)}
  if [[ -n $JAVA ]]; then major=$(java_major "$JAVA"); fi
  if [[ -z $JAVA || ${major:-0} -lt 17 ]]; then
    JAVA=/usr/lib/jvm/java-17-openjdk-$(dpkg --print-architecture)/bin/java
    [[ -x $JAVA ]] || apt_install openjdk-17-jre-headless
  fi
}

# Jars are resolved once; the pom's checksum is stored next to them so a
# version bump in scripts/kafka/pom.xml re-resolves.
kafka_ensure_libs() {
  local want stamp=$K_LIBS/.pom.sha256
  want=$(sha256sum <"$K_POM" | cut -d' ' -f1)
  if [[ -f $stamp && $(cat "$stamp") == "$want" ]] && compgen -G "$K_LIBS/kafka_2.13-*.jar" >/dev/null; then
    return 0
  fi
  command -v mvn >/dev/null || apt_install maven
  log "resolving Kafka jars from Maven Central into $K_LIBS"
  mkdir -p "$(dirname "$K_LIBS")"
  rm -rf "$K_LIBS.tmp"
  # (Debian's mvn 3.8 emits colour resets even with -B: strip them.)
  (cd "$SCRIPTS_DIR/kafka" && JAVA_HOME=$(dirname "$(dirname "$(readlink -f "$JAVA")")") \
    mvn -q -B dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$K_LIBS.tmp" 2>&1 |
    sed 's/\x1b\[[0-9;]*m//g') >&2 ||
    die "maven could not resolve $K_POM"
  echo "$want" >"$K_LIBS.tmp/.pom.sha256"
  rm -rf "$K_LIBS"
  mv "$K_LIBS.tmp" "$K_LIBS"
}

# The shape (KAFKA_NODES) and its folder: the single node keeps the layout it always had
# (.services/kafka), a cluster of N lives in .services/kafka-N/node-I.
kafka_shape_dir() {
  if (( KAFKA_NODES == 1 )); then echo "$SVC_DIR/kafka"; else echo "$SVC_DIR/kafka-$KAFKA_NODES"; fi
}

kafka_nodes() { seq 1 "$KAFKA_NODES"; }

# Node $1's client port; its controller listens on the next one.
kafka_port_of() {
  if (( KAFKA_NODES == 1 )); then echo "$SINGLE_PORT"; else echo $((CLUSTER_PORT + 2 * ($1 - 1))); fi
}

# Sets the variables of node $1 of the current shape: its folder, files and ports.
kafka_select() {
  K_NODE=$1
  local base
  base=$(kafka_shape_dir)
  K_CLUSTER_ID_FILE=$base/cluster.id
  K_DIR=$base
  (( KAFKA_NODES == 1 )) || K_DIR=$base/node-$K_NODE
  KAFKA_PORT=$(kafka_port_of "$K_NODE")
  KAFKA_CTRL_PORT=$((KAFKA_PORT + 1))
  (( KAFKA_NODES == 1 )) && KAFKA_CTRL_PORT=$SINGLE_CTRL_PORT
  K_DATA=$K_DIR/data
  K_CONF=$K_DIR/server.properties
  K_LOG=$K_DIR/kafka.log
  K_PID=$K_DIR/kafka.pid
}

kafka_voters() {
  local i voters=()
  if (( KAFKA_NODES == 1 )); then echo "1@127.0.0.1:$SINGLE_CTRL_PORT"; return; fi
  for i in $(kafka_nodes); do voters+=("$i@127.0.0.1:$(($(kafka_port_of "$i") + 1))"); done
  local IFS=,
  echo "${voters[*]}"
}

# Rewritten on every start so port changes (env) apply.
kafka_write_conf() {
  mkdir -p "$K_DATA"
  # Replicated when there are brokers to replicate to: an acknowledged record (acks=all)
  # is then on two brokers at least, and a replica that missed records never becomes
  # leader (no unclean election), so losing one broker loses nothing acknowledged.
  local rf=1 isr=1
  if (( KAFKA_NODES >= 3 )); then rf=3; isr=2; fi
  cat >"$K_CONF" <<EOF
# Written by scripts/services.sh on every start; edits are lost.
process.roles=broker,controller
node.id=$K_NODE
controller.quorum.voters=$(kafka_voters)
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CTRL_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$K_DATA
num.partitions=8
default.replication.factor=$rf
min.insync.replicas=$isr
unclean.leader.election.enable=false
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
log.retention.ms=-1
# How long a silent broker stays a member (Kafka's default: 9 s). The controller then
# fences it: its leaderships move to in-sync replicas and it leaves every ISR. Until
# then the clients of a dead leader wait, and so do those of a partition it follows
# (acks=all waits for the whole ISR). Below the producers' 5 s ack timeout, so losing a
# follower is a pause, never an error; 6 heartbeats per session.
broker.session.timeout.ms=${COUPON_KAFKA_SESSION_TIMEOUT_MS:-3000}
broker.heartbeat.interval.ms=500
EOF
}

kafka_java() {  # kafka_java [JVM opts...] MAINCLASS [args...]
  "$JAVA" -cp "$K_LIBS/*" -Dlog4j2.configurationFile="$K_LOG4J" "$@"
}

# Format the KRaft storage once (static quorum, so no --standalone).
kafka_format() {
  [[ -f $K_DATA/meta.properties ]] && return 0
  local id
  mkdir -p "$(dirname "$K_CLUSTER_ID_FILE")"
  if [[ -s $K_CLUSTER_ID_FILE ]]; then
    id=$(cat "$K_CLUSTER_ID_FILE")
  else
    id=$(kafka_java -Dcoupon.log.level=WARN kafka.tools.StorageTool random-uuid)
    echo "$id" >"$K_CLUSTER_ID_FILE"
  fi
  log "formatting Kafka storage $K_DATA (node $K_NODE, cluster id $id)"
  kafka_java -Dcoupon.log.level=WARN kafka.tools.StorageTool format -t "$id" -c "$K_CONF" >&2
}

# PID of our broker, if running. The pid file alone is not trusted (reboots reuse PIDs).
kafka_pid() {
  local pid cmdline
  [[ -f $K_PID ]] || return 1
  pid=$(cat "$K_PID")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
  [[ $cmdline == *"kafka.Kafka $K_CONF"* ]] || return 1
  echo "$pid"
}

kafka_wait_ready() {
  local pid=$1 deadline=$((SECONDS + TIMEOUT))
  # "Kafka Server started" is logged once the broker is registered and unfenced.
  until port_open "$KAFKA_PORT" && grep -q 'Kafka Server started' "$K_LOG" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 40 "$K_LOG" >&2 || true
      die "Kafka node $K_NODE exited during startup (log: $K_LOG)"
    fi
    if (( SECONDS >= deadline )); then
      tail -n 40 "$K_LOG" >&2 || true
      die "Kafka node $K_NODE not ready on 127.0.0.1:$KAFKA_PORT after ${TIMEOUT}s (log: $K_LOG)"
    fi
    sleep 0.3
  done
}

# Starts the selected node without waiting: the nodes of a cluster wait for each other
# (a controller quorum needs a majority), so they are all launched before any is awaited.
kafka_launch() {
  compgen -G "$K_LIBS/kafka_2.13-*.jar" >/dev/null || die "no Kafka jars in $K_LIBS: run '$0 up' first"
  [[ -n ${JAVA:-} ]] || kafka_ensure_java
  kafka_write_conf
  kafka_format
  local p heap=${COUPON_KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}
  (( KAFKA_NODES == 1 )) || heap=${COUPON_KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}
  for p in "$KAFKA_PORT" "$KAFKA_CTRL_PORT"; do
    port_open "$p" && die "port 127.0.0.1:$p is already in use (another checkout's broker? set COUPON_KAFKA_PORT or COUPON_KAFKA_CLUSTER_PORT)"
  done
  [[ -f $K_LOG ]] && mv -f "$K_LOG" "$K_LOG.prev"
  log "starting Kafka node $K_NODE/$KAFKA_NODES on 127.0.0.1:$KAFKA_PORT (controller $KAFKA_CTRL_PORT, log: $K_LOG)"
  # setsid: own session, so a Ctrl-C in the caller's terminal does not kill it.
  # The wrapper writes its own PID then execs java, so the pid file is java's.
  # shellcheck disable=SC2016,SC2086  # $$ is for the inner bash; the *_OPTS are lists of options
  local nice=()
  if nice -n "$KAFKA_NICE" true 2>/dev/null; then nice=(nice -n "$KAFKA_NICE"); fi
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$K_PID" \
    "${nice[@]}" "$JAVA" $heap $KAFKA_GC_OPTS \
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    "-Xlog:gc,safepoint:file=$K_DIR/gc.log:uptime:filecount=2,filesize=20m" \
    "-Dcoupon.request.log.level=${COUPON_KAFKA_REQUEST_LOG:-WARN}" \
    -Dlog4j2.configurationFile="$K_LOG4J" -cp "$K_LIBS/*" kafka.Kafka "$K_CONF" \
    </dev/null >>"$K_LOG" 2>&1 9>&- &
  K_LAUNCHED=$!
}

kafka_start() {  # the selected node, awaited
  kafka_launch
  kafka_wait_ready "$K_LAUNCHED"
}

kafka_stop() {  # the selected node
  kafka_stop_nodes "$K_NODE"
}

# Stops nodes (of the current shape) together: each is sent SIGTERM before any is awaited,
# since a node of a cluster left without its quorum would wait for it to shut down.
kafka_stop_nodes() {
  local i pid pids=() deadline
  for i in "$@"; do
    kafka_select "$i"
    if pid=$(kafka_pid); then
      log "stopping Kafka node $i (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$i:$pid")
    fi
    rm -f "$K_PID"
  done
  deadline=$((SECONDS + TIMEOUT))
  for pid in "${pids[@]}"; do
    while kill -0 "${pid#*:}" 2>/dev/null && (( SECONDS < deadline )); do sleep 0.2; done
    if kill -0 "${pid#*:}" 2>/dev/null; then
      log "Kafka node ${pid%%:*} did not stop within ${TIMEOUT}s: SIGKILL"
      kill -KILL "${pid#*:}" 2>/dev/null || true
      while kill -0 "${pid#*:}" 2>/dev/null; do sleep 0.1; done
    fi
  done
}

# Every node of the shape.
kafka_stop_all() {
  # shellcheck disable=SC2046  # one argument per node
  kafka_stop_nodes $(kafka_nodes)
}

kafka_up() {
  local i pid launched=()
  kafka_ensure_java
  kafka_ensure_libs
  for i in $(kafka_nodes); do
    kafka_select "$i"
    if pid=$(kafka_pid) && port_open "$KAFKA_PORT"; then
      log "Kafka node $i already running on 127.0.0.1:$KAFKA_PORT (pid $pid)"
      continue
    fi
    kafka_stop  # running but not on the requested port (or half-started): restart
    kafka_launch
    launched+=("$i:$K_LAUNCHED")
  done
  for pid in "${launched[@]}"; do
    kafka_select "${pid%%:*}"
    kafka_wait_ready "${pid#*:}"
  done
}

kafka_status() {
  local i pid rc=0
  for i in $(kafka_nodes); do
    kafka_select "$i"
    [[ -f $K_CONF ]] && KAFKA_PORT=$(sed -n 's|^listeners=PLAINTEXT://127.0.0.1:\([0-9]*\),.*|\1|p' "$K_CONF")
    local name=kafka
    (( KAFKA_NODES == 1 )) || name="kafka node $i/$KAFKA_NODES"
    if pid=$(kafka_pid) && port_open "$KAFKA_PORT"; then
      echo "$name: running on 127.0.0.1:$KAFKA_PORT, pid $pid, data $K_DATA"
    elif pid=$(kafka_pid); then
      echo "$name: running (pid $pid) but 127.0.0.1:$KAFKA_PORT closed (log $K_LOG)"; rc=1
    else
      echo "$name: stopped (data $K_DATA)"; rc=1
    fi
  done
  return "$rc"
}

# The nodes a command names: its argument, or every node of the shape.
kafka_targets() {
  if [[ -z ${1:-} ]]; then kafka_nodes; return; fi
  [[ $1 =~ ^[0-9]+$ ]] && (( $1 >= 1 && $1 <= KAFKA_NODES )) ||
    die "no Kafka node '$1' in a shape of $KAFKA_NODES (use --kafka-nodes)"
  echo "$1"
}

# ------------------------------------------------------------------------ main

print_env() {
  local i brokers=()
  for i in $(kafka_nodes); do brokers+=("127.0.0.1:$(kafka_port_of "$i")"); done
  local IFS=,
  echo "DATABASE_URL=postgres://coupon:coupon@127.0.0.1:$PG_PORT/coupon"
  echo "KAFKA_BROKERS=${brokers[*]}"
}

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

# The Kafka shapes that have a folder here (for down, reset and status).
kafka_shapes_present() {
  local d
  [[ -d $SVC_DIR/kafka/data ]] && echo 1
  for d in "$SVC_DIR"/kafka-[0-9]*; do [[ -d $d ]] && echo "${d##*-}"; done
  return 0
}

# kafka_each_shape CMD...: CMD once per shape present, with KAFKA_NODES set to it.
kafka_each_shape() {
  local shape chosen=$KAFKA_NODES
  for shape in $(kafka_shapes_present); do KAFKA_NODES=$shape; "$@"; done
  KAFKA_NODES=$chosen
}

kafka_signal() {  # SIGNAL VERB [N]
  local signal=$1 verb=$2 i pid
  for i in $(kafka_targets "${3:-}"); do
    kafka_select "$i"
    if ! pid=$(kafka_pid); then
      [[ $signal == KILL ]] || die "Kafka node $i not running"
      log "Kafka node $i not running"; continue
    fi
    log "$verb Kafka node $i (pid $pid)"
    kill "-$signal" "$pid"
    if [[ $signal == KILL ]]; then while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done; fi
  done
}

kafka_wipe() {
  kafka_stop_all
  rm -rf "$(kafka_shape_dir)"/{data,cluster.id,server.properties,kafka.log,kafka.log.prev,gc.log*,node-*}
}

main() {
  # --kafka-nodes N, anywhere on the line, picks the Kafka shape.
  local args=()
  while [[ $# -gt 0 ]]; do
    case $1 in
      --kafka-nodes) [[ $# -ge 2 ]] || usage; KAFKA_NODES=$2; shift 2 ;;
      --kafka-nodes=*) KAFKA_NODES=${1#*=}; shift ;;
      *) args+=("$1"); shift ;;
    esac
  done
  [[ $KAFKA_NODES == 1 || $KAFKA_NODES == 3 ]] || die "--kafka-nodes must be 1 or 3, not '$KAFKA_NODES'"
  set -- "${args[@]}"
  local cmd=${1:-}
  [[ $# -gt 0 ]] && shift
  case $cmd in
    up)
      take_lock
      { pg_up; kafka_up; } >&2  # stdout is reserved for the two lines below
      print_env
      ;;
    down)
      [[ -d $SVC_DIR ]] || exit 0
      take_lock
      kafka_each_shape kafka_stop_all
      if [[ -e $PG_LINK ]]; then pg_paths; pg_stop; fi
      ;;
    status)
      local rc=0
      pg_status || rc=1
      kafka_status || rc=1
      # Another shape that runs too is shown, without changing the exit code.
      local shape chosen=$KAFKA_NODES
      for shape in $(kafka_shapes_present); do
        [[ $shape == "$chosen" ]] && continue
        KAFKA_NODES=$shape; kafka_status || true
      done
      exit "$rc"
      ;;
    reset)
      # Wipe all service data for a clean slate; the cached jars are kept.
      take_lock
      kafka_each_shape kafka_wipe
      if [[ -e $PG_LINK ]]; then
        pg_paths
        pg_stop
        rm -rf "$PG_REAL"
        [[ -L $PG_LINK ]] && rm -f "$PG_LINK"
      fi
      log "data wiped; run '$0 up' to start afresh"
      ;;
    restart-pg)
      take_lock
      [[ -e $PG_LINK ]] || die "PostgreSQL not set up: run '$0 up' first"
      pg_paths
      pg_stop
      pg_start
      ;;
    restart-kafka)
      take_lock
      local i launched=()
      # shellcheck disable=SC2046  # one argument per node
      kafka_stop_nodes $(kafka_targets "${1:-}")
      for i in $(kafka_targets "${1:-}"); do kafka_select "$i"; kafka_launch; launched+=("$i:$K_LAUNCHED"); done
      for i in "${launched[@]}"; do kafka_select "${i%%:*}"; kafka_wait_ready "${i#*:}"; done
      ;;
    stop-kafka)
      take_lock
      local i
      # shellcheck disable=SC2046  # one argument per node
      kafka_stop_nodes $(kafka_targets "${1:-}")
      ;;
    kill-kafka) kafka_signal KILL SIGKILL "${1:-}" ;;
    pause-kafka) kafka_signal STOP SIGSTOP "${1:-}" ;;
    resume-kafka) kafka_signal CONT SIGCONT "${1:-}" ;;
    kill-pg)
      [[ -e $PG_LINK ]] || die "PostgreSQL not set up"
      pg_paths
      if pg_alive; then
        local pid
        pid=$(head -n 1 "$PGDATA/postmaster.pid")
        log "SIGKILL PostgreSQL postmaster (pid $pid)"
        kill -KILL "$pid"
        # Backends exit on their own once the postmaster is gone; a restart
        # before that would find the old shared memory still in use.
        local i
        for ((i = 0; i < 300; i++)); do pg_alive || break; sleep 0.1; done
      else
        log "PostgreSQL not running"
      fi
      ;;
    kafka-cmd)
      [[ $# -ge 1 ]] || die "usage: $0 kafka-cmd CLASS [ARGS...]"
      compgen -G "$K_LIBS/kafka_2.13-*.jar" >/dev/null || die "no Kafka jars in $K_LIBS: run '$0 up' first"
      kafka_ensure_java
      kafka_java -Dcoupon.log.level="${COUPON_KAFKA_CMD_LOG_LEVEL:-WARN}" -Dlog4j2.shutdownHookEnabled=false "$@"
      ;;
    *) usage ;;
  esac
}

main "$@"
