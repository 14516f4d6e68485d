"""Publishes the outbox to Kafka, oldest first, and marks events sent only once acknowledged.

The producer is idempotent with ``acks=all`` (from the client factory), so broker-side
retries never duplicate. When Kafka is unreachable the forwarder backs off and tries again,
for hours if need be; events keep their ids, so anything re-sent after a crash is the same
event and consumers apply it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from producers import metrics
from producers.outbox import Outbox, PendingEvent

log = logging.getLogger(__name__)


class Forwarder:
    """Drains an :class:`Outbox` into Kafka."""

    def __init__(
        self,
        outbox: Outbox,
        make_producer: Callable[[], AIOKafkaProducer],
        *,
        batch_size: int = 2000,  # in flight per round trip: fewer waits for the slowest ack
        idle_interval: float = 0.05,
        max_backoff: float = 30.0,
    ) -> None:
        self._outbox = outbox
        self._make_producer = make_producer
        self._batch_size = batch_size
        self._idle_interval = idle_interval
        self._max_backoff = max_backoff
        self._producer: AIOKafkaProducer | None = None
        self._wakeup = asyncio.Event()
        self._stopping = False
        self.kafka_up = False

    def notify(self) -> None:
        """New events are in the outbox: publish now rather than at the next poll."""
        self._wakeup.set()

    async def run(self) -> None:
        """Forward until :meth:`stop`; then publish what is pending once more and return."""
        backoff = 0.5
        while True:
            try:
                sent = await self._forward_once()
                backoff = 0.5
                if sent == 0:
                    if self._stopping:
                        return
                    await self._idle()
            except (TimeoutError, KafkaError, OSError) as exc:
                self._set_kafka_up(False)
                metrics.PUBLISH_ERRORS.labels(type(exc).__name__).inc()
                log.warning(
                    "publishing failed (%s: %s); retrying in %.1fs",
                    type(exc).__name__,
                    exc,
                    backoff,
                )
                await self._close_producer()
                if self._stopping:
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)

    def stop(self) -> None:
        """Ask :meth:`run` to finish in-flight work; the caller awaits the run task."""
        self._stopping = True
        self._wakeup.set()

    async def close(self) -> None:
        await self._close_producer()

    async def _idle(self) -> None:
        self._wakeup.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout=self._idle_interval * 20)

    async def _forward_once(self) -> int:
        batch = await self._outbox.pending(self._batch_size)
        if not batch:
            return 0
        producer = await self._ensure_producer()
        futures = [await producer.send(event.topic, event.value, key=event.key) for event in batch]
        results = await asyncio.gather(*futures, return_exceptions=True)
        done = [e for e, r in zip(batch, results, strict=True) if not isinstance(r, BaseException)]
        await self._outbox.mark_sent([e.seq for e in done])
        self._record(done)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise failures[0]
        self._set_kafka_up(True)
        return len(done)

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = self._make_producer()
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def _close_producer(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            try:
                await asyncio.wait_for(producer.stop(), timeout=10)
            except (KafkaError, OSError, TimeoutError) as exc:
                log.debug("producer stop failed: %s", exc)

    def _set_kafka_up(self, up: bool) -> None:
        if up != self.kafka_up:
            log.info("Kafka %s", "reachable: publishing" if up else "unreachable: buffering")
        self.kafka_up = up
        metrics.KAFKA_UP.set(1 if up else 0)

    @staticmethod
    def _record(done: list[PendingEvent]) -> None:
        now = time.time()
        for topic, count in Counter(event.topic for event in done).items():
            metrics.PUBLISHED.labels(topic).inc(count)
        observe = metrics.PUBLISH_LATENCY.observe
        for event in done:
            observe(max(0.0, now - event.accepted_at))
