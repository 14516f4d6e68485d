"""The retry policy of a consumer service, and its database thread.

A transient failure (database locked or away, broker unreachable: see ``transient.py``) is
retried with exponential backoff, up to ``MAX_BACKOFF`` seconds, until it works or the
service is asked to stop; anything else is raised at once. While it fails the service is not
ready (``/readyz`` answers 503). Database work runs on one thread, so the event loop keeps
heartbeating to the group coordinator meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from aiokafka.errors import KafkaError

from tillstream_consumers.runtime import deadletter, metrics
from tillstream_consumers.runtime.db import Database
from tillstream_consumers.runtime.transient import kafka_transient

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_BACKOFF = 30.0
FIRST_BACKOFF = 0.2


class Stopping(Exception):
    """The service was asked to stop while it waited to retry."""


class Readiness:
    """One truth for ``/readyz`` and ``tillstream_consumer_ready``: started, and nothing
    failing."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.started = False
        self.ready = False

    def set(self, ready: bool) -> None:
        self.ready = ready and self.started
        metrics.UP.labels(self.name).set(1 if self.ready else 0)


class RetryPolicy:
    """Runs work again after transient failures, with backoff; owns the database thread."""

    def __init__(self, name: str, stop: asyncio.Event, readiness: Readiness) -> None:
        self.name = name
        self.readiness = readiness
        self.db: Database | None = None
        """The service's database, once open: judges its errors, reconnects after them."""
        self._stop = stop
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"db-{name}")

    async def on_db(self, fn: Callable[[], T]) -> T:
        """``fn()`` on the database thread, once."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn)

    async def on_db_retrying(self, what: str, fn: Callable[[], T]) -> T:
        """``fn()`` on the database thread; transient failures retried with backoff."""
        return await self.retrying(what, lambda: self.on_db(fn))

    async def retrying(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """``await fn()``; transient failures retried with backoff until :class:`Stopping`."""
        backoff = FIRST_BACKOFF
        while True:
            try:
                result = await fn()
            except Exception as exc:
                if not self.is_transient(exc):
                    raise
                metrics.FAILURES.labels(self.name, "transient").inc()
                self.readiness.set(False)
                log.warning(
                    "%s: cannot %s (%s); retrying in %.1fs",
                    self.name,
                    what,
                    deadletter.describe(exc),
                    backoff,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=backoff)
                if self._stop.is_set():
                    raise Stopping from exc
                backoff = min(backoff * 2, MAX_BACKOFF)
                if self.db is not None and not isinstance(exc, KafkaError):
                    with contextlib.suppress(Exception):
                        await self.on_db(self.db.connect)
                continue
            if not self.readiness.ready:
                self.readiness.set(True)
            return result

    def is_transient(self, exc: BaseException) -> bool:
        if isinstance(exc, KafkaError):
            return kafka_transient(exc)  # the broker comes back; the records wait for us
        if self.db is not None:
            return self.db.is_transient(exc)
        return isinstance(exc, OSError | TimeoutError)

    def shutdown(self) -> None:
        self._thread.shutdown(wait=False)
