#!/usr/bin/env bash
# `make demo`: a broker, the Toloka simulator under random load and the bridge, with the
# events shown live in this terminal. Ctrl-C stops everything this script started.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN=.venv/bin
RUN=.run/demo
mkdir -p "$RUN"
pids=()
started_kafka=0

stop_everything() {
    trap - EXIT INT TERM
    echo
    echo "demo: stopping"
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill -TERM "${pids[i]}" 2>/dev/null || true
        wait "${pids[i]}" 2>/dev/null || true
    done
    if [[ $started_kafka == 1 ]]; then
        dev/kafka/kafka.sh down
    fi
}
trap stop_everything EXIT
trap 'stop_everything; exit 0' INT TERM

wait_for_url() {
    local url=$1 what=$2 log=$3
    for _ in $(seq 1 120); do
        if curl -fsS -o /dev/null "$url" 2>/dev/null; then
            return 0
        fi
        sleep 0.5
    done
    echo "demo: $what did not come up; last lines of $log:" >&2
    tail -n 20 "$log" >&2
    exit 1
}

if ! dev/kafka/kafka.sh status >/dev/null 2>&1; then
    dev/kafka/kafka.sh up
    started_kafka=1
fi

"$BIN/toloka-bridge" simulate --config dev/demo/simulator.toml \
    --truth "$RUN/truth.jsonl" >"$RUN/simulator.log" 2>&1 &
pids+=($!)
wait_for_url "http://127.0.0.1:8765/_sim/stats" "the simulator" "$RUN/simulator.log"

export TOLOKA_BRIDGE_TOLOKA__API_KEY=sim-token
"$BIN/toloka-bridge" run --config dev/demo/bridge.toml >"$RUN/bridge.log" 2>&1 &
pids+=($!)
wait_for_url "http://127.0.0.1:9464/readyz" "the bridge" "$RUN/bridge.log"

cat <<TEXT

  toloka-bridge demo is running.
    metrics      http://127.0.0.1:9464/metrics   (also /healthz and /readyz)
    simulator    http://127.0.0.1:8765/api       (control API under /_sim)
    logs         $RUN/bridge.log, $RUN/simulator.log, truth in $RUN/truth.jsonl
  Events arrive below as the simulated operations move. Ctrl-C stops everything.

TEXT

"$BIN/toloka-bridge" tail --config dev/demo/bridge.toml --from-beginning &
pids+=($!)
wait "${pids[-1]}"
