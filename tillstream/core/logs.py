"""Logging set-up shared by every service: one JSON object per line, or plain text for people.

Services never log event payloads, so card data and personal data cannot leak through logs.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass
class _Repeats:
    since: float
    """When the message was last let through: its interval starts."""
    shown: str
    """Its first line as it was logged then, for the report."""
    suppressed: int = 0


_REPORT = "tillstream_repeats"
"""Set on the line that reports repeats: the filter lets it through."""


class RepeatedMessages(logging.Filter):
    """Lets the first of a repeated message through, then counts its repeats for
    ``interval`` seconds instead of logging them; :meth:`report` logs how many there were.

    For loggers a flood repeats line after line: asyncio's ``socket.accept() out of system
    resource`` at the open-files limit (once per refused accept, each with a traceback),
    uvicorn's ``Invalid HTTP request received``, the HTTP guard's closing of connections. A
    message is its logger, level and the first line of its text before arguments, so the
    same message about other clients counts as a repeat."""

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.interval = interval
        self._clock = clock
        self._seen: dict[tuple[str, int, str], _Repeats] = {}
        self._lock = threading.Lock()  # records come from threads too

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, _REPORT, False):
            return True
        key = (record.name, record.levelno, str(record.msg).partition("\n")[0])
        now = self._clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen.since < self.interval:
                seen.suppressed += 1
                return False
            self._seen[key] = _Repeats(now, _first_line(record))
        if seen is not None and seen.suppressed:  # not reported yet: this line says it
            record.msg = f"{record.msg} [{_repeated(seen.suppressed, self.interval)}]"
        return True

    def report(self) -> None:
        """Log, for each message whose interval has ended, how often it was not logged
        (services call this every few seconds)."""
        now = self._clock()
        with self._lock:
            ended = [(k, s) for k, s in self._seen.items() if now - s.since >= self.interval]
            for key, _ in ended:
                del self._seen[key]
        for (name, level, _), seen in ended:
            if seen.suppressed:
                logging.getLogger(name).log(
                    level,
                    "%s [%s]",
                    seen.shown,
                    _repeated(seen.suppressed, self.interval),
                    extra={_REPORT: True},
                )


def _first_line(record: logging.LogRecord) -> str:
    try:
        return record.getMessage().partition("\n")[0]
    except Exception:  # a malformed call: the handler reports it
        return str(record.msg).partition("\n")[0]


def _repeated(count: int, interval: float) -> str:
    return f"repeated {count} more time(s) within {interval:g}s, not logged"


REPEATED = RepeatedMessages()
"""The one filter of the process, so one :meth:`RepeatedMessages.report` reports all."""

FLOOD_PRONE = ("asyncio", "uvicorn.error")
"""Loggers of others that a flood of connections repeats (tillstream's own add the filter
where they log)."""


def set_log_level(level: str) -> None:
    """The level of every logger of the process (at start, and when head office changes an
    edge's): the root's, and aiokafka's, which stays quieter."""
    logging.getLogger().setLevel(level)
    # aiokafka reports every transient connection failure at ERROR; our own code reports the
    # state that matters (Kafka reachable or not) once per change. Even at DEBUG it stays at
    # INFO: its DEBUG lines print the records it sends and fetches (customer ids, payloads).
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL if level != "DEBUG" else logging.INFO)


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
    set_log_level(level)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    for name in FLOOD_PRONE:
        logging.getLogger(name).addFilter(REPEATED)
