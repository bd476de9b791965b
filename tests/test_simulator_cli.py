"""`python -m bridge.simulator` as a real process: serve, answer, stop on SIGTERM."""

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import httpx

TOKEN = "cli-test-token-4711"


def start(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bridge.simulator", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def first_line(process: subprocess.Popen[str], timeout_seconds: float) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout_seconds)
    assert ready, "the simulator did not print its URL in time"
    return process.stdout.readline().strip()


def test_serves_the_three_endpoints_and_stops_cleanly_on_sigterm(
    tmp_path: Path,
) -> None:
    """Prints the base URL, answers search/get/log, exits 0 on SIGTERM."""
    env = {**os.environ, "TOLOKA_BRIDGE_SIMULATOR_TOKEN": TOKEN}
    truth = tmp_path / "truth.jsonl"
    process = start(
        "--port",
        "0",
        "--seed",
        "3",
        "--history",
        "30",
        "--rate",
        "0",
        "--truth",
        str(truth),
        env=env,
    )
    try:
        base_url = first_line(process, 30.0)
        headers = {"Authorization": f"ApiKey {TOKEN}"}
        with httpx.Client(base_url=base_url, headers=headers, timeout=10.0) as client:
            page = client.get("/v1/operations", params={"type": "TASK.BATCH_CREATE"})
            op_id = page.json()["items"][0]["id"]
            single = client.get(f"/v1/operations/{op_id}")
            log = client.get(f"/v1/operations/{op_id}/log")
            refused = client.get(
                "/v1/operations", headers={"Authorization": "ApiKey no"}
            )
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=20)
    stdout, stderr = process.communicate()

    assert base_url.startswith("http://127.0.0.1:")
    assert base_url.endswith("/api")
    assert page.status_code == 200
    assert single.json()["id"] == op_id
    assert isinstance(log.json(), list)
    assert refused.status_code == 401
    assert code == 0
    assert TOKEN not in stdout + stderr
    assert len(truth.read_text().splitlines()) >= 60


def test_bad_settings_exit_2_before_serving() -> None:
    """An invalid flag value is reported on stderr with exit code 2."""
    process = start("--port", "0", "--max-limit", "0", env=dict(os.environ))

    stdout, stderr = process.communicate(timeout=30)

    assert process.returncode == 2
    assert "max_limit" in stderr
    assert stdout == ""
