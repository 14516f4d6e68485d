"""Keeps the store's master-data copy current: the items and prices topics, read whole.

No consumer group (every edge needs every partition): all partitions are assigned by hand
and read from the positions the copy stored with its data, or from the beginning for a new
copy (compacted topics hold the current state). Batches of up to ``BATCH_RECORDS`` records
are applied in the copy's own thread, so intake never waits for them.

While Kafka is away the copy is served as it is; when Kafka returns, reading resumes at the
stored positions. The copy is *caught up* when every partition's position has reached its
end offset; the time of that is kept. An edge whose copy was last caught up longer ago than
``TILLSTREAM_EDGE_MASTERDATA_REBUILD_AFTER`` (less than the topics' ``delete.retention.ms``)
may have missed tombstones that compaction has since removed: it rebuilds from the
beginning (``MasterDataCopy.start_rebuild``) and deletes what it no longer finds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import timedelta

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from tillstream.core.kafka import make_consumer
from tillstream.core.settings import Settings
from tillstream.core.tasks import checkpoint, pause, stop_client
from tillstream.core.topics import MASTER_DATA_TOPICS
from tillstream_edge import metrics
from tillstream_edge.masterdata_copy import Applied, MasterDataCopy, RawRecord

log = logging.getLogger(__name__)

BATCH_RECORDS = 5000
CHECK_INTERVAL = 2.0
"""Seconds between asking Kafka for the end offsets (records behind, caught up)."""
REQUEST_TIMEOUT = 5.0
RETRY_MAX = 30.0
PRUNE_INTERVAL = 3600.0


class MasterDataSync:
    """Reads the master-data topics into ``copy`` until cancelled (module docstring)."""

    def __init__(
        self,
        settings: Settings,
        copy: MasterDataCopy,
        *,
        rebuild_after: timedelta,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.copy = copy
        self.rebuild_after = rebuild_after
        self.clock = clock
        self.records_read = 0
        """Records read since this process started (a restart must not read them again)."""
        self.behind: dict[str, int] | None = None
        self.caught_up_at: float | None = None
        self.created_at = clock()
        self.newest_ms: dict[str, int] = {}
        self.rebuilding = False
        self._last_prune = 0.0
        self._held: tuple[int, int] | None = None

    # -- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        """Read until cancelled; Kafka errors are retried with backoff (the copy is served
        meanwhile)."""
        state = await self.copy.state()
        self.caught_up_at, self.created_at = state.last_caught_up_at, state.created_at
        self.newest_ms, self.rebuilding = dict(state.newest_ms), state.rebuilding
        await self.refresh_metrics()
        delay = 1.0
        warned = False
        while True:
            started = time.monotonic()
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except (KafkaError, OSError) as exc:
                if not warned:  # once per outage: the metrics and /readyz tell the rest
                    log.warning(
                        "master data: topics not readable (%s); serving the local copy, retrying",
                        str(exc)[:200] or type(exc).__name__,
                    )
                warned = True
            except Exception:  # a bug or a broken disk: logged, retried, the copy still served
                log.exception("master data: reading the topics failed; retrying")
            if time.monotonic() - started > 60:  # it ran a while: a new failure, a new start
                delay, warned = 1.0, False
            await self.refresh_metrics()
            await pause(delay)
            delay = min(delay * 2, RETRY_MAX)

    async def _session(self) -> None:
        consumer = make_consumer(
            self.settings,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            request_timeout_ms=int(REQUEST_TIMEOUT * 1000 * 2),
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        try:
            # Inside the try: a start that fails (Kafka away) still stops the client, or it
            # is left unclosed with its connections (aiokafka's "Unclosed AIOKafkaConsumer").
            await consumer.start()
            partitions = await self._partitions(consumer)
            consumer.assign(partitions)
            await self._maybe_rebuild()
            positions = await self.copy.positions()
            fresh = []
            for tp in partitions:
                stored = positions.get((tp.topic, tp.partition))
                if stored is None:
                    fresh.append(tp)
                else:
                    consumer.seek(tp, stored)
            if fresh:
                await consumer.seek_to_beginning(*fresh)
            log.info(
                "master data: reading %d partitions (%d from the beginning)",
                len(partitions),
                len(fresh),
            )
            await self._read(consumer, partitions)
        finally:
            self.behind = None  # known again at the next session's first check
            await stop_client(consumer)

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        """Every partition of both topics, once the cluster knows them (head office creates
        the topics; until then the edge waits, quietly after the first line)."""
        said = False
        while True:
            # The consumer's own metadata covers assigned topics only: ask the cluster.
            cluster = await asyncio.wait_for(
                consumer._client.fetch_all_metadata(), REQUEST_TIMEOUT * 2
            )
            found = {t.name: cluster.partitions_for_topic(t.name) for t in MASTER_DATA_TOPICS}
            if all(found.values()):
                return [
                    TopicPartition(topic, partition)
                    for topic, parts in found.items()
                    for partition in sorted(parts or ())
                ]
            if not said:
                missing = ", ".join(name for name, parts in found.items() if not parts)
                log.info("master data: waiting for the topics %s to exist", missing)
                said = True
            await pause(5)

    async def _read(self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> None:
        next_check = 0.0
        while True:
            checkpoint()  # _check's wait_for may have swallowed a cancellation
            fetched = await consumer.getmany(timeout_ms=500, max_records=BATCH_RECORDS)
            records = [
                RawRecord(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp)
                for batch in fetched.values()
                for r in batch
            ]
            if records:
                self._applied(await self.copy.apply(records))
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + CHECK_INTERVAL
                await self._check(consumer, partitions)
                if await self._maybe_rebuild():
                    await consumer.seek_to_beginning(*partitions)
                await self.refresh_metrics()

    def _applied(self, applied: Applied) -> None:
        for topic, count in applied.read.items():
            self.records_read += count
            metrics.MASTERDATA_RECORDS_READ.labels(topic).inc(count)
        for topic, count in applied.undecodable.items():
            metrics.MASTERDATA_RECORDS_SKIPPED.labels(topic).inc(count)
        if applied.other_currency:
            metrics.MASTERDATA_OTHER_CURRENCY.inc(applied.other_currency)
        for topic, newest in applied.newest_ms.items():
            self.newest_ms[topic] = max(self.newest_ms.get(topic, 0), newest)

    async def _check(self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> None:
        """Records behind per topic; caught up when none (the time is kept with the copy)."""
        try:
            ends = await asyncio.wait_for(consumer.end_offsets(partitions), REQUEST_TIMEOUT)
            positions = {
                tp: await asyncio.wait_for(consumer.position(tp), REQUEST_TIMEOUT)
                for tp in partitions
            }
        except (KafkaError, TimeoutError, OSError) as exc:
            self.behind = None  # not known while Kafka does not answer
            log.debug("master data: end offsets not known: %s", exc)
            return
        behind: dict[str, int] = {t.name: 0 for t in MASTER_DATA_TOPICS}
        for tp in partitions:
            behind[tp.topic] += max(0, ends[tp] - positions[tp])
        self.behind = behind
        if any(behind.values()):
            return
        now = self.clock()
        swept = await self.copy.caught_up(
            {(tp.topic, tp.partition): positions[tp] for tp in partitions}, now
        )
        if self.rebuilding:
            log.info("master data: copy built from the topics (%d stale rows deleted)", swept)
        elif self.caught_up_at is None or now - self.caught_up_at > 60:
            log.info("master data: copy caught up with the topics")
        self.caught_up_at, self.rebuilding = now, False
        if now - self._last_prune > PRUNE_INTERVAL:
            self._last_prune = now
            await self.copy.prune(now)

    async def _maybe_rebuild(self) -> bool:
        """Start a rebuild if the copy was last caught up too long ago (tombstones missed)."""
        if self.rebuilding or self.caught_up_at is None:
            return False
        away = self.clock() - self.caught_up_at
        if away <= self.rebuild_after.total_seconds():
            return False
        generation = await self.copy.start_rebuild()
        self.rebuilding = True
        metrics.MASTERDATA_REBUILDS.inc()
        log.warning(
            "master data: last caught up %.1f days ago, longer than the topics keep deletions; "
            "rebuilding the copy from the beginning (generation %d), serving the old one meanwhile",
            away / 86400,
            generation,
        )
        return True

    # -- metrics -----------------------------------------------------------------------------

    async def refresh_metrics(self) -> None:
        """The gauges, with the rows held counted off the event loop."""
        try:
            self._held = await asyncio.to_thread(self.copy.counts)
        except Exception as exc:  # a metric must never stop the copy
            log.debug("master data: counts not read: %s", exc)
        self.update_metrics()

    def update_metrics(self) -> None:
        now = self.clock()
        for spec in MASTER_DATA_TOPICS:
            newest = self.newest_ms.get(spec.name)
            if newest:
                metrics.MASTERDATA_NEWEST_AGE.labels(spec.name).set(max(0.0, now - newest / 1000))
            if self.behind is not None:
                metrics.MASTERDATA_BEHIND.labels(spec.name).set(self.behind.get(spec.name, 0))
        since = now - (self.caught_up_at if self.caught_up_at is not None else self.created_at)
        metrics.MASTERDATA_SINCE_CAUGHT_UP.set(max(0.0, since))
        if self._held is not None:
            metrics.MASTERDATA_ITEMS.set(self._held[0])
            metrics.MASTERDATA_PRICES.set(self._held[1])

    def health(self) -> dict[str, object]:
        now = self.clock()
        return {
            "caught_up": self.behind is not None and not any(self.behind.values()),
            "last_caught_up_s_ago": None
            if self.caught_up_at is None
            else round(now - self.caught_up_at, 1),
            "records_behind": self.behind,
            "rebuilding": self.rebuilding,
        }
