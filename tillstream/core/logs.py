"""Logging set-up shared by every service: one JSON object per line, or plain text for people.

Services never log event payloads, so card data and personal data cannot leak through logs.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str = "INFO", *, json_lines: bool | None = None) -> None:
    """Log to stderr; JSON lines unless stderr is a terminal (or as ``json_lines`` says)."""
    as_json = not sys.stderr.isatty() if json_lines is None else json_lines
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if as_json
        else logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiokafka reports every transient connection failure at ERROR; our own code reports the
    # state that matters (Kafka reachable or not) once per change. Even at DEBUG it stays at
    # INFO: its DEBUG lines print the records it sends and fetches (customer ids, payloads).
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL if level != "DEBUG" else logging.INFO)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
