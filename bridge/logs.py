"""Logging setup, done once by the CLI: JSON lines in production, plain in a terminal.

Modules only call `logging.getLogger(__name__)`. The chatty third-party loggers are
turned down to WARNING. As a last line of defence, `SecretFilter` replaces any
configured secret that reaches a log record, whoever wrote it, with `<redacted>`.
"""

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TextIO

from bridge.config import REDACTED, LogSettings

QUIET_LOGGERS = ("httpx", "httpcore", "aiokafka", "aiohttp.access", "asyncio")
_STANDARD_ATTRIBUTES = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class SecretFilter(logging.Filter):
    """Blanks out known secret values in a record's message and arguments."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = [secret for secret in secrets if secret]

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True

        message = record.getMessage()
        clean = self._scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._scrub(record.exc_text)
        return True

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(
            (key, value)
            for key, value in vars(record).items()
            if key not in _STANDARD_ATTRIBUTES
        )
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["error"] = record.exc_text
        return json.dumps(entry, default=str)


def configure_logging(
    settings: LogSettings,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Send every record to one stream in the configured shape, secrets scrubbed."""
    stream = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_formatter(settings, stream))
    handler.addFilter(SecretFilter(secrets))

    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(settings.level)

    quiet_level = max(logging.WARNING, logging.getLevelName(settings.level))
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(quiet_level)


def _formatter(settings: LogSettings, stream: TextIO) -> logging.Formatter:
    shape = settings.format
    if shape == "auto":
        shape = "plain" if stream.isatty() else "json"
    if shape == "json":
        return JsonFormatter()
    return logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
