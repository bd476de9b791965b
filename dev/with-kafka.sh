#!/usr/bin/env bash
# Run a command with a Kafka broker available: start one if none was started by
# dev/kafka/kafka.sh on $KAFKA_PORT, run the command, and stop the broker again only if
# this script started it. The command's exit code is this script's exit code.
set -uo pipefail

KAFKA="$(dirname "${BASH_SOURCE[0]}")/kafka/kafka.sh"
started=0
if ! "$KAFKA" status >/dev/null 2>&1; then
    "$KAFKA" up || exit 1
    started=1
fi

stop_started_broker() {
    if [[ $started == 1 ]]; then
        "$KAFKA" down
    fi
}
trap stop_started_broker EXIT

"$@"
