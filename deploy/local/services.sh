#!/usr/bin/env bash
# Starts and stops the real services convsync needs, as local processes (no container
# engine here): PostgreSQL and Redis from Debian's packages, Apache Kafka in KRaft mode from
# Maven Central jars. Idempotent: a service that already runs, or whose URL is given in
# DATABASE_URL / REDIS_URL / KAFKA_BROKERS, is left alone. Everything lives under .local/:
# data, pid files, logs, and .local/env with the URLs for tests and `make run`.
#
#   deploy/local/services.sh up|down|status|install|cluster-up|cluster-down
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/deploy/local"
LOCAL=${CONVSYNC_LOCAL_DIR:-"$ROOT/.local"}
# Tests that stop and restart a broker of their own point these at a private folder
# and reuse the jars already resolved.
KAFKA_LIBS=${CONVSYNC_KAFKA_LIBS:-"$LOCAL/kafka/libs"}

PG_PORT=${CONVSYNC_PG_PORT:-55432}
REDIS_PORT=${CONVSYNC_REDIS_PORT:-56379}
KAFKA_PORT=${CONVSYNC_KAFKA_PORT:-59092}
KAFKA_CONTROLLER_PORT=${CONVSYNC_KAFKA_CONTROLLER_PORT:-59093}
KAFKA_HEAP=${CONVSYNC_KAFKA_HEAP:--Xms256m -Xmx512m}

log() { printf '[services] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

alive() { # alive PIDFILE: the process in the pid file runs
  [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

APT_UPDATED=
apt_install() {
  have apt-get || die "missing $*, and apt-get is not available to install it"
  if [ -z "$APT_UPDATED" ]; then
    log "apt-get update"
    apt-get update -qq >/dev/null
    APT_UPDATED=1
  fi
  log "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$d" ] && [ -x "$d/initdb" ] && echo "$d"
}

# install puts every program the local stack needs on the machine, from Debian's packages.
install() {
  local pkgs=()
  [ -n "$(pg_bin)" ] || pkgs+=(postgresql)
  have psql || pkgs+=(postgresql-client)
  have redis-server || pkgs+=(redis-server)
  { have redis-cli && have redis-benchmark; } || pkgs+=(redis-tools) # redis-benchmark: the read benchmark's reference
  have kcat || pkgs+=(kcat)
  have java || pkgs+=(openjdk-17-jre-headless)
  have mvn || pkgs+=(maven)
  have promtool || pkgs+=(prometheus)
  have gcc || pkgs+=(gcc libc6-dev) # go test -race needs cgo
  have wrk || pkgs+=(wrk)           # the read benchmark's load from a separate process
  have pgbouncer || pkgs+=(pgbouncer) # the fault tests' transaction-mode pooler (make faults)
  if [ ${#pkgs[@]} -gt 0 ]; then apt_install "${pkgs[@]}"; fi
  have go || die "Go is not installed; this machine kind ships it (see README)"
}

# --- PostgreSQL -----------------------------------------------------------------------

# pg_dir is where the private cluster lives: .local/pg, or, when the postgres user cannot
# reach into the checkout (a parent folder closed to others), a folder of its own under
# /var/tmp, named after the checkout.
pg_dir() {
  if runuser -u postgres -- test -x "$LOCAL" 2>/dev/null; then
    echo "$LOCAL/pg"
  else
    echo "/var/tmp/convsync-$(printf '%s' "$ROOT" | sha1sum | cut -c1-12)/pg"
  fi
}

pg_up() {
  local bin data sock dir
  bin=$(pg_bin) || die "PostgreSQL server binaries not found"
  # postgres refuses to run as root: the cluster belongs to the postgres system user.
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
  dir=$(pg_dir)
  data="$dir/data" sock="$dir"
  mkdir -p "$dir"
  chmod 755 "$(dirname "$dir")" 2>/dev/null || true
  chown postgres "$dir"
  if [ -f "$data/postmaster.pid" ] && runuser -u postgres -- "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    log "postgres already running on 127.0.0.1:$PG_PORT"
  else
    if [ ! -f "$data/PG_VERSION" ]; then
      log "initdb $data"
      runuser -u postgres -- "$bin/initdb" -D "$data" --auth=trust --username=postgres \
        --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
        runuser -u postgres -- "$bin/initdb" -D "$data" --auth=trust --username=postgres \
          --encoding=UTF8 --no-locale >"$dir/initdb.log" 2>&1 || die "initdb failed: see $dir/initdb.log"
      cat >>"$data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$sock'
max_connections = 300
shared_buffers = 256MB
fsync = on
synchronous_commit = on
wal_level = replica
max_wal_senders = 5
EOF
      echo "host replication all 127.0.0.1/32 trust" >>"$data/pg_hba.conf"
    fi
    log "starting postgres on 127.0.0.1:$PG_PORT"
    runuser -u postgres -- "$bin/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -t 60 start >/dev/null ||
      die "postgres did not start: see $dir/postgres.log"
  fi
  psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -tAc \
    "SELECT 1 FROM pg_roles WHERE rolname='convsync'" | grep -q 1 ||
    psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -qc "CREATE ROLE convsync LOGIN SUPERUSER"
  psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname='convsync'" | grep -q 1 ||
    psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -qc "CREATE DATABASE convsync OWNER convsync"
}

pg_down() {
  local bin data
  bin=$(pg_bin) || return 0
  id postgres >/dev/null 2>&1 || return 0
  data="$(pg_dir)/data"
  if [ -f "$data/postmaster.pid" ]; then
    log "stopping postgres"
    runuser -u postgres -- "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
  fi
}

# --- Redis ----------------------------------------------------------------------------

redis_up() {
  mkdir -p "$LOCAL/redis"
  if alive "$LOCAL/redis/redis.pid"; then
    log "redis already running on 127.0.0.1:$REDIS_PORT"
    return
  fi
  log "starting redis on 127.0.0.1:$REDIS_PORT"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
    --daemonize yes --pidfile "$LOCAL/redis/redis.pid" --logfile "$LOCAL/redis/redis.log" \
    --dir "$LOCAL/redis"
  local i
  for i in $(seq 1 100); do
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && return
    sleep 0.1
  done
  die "redis did not answer: see $LOCAL/redis/redis.log"
}

redis_down() {
  if alive "$LOCAL/redis/redis.pid"; then
    log "stopping redis"
    kill "$(cat "$LOCAL/redis/redis.pid")" || true
    wait_gone "$LOCAL/redis/redis.pid"
  fi
  rm -f "$LOCAL/redis/redis.pid"
}

# --- Kafka ----------------------------------------------------------------------------

kafka_libs() {
  local libs="$KAFKA_LIBS" stamp
  stamp=$(sha256sum "$HERE/kafka/pom.xml" | cut -c1-16)
  if [ -f "$libs/.stamp" ] && [ "$(cat "$libs/.stamp")" = "$stamp" ]; then return; fi
  log "resolving Apache Kafka jars from Maven Central (once)"
  rm -rf "$libs"
  mkdir -p "$libs"
  mvn -q -B -f "$HERE/kafka/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$libs" -DincludeScope=runtime >"$LOCAL/kafka/mvn.log" 2>&1 ||
    die "mvn could not resolve Kafka: see $LOCAL/kafka/mvn.log"
  echo "$stamp" >"$libs/.stamp"
}

kafka_ready() {
  kcat -b "127.0.0.1:$KAFKA_PORT" -L -m 2 >/dev/null 2>&1
}

kafka_up() {
  mkdir -p "$LOCAL/kafka"
  if alive "$LOCAL/kafka/kafka.pid"; then
    log "kafka already running on 127.0.0.1:$KAFKA_PORT"
    return
  fi
  kafka_libs
  local props="$LOCAL/kafka/server.properties" data="$LOCAL/kafka/data"
  cat >"$props" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
log.segment.bytes=67108864
log.retention.hours=168
# A dev box of two cores: as many request threads as cores, not the defaults' 3 network
# and 8 I/O threads, which only preempt one another (freshness p50 37-39 -> 34-35 ms).
num.network.threads=2
num.io.threads=2
EOF
  local cp="$KAFKA_LIBS/*"
  if [ ! -f "$data/meta.properties" ]; then
    [ -f "$LOCAL/kafka/cluster.id" ] || java -cp "$cp" kafka.tools.StorageTool random-uuid >"$LOCAL/kafka/cluster.id" 2>/dev/null
    log "formatting kafka storage"
    java -cp "$cp" -Dlog4j.configuration="file:$HERE/kafka/log4j.properties" kafka.tools.StorageTool format \
      -t "$(cat "$LOCAL/kafka/cluster.id")" -c "$props" >"$LOCAL/kafka/format.log" 2>&1 ||
      die "kafka storage format failed: see $LOCAL/kafka/format.log"
  fi
  log "starting kafka on 127.0.0.1:$KAFKA_PORT"
  # shellcheck disable=SC2086
  nohup java $KAFKA_HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$HERE/kafka/log4j.properties" \
    -cp "$cp" kafka.Kafka "$props" >"$LOCAL/kafka/kafka.log" 2>&1 </dev/null &
  echo $! >"$LOCAL/kafka/kafka.pid"
  local i
  for i in $(seq 1 240); do
    kafka_ready && { log "kafka answers metadata requests"; return; }
    alive "$LOCAL/kafka/kafka.pid" || die "kafka exited: see $LOCAL/kafka/kafka.log"
    sleep 0.5
  done
  die "kafka did not answer a metadata request in 120 s: see $LOCAL/kafka/kafka.log"
}

kafka_down() {
  if alive "$LOCAL/kafka/kafka.pid"; then
    log "stopping kafka"
    kill "$(cat "$LOCAL/kafka/kafka.pid")" || true
    wait_gone "$LOCAL/kafka/kafka.pid" 60
  fi
  rm -f "$LOCAL/kafka/kafka.pid"
}

# --- Kafka cluster (on request) -------------------------------------------------------
# Three KRaft brokers (each also a controller) beside the single broker, for the fault
# tests: `services.sh cluster-up` starts those of them that do not run (so it also brings
# back a killed one) and waits until every one sees all three; `cluster-down` stops them.
# Ports: CONVSYNC_KAFKA_CLUSTER_PORTS and CONVSYNC_KAFKA_CLUSTER_CONTROLLER_PORTS (three
# each, comma-separated). Data, pid files and logs live under .local/kafka-cluster/node<n>,
# the bootstrap list in .local/kafka-cluster/brokers. Internal topics have replication
# factor 3 and min.insync.replicas 2, as production's.
CLUSTER_PORTS=${CONVSYNC_KAFKA_CLUSTER_PORTS:-59192,59194,59196}
CLUSTER_CPORTS=${CONVSYNC_KAFKA_CLUSTER_CONTROLLER_PORTS:-59193,59195,59197}

cluster_up() {
  local dir="$LOCAL/kafka-cluster" ports cports voters="" brokers="" i n home ok
  IFS=, read -r -a ports <<<"$CLUSTER_PORTS"
  IFS=, read -r -a cports <<<"$CLUSTER_CPORTS"
  [ ${#ports[@]} -eq 3 ] && [ ${#cports[@]} -eq 3 ] || die "the cluster needs three broker and three controller ports"
  mkdir -p "$dir" "$LOCAL/kafka"
  kafka_libs
  for i in 0 1 2; do
    voters+="${voters:+,}$((i + 1))@127.0.0.1:${cports[$i]}"
    brokers+="${brokers:+,}127.0.0.1:${ports[$i]}"
  done
  local cp="$KAFKA_LIBS/*"
  [ -s "$dir/cluster.id" ] || java -cp "$cp" kafka.tools.StorageTool random-uuid >"$dir/cluster.id" 2>/dev/null
  for i in 0 1 2; do
    n=$((i + 1))
    home="$dir/node$n"
    mkdir -p "$home"
    if alive "$home/kafka.pid"; then continue; fi
    {
      echo "process.roles=broker,controller"
      echo "node.id=$n"
      echo "controller.quorum.voters=$voters"
      echo "listeners=PLAINTEXT://127.0.0.1:${ports[$i]},CONTROLLER://127.0.0.1:${cports[$i]}"
      echo "advertised.listeners=PLAINTEXT://127.0.0.1:${ports[$i]}"
      echo "controller.listener.names=CONTROLLER"
      echo "inter.broker.listener.name=PLAINTEXT"
      echo "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
      echo "log.dirs=$home/data"
      echo "num.partitions=1"
      echo "default.replication.factor=3"
      echo "min.insync.replicas=2"
      echo "auto.create.topics.enable=false"
      echo "offsets.topic.replication.factor=3"
      echo "offsets.topic.num.partitions=4"
      echo "transaction.state.log.replication.factor=3"
      echo "transaction.state.log.min.isr=2"
      echo "transaction.state.log.num.partitions=4"
      echo "group.initial.rebalance.delay.ms=0"
      # A dead or frozen broker is fenced within 6 s and leaves the ISRs within 10 s.
      echo "broker.session.timeout.ms=6000"
      echo "broker.heartbeat.interval.ms=1000"
      echo "replica.lag.time.max.ms=10000"
      echo "log.segment.bytes=16777216"
      echo "num.network.threads=1"
      echo "num.io.threads=2"
    } >"$home/server.properties"
    if [ ! -f "$home/data/meta.properties" ]; then
      java -cp "$cp" -Dlog4j.configuration="file:$HERE/kafka/log4j.properties" kafka.tools.StorageTool format \
        -t "$(cat "$dir/cluster.id")" -c "$home/server.properties" >"$home/format.log" 2>&1 ||
        die "kafka storage format of node $n failed: see $home/format.log"
    fi
    log "starting kafka node $n on 127.0.0.1:${ports[$i]}"
    # shellcheck disable=SC2086
    nohup java $KAFKA_HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
      -Dlog4j.configuration="file:$HERE/kafka/log4j.properties" \
      -cp "$cp" kafka.Kafka "$home/server.properties" >"$home/kafka.log" 2>&1 </dev/null &
    echo $! >"$home/kafka.pid"
  done
  echo "$brokers" >"$dir/brokers"
  for i in $(seq 1 360); do
    ok=1
    for n in 0 1 2; do
      kcat -b "127.0.0.1:${ports[$n]}" -L -m 2 2>/dev/null | grep -q '^ 3 brokers:' || { ok=0; break; }
    done
    if [ $ok = 1 ]; then log "kafka cluster answers on $brokers"; return; fi
    for n in 1 2 3; do alive "$dir/node$n/kafka.pid" || die "kafka node $n exited: see $dir/node$n/kafka.log"; done
    sleep 0.5
  done
  die "the kafka cluster did not come up in 180 s: see $dir/node*/kafka.log"
}

cluster_down() {
  local n pidf
  for n in 1 2 3; do
    pidf="$LOCAL/kafka-cluster/node$n/kafka.pid"
    if alive "$pidf"; then
      log "stopping kafka node $n"
      kill -CONT "$(cat "$pidf")" 2>/dev/null || true # a paused node cannot stop
      kill "$(cat "$pidf")" || true
    fi
  done
  for n in 1 2 3; do
    wait_gone "$LOCAL/kafka-cluster/node$n/kafka.pid" 60
    rm -f "$LOCAL/kafka-cluster/node$n/kafka.pid"
  done
}

wait_gone() { # wait_gone PIDFILE [SECONDS]
  local i n=$(( ${2:-20} * 10 ))
  for i in $(seq 1 "$n"); do
    alive "$1" || return 0
    sleep 0.1
  done
  kill -9 "$(cat "$1")" 2>/dev/null || true
}

# --- env file -------------------------------------------------------------------------

write_env() {
  local db=${DATABASE_URL:-"postgres://convsync@127.0.0.1:$PG_PORT/convsync?sslmode=disable"}
  local redis=${REDIS_URL:-"redis://127.0.0.1:$REDIS_PORT/0"}
  local kafka=${KAFKA_BROKERS:-"127.0.0.1:$KAFKA_PORT"}
  cat >"$LOCAL/env" <<EOF
# written by deploy/local/services.sh; source it: . .local/env
export DATABASE_URL='$db'
export REDIS_URL='$redis'
export KAFKA_BROKERS='$kafka'
EOF
  log "wrote $LOCAL/env"
}

# local_ok says whether this machine can run the local stack: Linux, root, and apt-get
# for what is missing.
local_ok() {
  [ "$(uname -s)" = Linux ] && [ "$(id -u)" = 0 ] && have apt-get
}

# docker_ok says whether a Docker API answers (Docker, or podman's compatible socket).
docker_ok() {
  [ -n "${DOCKER_HOST:-}" ] || [ -S /var/run/docker.sock ] || { have docker && docker info >/dev/null 2>&1; }
}

up() {
  if [ "${CONVSYNC_TESTENV:-}" = containers ] || { [ "${CONVSYNC_TESTENV:-}" != local ] && ! local_ok && docker_ok; }; then
    log "not starting local services: the integration tests start PostgreSQL, Redis and Kafka as containers (testcontainers-go, internal/testenv)"
    return 0
  fi
  local_ok || die "the local stack needs Linux, root and apt-get, and no Docker API answers for containers (see README, Containers)"
  mkdir -p "$LOCAL"
  install
  if [ -n "${DATABASE_URL:-}" ]; then log "DATABASE_URL given: not starting postgres"; else pg_up; fi
  if [ -n "${REDIS_URL:-}" ]; then log "REDIS_URL given: not starting redis"; else redis_up; fi
  if [ -n "${KAFKA_BROKERS:-}" ]; then log "KAFKA_BROKERS given: not starting kafka"; else kafka_up; fi
  write_env
}

down() {
  kafka_down
  redis_down
  pg_down
}

status() {
  local bin
  bin=$(pg_bin || true)
  if [ -n "$bin" ] && id postgres >/dev/null 2>&1 && [ -f "$(pg_dir)/data/postmaster.pid" ] &&
    runuser -u postgres -- "$bin/pg_ctl" -D "$(pg_dir)/data" status >/dev/null 2>&1; then
    echo "postgres: up (127.0.0.1:$PG_PORT)"
  else echo "postgres: down"; fi
  if alive "$LOCAL/redis/redis.pid"; then echo "redis: up (127.0.0.1:$REDIS_PORT)"; else echo "redis: down"; fi
  if alive "$LOCAL/kafka/kafka.pid"; then echo "kafka: up (127.0.0.1:$KAFKA_PORT)"; else echo "kafka: down"; fi
}

case "${1:-}" in
up) up ;;
down) down ;;
status) status ;;
install) install ;;
kafka-up) kafka_up ;;
kafka-down) kafka_down ;;
redis-up) redis_up ;;
redis-down) redis_down ;;
cluster-up) cluster_up ;;
cluster-down) cluster_down ;;
*) echo "usage: $0 up|down|status|install|kafka-up|kafka-down|redis-up|redis-down|cluster-up|cluster-down" >&2; exit 2 ;;
esac
