"""Sends the edge's estate report: at start, on every heartbeat, on every change (at most
one a second: a burst of changes is one report), and at a clean stop.

Reports are no events of the outbox: nothing durable, never in the way of a sale. They
travel over a producer of their own (``acks=1``, not idempotent: a report lost is replaced
by the next), so neither a slow report nor its retries ever delay the outbox's producer.
A report is built when it is sent, so while Kafka is away only the latest state is waiting:
when Kafka answers again, one report says how things are now (its reason the strongest
held back: START, then CHANGE, then HEARTBEAT).

The topic stamps each record with the broker's time of append (LogAppendTime): the
acknowledgement carries it, and the next report says how far the edge's clock is from the
broker's (``clock_skew_ms``, its own send time minus that stamp).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from tillstream.core.codec import AvroCodec, CodecError
from tillstream.core.topics import ESTATE_REPORTS, store_key
from tillstream_edge import metrics
from tillstream_edge.estate.report import encode_report

log = logging.getLogger(__name__)

MIN_INTERVAL = 1.0
"""Seconds between two reports at least: a burst of changes is one report."""
SEND_TIMEOUT = 10.0
RETRY_MAX = 30.0
LOG_APPEND_TIME = 1
"""aiokafka's ``RecordMetadata.timestamp_type`` for a broker-stamped record."""
_STRENGTH = {"HEARTBEAT": 0, "CHANGE": 1, "START": 2}

Build = Callable[[str, datetime, int | None], dict[str, Any]]
"""The report for a reason, sent at a time, with the clock skew measured so far."""


class Reporter:
    """Sends one edge's reports (module docstring)."""

    def __init__(
        self,
        store_id: str,
        codec: AvroCodec,
        build: Build,
        make_producer: Callable[[], AIOKafkaProducer],
        *,
        heartbeat_s: float,
        min_interval: float = MIN_INTERVAL,
    ) -> None:
        self.store_id = store_id
        self.codec = codec
        self.build = build
        self.make_producer = make_producer
        self.heartbeat_s = heartbeat_s
        self.min_interval = min_interval
        self.clock_skew_ms: int | None = None
        self._producer: AIOKafkaProducer | None = None
        self._reason: str | None = "START"
        self._wake = asyncio.Event()
        self._next_heartbeat = 0.0
        self._not_before = 0.0
        self._retry = 1.0
        self._failing = False

    def changed(self) -> None:
        """Something in the report changed: a report within about a second."""
        if self._reason is None or _STRENGTH[self._reason] < _STRENGTH["CHANGE"]:
            self._reason = "CHANGE"
        self._wake.set()

    async def run(self) -> None:
        """Report until cancelled."""
        while True:
            now = time.monotonic()
            if self._reason is None and now >= self._next_heartbeat:
                self._reason = "HEARTBEAT"
            if self._reason is not None and now >= self._not_before:
                reason, self._reason = self._reason, None
                if await self._send(reason):
                    self._next_heartbeat = time.monotonic() + self.heartbeat_s
                    self._not_before = time.monotonic() + self.min_interval
                    self._retry = 1.0
                else:  # held back; a change meanwhile may have made it stronger
                    if self._reason is None or _STRENGTH[reason] > _STRENGTH[self._reason]:
                        self._reason = reason
                    self._not_before = time.monotonic() + self._retry
                    self._retry = min(self._retry * 2, RETRY_MAX, self.heartbeat_s)
                continue
            deadline = self._not_before if self._reason is not None else self._next_heartbeat
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, deadline - time.monotonic()))

    async def stop(self, within: float) -> None:
        """The STOP report, if Kafka takes it within ``within`` seconds; then the producer closed.
        (The caller has cancelled :meth:`run`.)"""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._send("STOP"), within)
        await self._close()

    async def _send(self, reason: str) -> bool:
        """One report; True once Kafka acknowledged it (or it can never be sent)."""
        sent_at = datetime.now(UTC)
        try:
            value = encode_report(self.codec, self.build(reason, sent_at, self.clock_skew_ms))
        except CodecError as exc:  # a bug: said, counted, and not tried again and again
            log.error("estate: a report the schema refuses was not sent: %s", exc)
            metrics.ESTATE_REPORT_FAILURES.inc()
            return True
        except Exception:  # a bug gathering the facts: never the end of the reports
            log.exception("estate: a report could not be made")
            metrics.ESTATE_REPORT_FAILURES.inc()
            return True
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                producer = await self._ensure_producer()
                delivery = await producer.send(
                    ESTATE_REPORTS.name, value, key=store_key(self.store_id)
                )
                metadata = await delivery
        except (KafkaError, OSError, TimeoutError) as exc:
            metrics.ESTATE_REPORT_FAILURES.inc()
            if not self._failing:  # once per outage: the forwarder says the rest
                log.warning(
                    "estate: report not sent (%s); the latest is sent when Kafka answers",
                    str(exc)[:200] or type(exc).__name__,
                )
            self._failing = True
            await self._close()
            return False
        if self._failing:
            log.info("estate: reports sent again")
        self._failing = False
        metrics.ESTATE_REPORTS.labels(reason).inc()
        metrics.ESTATE_REPORT_BYTES.set(len(value))
        log.debug("estate: %s report sent (%d bytes)", reason, len(value))
        if metadata.timestamp_type == LOG_APPEND_TIME and metadata.timestamp > 0:
            sent_ms = int(sent_at.timestamp() * 1000)
            self.clock_skew_ms = sent_ms - metadata.timestamp
            metrics.CLOCK_SKEW.set(self.clock_skew_ms / 1000)
        return True

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = self.make_producer()
            try:
                await producer.start()
            except BaseException:
                with contextlib.suppress(KafkaError, OSError, TimeoutError):
                    await asyncio.wait_for(producer.stop(), timeout=5)
                raise
            self._producer = producer
        return self._producer

    async def _close(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            with contextlib.suppress(KafkaError, OSError, TimeoutError):
                await asyncio.wait_for(producer.stop(), timeout=5)
