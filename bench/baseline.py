"""The baseline users have today: one GET per operation per interval, in a process.

    python -m bench.baseline --base-url URL --interval 1.0 --warmup 3 --duration 20 \\
        --output result.json

toloka-kit's `wait_operation` sleeps, then asks `GET /v1/operations/{id}` once per
second per operation until the operation completes. This script does the same for
every operation that is RUNNING or PENDING when it starts (it lists them first,
untimed), each in its own task with its start spread over one interval, the way
independent waiters are. A finished operation stops being polled, as in the kit.

The API key comes from the environment variable TOLOKA_BRIDGE_TOLOKA__API_KEY.
Requests are counted only inside the measurement window that follows the warm-up.
"""

import argparse
import asyncio
import os
import random
import sys
import time

import aiohttp
import msgspec
import psutil  # type: ignore[import-untyped]

TERMINAL = ("SUCCESS", "FAIL")
PAGE_LIMIT = 300


class BaselineResult(msgspec.Struct, kw_only=True):
    """What the per-operation poller did inside its measurement window."""

    operations: int
    interval_seconds: float
    window_seconds: float
    requests: int
    errors: int
    finished_seen: int
    requests_per_second: float
    target_requests_per_second: float
    mean_request_seconds: float
    cpu_seconds: float
    rss_bytes: int


class _Page(msgspec.Struct):
    items: list[dict[str, object]]
    has_more: bool


class _Operation(msgspec.Struct):
    id: str
    status: str


class _Window:
    """Counts requests that start between `opens` and `closes` (monotonic)."""

    def __init__(self, opens: float, closes: float) -> None:
        self.opens = opens
        self.closes = closes
        self.requests = 0
        self.errors = 0
        self.finished = 0
        self.request_seconds = 0.0

    def counts(self, moment: float) -> bool:
        return self.opens <= moment < self.closes


async def list_unfinished(client: aiohttp.ClientSession, base_url: str) -> list[str]:
    ids: list[str] = []
    for status in ("RUNNING", "PENDING"):
        after: str | None = None
        while True:
            params = {"status": status, "sort": "id", "limit": str(PAGE_LIMIT)}
            if after is not None:
                params["id_gt"] = after
            url = f"{base_url}/v1/operations"
            async with client.get(url, params=params, raise_for_status=True) as answer:
                page = msgspec.json.decode(await answer.read(), type=_Page)
            ids.extend(str(item["id"]) for item in page.items)
            if not page.has_more or not page.items:
                break
            after = str(page.items[-1]["id"])
    return ids


async def wait_operation(
    client: aiohttp.ClientSession,
    url: str,
    interval: float,
    window: _Window,
    gate: asyncio.Semaphore,
) -> None:
    """Poll one operation every `interval` until it completes or the window closes."""
    decoder = msgspec.json.Decoder(_Operation)
    await asyncio.sleep(random.random() * interval)
    loop = asyncio.get_running_loop()
    while loop.time() < window.closes:
        began = loop.time()
        try:
            async with gate, client.get(url) as answer:
                body = await answer.read()
            status = decoder.decode(body).status
            failed = answer.status != 200
        except (aiohttp.ClientError, msgspec.DecodeError):
            status, failed = "", True
        if window.counts(began):
            window.requests += 1
            window.errors += int(failed)
            window.request_seconds += loop.time() - began
        if status in TERMINAL:
            window.finished += int(window.counts(began))
            return
        await asyncio.sleep(max(interval - (loop.time() - began), 0.0))


async def run(args: argparse.Namespace) -> BaselineResult:
    headers = {"Authorization": f"ApiKey {os.environ['TOLOKA_BRIDGE_TOLOKA__API_KEY']}"}
    connections = args.connections
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=30.0)
    async with aiohttp.ClientSession(
        headers=headers, connector=connector, timeout=timeout
    ) as client:
        base_url = args.base_url
        ids = await list_unfinished(client, base_url)
        loop = asyncio.get_running_loop()
        opens = loop.time() + args.warmup
        window = _Window(opens, opens + args.duration)
        gate = asyncio.Semaphore(connections)
        waiters = [
            asyncio.create_task(
                wait_operation(
                    client, f"{base_url}/v1/operations/{i}", args.interval, window, gate
                )
            )
            for i in ids
        ]
        await asyncio.sleep(args.warmup)
        cpu_before = time.process_time()
        await asyncio.sleep(args.duration)
        cpu_seconds = time.process_time() - cpu_before
        await asyncio.gather(*waiters)

    return BaselineResult(
        operations=len(ids),
        interval_seconds=args.interval,
        window_seconds=args.duration,
        requests=window.requests,
        errors=window.errors,
        finished_seen=window.finished,
        requests_per_second=window.requests / args.duration,
        target_requests_per_second=len(ids) / args.interval,
        mean_request_seconds=window.request_seconds / max(window.requests, 1),
        cpu_seconds=cpu_seconds,
        rss_bytes=psutil.Process().memory_info().rss,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)

    result = asyncio.run(run(args))
    with open(args.output, "wb") as output:
        output.write(msgspec.json.encode(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
