#!/usr/bin/env bash
# Start and stop a second, secured single-node Kafka broker (KRaft) for the SASL/TLS tests:
# clients reach it only through a SASL_SSL listener that accepts SCRAM-SHA-512, with a
# certificate signed by a throwaway CA this script makes. It runs beside the default broker
# of kafka.sh, on its own ports, from the jar cache kafka.sh resolves.
#
#   dev/kafka/secure.sh up       make a CA and certificate, format storage with the SCRAM users,
#                                start the broker and wait until a SCRAM client gets metadata
#   dev/kafka/secure.sh down     stop the broker that `up` started (no-op when none runs)
#   dev/kafka/secure.sh status   exit 0 when it runs and answers, 3 when it does not run
#
# Environment (all optional):
#   SECURE_KAFKA_PORT             SASL_SSL client port, default 29792
#   SECURE_KAFKA_CONTROLLER_PORT  KRaft controller port (PLAINTEXT, loopback), default port + 1
#   SECURE_KAFKA_USER             the client's SCRAM user name, default "bridge"
#   SECURE_KAFKA_PASSWORD_FILE    file holding the client's password; default: a random password
#                                 written to <run dir>/client/password
#   SECURE_KAFKA_START_TIMEOUT    seconds `up` waits for the broker, default 90
#
# Everything lives in <repo>/.run/kafka-secure-<port>/ (gitignored, wiped on every `up`):
#   client/ca.pem        the CA certificate clients must trust (ssl_cafile)
#   client/password      the client's SCRAM password (mode 600; only when generated here)
#   client/client.properties   Java client settings for this broker (mode 600)
#   broker.log, server.properties (mode 600), kafka.pid
# Passwords never appear on a command line: the storage tool reads its arguments from a
# mode-600 argument file (`java @file`).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
POM="$SCRIPT_DIR/pom.xml"

KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM")"
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/toloka-bridge/kafka-$KAFKA_VERSION"
LIBS_DIR="$CACHE_DIR/libs"

PORT="${SECURE_KAFKA_PORT:-29792}"
CONTROLLER_PORT="${SECURE_KAFKA_CONTROLLER_PORT:-$((PORT + 1))}"
CLIENT_USER="${SECURE_KAFKA_USER:-bridge}"
START_TIMEOUT="${SECURE_KAFKA_START_TIMEOUT:-90}"
RUN_DIR="$REPO_ROOT/.run/kafka-secure-$PORT"
TLS_DIR="$RUN_DIR/tls"
CLIENT_DIR="$RUN_DIR/client"
DATA_DIR="$RUN_DIR/data"
PROPERTIES="$RUN_DIR/server.properties"
LOG_FILE="$RUN_DIR/broker.log"
PID_FILE="$RUN_DIR/kafka.pid"
BOOTSTRAP="127.0.0.1:$PORT"
TOOL_JVM_OPTS=(-XX:TieredStopAtLevel=1 -XX:+UseSerialGC)

say() { printf 'secure.sh: %s\n' "$*"; }
die() { printf 'secure.sh: error: %s\n' "$*" >&2; exit 1; }

check_settings() {
    local name value
    for name in PORT CONTROLLER_PORT START_TIMEOUT; do
        value="${!name}"
        [[ "$value" =~ ^[0-9]+$ ]] || die "$name must be a whole number, got '$value'"
    done
    ((PORT != CONTROLLER_PORT)) || die "the client and controller ports are both $PORT"
    for value in "$PORT" "$CONTROLLER_PORT"; do
        ((value != 9092 && value != 9093)) ||
            die "port $value belongs to the default broker of kafka.sh; pick another"
    done
    [[ "$CLIENT_USER" =~ ^[A-Za-z0-9._-]+$ ]] || die "SECURE_KAFKA_USER '$CLIENT_USER' is not a plain name"
}

require_tool() {
    command -v "$1" >/dev/null 2>&1 || die "'$1' not found on PATH: $2"
}

require_jars() {
    [[ -f "$LIBS_DIR/.pom-sha256" ]] ||
        die "no Kafka jars in $LIBS_DIR; run dev/kafka/kafka.sh up once to resolve them"
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# The pid from the pid file when that process is the broker started here for this port.
running_pid() {
    [[ -f "$PID_FILE" ]] || return 0
    local pid
    pid="$(cat "$PID_FILE")"
    if [[ "$pid" =~ ^[0-9]+$ ]] && ps -ww -o args= -p "$pid" 2>/dev/null |
        grep -qF -- "kafka.Kafka $PROPERTIES"; then
        printf '%s\n' "$pid"
        return 0
    fi
    rm -f "$PID_FILE"
}

print_log_tail() {
    [[ -f "$LOG_FILE" ]] || return 0
    printf '%s\n' "---- last 40 lines of $LOG_FILE ----" >&2
    tail -n 40 "$LOG_FILE" >&2
    printf '%s\n' "---- end of broker log ----" >&2
}

random_secret() {
    head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '='
}

random_cluster_id() {
    local id="-"
    while [[ "$id" == -* ]]; do
        id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | cut -c1-22)"
    done
    printf '%s\n' "$id"
}

# --- TLS: a CA that lives as long as this run, and a broker certificate for 127.0.0.1 -------

make_certificates() {
    require_tool openssl "install it (Debian: apt-get install -y openssl)"
    require_tool keytool "it comes with the JDK (Debian: openjdk-17-jdk-headless)"
    mkdir -p "$TLS_DIR" "$CLIENT_DIR"
    chmod 700 "$TLS_DIR" "$CLIENT_DIR"
    local log="$RUN_DIR/tls.log"
    (umask 077 && random_secret >"$TLS_DIR/store.password")
    {
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 \
            -keyout "$TLS_DIR/ca.key" -out "$TLS_DIR/ca.pem" \
            -subj "/CN=toloka-bridge throwaway test CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign"
        openssl req -newkey rsa:2048 -nodes \
            -keyout "$TLS_DIR/broker.key" -out "$TLS_DIR/broker.csr" -subj "/CN=127.0.0.1"
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' \
            >"$TLS_DIR/broker.ext"
        openssl x509 -req -days 2 -in "$TLS_DIR/broker.csr" \
            -CA "$TLS_DIR/ca.pem" -CAkey "$TLS_DIR/ca.key" -CAcreateserial \
            -extfile "$TLS_DIR/broker.ext" -out "$TLS_DIR/broker.pem"
        openssl pkcs12 -export -in "$TLS_DIR/broker.pem" -inkey "$TLS_DIR/broker.key" \
            -name broker -out "$TLS_DIR/broker.p12" -passout "file:$TLS_DIR/store.password"
        # Java must be able to read the store; keytool fails loudly if it cannot.
        keytool -list -storetype PKCS12 -keystore "$TLS_DIR/broker.p12" \
            -storepass:file "$TLS_DIR/store.password"
    } >"$log" 2>&1 || { tail -n 30 "$log" >&2; die "making the certificates failed (see $log)"; }
    cp "$TLS_DIR/ca.pem" "$CLIENT_DIR/ca.pem"
}

# --- broker -------------------------------------------------------------------------------

write_properties() {
    local admin_password="$1" store_password
    store_password="$(cat "$TLS_DIR/store.password")"
    (
        umask 077
        cat >"$PROPERTIES" <<EOF
# Written by dev/kafka/secure.sh; holds passwords (mode 600); rewritten on every \`up\`.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$CONTROLLER_PORT
listeners=SASL_SSL://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=SASL_SSL://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
log.dirs=$DATA_DIR

# Clients and the broker itself (inter-broker traffic) authenticate with SCRAM-SHA-512 over
# TLS; the users exist from the start because they are written at storage-format time.
inter.broker.listener.name=SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$admin_password";
ssl.keystore.type=PKCS12
ssl.keystore.location=$TLS_DIR/broker.p12
ssl.keystore.password=$store_password
ssl.key.password=$store_password
ssl.truststore.type=PEM
ssl.truststore.location=$TLS_DIR/ca.pem
ssl.client.auth=none

offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
transaction.abort.timed.out.transaction.cleanup.interval.ms=1000
log.cleaner.backoff.ms=1000
log.cleaner.dedupe.buffer.size=16777216
EOF
    )
}

client_password_file() {
    if [[ -n "${SECURE_KAFKA_PASSWORD_FILE:-}" ]]; then
        [[ -s "$SECURE_KAFKA_PASSWORD_FILE" ]] ||
            die "SECURE_KAFKA_PASSWORD_FILE '$SECURE_KAFKA_PASSWORD_FILE' is missing or empty"
        printf '%s\n' "$SECURE_KAFKA_PASSWORD_FILE"
        return 0
    fi
    (umask 077 && random_secret >"$CLIENT_DIR/password")
    printf '%s\n' "$CLIENT_DIR/password"
}

# Java client settings (for the readiness probe and for anyone who wants a Java client).
write_client_properties() {
    local password="$1"
    (
        umask 077
        cat >"$CLIENT_DIR/client.properties" <<EOF
bootstrap.servers=$BOOTSTRAP
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$CLIENT_USER" password="$password";
ssl.truststore.type=PEM
ssl.truststore.location=$CLIENT_DIR/ca.pem
EOF
    )
}

# Formats the storage with both SCRAM users; the arguments (passwords) go in a mode-600 file.
format_storage() {
    local admin_password="$1" client_password="$2"
    local args_file="$RUN_DIR/format.args"
    (
        umask 077
        printf '%s\n' kafka.tools.StorageTool format --standalone \
            -t "$(random_cluster_id)" -c "$PROPERTIES" \
            --add-scram "SCRAM-SHA-512=[name=admin,password=$admin_password]" \
            --add-scram "SCRAM-SHA-512=[name=$CLIENT_USER,password=$client_password]" \
            >"$args_file"
    )
    local status=0
    java "${TOOL_JVM_OPTS[@]}" -cp "$LIBS_DIR/*" "@$args_file" >"$RUN_DIR/format.log" 2>&1 ||
        status=$?
    rm -f "$args_file"
    if ((status != 0)); then
        tail -n 30 "$RUN_DIR/format.log" >&2
        die "formatting $DATA_DIR failed (see $RUN_DIR/format.log)"
    fi
}

launch_broker() {
    # shellcheck disable=SC2016  # $$ is for the inner shell
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" \
        java -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
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

# --- readiness: Kafka's own admin client, authenticated with the client's SCRAM user ------

PROBE_SOURCE='
import java.io.FileInputStream;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;

public final class SecureBrokerReady {
  public static void main(String[] args) throws Exception {
    Properties properties = new Properties();
    try (FileInputStream in = new FileInputStream(args[0])) {
      properties.load(in);
    }
    properties.put("request.timeout.ms", "3000");
    properties.put("default.api.timeout.ms", "4000");
    long pid = Long.parseLong(args[1]);
    long deadline = System.nanoTime() + (long) (Double.parseDouble(args[2]) * 1e9);
    String problem = "no attempt was made";
    try (Admin admin = Admin.create(properties)) {
      while (System.nanoTime() < deadline) {
        if (!ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false)) {
          System.err.println("broker process " + pid + " exited while starting");
          System.exit(3);
        }
        try {
          int topics = admin.listTopics().names().get(4, TimeUnit.SECONDS).size();
          System.out.println("SCRAM-SHA-512 client got metadata (" + topics + " topics)");
          System.exit(0);
        } catch (Exception e) {
          problem = String.valueOf(e.getCause() == null ? e : e.getCause());
        }
        Thread.sleep(250);
      }
    }
    System.err.println("no answer: " + problem);
    System.exit(2);
  }
}
'

compile_probe() {
    local digest
    digest="$(printf '%s' "$PROBE_SOURCE" | sha256sum | cut -c1-16)"
    PROBE_CLASSES="$CACHE_DIR/secure-probe-$digest"
    [[ -f "$PROBE_CLASSES/SecureBrokerReady.class" ]] && return 0

    require_tool javac "install a JDK 17+ (Debian: apt-get install -y openjdk-17-jdk-headless)"
    local staging="$PROBE_CLASSES.partial.$$"
    rm -rf "$staging"
    mkdir -p "$staging"
    printf '%s' "$PROBE_SOURCE" >"$staging/SecureBrokerReady.java"
    javac --release 17 -nowarn -cp "$LIBS_DIR/*" -d "$staging" "$staging/SecureBrokerReady.java" ||
        die "could not compile the readiness probe"
    rm -rf "$PROBE_CLASSES"
    mv "$staging" "$PROBE_CLASSES"
}

probe_ready() {
    java "${TOOL_JVM_OPTS[@]}" -Dorg.slf4j.simpleLogger.defaultLogLevel=off \
        -cp "$PROBE_CLASSES:$LIBS_DIR/*" SecureBrokerReady "$CLIENT_DIR/client.properties" "$1" "$2"
}

stop_pid() {
    local pid="$1" tenths=0
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && ((tenths < 300)); do
        sleep 0.1
        tenths=$((tenths + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "broker pid $pid ignored SIGTERM for 30s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PID_FILE"
}

# --- subcommands --------------------------------------------------------------------------

cmd_up() {
    require_tool java "install a JDK 17+ (Debian: apt-get install -y openjdk-17-jdk-headless)"
    require_jars
    mkdir -p "$RUN_DIR"
    exec 9>"$RUN_DIR/lock"
    flock -w 120 9 || die "another secure.sh holds $RUN_DIR/lock"

    local pid
    pid="$(running_pid)"
    [[ -z "$pid" ]] || die "a secure broker already runs on port $PORT (pid $pid); run down first"
    for port in "$PORT" "$CONTROLLER_PORT"; do
        port_in_use "$port" && die "127.0.0.1:$port is already in use; set SECURE_KAFKA_PORT"
    done

    rm -rf "$DATA_DIR" "$TLS_DIR" "$CLIENT_DIR"
    : >"$LOG_FILE"
    make_certificates
    (umask 077 && random_secret >"$TLS_DIR/admin.password")
    local admin_password client_password password_file
    admin_password="$(cat "$TLS_DIR/admin.password")"
    password_file="$(client_password_file)"
    client_password="$(head -n 1 "$password_file")"
    [[ "$client_password" != *'"'* && "$client_password" != *']'* && "$client_password" != *','* ]] ||
        die "the client password must not contain '\"', ']' or ','"

    write_properties "$admin_password"
    write_client_properties "$client_password"
    format_storage "$admin_password" "$client_password"
    compile_probe
    launch_broker
    pid="$(cat "$PID_FILE")"
    say "started a SASL_SSL broker (pid $pid), log $LOG_FILE"

    local outcome=0 description
    description="$(probe_ready "$pid" "$START_TIMEOUT")" || outcome=$?
    if ((outcome != 0)); then
        print_log_tail
        [[ $outcome == 3 ]] || stop_pid "$pid"
        rm -f "$PID_FILE"
        die "the secure broker on $BOOTSTRAP did not become ready (probe exit $outcome)"
    fi
    say "ready on SASL_SSL://$BOOTSTRAP: $description"
    say "CA certificate: $CLIENT_DIR/ca.pem; user: $CLIENT_USER; password file: $password_file"
}

cmd_down() {
    mkdir -p "$RUN_DIR"
    exec 9>"$RUN_DIR/lock"
    flock -w 120 9 || die "another secure.sh holds $RUN_DIR/lock"
    local pid
    pid="$(running_pid)"
    if [[ -z "$pid" ]]; then
        say "no secure broker started by this script runs on port $PORT; nothing to stop"
        return 0
    fi
    stop_pid "$pid"
    say "stopped secure broker pid $pid"
}

cmd_status() {
    local pid
    pid="$(running_pid)"
    if [[ -z "$pid" ]]; then
        say "not running (port $PORT)"
        exit 3
    fi
    say "running: pid $pid, SASL_SSL://$BOOTSTRAP, CA $CLIENT_DIR/ca.pem, log $LOG_FILE"
    compile_probe
    probe_ready "$pid" 5 || exit 1
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
