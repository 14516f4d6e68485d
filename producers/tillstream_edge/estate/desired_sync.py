"""Reads ``tillstream.estate-desired`` into the store's copy and hands each change to be
applied, within about a second of head office publishing it.

As the master-data copy reads its topics (``masterdata_sync``): no consumer group (a store
may join none), every partition assigned by hand and read from the positions the copy
stored with its records, or from the beginning for a new copy. While Kafka is away the copy
is what the edge applies (it was applied at start); when Kafka returns, reading resumes at
the stored positions. Caught up when every partition's position has reached its end.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from tillstream.core.kafka import make_consumer
from tillstream.core.settings import Settings
from tillstream.core.tasks import checkpoint, pause, stop_client
from tillstream.core.topics import ESTATE_DESIRED
from tillstream_edge.estate.desired_copy import DesiredCopy, RawRecord

log = logging.getLogger(__name__)

CHECK_INTERVAL = 2.0
REQUEST_TIMEOUT = 5.0
RETRY_MAX = 30.0


class DesiredSync:
    """Reads the topic into ``copy`` until cancelled; ``on_change`` gets the targets whose
    desired state changed."""

    def __init__(
        self,
        settings: Settings,
        copy: DesiredCopy,
        on_change: Callable[[set[str]], Awaitable[None]],
        *,
        rebuild_after: timedelta,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.copy = copy
        self.on_change = on_change
        self.rebuild_after = rebuild_after
        self.clock = clock

    async def run(self) -> None:
        delay = 1.0
        warned = False
        while True:
            started = time.monotonic()
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except (KafkaError, OSError, TimeoutError) as exc:
                if not warned:  # once per outage; the copy is applied meanwhile
                    log.warning(
                        "estate: head office's desired state not readable (%s); the store's "
                        "copy stays in force, retrying",
                        str(exc)[:200] or type(exc).__name__,
                    )
                warned = True
            except Exception:  # a bug or a broken disk: logged, retried, the copy in force
                log.exception("estate: reading the desired state failed; retrying")
            if time.monotonic() - started > 60:
                delay, warned = 1.0, False
            await pause(delay)
            delay = min(delay * 2, RETRY_MAX)

    async def _session(self) -> None:
        consumer = make_consumer(
            self.settings,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            request_timeout_ms=int(REQUEST_TIMEOUT * 1000 * 2),
            fetch_max_wait_ms=250,  # a suspension applies within a second
        )
        try:
            await consumer.start()  # inside the try: a failed start is stopped too
            partitions = await self._partitions(consumer)
            consumer.assign(partitions)
            await self._maybe_rebuild()
            fresh = []
            for tp in partitions:
                stored = self.copy.positions.get(tp.partition)
                if stored is None:
                    fresh.append(tp)
                else:
                    consumer.seek(tp, stored)
            if fresh:
                await consumer.seek_to_beginning(*fresh)
            await self._read(consumer, partitions)
        finally:
            await stop_client(consumer)

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        """Every partition of the topic, once the cluster knows it (head office creates it)."""
        said = False
        while True:
            cluster = await asyncio.wait_for(
                consumer._client.fetch_all_metadata(), REQUEST_TIMEOUT * 2
            )
            parts = cluster.partitions_for_topic(ESTATE_DESIRED.name)
            if parts:
                return [TopicPartition(ESTATE_DESIRED.name, p) for p in sorted(parts)]
            if not said:
                log.info("estate: waiting for the topic %s to exist", ESTATE_DESIRED.name)
                said = True
            await pause(5)

    async def _read(self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> None:
        next_check = 0.0
        while True:
            checkpoint()  # a wait_for on the way may have swallowed a cancellation
            fetched = await consumer.getmany(timeout_ms=500, max_records=1000)
            batch = [
                RawRecord(r.partition, r.offset, r.key, r.value)
                for records in fetched.values()
                for r in records
            ]
            if batch and (changed := await self.copy.apply(batch)):
                await self.on_change(changed)
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + CHECK_INTERVAL
                await self._check(consumer, partitions)
                if await self._maybe_rebuild():
                    await consumer.seek_to_beginning(*partitions)

    async def _check(self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> None:
        try:
            ends = await asyncio.wait_for(consumer.end_offsets(partitions), REQUEST_TIMEOUT)
            positions = {
                tp: await asyncio.wait_for(consumer.position(tp), REQUEST_TIMEOUT)
                for tp in partitions
            }
        except (KafkaError, TimeoutError, OSError) as exc:
            log.debug("estate: end offsets not known: %s", exc)
            return
        if any(ends[tp] > positions[tp] for tp in partitions):
            return
        rebuilt = self.copy.rebuilding
        swept = await self.copy.caught_up(self.clock())
        if rebuilt:
            log.info("estate: desired state read again (%d targets deleted meanwhile)", len(swept))
        if swept:
            await self.on_change(swept)

    async def _maybe_rebuild(self) -> bool:
        """Read again from the beginning if the copy was last caught up too long ago."""
        caught_up = self.copy.caught_up_at
        if self.copy.rebuilding or caught_up is None:
            return False
        away = self.clock() - caught_up
        if away <= self.rebuild_after.total_seconds():
            return False
        await self.copy.start_rebuild()
        log.warning(
            "estate: desired state last caught up %.1f days ago, longer than the topic keeps "
            "deletions; reading it again from the beginning (the copy stays in force)",
            away / 86400,
        )
        return True
