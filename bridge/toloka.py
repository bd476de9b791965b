"""The Toloka operations API over httpx: search, get, retries and rate limits.

Every request goes through one loop. An attempt ends in one of three ways:

- a usable answer: a 2xx whose body decodes (single bad items inside a page are only
  rejected, see `bridge.operation.decode_page`), or a 404 `DOES_NOT_EXIST` for `get`;
- a failure worth retrying: a network error or timeout, 408, 429, any 5xx, or a 2xx
  whose body is not the API's JSON. The next attempt waits for `Retry-After` (seconds
  or an HTTP-date) or for the quota window a 429 names (`payload.interval`), otherwise
  for a full-jitter exponential backoff. A wait longer than
  `max_retry_after_seconds` raises `QuotaError` at once instead of sleeping;
- a failure that retrying cannot fix: 401/403 (`AuthError`), any other status,
  or a body larger than `max_response_bytes` (`OversizedError`; the scans then
  ask again for a smaller page, see `bridge.scan`).

After `max_attempts` attempts the last failure surfaces as a `ResponseError` carrying
the last status. httpx exceptions never leave this module. Neither the key nor the
Authorization header nor a URL with its query string is ever logged or put into an
error message.
"""

import asyncio
import email.utils
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Protocol, Self, TypeVar
from urllib.parse import quote

import httpx
import msgspec

import bridge
from bridge.config import TolokaSettings
from bridge.errors import (
    AuthError,
    ConfigError,
    OversizedError,
    QuotaError,
    ResponseError,
)
from bridge.operation import (
    DecodedPage,
    ItemRules,
    Observation,
    decode_item,
    decode_page,
    format_wire_datetime,
)

logger = logging.getLogger(__name__)

SEARCH = "search"
GET = "get"
QUOTA_WINDOW_SECONDS = {"MIN": 60.0, "HOUR": 3600.0, "DAY": 86400.0}
_RETRIABLE_STATUSES = frozenset({408, 429})
_REDACTED = "<redacted>"

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
Params = tuple[tuple[str, str], ...]
Decode = Callable[["_Answer"], tuple[T, int]]


class SearchQuery(msgspec.Struct, frozen=True, kw_only=True):
    """One call of `GET /v1/operations`; unset filters are not sent."""

    sort: str
    limit: int
    status: str | None = None
    type: str | None = None
    id_gt: str | None = None
    id_gte: str | None = None
    id_lt: str | None = None
    id_lte: str | None = None
    submitted_gt: datetime | None = None
    submitted_gte: datetime | None = None
    submitted_lt: datetime | None = None
    submitted_lte: datetime | None = None
    finished_gt: datetime | None = None
    finished_gte: datetime | None = None
    finished_lt: datetime | None = None
    finished_lte: datetime | None = None

    def params(self) -> "Params":
        """The query string pairs, datetimes in Toloka's wire format."""
        values = ((name, getattr(self, name)) for name in self.__struct_fields__)
        return tuple(
            (name, _wire(value)) for name, value in values if value is not None
        )


class RequestObserver(Protocol):
    """What the client reports about its requests (implemented by the metrics)."""

    def request_finished(self, endpoint: str, status: str, seconds: float) -> None:
        """One attempt ended; `status` is the HTTP code, or "error" without one."""

    def retry_scheduled(self, endpoint: str, reason: str, delay_seconds: float) -> None:
        """A failed attempt will be repeated after `delay_seconds`."""

    def rate_limited(self, delay_seconds: float) -> None:
        """A 429 makes the client wait `delay_seconds` before the next attempt."""


class IgnoringObserver:
    """The default observer: reports go nowhere."""

    def request_finished(self, endpoint: str, status: str, seconds: float) -> None:
        return None

    def retry_scheduled(self, endpoint: str, reason: str, delay_seconds: float) -> None:
        return None

    def rate_limited(self, delay_seconds: float) -> None:
        return None


class ErrorEnvelope(msgspec.Struct):
    """The body of Toloka's non-2xx answers; every field may be missing."""

    request_id: str | None = None
    code: str | None = None
    message: str | None = None
    payload: msgspec.Raw = msgspec.Raw(b"null")


class QuotaPayload(msgspec.Struct):
    """The `payload` of a 429 that names its quota window."""

    interval: str | None = None


class _Answer(msgspec.Struct, frozen=True):
    """A complete HTTP answer, read within the size limit."""

    status_code: int
    retry_after: str | None
    body: bytes


class _RetriableError(ResponseError):
    """An attempt failed in a way the next attempt may not; carries the wait asked."""

    def __init__(
        self,
        message: str,
        status_code: int | None,
        reason: str,
        requested_wait_seconds: float | None = None,
        interval: str | None = None,
    ) -> None:
        super().__init__(message, status_code, retriable=True)
        self.reason = reason
        self.requested_wait_seconds = requested_wait_seconds
        self.interval = interval


_envelope_decoder = msgspec.json.Decoder(ErrorEnvelope)
_quota_decoder = msgspec.json.Decoder(QuotaPayload)
_object_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])


class TolokaClient:
    """Reads operations from one Toloka account; use it as an async context manager."""

    def __init__(
        self,
        settings: TolokaSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        observer: RequestObserver | None = None,
        sleep: Sleep = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if settings.api_key is None:
            raise ConfigError("toloka.api_key: missing; the client needs a key")

        self._settings = settings
        self._secret = settings.api_key.reveal()
        self._observer: RequestObserver = observer or IgnoringObserver()
        self._sleep = sleep
        self._jitter = jitter
        self._clock = clock
        self._rules = ItemRules(max_clock_skew_seconds=settings.max_clock_skew_seconds)
        self._http = httpx.AsyncClient(
            base_url=settings.base_url,
            transport=transport,
            timeout=settings.timeout_seconds,
            follow_redirects=False,
            headers={
                "Authorization": f"{settings.auth_scheme} {self._secret}",
                "User-Agent": f"toloka-bridge/{bridge.__version__}",
                "Accept": "application/json",
            },
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def search(self, query: SearchQuery) -> DecodedPage:
        """One page of operations; bad items are in `rejected`, not raised."""
        return await self._call(SEARCH, "/v1/operations", query.params(), self._page)

    async def get(self, operation_id: str) -> Observation | None:
        """One operation by id; None if Toloka says it does not exist."""
        path = f"/v1/operations/{quote(operation_id, safe='')}"
        return await self._call(GET, path, (), self._single)

    def _page(self, answer: _Answer) -> tuple[DecodedPage, int]:
        page = decode_page(answer.body, self._clock(), self._rules)
        return page, page.item_count

    def _single(self, answer: _Answer) -> tuple[Observation | None, int]:
        if answer.status_code == 404:
            return None, 0

        try:
            _object_decoder.decode(answer.body)
        except msgspec.DecodeError as error:
            raise ResponseError(f"get answer is not a JSON object: {error}") from error
        return decode_item(answer.body, self._clock(), self._rules), 1

    async def _call(
        self, endpoint: str, path: str, params: Params, decode: Decode[T]
    ) -> T:
        attempt = 1
        while True:
            try:
                return await self._attempt(endpoint, path, params, decode)
            except _RetriableError as failure:
                delay_seconds = self._delay_seconds(attempt, failure)
                if attempt >= self._settings.max_attempts:
                    raise _gave_up(endpoint, attempt, failure) from failure
                await self._wait(endpoint, attempt, failure, delay_seconds)
                attempt += 1

    async def _attempt(
        self, endpoint: str, path: str, params: Params, decode: Decode[T]
    ) -> T:
        started = time.perf_counter()
        try:
            answer = await self._fetch(endpoint, path, params)
        except ResponseError as error:
            self._record(endpoint, error.status_code, started, 0)
            raise

        item_count = 0
        try:
            self._check_status(endpoint, answer)
            result, item_count = self._decode(answer, decode)
        finally:
            self._record(endpoint, answer.status_code, started, item_count)
        return result

    async def _fetch(self, endpoint: str, path: str, params: Params) -> _Answer:
        """Send one request and read its body, refusing bodies over the limit."""
        try:
            async with self._http.stream("GET", path, params=params) as response:
                body = await self._read_limited(endpoint, response)
                retry_after = response.headers.get("Retry-After")
                return _Answer(response.status_code, retry_after, body)
        except httpx.TimeoutException as error:
            message = f"{endpoint} request timed out ({type(error).__name__})"
            raise _RetriableError(message, None, "timeout") from error
        except (httpx.TransportError, httpx.DecodingError) as error:
            message = f"{endpoint} request failed: {type(error).__name__}: {error}"
            raise _RetriableError(message, None, "network") from error
        except (httpx.HTTPError, httpx.InvalidURL) as error:
            message = f"{endpoint} request failed: {type(error).__name__}"
            raise ResponseError(message, None, retriable=False) from error

    async def _read_limited(self, endpoint: str, response: httpx.Response) -> bytes:
        limit = self._settings.max_response_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _oversized(endpoint, response.status_code, limit)

        chunks: list[bytes] = []
        received = 0
        async for chunk in response.aiter_bytes():
            received += len(chunk)
            if received > limit:
                raise _oversized(endpoint, response.status_code, limit)
            chunks.append(chunk)
        return b"".join(chunks)

    def _check_status(self, endpoint: str, answer: _Answer) -> None:
        """Raise for every answer that is not a usable 2xx (or a known 404 on get)."""
        status = answer.status_code
        if 200 <= status < 300:
            return

        envelope = _decode_envelope(answer.body)
        if status == 404 and endpoint == GET and envelope.code == "DOES_NOT_EXIST":
            return
        detail = self._scrub(_describe(status, envelope))
        if status in (401, 403):
            raise AuthError(
                f"Toloka refused the credentials ({detail}); check toloka.api_key "
                f"and toloka.auth_scheme (now {self._settings.auth_scheme!r})"
            )
        if status in _RETRIABLE_STATUSES or status >= 500:
            raise self._retriable_status(endpoint, answer, envelope, detail)
        raise ResponseError(f"{endpoint} failed: {detail}", status, retriable=False)

    def _retriable_status(
        self, endpoint: str, answer: _Answer, envelope: ErrorEnvelope, detail: str
    ) -> _RetriableError:
        interval = _quota_interval(envelope) if answer.status_code == 429 else None
        wait_seconds = _retry_after_seconds(answer.retry_after, self._clock())
        if wait_seconds is None and interval is not None:
            wait_seconds = QUOTA_WINDOW_SECONDS.get(interval)
        return _RetriableError(
            f"{endpoint} failed: {detail}",
            answer.status_code,
            f"http_{answer.status_code}",
            wait_seconds,
            interval,
        )

    def _decode(self, answer: _Answer, decode: Decode[T]) -> tuple[T, int]:
        """Decode a usable answer; a body that is not the API's JSON is retried."""
        try:
            return decode(answer)
        except ResponseError as error:
            message = self._scrub(str(error))
            raise _RetriableError(message, answer.status_code, "malformed") from error

    def _delay_seconds(self, attempt: int, failure: _RetriableError) -> float:
        """The wait before the next attempt; raises `QuotaError` over the ceiling."""
        requested = failure.requested_wait_seconds
        if requested is None:
            ceiling = self._settings.backoff_initial_seconds * 2.0 ** (attempt - 1)
            return self._jitter() * min(ceiling, self._settings.backoff_max_seconds)

        if requested > self._settings.max_retry_after_seconds:
            raise QuotaError(
                f"Toloka asks to wait {requested:.0f} s (quota window "
                f"{failure.interval or 'unknown'}), longer than "
                f"toloka.max_retry_after_seconds = "
                f"{self._settings.max_retry_after_seconds!r}: {failure}",
                requested,
                failure.interval,
            ) from failure
        return requested

    async def _wait(
        self, endpoint: str, attempt: int, failure: _RetriableError, delay: float
    ) -> None:
        message = "toloka %s attempt %d failed (%s: %s); retrying in %.2f s"
        logger.warning(message, endpoint, attempt, failure.reason, failure, delay)
        self._observer.retry_scheduled(endpoint, failure.reason, delay)
        if failure.status_code == 429:
            self._observer.rate_limited(delay)
        await self._sleep(delay)

    def _record(
        self, endpoint: str, status_code: int | None, started: float, items: int
    ) -> None:
        seconds = time.perf_counter() - started
        status = "error" if status_code is None else str(status_code)
        message = "toloka %s answered %s in %.3f s with %d items"
        logger.debug(message, endpoint, status, seconds, items)
        self._observer.request_finished(endpoint, status, seconds)

    def _scrub(self, text: str) -> str:
        """Remove the key from text that came from the server."""
        return text.replace(self._secret, _REDACTED) if self._secret else text


def _wire(value: object) -> str:
    return format_wire_datetime(value) if isinstance(value, datetime) else str(value)


def _decode_envelope(body: bytes) -> ErrorEnvelope:
    try:
        return _envelope_decoder.decode(body)
    except msgspec.DecodeError:
        return ErrorEnvelope()


def _describe(status: int, envelope: ErrorEnvelope) -> str:
    """`HTTP 409 CONFLICT_STATE: message (request_id ...)` with what is known."""
    parts = [f"HTTP {status}"]
    if envelope.code:
        parts.append(envelope.code)
    text = " ".join(parts)
    if envelope.message:
        text = f"{text}: {envelope.message[:500]!r}"
    if envelope.request_id:
        text = f"{text} (request_id {envelope.request_id})"
    return text


def _quota_interval(envelope: ErrorEnvelope) -> str | None:
    try:
        return _quota_decoder.decode(envelope.payload).interval
    except msgspec.DecodeError:
        return None


def _retry_after_seconds(header: str | None, now: datetime) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP-date."""
    if header is None:
        return None

    text = header.strip()
    try:
        seconds = float(text)
    except ValueError:
        return _seconds_until_http_date(text, now)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _seconds_until_http_date(text: str, now: datetime) -> float | None:
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - now).total_seconds())


def _oversized(endpoint: str, status_code: int, limit: int) -> OversizedError:
    return OversizedError(
        f"{endpoint} answer is larger than toloka.max_response_bytes = {limit}; "
        "refused without reading the rest",
        status_code,
    )


def _gave_up(endpoint: str, attempts: int, failure: ResponseError) -> ResponseError:
    return ResponseError(
        f"{endpoint} failed after {attempts} attempts; last: {failure}",
        failure.status_code,
        retriable=True,
    )
