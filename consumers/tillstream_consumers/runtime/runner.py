"""Running a consumer service: the Kafka loop around an :class:`Applier`.

The loop reads batches with ``getmany``, decodes them, dead-letters what cannot be decoded,
and hands the rest to the applier on the database thread. Offsets live in the database;
on every assignment the runtime seeks to them, so Kafka's committed offsets (updated after
each batch, for tools) only ever trail. A transient failure (database or broker away)
is retried with backoff on the same batch, which rolled back: nothing skipped, nothing
applied twice. A batch that fails otherwise is applied record by record and the records
that still fail go to the dead-letter topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from tillstream.core.codec import AvroCodec, CodecError
from tillstream.core.http import EmbeddedServer, embedded_server
from tillstream.core.kafka import create_topics, make_consumer
from tillstream.core.registry import registry_from_settings
from tillstream.core.settings import Settings
from tillstream.core.topics import topic_named
from tillstream_consumers.runtime import deadletter, metrics
from tillstream_consumers.runtime.api import Consumer, PermanentError, Record
from tillstream_consumers.runtime.applier import Applier, Outcome
from tillstream_consumers.runtime.db import Database, redact
from tillstream_consumers.runtime.outgoing import Outgoing, Refused
from tillstream_consumers.runtime.partitioning import RoutingCheck
from tillstream_consumers.runtime.sender import Sender
from tillstream_consumers.runtime.transient import KAFKA_REFUSED, kafka_transient
from tillstream_consumers.runtime.web import service_app

log = logging.getLogger(__name__)
T = TypeVar("T")
Query = Callable[[Callable[[Database], T]], Awaitable[T]]

MAX_BACKOFF = 30.0
HOUSEKEEPING_INTERVAL = 2.0


class Stopping(Exception):
    """The service was asked to stop while it waited to retry."""


@dataclass(frozen=True)
class RunnerConfig:
    db_url: str
    listen: tuple[str, int] | None = None
    batch_size: int = 500
    poll_ms: int = 500


class ConsumerService:
    """One instance of a consumer in its group: Kafka in, database effects out."""

    def __init__(self, consumer: Consumer, settings: Settings, config: RunnerConfig) -> None:
        self.consumer = consumer
        self.settings = settings
        self.config = config
        self.name = consumer.name
        self.codec = AvroCodec(registry_from_settings(settings))
        self._db_thread = ThreadPoolExecutor(1, thread_name_prefix=f"db-{self.name}")
        self._db: Database | None = None
        self._applier: Applier | None = None
        self._kafka: AIOKafkaConsumer | None = None
        self._sender = Sender(settings)
        self._outgoing = Outgoing(
            self.name, self._sender, self._retrying_async, self._retrying, self._database_applier
        )
        self._routing = RoutingCheck(self.name, consumer.topics)
        self._server: EmbeddedServer | None = None
        self._batch_lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._to_commit: dict[TopicPartition, int] = {}
        self._started = False
        self.ready = False
        """In its group and nothing failing: what /readyz answers and the ready gauge shows."""
        self.applied = 0

    # -- public -----------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self, *, handle_signals: bool = False) -> None:
        """Consume until :meth:`request_stop` (or SIGTERM/SIGINT with ``handle_signals``)."""
        if handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, self.request_stop)
        server_task = None
        if self.config.listen is not None:
            self._server = embedded_server(self._http_app(), *self.config.listen)
            server_task = asyncio.create_task(self._server.serve(), name="http")
        try:
            await self._start()
            await self._loop()
        except Stopping:
            pass
        finally:
            await self._shutdown()
            if self._server is not None and server_task is not None:
                self._server.should_exit = True
                await asyncio.gather(server_task, return_exceptions=True)

    def assignment(self) -> set[TopicPartition]:
        """The partitions this instance holds now (empty before it joined its group)."""
        return set(self._kafka.assignment()) if self._kafka is not None else set()

    async def query(self, fn: Callable[[Database], T]) -> T:
        """Run ``fn(db)`` on the database thread, between batches (for read APIs)."""
        return await self._on_db(lambda: fn(self._database()))

    # -- start and stop ---------------------------------------------------------------

    async def _start(self) -> None:
        self._applier = await self._retrying("open the database", self._open_database)
        log.info("%s: database %s ready", self.name, redact(self.config.db_url))
        dlq = deadletter.topic_for(self.name)
        owned = (dlq, *(topic_named(t) for t in self.consumer.publishes))
        await self._retrying_async("create topics", lambda: create_topics(self.settings, owned))
        try:
            await self._retrying_async("start the producer", self._sender.start)
        except KAFKA_REFUSED as exc:  # no WRITE anywhere: no producer id for idempotence
            raise Refused(
                f"{self.name}: the broker refuses this consumer's producer "
                f"({deadletter.describe(exc)}): grant it WRITE on {dlq.name} "
                "(tillstream acls apply); nothing was read"
            ) from exc
        await self._outgoing.publish()
        self._kafka = make_consumer(self.settings, group_id=self.name)
        self._kafka.subscribe(list(self.consumer.topics), listener=_Rebalance(self))
        await self._retrying_async("join the consumer group", self._kafka.start)
        self._started = True
        self._set_ready(True)
        log.info("%s: consuming %s", self.name, ", ".join(self.consumer.topics))

    def _open_database(self) -> Applier:
        if self._db is None:
            self._db = Database(self.config.db_url)
        else:
            self._db.connect()
        applier = Applier(self.consumer, self._db, self.codec.encode)
        applier.prepare()
        return applier

    def _set_ready(self, ready: bool) -> None:
        """One truth for /readyz and ``tillstream_consumer_ready``."""
        self.ready = ready and self._started
        metrics.UP.labels(self.name).set(1 if self.ready else 0)

    async def _shutdown(self) -> None:
        self._started = False
        self._set_ready(False)
        if self._kafka is not None:
            await self._commit_to_kafka()
            with contextlib.suppress(KafkaError, OSError, TimeoutError):
                await asyncio.wait_for(self._kafka.stop(), timeout=15)  # leaves the group
        await self._sender.stop()
        if self._db is not None:
            await self._on_db(self._db.close)
        self._db_thread.shutdown(wait=False)
        log.info("%s: stopped after applying %d records", self.name, self.applied)

    # -- the loop ---------------------------------------------------------------------

    async def _loop(self) -> None:
        assert self._kafka is not None
        next_housekeeping = 0.0
        while not self._stop.is_set():
            batch = await self._kafka.getmany(
                timeout_ms=self.config.poll_ms, max_records=self.config.batch_size
            )
            if batch:
                async with self._batch_lock:
                    await self._handle(batch)
                await self._commit_to_kafka()
            if time.monotonic() >= next_housekeeping:
                next_housekeeping = time.monotonic() + HOUSEKEEPING_INTERVAL
                await self._housekeeping()

    async def _handle(self, batch: dict[TopicPartition, list[Any]]) -> None:
        assert self._kafka is not None
        started = time.perf_counter()
        assigned = self._kafka.assignment()
        records: list[Record] = []
        raw: dict[tuple[str, int, int], Any] = {}
        positions: dict[tuple[str, int], int] = {}
        for tp, messages in batch.items():
            if tp not in assigned or not messages:
                continue  # revoked while we were busy: its new owner reads it
            partitions = len(self._kafka.partitions_for_topic(tp.topic) or ())
            self._routing.check(tp.topic, tp.partition, messages, partitions)
            for msg in messages:
                raw[(msg.topic, msg.partition, msg.offset)] = msg
                try:
                    decoded = self.codec.decode(msg.value)
                except CodecError as exc:
                    await self._outgoing.dead_letter(msg, "undecodable", exc)
                    continue
                records.append(
                    Record.decoded(
                        msg.topic,
                        msg.partition,
                        msg.offset,
                        msg.key,
                        decoded.event,
                        decoded.record,
                        msg.timestamp,
                        tuple(msg.headers or ()),
                    )
                )
            positions[(tp.topic, tp.partition)] = messages[-1].offset + 1
        if not positions:
            return
        applier = self._database_applier()
        try:
            outcome = await self._retrying(
                "apply a batch", lambda: applier.apply(records, positions)
            )
        except Stopping:
            raise
        except Exception as exc:
            log.warning(
                "%s: batch failed (%s); applying record by record",
                self.name,
                deadletter.describe(exc),  # never the raw error: it may quote a record
            )
            outcome = await self._one_by_one(records, raw, positions)
        self._account(outcome, started)
        if outcome.published:
            await self._outgoing.publish()
        for (topic, partition), offset in positions.items():
            self._to_commit[TopicPartition(topic, partition)] = offset

    async def _one_by_one(
        self,
        records: list[Record],
        raw: dict[tuple[str, int, int], Any],
        positions: dict[tuple[str, int], int],
    ) -> Outcome:
        applier = self._database_applier()
        total = Outcome()
        for record in records:
            step = {(record.topic, record.partition): record.offset + 1}
            try:
                one = await self._retrying("apply a record", partial(applier.apply, [record], step))
            except Stopping:
                raise
            except Exception as exc:
                reason = "invalid" if isinstance(exc, PermanentError) else "handler-error"
                await self._outgoing.dead_letter(
                    raw[(record.topic, record.partition, record.offset)], reason, exc
                )
                await self._retrying("skip a dead letter", partial(applier.advance, step))
                continue
            total.applied += one.applied
            total.duplicates += one.duplicates
            total.published += one.published
        await self._retrying("store offsets", lambda: applier.advance(positions))
        return total

    # -- bookkeeping ------------------------------------------------------------------

    def _account(self, outcome: Outcome, started: float) -> None:
        now = time.time()
        for record in outcome.applied:
            metrics.RECORDS.labels(self.name, record.topic, "applied").inc()
            metrics.EVENT_LATENCY.labels(self.name).observe(
                max(0.0, now - record.timestamp_ms / 1000)
            )
        for record in outcome.duplicates:
            metrics.RECORDS.labels(self.name, record.topic, "duplicate").inc()
        if outcome.applied:
            last = max(r.timestamp_ms for r in outcome.applied)
            metrics.LAST_EVENT_TIME.labels(self.name).set(last / 1000)
        self.applied += len(outcome.applied)
        metrics.BATCH_SIZE.labels(self.name).observe(len(outcome.applied) + len(outcome.duplicates))
        metrics.BATCH_SECONDS.labels(self.name).observe(time.perf_counter() - started)

    async def _commit_to_kafka(self) -> None:
        """Tell Kafka how far we are (advisory: the database is the truth)."""
        if not self._to_commit or self._kafka is None:
            return
        assigned = self._kafka.assignment()
        offsets = {tp: o for tp, o in self._to_commit.items() if tp in assigned}
        self._to_commit.clear()
        if offsets:
            try:
                await asyncio.wait_for(self._kafka.commit(offsets), timeout=10)
            except (KafkaError, TimeoutError, OSError) as exc:  # a rebalance, a broker away
                log.debug("%s: commit to Kafka skipped: %s", self.name, exc)

    async def _housekeeping(self) -> None:
        assert self._kafka is not None
        assigned = self._kafka.assignment()
        metrics.ASSIGNED.labels(self.name).set(len(assigned))
        for tp in assigned:
            highwater = self._kafka.highwater(tp)
            if highwater is None:
                continue
            with contextlib.suppress(KafkaError, TimeoutError):
                position = await asyncio.wait_for(self._kafka.position(tp), timeout=1)
                lag = max(0, highwater - position)
                metrics.LAG.labels(self.name, tp.topic, str(tp.partition)).set(lag)
        applier = self._database_applier()
        async with self._batch_lock:
            if self._outgoing.retry_due():
                await self._outgoing.publish()  # the broker refused us a while ago: try again
            try:
                await self._on_db(applier.refresh)
            except Exception as exc:  # a read-side hook must not stop the service
                log.warning("%s: refresh failed: %s", self.name, deadletter.describe(exc))

    def forget_partitions(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self._to_commit.pop(tp, None)
            with contextlib.suppress(KeyError):
                metrics.LAG.remove(self.name, tp.topic, str(tp.partition))

    # -- retries and the database thread ----------------------------------------------

    async def _on_db(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._db_thread, fn)

    async def _retrying(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the database thread; retry transient database failures with backoff."""
        return await self._retrying_async(what, lambda: self._on_db(fn))

    async def _retrying_async(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        backoff = 0.2
        while True:
            try:
                result = await fn()
            except Exception as exc:
                if not self._is_transient(exc):
                    raise
                metrics.FAILURES.labels(self.name, "transient").inc()
                self._set_ready(False)
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
                if self._db is not None and not isinstance(exc, KafkaError):
                    with contextlib.suppress(Exception):
                        await self._on_db(self._db.connect)
                continue
            if not self.ready:
                self._set_ready(True)
            return result

    def _is_transient(self, exc: BaseException) -> bool:
        if isinstance(exc, KafkaError):
            return kafka_transient(exc)  # the broker comes back; the records wait for us
        if self._db is not None:
            return self._db.is_transient(exc)
        return isinstance(exc, OSError | TimeoutError)

    def _database(self) -> Database:
        assert self._db is not None, "the database is not open yet"
        return self._db

    def _database_applier(self) -> Applier:
        assert self._applier is not None, "the database is not open yet"
        return self._applier

    # -- HTTP -------------------------------------------------------------------------

    def _http_app(self) -> Any:
        token = self.settings.consumer_api_token
        return service_app(
            self.name,
            lambda: (self.ready, self.applied),
            self.consumer.routes(self.query),
            token.get_secret_value() if token is not None else None,
        )


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Finish the batch in flight before giving partitions up; seek to the database's offsets
    for partitions received."""

    def __init__(self, service: ConsumerService) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.service._batch_lock:
            await self.service._commit_to_kafka()
        self.service.forget_partitions(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        service = self.service
        kafka = service._kafka
        assert kafka is not None
        applier = service._database_applier()
        wanted = [(tp.topic, tp.partition) for tp in assigned]
        offsets = await service._retrying("read offsets", lambda: applier.offsets(wanted))
        fresh = []
        for tp in assigned:
            offset = offsets.get((tp.topic, tp.partition))
            if offset is None:
                fresh.append(tp)
            else:
                kafka.seek(tp, offset)
        if fresh:  # never applied to this database: from the start of retention
            await kafka.seek_to_beginning(*fresh)
        log.info(
            "%s: assigned %s",
            service.name,
            ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(assigned)) or "nothing",
        )
