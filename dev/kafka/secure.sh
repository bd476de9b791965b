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

SCRIPT_NAME=secure.sh
# shellcheck source=dev/kafka/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
PROBE_SOURCE="$SCRIPT_DIR/SecureBrokerReady.java"

PORT="${SECURE_KAFKA_PORT:-29792}"
CONTROLLER_PORT="${SECURE_KAFKA_CONTROLLER_PORT:-}"  # default: PORT + 1, set by check_settings
CLIENT_USER="${SECURE_KAFKA_USER:-bridge}"
START_TIMEOUT="${SECURE_KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT=30
RUN_DIR="$REPO_ROOT/.run/kafka-secure-$PORT"
TLS_DIR="$RUN_DIR/tls"
CLIENT_DIR="$RUN_DIR/client"
DATA_DIR="$RUN_DIR/data"
PROPERTIES="$RUN_DIR/server.properties"
LOG_FILE="$RUN_DIR/broker.log"
PID_FILE="$RUN_DIR/kafka.pid"
BOOTSTRAP="127.0.0.1:$PORT"

check_settings() {
    require_whole_numbers PORT
    CONTROLLER_PORT="${CONTROLLER_PORT:-$((PORT + 1))}"
    require_whole_numbers CONTROLLER_PORT START_TIMEOUT
    local value
    ((PORT != CONTROLLER_PORT)) || die "the client and controller ports are both $PORT"
    for value in "$PORT" "$CONTROLLER_PORT"; do
        ((value != 9092 && value != 9093)) ||
            die "port $value belongs to the default broker of kafka.sh; pick another"
    done
    [[ "$CLIENT_USER" =~ ^[A-Za-z0-9._-]+$ ]] || die "SECURE_KAFKA_USER '$CLIENT_USER' is not a plain name"
}

require_jars() {
    [[ -f "$LIBS_DIR/.pom-sha256" ]] ||
        die "no Kafka jars in $LIBS_DIR; run dev/kafka/kafka.sh up once to resolve them"
}

random_secret() {
    head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '='
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

$(single_node_properties)
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

# --- readiness: Kafka's own admin client, authenticated with the client's SCRAM user ------

probe_ready() {
    run_probe SecureBrokerReady "$CLIENT_DIR/client.properties" "$1" "$2"
}

# --- subcommands --------------------------------------------------------------------------

cmd_up() {
    require_tool java "$JDK_HINT"
    require_jars
    lock_run_dir

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
    compile_probe "$PROBE_SOURCE"
    launch_broker "-Xms256m -Xmx512m"
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

cmd_status() {
    local pid
    pid="$(running_pid)"
    if [[ -z "$pid" ]]; then
        say "not running (port $PORT)"
        exit 3
    fi
    say "running: pid $pid, SASL_SSL://$BOOTSTRAP, CA $CLIENT_DIR/ca.pem, log $LOG_FILE"
    compile_probe "$PROBE_SOURCE"
    probe_ready "$pid" 5 || exit 1
}

dispatch "$@"
