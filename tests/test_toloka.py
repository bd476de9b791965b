"""Tests of the Toloka client against httpx.MockTransport; sleeps are recorded."""

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

import bridge
from bridge.config import Secret, TolokaSettings
from bridge.errors import AuthError, PayloadError, QuotaError, ResponseError
from bridge.toloka import SearchQuery, TolokaClient

KEY = "sekret-key-3f9a1c"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
OPERATION = {
    "id": "57068577e4b0bf7b07a0256f",
    "type": "POOL.OPEN",
    "status": "RUNNING",
    "submitted": "2026-03-01T11:59:00.120",
    "parameters": {"pool_id": "21"},
}
QUERY = SearchQuery(sort="submitted,id", limit=300)

Handler = Callable[[httpx.Request], httpx.Response]


@dataclass
class Recorder:
    """Collects what the client reports: sleeps and observer calls."""

    delays: list[float] = field(default_factory=list)
    finished: list[tuple[str, str]] = field(default_factory=list)
    retries: list[tuple[str, str, float]] = field(default_factory=list)
    rate_limits: list[float] = field(default_factory=list)

    async def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)

    def request_finished(self, endpoint: str, status: str, seconds: float) -> None:
        self.finished.append((endpoint, status))

    def retry_scheduled(self, endpoint: str, reason: str, delay_seconds: float) -> None:
        self.retries.append((endpoint, reason, delay_seconds))

    def rate_limited(self, delay_seconds: float) -> None:
        self.rate_limits.append(delay_seconds)


def answers(*responses: httpx.Response | Exception) -> tuple[Handler, list[str]]:
    """A handler giving `responses` in turn; also returns the URLs it was asked."""
    queue = iter(responses)
    asked: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        answer = next(queue)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handle, asked


def page(*items: object, has_more: bool = False) -> httpx.Response:
    return httpx.Response(200, json={"items": list(items), "has_more": has_more})


def refusal(status: int, code: str, message: str, **extra: Any) -> httpx.Response:
    """An answer with Toloka's error envelope."""
    body = {"request_id": "req-1", "code": code, "message": message} | extra
    return httpx.Response(status, json=body)


def make_client(
    handler: Handler,
    recorder: Recorder | None = None,
    jitter: float = 1.0,
    **overrides: Any,
) -> TolokaClient:
    settings = TolokaSettings(
        base_url="https://toloka.test/api",
        api_key=Secret(KEY),
        backoff_initial_seconds=0.5,
        backoff_max_seconds=4.0,
        **overrides,
    )
    recorder = recorder or Recorder()
    return TolokaClient(
        settings,
        transport=httpx.MockTransport(handler),
        observer=recorder,
        sleep=recorder.sleep,
        jitter=lambda: jitter,
        clock=lambda: NOW,
    )


async def test_search_sends_filters_in_wire_format_and_decodes_the_page() -> None:
    """Filters go out as Toloka spells them; items come back as observations."""
    handler, asked = answers(page(OPERATION, has_more=True))
    query = SearchQuery(
        sort="submitted,id",
        limit=300,
        status="RUNNING",
        id_gt="abc",
        submitted_gte=datetime(2026, 3, 1, 11, 0, tzinfo=UTC),
    )

    async with make_client(handler) as client:
        result = await client.search(query)

    url = httpx.URL(asked[0])
    assert url.path == "/api/v1/operations"
    assert dict(url.params) == {
        "sort": "submitted,id",
        "limit": "300",
        "status": "RUNNING",
        "id_gt": "abc",
        "submitted_gte": "2026-03-01T11:00:00.000000",
    }
    assert result.has_more is True
    assert [item.operation_id for item in result.observations] == [OPERATION["id"]]


@pytest.mark.parametrize(
    ("scheme", "header"), [("ApiKey", "ApiKey"), ("OAuth", "OAuth")]
)
async def test_auth_header_uses_the_configured_scheme(scheme: str, header: str) -> None:
    """The scheme comes from the settings, never guessed from the key's shape."""
    seen: list[httpx.Headers] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers)
        return page()

    async with make_client(handle, auth_scheme=scheme) as client:
        await client.search(QUERY)

    assert seen[0]["Authorization"] == f"{header} {KEY}"
    assert seen[0]["User-Agent"] == f"toloka-bridge/{bridge.__version__}"


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_retriable_statuses_are_retried_with_backoff(status: int) -> None:
    """408, 429 and every 5xx, 502 included, are tried again after a backoff."""
    recorder = Recorder()
    handler, asked = answers(
        refusal(status, "INTERNAL_ERROR", "try later"),
        refusal(status, "INTERNAL_ERROR", "try later"),
        page(OPERATION),
    )

    async with make_client(handler, recorder) as client:
        result = await client.search(QUERY)

    assert len(result.observations) == 1
    assert recorder.delays == [0.5, 1.0]
    assert recorder.retries == [
        ("search", f"http_{status}", 0.5),
        ("search", f"http_{status}", 1.0),
    ]
    assert recorder.finished == [("search", str(status))] * 2 + [("search", "200")]
    assert len(asked) == 3


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (httpx.ConnectError("connection refused"), "network"),
        (httpx.ReadTimeout("timed out"), "timeout"),
        (httpx.RemoteProtocolError("peer closed"), "network"),
    ],
)
async def test_network_errors_and_timeouts_are_retried(
    failure: Exception, reason: str
) -> None:
    """Transport failures count as attempts and are retried."""
    recorder = Recorder()
    handler, _ = answers(failure, page(OPERATION))

    async with make_client(handler, recorder) as client:
        result = await client.search(QUERY)

    assert len(result.observations) == 1
    assert recorder.retries == [("search", reason, 0.5)]
    assert recorder.finished == [("search", "error"), ("search", "200")]


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, "VALIDATION_ERROR"), (404, "DOES_NOT_EXIST"), (409, "CONFLICT_STATE")],
)
async def test_client_errors_are_not_retried(status: int, code: str) -> None:
    """Other 4xx answers fail at once, naming Toloka's code and message."""
    recorder = Recorder()
    handler, asked = answers(refusal(status, code, "field sort is bad"))

    async with make_client(handler, recorder) as client:
        with pytest.raises(
            ResponseError, match=rf"search failed: HTTP {status} {code}: 'field sort"
        ) as caught:
            await client.search(QUERY)

    assert caught.value.retriable is False
    assert caught.value.status_code == status
    assert len(asked) == 1
    assert recorder.delays == []


@pytest.mark.parametrize(
    ("status", "code"), [(401, "AUTHENTICATION_ERROR"), (403, "ACCESS_DENIED")]
)
async def test_refused_credentials_raise_auth_error_without_the_key(
    status: int, code: str
) -> None:
    """401/403 is an AuthError with a clear message that never contains the key."""
    handler, asked = answers(refusal(status, code, f"bad token {KEY}"))

    async with make_client(handler) as client:
        with pytest.raises(
            AuthError, match=rf"refused the credentials \(HTTP {status} {code}"
        ) as caught:
            await client.search(QUERY)

    assert KEY not in str(caught.value)
    assert "bad token <redacted>" in str(caught.value)
    assert "toloka.auth_scheme (now 'ApiKey')" in str(caught.value)
    assert len(asked) == 1


async def test_retry_after_in_seconds_is_honoured() -> None:
    """A Retry-After of seconds replaces the backoff."""
    recorder = Recorder()
    handler, _ = answers(
        httpx.Response(503, headers={"Retry-After": "7"}), page(OPERATION)
    )

    async with make_client(handler, recorder) as client:
        await client.search(QUERY)

    assert recorder.delays == [7.0]


async def test_retry_after_as_http_date_is_honoured() -> None:
    """A Retry-After HTTP-date waits until that moment by the injected clock."""
    recorder = Recorder()
    moment = format_datetime(NOW + timedelta(seconds=42), usegmt=True)
    handler, _ = answers(
        httpx.Response(429, headers={"Retry-After": moment}), page(OPERATION)
    )

    async with make_client(handler, recorder) as client:
        await client.search(QUERY)

    assert recorder.delays == [42.0]
    assert recorder.rate_limits == [42.0]


async def test_unreadable_retry_after_falls_back_to_backoff() -> None:
    """A Retry-After that is neither seconds nor a date is ignored."""
    recorder = Recorder()
    handler, _ = answers(
        httpx.Response(503, headers={"Retry-After": "soon"}), page(OPERATION)
    )

    async with make_client(handler, recorder) as client:
        await client.search(QUERY)

    assert recorder.delays == [0.5]


async def test_quota_window_without_retry_after_waits_the_window() -> None:
    """A 429 naming a minute window waits a minute before trying again."""
    recorder = Recorder()
    quota = refusal(429, "TOO_MANY_REQUESTS", "quota", payload={"interval": "MIN"})
    handler, _ = answers(quota, page(OPERATION))

    async with make_client(handler, recorder) as client:
        await client.search(QUERY)

    assert recorder.delays == [60.0]
    assert recorder.rate_limits == [60.0]


async def test_day_quota_raises_quota_error_instead_of_sleeping() -> None:
    """A wait beyond max_retry_after_seconds surfaces as QuotaError at once."""
    recorder = Recorder()
    quota = refusal(429, "TOO_MANY_REQUESTS", "quota", payload={"interval": "DAY"})
    handler, asked = answers(quota)

    async with make_client(handler, recorder) as client:
        with pytest.raises(
            QuotaError, match=r"wait 86400 s \(quota window DAY\)"
        ) as caught:
            await client.search(QUERY)

    assert caught.value.wait_seconds == 86400.0
    assert caught.value.interval == "DAY"
    assert recorder.delays == []
    assert len(asked) == 1


async def test_long_retry_after_raises_quota_error() -> None:
    """A Retry-After above the ceiling is not slept either."""
    handler, _ = answers(httpx.Response(429, headers={"Retry-After": "301"}))

    async with make_client(handler, max_retry_after_seconds=300.0) as client:
        with pytest.raises(QuotaError, match=r"longer than toloka\.max_retry_after"):
            await client.search(QUERY)


async def test_gives_up_after_max_attempts_with_the_last_status() -> None:
    """After max_attempts failures the last status surfaces; backoff doubles, capped."""
    recorder = Recorder()
    handler, asked = answers(*[httpx.Response(503)] * 5 + [httpx.Response(502)])

    async with make_client(handler, recorder, max_attempts=6) as client:
        with pytest.raises(
            ResponseError, match="search failed after 6 attempts"
        ) as caught:
            await client.search(QUERY)

    assert caught.value.status_code == 502
    assert caught.value.retriable is True
    assert recorder.delays == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert len(asked) == 6


async def test_full_jitter_scales_the_backoff() -> None:
    """The delay is the jitter's fraction of the capped exponential."""
    recorder = Recorder()
    handler, _ = answers(httpx.Response(500), httpx.Response(500), page())
    async with make_client(handler, recorder, jitter=0.25) as client:
        await client.search(QUERY)

    assert recorder.delays == [0.125, 0.25]


@pytest.mark.parametrize(
    "body",
    [b"<html>bad gateway</html>", b'{"items": 5, "has_more": false}', b'{"items": []}'],
)
async def test_malformed_bodies_are_retried(body: bytes) -> None:
    """A 2xx whose body is not a page of operations is tried again."""
    recorder = Recorder()
    handler, asked = answers(httpx.Response(200, content=body), page(OPERATION))

    async with make_client(handler, recorder) as client:
        result = await client.search(QUERY)

    assert len(result.observations) == 1
    assert recorder.retries[0][:2] == ("search", "malformed")
    assert len(asked) == 2


async def test_malformed_bodies_until_max_attempts_raise() -> None:
    """Bodies that never decode end as a ResponseError naming the problem."""
    handler, _ = answers(*[httpx.Response(200, content=b"nope")] * 3)

    async with make_client(handler, max_attempts=3) as client:
        with pytest.raises(ResponseError, match="not a page of operations"):
            await client.search(QUERY)


async def test_oversized_body_with_content_length_is_refused() -> None:
    """A declared length over the limit is refused and not retried."""
    handler, asked = answers(page(OPERATION, OPERATION, OPERATION))

    async with make_client(handler, max_response_bytes=100) as client:
        with pytest.raises(
            ResponseError, match=r"larger than toloka\.max_response_bytes"
        ) as caught:
            await client.search(QUERY)

    assert caught.value.retriable is False
    assert len(asked) == 1


async def test_oversized_streamed_body_stops_reading() -> None:
    """Without a length the body is read in chunks and abandoned past the limit."""
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for index in range(1000):
            sent.append(index)
            yield b"x" * 1024

    handler, _ = answers(httpx.Response(200, content=chunks()))

    async with make_client(handler, max_response_bytes=10_000) as client:
        with pytest.raises(ResponseError, match="refused without reading the rest"):
            await client.search(QUERY)

    assert len(sent) < 20


async def test_bad_items_are_rejected_and_the_rest_of_the_page_used() -> None:
    """Items without a type, with bad values or not objects are rejected one by one."""
    no_type = {k: v for k, v in OPERATION.items() if k != "type"} | {"id": "t"}
    bad_progress = OPERATION | {"id": "p", "progress": 140}
    future = OPERATION | {"id": "f", "submitted": "2031-01-01T00:00:00"}
    good = OPERATION | {"id": "good"}
    handler, _ = answers(page(no_type, bad_progress, "junk", future, good))

    async with make_client(handler) as client:
        result = await client.search(QUERY)

    assert [item.operation_id for item in result.observations] == ["good"]
    assert [error.reason for error in result.rejected] == [
        "missing_type",
        "absurd_progress",
        "malformed",
        "future_timestamp",
    ]
    assert result.item_count == 5


async def test_get_reads_one_operation_by_quoted_id() -> None:
    """get asks for the id as one path segment and returns its observation."""
    handler, asked = answers(httpx.Response(200, json=OPERATION | {"id": "a/b c"}))

    async with make_client(handler) as client:
        observation = await client.get("a/b c")

    assert httpx.URL(asked[0]).raw_path == b"/api/v1/operations/a%2Fb%20c"
    assert observation is not None
    assert observation.operation_id == "a/b c"


async def test_get_of_a_missing_operation_returns_none() -> None:
    """A 404 DOES_NOT_EXIST is an answer, not an error."""
    handler, _ = answers(refusal(404, "DOES_NOT_EXIST", "no such operation"))

    async with make_client(handler) as client:
        assert await client.get("gone") is None


async def test_get_404_without_toloka_envelope_is_an_error() -> None:
    """A bare 404 (a wrong base URL) must not read as 'the operation vanished'."""
    handler, _ = answers(httpx.Response(404, text="not found"))

    async with make_client(handler) as client:
        with pytest.raises(ResponseError, match=r"get failed: HTTP 404$"):
            await client.get("x")


async def test_get_of_a_bad_item_raises_payload_error() -> None:
    """A well-formed answer holding an unusable operation is a PayloadError."""
    handler, _ = answers(httpx.Response(200, json=OPERATION | {"progress": -3}))

    async with make_client(handler) as client:
        with pytest.raises(PayloadError, match="has progress -3"):
            await client.get(str(OPERATION["id"]))


async def test_get_retries_a_body_that_is_not_an_object() -> None:
    """A truncated or non-object get answer is retried like a bad page."""
    recorder = Recorder()
    handler, _ = answers(
        httpx.Response(200, content=b'{"id": "x", "ty'),
        httpx.Response(200, json=OPERATION),
    )

    async with make_client(handler, recorder) as client:
        observation = await client.get(str(OPERATION["id"]))

    assert observation is not None
    assert recorder.retries[0][:2] == ("get", "malformed")


async def test_logs_never_contain_the_key_through_a_failing_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """DEBUG logs of retries, rate limits and a final refusal never show the key."""
    caplog.set_level(logging.DEBUG)
    echo = refusal(401, "AUTHENTICATION_ERROR", f"ApiKey {KEY} is not valid")
    handler, _ = answers(
        httpx.ConnectError("refused"),
        refusal(500, "INTERNAL_ERROR", f"token={KEY}"),
        httpx.Response(429, headers={"Retry-After": "1"}),
        httpx.Response(200, content=KEY.encode()),
        page(OPERATION, has_more=True),
        echo,
    )

    async with make_client(handler) as client:
        await client.search(QUERY)
        with pytest.raises(AuthError):
            await client.search(SearchQuery(sort="id", limit=5, id_gt="z"))

    assert caplog.records
    assert KEY not in caplog.text
    assert not any(KEY in record.getMessage() for record in caplog.records)
    ours = [record for record in caplog.records if record.name == "bridge.toloka"]
    assert {record.levelname for record in ours} == {"DEBUG", "WARNING"}
    assert not any("id_gt" in record.getMessage() for record in ours)
