"""Publishes the outbox to Kafka, oldest first, and marks events sent only once acknowledged.

The producer is idempotent with ``acks=all`` (from the client factory), so broker-side
retries never duplicate. When Kafka is unreachable the forwarder backs off and tries again,
for hours if need be; events keep their ids, so anything re-sent after a crash is the same
event and consumers apply it once.

Every round of sends is watched by a delivery timeout: a broker that stops answering is
reported down (``kafka_up`` 0, one warning per outage) instead of looking up while sends
wait. While idle the forwarder probes the cluster, so ``kafka_up`` is true only while Kafka
answers.

An event Kafka refuses for good (too large, invalid, not authorized on its topic) is sent
once more on its own with a fresh producer; refused again, it is quarantined in the outbox
with the reason, and the events behind it keep flowing. Transient errors keep retrying in
order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    PolicyViolationError,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
    UnknownError,
    UnsupportedForMessageFormatError,
)

from tillstream.core import kafka
from tillstream.core.settings import Settings
from tillstream.core.tasks import pause
from tillstream_edge import metrics
from tillstream_edge.outbox import Outbox, PendingEvent

log = logging.getLogger(__name__)

PERMANENT_ERRORS: tuple[type[Exception], ...] = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
    InvalidTopicError,
    UnsupportedForMessageFormatError,
    PolicyViolationError,
    UnknownError,  # how aiokafka reports Kafka's INVALID_RECORD (87), which it does not know
)
"""Errors that retrying the same record can never cure: the record is quarantined."""

PROBE_INTERVAL = 5.0
"""Seconds between connectivity probes while there is nothing to publish."""


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
        delivery_timeout: float = 30.0,
    ) -> None:
        self._outbox = outbox
        self._make_producer = make_producer
        self._batch_size = batch_size
        self._idle_interval = idle_interval
        self._max_backoff = max_backoff
        self._delivery_timeout = delivery_timeout
        self._producer: AIOKafkaProducer | None = None
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._last_contact = 0.0
        self._down_since: float | None = None
        self.kafka_up = False
        self.last_publish_at: float | None = None
        """When Kafka last acknowledged one of the outbox's events (Unix time; None: not
        since the edge started)."""

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
                    if time.monotonic() - self._last_contact >= PROBE_INTERVAL:
                        await self._probe()
                    await self._idle()
            except (TimeoutError, KafkaError, OSError) as exc:
                metrics.PUBLISH_ERRORS.labels(type(exc).__name__).inc()
                self._set_kafka_up(False, exc)
                log.debug("publishing failed (%r); retrying in %.1fs", exc, backoff)
                await self._close_producer()
                if self._stopping:
                    return
                await pause(backoff)
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

    async def _probe(self) -> None:
        """Nothing to send: ask the cluster for metadata, so an idle edge knows Kafka's state."""
        async with asyncio.timeout(self._delivery_timeout):
            producer = await self._ensure_producer()
            await producer.client.fetch_all_metadata()
        self._contact()

    async def _forward_once(self) -> int:
        batch = await self._outbox.pending(self._batch_size)
        if not batch:
            return 0
        results = await self._send(batch)
        done = [e for e, r in zip(batch, results, strict=True) if r is None]
        await self._outbox.mark_sent([e.seq for e in done])
        self._record(done)
        refused = [e for e, r in zip(batch, results, strict=True) if _permanent(r)]
        if refused:
            # A refused batch breaks the idempotent producer's sequence: the batches behind
            # it fail as out of order. A fresh producer; those are sent again next round.
            await self._close_producer()
            done += await self._send_alone(refused)
            self._contact()  # a refusal is an answer: Kafka is up
            return len(done)
        transient = [r for r in results if r is not None]
        if transient:
            raise transient[0]
        self._contact()
        return len(done)

    async def _send(self, batch: list[PendingEvent]) -> list[BaseException | None]:
        """Send a batch: per event, None (acknowledged) or the error Kafka gave it.

        Waits as long as the producer does, but reports Kafka down once the delivery timeout
        passes without an answer. The stalled producer is kept, not replaced: its own retries
        keep their idempotence sequence, while a new producer would re-send, under a new id,
        records the broker may already hold (duplicates).
        """
        publish = asyncio.ensure_future(self._send_all(batch))
        try:
            while not (await asyncio.wait({publish}, timeout=self._delivery_timeout))[0]:
                metrics.PUBLISH_ERRORS.labels("DeliveryTimeout").inc()
                self._set_kafka_up(
                    False, TimeoutError(f"no acknowledgement within {self._delivery_timeout:g}s")
                )
            return publish.result()
        finally:
            publish.cancel()

    async def _send_all(self, batch: list[PendingEvent]) -> list[BaseException | None]:
        results: list[BaseException | None] = [None] * len(batch)
        futures: dict[asyncio.Future[object], int] = {}
        producer = await self._ensure_producer()
        for i, event in enumerate(batch):
            try:
                futures[await producer.send(event.topic, event.value, key=event.key)] = i
            except PERMANENT_ERRORS as exc:  # e.g. larger than max_request_size
                results[i] = exc
        if futures:
            await asyncio.wait(futures)
        for future, i in futures.items():
            results[i] = future.exception()
        return results

    async def _send_alone(self, refused: list[PendingEvent]) -> list[PendingEvent]:
        """Give each refused event a batch of its own (a batch is refused as a whole, so an
        event may have shared the fate of another); quarantine those refused again."""
        sent = []
        for event in refused:
            (result,) = await self._send([event])
            if result is None:
                sent.append(event)
                await self._outbox.mark_sent([event.seq])
                continue
            if not _permanent(result):
                raise result
            await self._quarantine(event, result)
            await self._close_producer()
        self._record(sent)
        return sent

    async def _quarantine(self, event: PendingEvent, error: BaseException) -> None:
        name = type(error).__name__
        reason = f"{name}: {error}" if str(error) else name
        await self._outbox.quarantine(event.seq, reason)
        metrics.EVENTS_QUARANTINED.labels(event.topic, name).inc()
        log.error(
            "event %s to %s quarantined, Kafka refuses it for good (%s); later events keep "
            "flowing. See it with 'tillstream edge quarantine show'",
            event.event_id,
            event.topic,
            reason,
        )

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = self._make_producer()
            try:
                await producer.start()
            except BaseException:
                with contextlib.suppress(KafkaError, OSError, TimeoutError):
                    await asyncio.wait_for(producer.stop(), timeout=10)
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

    def _contact(self) -> None:
        self._last_contact = time.monotonic()
        self._set_kafka_up(True)

    def _set_kafka_up(self, up: bool, cause: BaseException | None = None) -> None:
        # One line per outage and one per recovery, however many retries lie between.
        if up and not self.kafka_up:
            if self._down_since is None:
                log.info("Kafka reachable: publishing")
            else:
                log.warning(
                    "Kafka reachable again after %.0fs: publishing the backlog",
                    time.monotonic() - self._down_since,
                )
            self._down_since = None
        elif not up and self._down_since is None:
            self._down_since = time.monotonic()
            log.warning(
                "Kafka unreachable (%s): buffering in the outbox, retrying until it is back",
                f"{type(cause).__name__}: {cause}" if cause is not None else "no answer",
            )
        self.kafka_up = up
        metrics.KAFKA_UP.set(1 if up else 0)

    def _record(self, done: list[PendingEvent]) -> None:
        now = time.time()
        if done:
            self.last_publish_at = now
        for topic, count in Counter(event.topic for event in done).items():
            metrics.PUBLISHED.labels(topic).inc(count)
        observe = metrics.PUBLISH_LATENCY.observe
        for event in done:
            observe(max(0.0, now - event.accepted_at))


def _permanent(error: BaseException | None) -> bool:
    return isinstance(error, PERMANENT_ERRORS)


def forwarder_from_settings(settings: Settings, outbox: Outbox) -> Forwarder:
    """A forwarder draining ``outbox`` to the Kafka the settings name."""
    return Forwarder(
        outbox,
        lambda: kafka.make_producer(settings),
        delivery_timeout=settings.edge_delivery_timeout_s,
    )
