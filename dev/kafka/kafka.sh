#!/usr/bin/env bash
# Start, stop and inspect a single-node Apache Kafka broker (KRaft) on 127.0.0.1 for the
# tests, the demo and the benchmarks. No Docker: the broker runs from the jars that Maven
# Central publishes, resolved once by dev/kafka/pom.xml into a cache outside the repository.
#
#   dev/kafka/kafka.sh up       start a fresh broker and wait until it answers metadata requests
#   dev/kafka/kafka.sh down     stop the broker that `up` started (no-op when none runs)
#   dev/kafka/kafka.sh status   say whether it runs and answers (exit 0), or not (exit 3)
#
# Environment (all optional):
#   KAFKA_PORT               client port, default 9092
#   KAFKA_CONTROLLER_PORT    KRaft controller port, default KAFKA_PORT + 1
#   KAFKA_DATA_DIR           log.dirs, default <repo>/.run/kafka-<port>/data
#   KAFKA_KEEP_DATA=1        keep the data of the previous run instead of wiping it on `up`
#   KAFKA_START_TIMEOUT      seconds `up` waits for the broker to answer, default 90
#   KAFKA_STOP_TIMEOUT       seconds `down` waits after SIGTERM before SIGKILL, default 30
#   KAFKA_HEAP_OPTS          JVM heap flags, default "-Xms256m -Xmx512m"
#
# Everything of one broker lives in <repo>/.run/kafka-<port>/ (gitignored): server.properties,
# broker.log, kafka.pid. Brokers on different ports do not interfere.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
POM="$SCRIPT_DIR/pom.xml"
READY_SOURCE="$SCRIPT_DIR/BrokerReady.java"

KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM")"
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/toloka-bridge/kafka-$KAFKA_VERSION"
LIBS_DIR="$CACHE_DIR/libs"

PORT="${KAFKA_PORT:-9092}"
CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-$((PORT + 1))}"
RUN_DIR="$REPO_ROOT/.run/kafka-$PORT"
DATA_DIR="$(realpath -m -- "${KAFKA_DATA_DIR:-$RUN_DIR/data}")"
PROPERTIES="$RUN_DIR/server.properties"
LOG_FILE="$RUN_DIR/broker.log"
PID_FILE="$RUN_DIR/kafka.pid"
BOOTSTRAP="127.0.0.1:$PORT"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
# For the short-lived JVMs (storage format, readiness probe): start fast, skip the optimiser.
TOOL_JVM_OPTS=(-XX:TieredStopAtLevel=1 -XX:+UseSerialGC)

say() { printf 'kafka.sh: %s\n' "$*"; }
die() { printf 'kafka.sh: error: %s\n' "$*" >&2; exit 1; }

check_settings() {
    [[ -n "$KAFKA_VERSION" ]] || die "no <kafka.version> found in $POM"
    local name value
    for name in PORT CONTROLLER_PORT START_TIMEOUT STOP_TIMEOUT; do
        value="${!name}"
        [[ "$value" =~ ^[0-9]+$ ]] || die "$name must be a whole number, got '$value'"
    done
    ((PORT >= 1 && PORT <= 65535)) || die "KAFKA_PORT must be 1-65535, got $PORT"
    ((CONTROLLER_PORT >= 1 && CONTROLLER_PORT <= 65535)) ||
        die "KAFKA_CONTROLLER_PORT must be 1-65535, got $CONTROLLER_PORT"
    ((PORT != CONTROLLER_PORT)) || die "KAFKA_PORT and KAFKA_CONTROLLER_PORT are both $PORT"
}

require_tool() {
    command -v "$1" >/dev/null 2>&1 || die "'$1' not found on PATH: $2"
}

# Kafka 4.x brokers need Java 17 or newer.
require_java() {
    local hint="install a JDK 17+ (Debian: apt-get install -y openjdk-17-jdk-headless)"
    require_tool java "$hint"
    local spec
    spec="$(java -XshowSettings:properties -version 2>&1 |
        sed -n 's/^ *java.specification.version = \([0-9]*\).*/\1/p')"
    if ! [[ "$spec" =~ ^[0-9]+$ ]] || ((spec < 17)); then
        die "Kafka $KAFKA_VERSION needs Java 17+; 'java' is version '${spec:-unknown}': $hint"
    fi
}

# --- jars -------------------------------------------------------------------------------

pom_digest() { sha256sum "$POM" | cut -d' ' -f1; }

# Copies the broker's runtime jars into $LIBS_DIR once per pom.xml content. The copy goes to a
# temporary directory first, so an interrupted download is never mistaken for a cache.
resolve_jars() {
    local digest stamp
    digest="$(pom_digest)"
    stamp="$LIBS_DIR/.pom-sha256"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$digest" ]]; then
        return 0
    fi

    require_tool mvn "install Maven (Debian: apt-get install -y maven) to fetch the Kafka jars"
    say "resolving Apache Kafka $KAFKA_VERSION jars into $LIBS_DIR (first run only)"
    mkdir -p "$CACHE_DIR"
    local staging="$CACHE_DIR/libs.partial.$$"
    rm -rf "$staging"
    # Maven's output goes to a file: Debian's Maven prints stray colour codes even with -B.
    local maven_log="$CACHE_DIR/maven.log"
    if ! mvn -q -B -f "$POM" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$staging" >"$maven_log" 2>&1; then
        tail -n 40 "$maven_log" >&2
        rm -rf "$staging"
        die "Maven could not resolve the Kafka jars (full output in $maven_log)"
    fi
    printf '%s\n' "$digest" >"$staging/.pom-sha256"
    rm -rf "$LIBS_DIR"
    mv "$staging" "$LIBS_DIR"
}

# Compiles the readiness probe once per source content, next to the jars it runs against;
# --release 17 keeps the class runnable by any Java 17+ whichever JDK compiled it.
compile_ready_probe() {
    local javac_flags="--release 17 -nowarn" digest
    digest="$({ cat "$READY_SOURCE"; echo "$javac_flags"; } | sha256sum | cut -c1-16)"
    READY_CLASSES="$CACHE_DIR/ready-probe-$digest"
    [[ -f "$READY_CLASSES/BrokerReady.class" ]] && return 0

    require_tool javac "install a JDK 17+ (Debian: apt-get install -y openjdk-17-jdk-headless)"
    local staging="$READY_CLASSES.partial.$$"
    rm -rf "$staging"
    mkdir -p "$staging"
    # shellcheck disable=SC2086  # javac_flags holds several flags on purpose
    javac $javac_flags -cp "$LIBS_DIR/*" -d "$staging" "$READY_SOURCE" ||
        die "could not compile $READY_SOURCE"
    rm -rf "$READY_CLASSES"
    mv "$staging" "$READY_CLASSES"
}

# --- process bookkeeping ----------------------------------------------------------------

# Prints the pid from the pid file when that process is the broker this script started for
# this port (same server.properties); removes a stale pid file; prints nothing otherwise.
running_pid() {
    [[ -f "$PID_FILE" ]] || return 0
    local pid
    pid="$(cat "$PID_FILE")"
    if [[ "$pid" =~ ^[0-9]+$ ]] && ps -ww -o args= -p "$pid" 2>/dev/null |
        grep -qF -- "kafka.Kafka $PROPERTIES"; then
        printf '%s\n' "$pid"
        return 0
    fi
    say "removing stale pid file $PID_FILE (pid ${pid:-?} is not a broker started here)" >&2
    rm -f "$PID_FILE"
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

print_log_tail() {
    [[ -f "$LOG_FILE" ]] || return 0
    printf '%s\n' "---- last 40 lines of $LOG_FILE ----" >&2
    tail -n 40 "$LOG_FILE" >&2
    printf '%s\n' "---- end of broker log ----" >&2
}

# Runs the readiness probe; $1 is the broker pid (0: do not watch a process), $2 the timeout.
probe_ready() {
    java "${TOOL_JVM_OPTS[@]}" -Dorg.slf4j.simpleLogger.defaultLogLevel=off \
        -cp "$READY_CLASSES:$LIBS_DIR/*" BrokerReady "$BOOTSTRAP" "$1" "$2"
}

# --- broker configuration ---------------------------------------------------------------

write_properties() {
    mkdir -p "$RUN_DIR"
    cat >"$PROPERTIES" <<EOF
# Written by dev/kafka/kafka.sh; edits are lost on the next \`up\`.

# One process is both the KRaft controller and the broker; every address is on loopback.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA_DIR

# A single node: every internal topic has one replica.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# Internal topics get one partition instead of 50: the first InitProducerId (transactional
# producer) and the first consumer group otherwise wait while 50 partitions are created.
offsets.topic.num.partitions=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.num.partitions=1

# Tests create their topics explicitly; a typo in a topic name must fail, not create a topic.
auto.create.topics.enable=false

# Consumer groups: no 3 s wait for more members before the first assignment, and tests may
# use session timeouts down to 1 s (the default floor is 6 s).
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000

# Transactions that outlive transaction_timeout_ms are aborted within 1 s (default 10 s),
# so tests of a producer that died mid-transaction do not wait long.
transaction.abort.timed.out.transaction.cleanup.interval.ms=1000

# Compaction: the cleaner looks for work every second (default 15 s) and its dedupe buffer
# fits the small heap (default 128 MiB). A test of compaction still has to give its topic
# a small segment.ms / segment.bytes: only closed segments are compacted.
log.cleaner.enable=true
log.cleaner.backoff.ms=1000
log.cleaner.dedupe.buffer.size=16777216
EOF
}

# A Kafka cluster id: 16 random bytes in URL-safe base64 without padding, not starting with
# '-' (what `StorageTool random-uuid` prints, without paying for a JVM start).
random_cluster_id() {
    local id="-"
    while [[ "$id" == -* ]]; do
        id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | cut -c1-22)"
    done
    printf '%s\n' "$id"
}

# Wipes the data directory unless KAFKA_KEEP_DATA=1, then formats it if it is empty.
prepare_storage() {
    if [[ "${KAFKA_KEEP_DATA:-0}" != "1" && -e "$DATA_DIR" ]]; then
        if [[ -n "$(ls -A "$DATA_DIR")" && ! -f "$DATA_DIR/meta.properties" ]]; then
            die "refusing to wipe $DATA_DIR: it is not empty and holds no Kafka meta.properties"
        fi
        rm -rf "$DATA_DIR"
    fi
    mkdir -p "$DATA_DIR"
    if [[ -f "$DATA_DIR/meta.properties" ]]; then
        say "keeping the data in $DATA_DIR (KAFKA_KEEP_DATA=1)"
        return 0
    fi

    local cluster_id
    cluster_id="$(random_cluster_id)"
    local format_log="$RUN_DIR/format.log"
    if ! java "${TOOL_JVM_OPTS[@]}" -cp "$LIBS_DIR/*" kafka.tools.StorageTool format \
        --standalone -t "$cluster_id" -c "$PROPERTIES" >"$format_log" 2>&1; then
        tail -n 40 "$format_log" >&2
        die "formatting $DATA_DIR failed (full output in $format_log)"
    fi
}

# Starts the JVM in its own session (so Ctrl-C in the calling terminal or make's exit does
# not reach it); the shell writes its own pid before exec-ing java, so the pid file holds
# the broker's pid whether or not setsid forks. G1 with short pauses as in Kafka's own
# start scripts; an OutOfMemoryError ends the broker instead of leaving it half-alive.
launch_broker() {
    # shellcheck disable=SC2016,SC2086  # $$ is for the inner shell; HEAP_OPTS is several flags
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" \
        java $HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
        -Djava.awt.headless=true \
        -Dorg.slf4j.simpleLogger.logFile=System.out \
        -Dorg.slf4j.simpleLogger.showDateTime=true \
        -Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS \
        -cp "$LIBS_DIR/*" kafka.Kafka "$PROPERTIES" \
        </dev/null >>"$LOG_FILE" 2>&1 9>&- &
    local waited=0
    while [[ ! -s "$PID_FILE" ]] && ((waited < 50)); do
        sleep 0.1
        waited=$((waited + 1))
    done
    [[ -s "$PID_FILE" ]] || { print_log_tail; die "the broker process did not start"; }
}

# --- subcommands ------------------------------------------------------------------------

cmd_up() {
    require_java
    mkdir -p "$RUN_DIR"
    exec 9>"$RUN_DIR/lock"
    flock -w 120 9 || die "another kafka.sh holds $RUN_DIR/lock"

    resolve_jars
    compile_ready_probe

    local pid
    pid="$(running_pid)"
    if [[ -n "$pid" ]]; then
        say "broker already running (pid $pid) on $BOOTSTRAP; nothing to do"
        probe_ready "$pid" "$START_TIMEOUT" >/dev/null || {
            print_log_tail
            die "broker pid $pid runs but does not answer on $BOOTSTRAP"
        }
        return 0
    fi
    for port in "$PORT" "$CONTROLLER_PORT"; do
        port_in_use "$port" && die "127.0.0.1:$port is already in use by another process" \
            "(not a broker started by this script); stop it or set KAFKA_PORT"
    done

    : >"$LOG_FILE"
    write_properties
    prepare_storage
    launch_broker
    pid="$(cat "$PID_FILE")"
    say "started Apache Kafka $KAFKA_VERSION (pid $pid), log $LOG_FILE"

    local outcome=0 description
    description="$(probe_ready "$pid" "$START_TIMEOUT")" || outcome=$?
    case "$outcome" in
    0) ;;
    3)
        print_log_tail
        rm -f "$PID_FILE"
        die "the broker process (pid $pid) exited during startup; see the log above"
        ;;
    *)
        print_log_tail
        stop_pid "$pid"
        die "the broker did not answer on $BOOTSTRAP within ${START_TIMEOUT}s; stopped it"
        ;;
    esac
    say "ready on $BOOTSTRAP: $description"
}

# Stops one pid: SIGTERM, wait up to STOP_TIMEOUT seconds, then SIGKILL.
stop_pid() {
    local pid="$1" tenths=0
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && ((tenths < STOP_TIMEOUT * 10)); do
        sleep 0.1
        tenths=$((tenths + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "broker pid $pid ignored SIGTERM for ${STOP_TIMEOUT}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        tenths=0
        while kill -0 "$pid" 2>/dev/null && ((tenths < 100)); do
            sleep 0.1
            tenths=$((tenths + 1))
        done
        kill -0 "$pid" 2>/dev/null && die "broker pid $pid survived SIGKILL for 10s"
    fi
    rm -f "$PID_FILE"
}

cmd_down() {
    mkdir -p "$RUN_DIR"
    exec 9>"$RUN_DIR/lock"
    flock -w 120 9 || die "another kafka.sh holds $RUN_DIR/lock"

    local pid
    pid="$(running_pid)"
    if [[ -z "$pid" ]]; then
        say "no broker started by this script runs on port $PORT; nothing to stop"
        return 0
    fi
    stop_pid "$pid"
    say "stopped broker pid $pid"
}

cmd_status() {
    local pid
    pid="$(running_pid)"
    if [[ -z "$pid" ]]; then
        say "not running (port $PORT)"
        exit 3
    fi
    say "running: pid $pid, bootstrap $BOOTSTRAP, data $DATA_DIR, log $LOG_FILE"
    if [[ -f "$LIBS_DIR/.pom-sha256" ]]; then
        compile_ready_probe
        probe_ready "$pid" 5 || exit 1
    fi
}

main() {
    check_settings
    case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *)
        printf 'usage: %s up|down|status\n' "$0" >&2
        exit 64
        ;;
    esac
}

main "$@"
