"""The bridge's errors: one small tree, caught by what it means.

    BridgeError
    ├── ConfigError          bad configuration; fatal before anything starts (exit 2)
    ├── SourceError          Toloka failed to answer usefully
    │   ├── AuthError        the API refused our credentials (401/403); fatal (exit 3)
    │   ├── QuotaError       a 429 asked us to wait longer than the configured ceiling
    │   └── ResponseError    a non-2xx answer or an unusable body after the retries
    │       └── OversizedError   an answer over toloka.max_response_bytes
    ├── PayloadError         one item from the API is unusable; skipped and counted
    └── PublishError         Kafka did not take a batch; nothing was advanced
        ├── FencedError      another instance took over our transactional id (exit 4)
        ├── TopicError       a topic is missing or has the wrong settings (exit 2)
        └── UnreachableError Kafka did not answer within the start-up timeout (exit 5)

`retriable` says whether trying the same thing again later can succeed. Third-party
exceptions (httpx, aiokafka, msgspec) are translated into these at the module that
calls the library, with `raise ... from`, so no other module sees them.
"""


class BridgeError(Exception):
    """Base of every error the bridge raises on purpose."""

    retriable = False
    exit_code = 1


class ConfigError(BridgeError):
    """The configuration is invalid; the message names the key and the bad value."""

    exit_code = 2


class SourceError(BridgeError):
    """Toloka did not give a usable answer."""

    retriable = True


class AuthError(SourceError):
    """Toloka refused the credentials; retrying cannot help."""

    retriable = False
    exit_code = 3


class QuotaError(SourceError):
    """Toloka asked us to wait longer than we are willing to sleep in one go."""

    def __init__(self, message: str, wait_seconds: float, interval: str | None) -> None:
        super().__init__(message)
        self.wait_seconds = wait_seconds
        self.interval = interval


class ResponseError(SourceError):
    """A request failed: an error status, a timeout, or a body that is not the API's."""

    def __init__(
        self, message: str, status_code: int | None = None, *, retriable: bool = True
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retriable = retriable


class OversizedError(ResponseError):
    """An answer exceeded `toloka.max_response_bytes`; a smaller page may fit."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message, status_code, retriable=False)


class PayloadError(BridgeError):
    """One item of an API answer is unusable; `reason` is a short bounded label."""

    def __init__(self, message: str, reason: str, operation_id: str | None) -> None:
        super().__init__(message)
        self.reason = reason
        self.operation_id = operation_id


class PublishError(BridgeError):
    """Kafka did not accept a batch; the bridge keeps its old state and tries again."""

    retriable = True


class FencedError(PublishError):
    """A newer producer with our transactional id exists; this instance must stop."""

    retriable = False
    exit_code = 4


class TopicError(PublishError):
    """A topic is missing and cannot be created, or exists with unsafe settings."""

    retriable = False
    exit_code = 2


class UnreachableError(PublishError):
    """Kafka could not be reached at start-up within the configured time."""

    retriable = False
    exit_code = 5
