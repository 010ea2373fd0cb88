#!/usr/bin/env bash
# Local PostgreSQL + single-node Kafka (KRaft) for development, tests and CI,
# without docker. Everything binds to 127.0.0.1; all state lives in
# <checkout>/.services/ (git-ignored). Missing packages are installed with
# apt (postgresql, openjdk-17-jre-headless, maven) and the Kafka jars come from
# Maven Central (scripts/kafka/pom.xml), cached in .services/kafka/libs.
#
#   scripts/services.sh up             install what is missing, start both, then print
#                                      DATABASE_URL=... and KAFKA_BROKERS=... (the only stdout)
#   scripts/services.sh down           stop both (data is kept)
#   scripts/services.sh status         one line per service; exit 0 only if both run
#   scripts/services.sh restart-pg     stop + start PostgreSQL (no install)
#   scripts/services.sh restart-kafka  stop + start Kafka (no install)
#   scripts/services.sh kill-kafka     SIGKILL the broker (crash test); restart-kafka/up recover
#   scripts/services.sh pause-kafka    SIGSTOP the broker: it holds its connections and answers
#                                      nothing (a frozen machine); resume-kafka sends SIGCONT
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
#   COUPON_KAFKA_PORT               Kafka client port           (default 59092)
#   COUPON_KAFKA_CONTROLLER_PORT    KRaft controller port       (default client port + 1)
#   COUPON_KAFKA_HEAP_OPTS          broker heap                 (default "-Xms256m -Xmx1g")
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
KAFKA_PORT=${COUPON_KAFKA_PORT:-59092}
KAFKA_CTRL_PORT=${COUPON_KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}
KAFKA_HEAP_OPTS=${COUPON_KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}
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
K_DIR=$SVC_DIR/kafka
K_LIBS=$K_DIR/libs
K_DATA=$K_DIR/data
K_CONF=$K_DIR/server.properties
K_LOG=$K_DIR/kafka.log
K_PID=$K_DIR/kafka.pid
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
  mkdir -p "$K_DIR"
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

# Rewritten on every start so port changes (env) apply.
kafka_write_conf() {
  mkdir -p "$K_DATA"
  cat >"$K_CONF" <<EOF
# Written by scripts/services.sh on every start; edits are lost.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CTRL_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CTRL_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$K_DATA
num.partitions=8
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
log.retention.ms=-1
EOF
}

kafka_java() {  # kafka_java [JVM opts...] MAINCLASS [args...]
  "$JAVA" -cp "$K_LIBS/*" -Dlog4j2.configurationFile="$K_LOG4J" "$@"
}

# Format the KRaft storage once (static quorum, so no --standalone).
kafka_format() {
  [[ -f $K_DATA/meta.properties ]] && return 0
  local id
  if [[ -s $K_DIR/cluster.id ]]; then
    id=$(cat "$K_DIR/cluster.id")
  else
    id=$(kafka_java -Dcoupon.log.level=WARN kafka.tools.StorageTool random-uuid)
    echo "$id" >"$K_DIR/cluster.id"
  fi
  log "formatting Kafka storage $K_DATA (cluster id $id)"
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
      die "Kafka exited during startup (log: $K_LOG)"
    fi
    if (( SECONDS >= deadline )); then
      tail -n 40 "$K_LOG" >&2 || true
      die "Kafka not ready on 127.0.0.1:$KAFKA_PORT after ${TIMEOUT}s (log: $K_LOG)"
    fi
    sleep 0.3
  done
}

kafka_start() {
  compgen -G "$K_LIBS/kafka_2.13-*.jar" >/dev/null || die "no Kafka jars in $K_LIBS: run '$0 up' first"
  [[ -n ${JAVA:-} ]] || kafka_ensure_java
  kafka_write_conf
  kafka_format
  local p
  for p in "$KAFKA_PORT" "$KAFKA_CTRL_PORT"; do
    port_open "$p" && die "port 127.0.0.1:$p is already in use (another checkout's broker? set COUPON_KAFKA_PORT)"
  done
  [[ -f $K_LOG ]] && mv -f "$K_LOG" "$K_LOG.prev"
  log "starting Kafka on 127.0.0.1:$KAFKA_PORT (controller $KAFKA_CTRL_PORT, log: $K_LOG)"
  # setsid: own session, so a Ctrl-C in the caller's terminal does not kill it.
  # The wrapper writes its own PID then execs java, so the pid file is java's.
  # shellcheck disable=SC2016,SC2086  # $$ is for the inner bash; the *_OPTS are lists of options
  local nice=()
  if nice -n "$KAFKA_NICE" true 2>/dev/null; then nice=(nice -n "$KAFKA_NICE"); fi
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$K_PID" \
    "${nice[@]}" "$JAVA" $KAFKA_HEAP_OPTS $KAFKA_GC_OPTS \
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    "-Xlog:gc,safepoint:file=$K_DIR/gc.log:uptime:filecount=2,filesize=20m" \
    "-Dcoupon.request.log.level=${COUPON_KAFKA_REQUEST_LOG:-WARN}" \
    -Dlog4j2.configurationFile="$K_LOG4J" -cp "$K_LIBS/*" kafka.Kafka "$K_CONF" \
    </dev/null >>"$K_LOG" 2>&1 9>&- &
  local pid=$!
  kafka_wait_ready "$pid"
}

kafka_stop() {
  local pid i
  if ! pid=$(kafka_pid); then rm -f "$K_PID"; return 0; fi
  log "stopping Kafka (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < TIMEOUT * 5; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "Kafka did not stop within ${TIMEOUT}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f "$K_PID"
}

kafka_up() {
  local pid
  if pid=$(kafka_pid) && port_open "$KAFKA_PORT"; then
    log "Kafka already running on 127.0.0.1:$KAFKA_PORT (pid $pid)"
    return 0
  fi
  kafka_ensure_java
  kafka_ensure_libs
  kafka_stop  # running but not on the requested port (or half-started): restart
  kafka_start
}

kafka_status() {
  local pid
  [[ -f $K_CONF ]] && KAFKA_PORT=$(sed -n 's|^listeners=PLAINTEXT://127.0.0.1:\([0-9]*\),.*|\1|p' "$K_CONF")
  if pid=$(kafka_pid) && port_open "$KAFKA_PORT"; then
    echo "kafka: running on 127.0.0.1:$KAFKA_PORT, pid $pid, data $K_DATA"
  elif pid=$(kafka_pid); then
    echo "kafka: running (pid $pid) but 127.0.0.1:$KAFKA_PORT closed (log $K_LOG)"; return 1
  else
    echo "kafka: stopped (data $K_DATA)"; return 1
  fi
}

# ------------------------------------------------------------------------ main

print_env() {
  echo "DATABASE_URL=postgres://coupon:coupon@127.0.0.1:$PG_PORT/coupon"
  echo "KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT"
}

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

main() {
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
      kafka_stop
      if [[ -e $PG_LINK ]]; then pg_paths; pg_stop; fi
      ;;
    status)
      local rc=0
      pg_status || rc=1
      kafka_status || rc=1
      exit "$rc"
      ;;
    reset)
      # Wipe all service data for a clean slate; the cached jars are kept.
      take_lock
      kafka_stop
      rm -rf "$K_DATA" "$K_DIR/cluster.id" "$K_CONF" "$K_LOG" "$K_LOG.prev"
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
      kafka_stop
      kafka_start
      ;;
    kill-kafka)
      local pid
      if pid=$(kafka_pid); then
        log "SIGKILL Kafka (pid $pid)"
        kill -KILL "$pid"
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
      else
        log "Kafka not running"
      fi
      ;;
    pause-kafka | resume-kafka)
      local pid signal=STOP
      [[ $cmd == resume-kafka ]] && signal=CONT
      pid=$(kafka_pid) || die "Kafka not running"
      log "SIG$signal Kafka (pid $pid)"
      kill "-$signal" "$pid"
      ;;
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
