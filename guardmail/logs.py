"""Structured logs: an event name and fields, as logfmt or JSON lines on stderr (journald-friendly).

Never pass secrets or message bodies as fields: log hashes, sequence numbers, offender names and
source references instead.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

_LOGGER = logging.getLogger("guardmail")

# Called with every event, whatever the log level (metrics and the status board listen here).
Listener = Callable[[str, int, dict[str, Any]], None]
_LISTENERS: list[Listener] = []


def add_listener(listener: Listener) -> None:
    _LISTENERS.append(listener)


def remove_listener(listener: Listener) -> None:
    if listener in _LISTENERS:
        _LISTENERS.remove(listener)


def event(name: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event with its fields, and tell the listeners."""
    for listener in list(_LISTENERS):
        try:
            listener(name, level, fields)
        except Exception:  # a broken observer must never stop the work it observes
            _LOGGER.exception("observer.failed", extra={"gm_fields": {"observed": name}})
    _LOGGER.log(level, name, extra={"gm_fields": fields})


def _quote(value: Any) -> str:
    text = str(value)
    if text and not any(c in text for c in ' "=\\\n\t') and text.isprintable():
        return text
    return json.dumps(text, ensure_ascii=False)


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, "gm_fields", {})
        when = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        parts = [
            f"time={when}",
            f"level={record.levelname.lower()}",
            f"event={_quote(record.getMessage())}",
        ]
        parts += [f"{k}={_quote(v)}" for k, v in fields.items()]
        if record.exc_info:
            parts.append(f"error={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        data.update(getattr(record, "gm_fields", {}))
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def setup(*, fmt: str = "logfmt", level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    _LOGGER.handlers[:] = [handler]
    _LOGGER.setLevel(level.upper())
    _LOGGER.propagate = False
