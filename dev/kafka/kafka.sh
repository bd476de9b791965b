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

SCRIPT_NAME=kafka.sh
# shellcheck source=dev/kafka/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
READY_SOURCE="$SCRIPT_DIR/BrokerReady.java"

PORT="${KAFKA_PORT:-9092}"
CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-}"  # default: PORT + 1, set by check_settings
RUN_DIR="$REPO_ROOT/.run/kafka-$PORT"
DATA_DIR="$(realpath -m -- "${KAFKA_DATA_DIR:-$RUN_DIR/data}")"
PROPERTIES="$RUN_DIR/server.properties"
LOG_FILE="$RUN_DIR/broker.log"
PID_FILE="$RUN_DIR/kafka.pid"
BOOTSTRAP="127.0.0.1:$PORT"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"

check_settings() {
    [[ -n "$KAFKA_VERSION" ]] || die "no <kafka.version> found in $POM"
    require_whole_numbers PORT
    CONTROLLER_PORT="${CONTROLLER_PORT:-$((PORT + 1))}"
    require_whole_numbers CONTROLLER_PORT START_TIMEOUT STOP_TIMEOUT
    ((PORT >= 1 && PORT <= 65535)) || die "KAFKA_PORT must be 1-65535, got $PORT"
    ((CONTROLLER_PORT >= 1 && CONTROLLER_PORT <= 65535)) ||
        die "KAFKA_CONTROLLER_PORT must be 1-65535, got $CONTROLLER_PORT"
    ((PORT != CONTROLLER_PORT)) || die "KAFKA_PORT and KAFKA_CONTROLLER_PORT are both $PORT"
}

# Kafka 4.x brokers need Java 17 or newer.
require_java() {
    require_tool java "$JDK_HINT"
    local spec
    spec="$(java -XshowSettings:properties -version 2>&1 |
        sed -n 's/^ *java.specification.version = \([0-9]*\).*/\1/p')"
    if ! [[ "$spec" =~ ^[0-9]+$ ]] || ((spec < 17)); then
        die "Kafka $KAFKA_VERSION needs Java 17+; 'java' is version '${spec:-unknown}': $JDK_HINT"
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

# Runs the readiness probe; $1 is the broker pid (0: do not watch a process), $2 the timeout.
probe_ready() {
    run_probe BrokerReady "$BOOTSTRAP" "$1" "$2"
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

$(single_node_properties)
EOF
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

# --- subcommands ------------------------------------------------------------------------

cmd_up() {
    require_java
    lock_run_dir
    resolve_jars
    compile_probe "$READY_SOURCE"

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
    launch_broker "$HEAP_OPTS"
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

cmd_status() {
    local pid
    pid="$(running_pid)"
    if [[ -z "$pid" ]]; then
        say "not running (port $PORT)"
        exit 3
    fi
    say "running: pid $pid, bootstrap $BOOTSTRAP, data $DATA_DIR, log $LOG_FILE"
    if [[ -f "$LIBS_DIR/.pom-sha256" ]]; then
        compile_probe "$READY_SOURCE"
        probe_ready "$pid" 5 || exit 1
    fi
}

dispatch "$@"
