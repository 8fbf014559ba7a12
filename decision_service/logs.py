"""Structured logs: one JSON object per line, on stderr.

Every decision is one line from the ``decision_service.decisions`` logger with the request,
the real decision, the answer Argo saw, the Q-values and the observation. Fields travel in the
record's ``fields`` extra: ``log.info("decision", extra={"fields": {...}})``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Final, TextIO

DECISION_LOGGER: Final = "decision_service.decisions"
_HANDLER_NAME: Final = "decision_service.json"


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", **fields}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send the root logger (and uvicorn's) as JSON lines to ``stream`` (default stderr).

    Idempotent: calling it again replaces the handler it installed.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == _HANDLER_NAME:
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
