# Shared by kafka.sh and secure.sh (sourced, never run): where the jars live, logging,
# the pid file bookkeeping, launching and stopping the broker JVM, and the subcommands'
# dispatch. The caller sets SCRIPT_NAME, RUN_DIR, PROPERTIES, LOG_FILE, PID_FILE and
# STOP_TIMEOUT before calling anything here.

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
POM="$SCRIPT_DIR/pom.xml"

KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM")"
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/toloka-bridge/kafka-$KAFKA_VERSION"
LIBS_DIR="$CACHE_DIR/libs"
JDK_HINT="install a JDK 17+ (Debian: apt-get install -y openjdk-17-jdk-headless)"
# For the short-lived JVMs (storage format, readiness probe): start fast, skip the optimiser.
TOOL_JVM_OPTS=(-XX:TieredStopAtLevel=1 -XX:+UseSerialGC)

say() { printf '%s: %s\n' "$SCRIPT_NAME" "$*"; }
die() { printf '%s: error: %s\n' "$SCRIPT_NAME" "$*" >&2; exit 1; }

require_tool() {
    command -v "$1" >/dev/null 2>&1 || die "'$1' not found on PATH: $2"
}

require_whole_numbers() {
    local name value
    for name in "$@"; do
        value="${!name}"
        [[ "$value" =~ ^[0-9]+$ ]] || die "$name must be a whole number, got '$value'"
    done
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Takes this broker's lock on fd 9 for the rest of the script; the broker JVM does not
# inherit it (launch_broker closes fd 9).
lock_run_dir() {
    mkdir -p "$RUN_DIR"
    exec 9>"$RUN_DIR/lock"
    flock -w 120 9 || die "another $SCRIPT_NAME holds $RUN_DIR/lock"
}

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

print_log_tail() {
    [[ -f "$LOG_FILE" ]] || return 0
    printf '%s\n' "---- last 40 lines of $LOG_FILE ----" >&2
    tail -n 40 "$LOG_FILE" >&2
    printf '%s\n' "---- end of broker log ----" >&2
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

# Compiles a readiness probe ($1, a .java file) once per source content, next to the jars it
# runs against, and sets PROBE_CLASSES; --release 17 keeps it runnable by any Java 17+.
compile_probe() {
    local source="$1" class digest
    class="$(basename "$source" .java)"
    digest="$(sha256sum "$source" | cut -c1-16)"
    PROBE_CLASSES="$CACHE_DIR/$class-$digest"
    [[ -f "$PROBE_CLASSES/$class.class" ]] && return 0

    require_tool javac "$JDK_HINT"
    local staging="$PROBE_CLASSES.partial.$$"
    rm -rf "$staging"
    mkdir -p "$staging"
    javac --release 17 -nowarn -cp "$LIBS_DIR/*" -d "$staging" "$source" ||
        die "could not compile $source"
    rm -rf "$PROBE_CLASSES"
    mv "$staging" "$PROBE_CLASSES"
}

# Runs probe class $1 with the remaining arguments; Kafka's client logging off.
run_probe() {
    local class="$1"
    shift
    java "${TOOL_JVM_OPTS[@]}" -Dorg.slf4j.simpleLogger.defaultLogLevel=off \
        -cp "$PROBE_CLASSES:$LIBS_DIR/*" "$class" "$@"
}

# Settings every single-node test broker shares, as server.properties lines.
single_node_properties() {
    cat <<'EOF_PROPERTIES'
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
EOF_PROPERTIES
}

# Starts the JVM in its own session (so Ctrl-C in the calling terminal or make's exit does
# not reach it); the shell writes its own pid before exec-ing java, so the pid file holds
# the broker's pid whether or not setsid forks. G1 with short pauses as in Kafka's own
# start scripts; an OutOfMemoryError ends the broker instead of leaving it half-alive.
# $1: the JVM heap flags.
launch_broker() {
    # shellcheck disable=SC2016,SC2086  # $$ is for the inner shell; $1 is several flags
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" \
        java $1 -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
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
    lock_run_dir
    local pid
    pid="$(running_pid)"
    if [[ -z "$pid" ]]; then
        say "no broker started by this script runs on port $PORT; nothing to stop"
        return 0
    fi
    stop_pid "$pid"
    say "stopped broker pid $pid"
}

# Runs the subcommand named by $1; the caller defines check_settings, cmd_up and cmd_status.
dispatch() {
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
