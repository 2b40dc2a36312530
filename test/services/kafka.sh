#!/usr/bin/env bash
# A single-node Apache Kafka (KRaft: broker and controller in one JVM) on 127.0.0.1 for the
# importer/exporter integration tests and benchmarks. The jars come from Maven Central through
# test/services/kafka/pom.xml (no downloads from elsewhere), live in .tools/kafka (git-ignored),
# and the broker keeps its data there too.
#
#   bash test/services/kafka.sh          start (or find running) → prints SLUICE_TEST_KAFKA_BROKERS=host:port
#   bash test/services/kafka.sh stop     stop the broker this script started
#   bash test/services/kafka.sh status   exit 0 when it answers
#
# Besides the PLAINTEXT listener the tests share, the broker has an OUTAGE listener whose
# advertised address is a port nobody listens on until a test puts a TCP proxy there
# (test/exporters/kafka-outage.test.ts): clients that bootstrap through that proxy are told to
# reach the broker through it, so cutting the proxy is a broker outage for them alone, producer
# and metadata alike, while every other test keeps its broker.
#
# Idempotent and fast when the broker already runs: the only line on stdout is the env assignment,
# so callers can `export "$(bash test/services/kafka.sh)"`. Progress goes to stderr.
set -euo pipefail

script_dir="$(cd "$(dirname "$0")" && pwd)"
repo_root="$(cd "$script_dir/../.." && pwd)"
kafka_version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$script_dir/kafka/pom.xml")"
kafka_home="${SLUICE_KAFKA_HOME:-$repo_root/.tools/kafka}"
libs_dir="$kafka_home/libs-$kafka_version"
data_dir="$kafka_home/data"
pid_file="$kafka_home/broker.pid"
ports_file="$kafka_home/ports"
preferred_port=9092
start_wait_seconds=90
stop_wait_seconds=30
heap_options="-Xms256m -Xmx768m"

say() { echo "kafka.sh: $*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

broker_pid() {
  [ -f "$pid_file" ] || return 1
  local pid
  pid="$(cat "$pid_file")"
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

saved_port() { [ -f "$ports_file" ] && sed -n 1p "$ports_file"; }

free_port() {
  local port
  for port in "$@"; do
    port_open "$port" || { echo "$port"; return 0; }
  done
  return 1
}

ensure_tools() {
  if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
    say "installing Java 17 and Maven (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq openjdk-17-jre-headless maven >&2
  fi
}

ensure_jars() {
  [ -f "$libs_dir/.complete" ] && return 0
  ensure_tools
  say "copying Kafka $kafka_version jars from Maven Central into $libs_dir"
  rm -rf "$libs_dir"
  mkdir -p "$libs_dir"
  mvn -q -B -f "$script_dir/kafka/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$libs_dir" >&2
  touch "$libs_dir/.complete"
}

java_run() {
  # shellcheck disable=SC2086
  java $heap_options -Dkafka.logs.dir="$kafka_home" \
    -Dlog4j2.configurationFile="$script_dir/kafka/log4j2.properties" \
    -cp "$libs_dir/*" "$@"
}

write_config() {
  local port="$1" controller_port="$2" outage_port="$3" outage_proxy_port="$4"
  cat > "$kafka_home/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port,OUTAGE://127.0.0.1:$outage_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port,OUTAGE://127.0.0.1:$outage_proxy_port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,OUTAGE:PLAINTEXT
log.dirs=$data_dir
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=5
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=5
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
log.retention.hours=24
EOF
  printf '%s\n%s\n%s\n%s\n' "$port" "$controller_port" "$outage_port" "$outage_proxy_port" > "$ports_file"
}

wait_until_ready() {
  local port="$1" pid="$2"
  for _ in $(seq 1 "$start_wait_seconds"); do
    if ! kill -0 "$pid" 2>/dev/null; then
      say "the broker exited while starting; last lines of $kafka_home/broker.log and broker.out:"
      tail -n 20 "$kafka_home/broker.log" "$kafka_home/broker.out" >&2 2>/dev/null || true
      return 1
    fi
    if port_open "$port" && grep -q "Kafka Server started" "$kafka_home/broker.log" 2>/dev/null; then
      return 0
    fi
    sleep 1
  done
  say "the broker did not answer on 127.0.0.1:$port within ${start_wait_seconds}s (see $kafka_home/broker.log)"
  return 1
}

start() {
  mkdir -p "$kafka_home"
  local pid port
  if pid="$(broker_pid)" && port="$(saved_port)" && port_open "$port"; then
    if grep -q '^listeners=.*OUTAGE://' "$kafka_home/server.properties" 2>/dev/null; then
      echo "SLUICE_TEST_KAFKA_BROKERS=127.0.0.1:$port"
      return 0
    fi
    say "the running broker was started without the OUTAGE listener; restarting it"
  fi
  ensure_jars
  [ -n "${pid:-}" ] && stop

  # Keep the ports of the last run when they are free (the formatted log keeps working);
  # otherwise take free ones and start from an empty data folder.
  local controller_port outage_port outage_proxy_port
  port="$(saved_port || true)"
  controller_port="$( [ -f "$ports_file" ] && sed -n 2p "$ports_file" || true)"
  outage_port="$( [ -f "$ports_file" ] && sed -n 3p "$ports_file" || true)"
  outage_proxy_port="$( [ -f "$ports_file" ] && sed -n 4p "$ports_file" || true)"
  if [ -z "$port" ] || [ -z "$outage_proxy_port" ] || port_open "$port" || port_open "$controller_port" || port_open "$outage_port" || port_open "$outage_proxy_port"; then
    port="$(free_port $preferred_port $(seq 19092 19192))"
    controller_port="$(free_port $(seq 19193 19293))"
    outage_port="$(free_port $(seq 19294 19394))"
    outage_proxy_port="$(free_port $(seq 19395 19495))"
    rm -rf "$data_dir"
  fi
  write_config "$port" "$controller_port" "$outage_port" "$outage_proxy_port"

  if [ ! -f "$data_dir/meta.properties" ]; then
    say "formatting KRaft storage in $data_dir"
    rm -rf "$data_dir"
    local cluster_id
    cluster_id="$(java_run kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"
    java_run kafka.tools.StorageTool format -t "$cluster_id" -c "$kafka_home/server.properties" >&2
  fi

  say "starting Kafka $kafka_version on 127.0.0.1:$port (controller on $controller_port)"
  : > "$kafka_home/broker.log"
  # A session of its own, so that ending the shell or job that started it leaves the broker up.
  # setsid execs (the background child is no group leader), so $! is the JVM's pid.
  # shellcheck disable=SC2086
  setsid nohup java $heap_options -Dkafka.logs.dir="$kafka_home" \
    -Dlog4j2.configurationFile="$script_dir/kafka/log4j2.properties" \
    -cp "$libs_dir/*" kafka.Kafka "$kafka_home/server.properties" \
    > "$kafka_home/broker.out" 2>&1 < /dev/null &
  local started_pid=$!
  echo "$started_pid" > "$pid_file"
  wait_until_ready "$port" "$started_pid"
  echo "SLUICE_TEST_KAFKA_BROKERS=127.0.0.1:$port"
}

stop() {
  local pid
  if ! pid="$(broker_pid)"; then
    say "no broker started by this script is running"
    rm -f "$pid_file"
    return 0
  fi
  say "stopping the broker (pid $pid)"
  kill -TERM "$pid"
  for _ in $(seq 1 "$stop_wait_seconds"); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$pid_file"; return 0; }
    sleep 1
  done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pid_file"
}

status() {
  local port
  broker_pid >/dev/null && port="$(saved_port)" && port_open "$port" && echo "running on 127.0.0.1:$port"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) say "unknown command '$1' (expected start, stop or status)"; exit 2 ;;
esac
