"""Running a consumer service: the Kafka loop that ties the runtime's parts together.

The loop reads batches (``membership.py``), decodes them (``fetching.py``), dead-letters
what cannot be decoded or must not be believed (``validity.py``, ``deadletter_sender.py``),
applies the rest exactly once under the retry policy (``applying.py``, ``retrying.py``),
relays what the batch published (``relay.py``) and tells Kafka how far it got. Between
batches it reports lag and calls the consumer's ``refresh``; ``web.py`` serves health,
readiness, metrics and the read APIs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from starlette.applications import Starlette

from tillstream.core.codec import AvroCodec
from tillstream.core.http import EmbeddedServer, embedded_server
from tillstream.core.kafka import create_topics, make_consumer
from tillstream.core.logs import REPEATED
from tillstream.core.registry import registry_from_settings
from tillstream.core.settings import Settings, split_host_port
from tillstream.core.topics import topic_named
from tillstream_consumers.runtime import api_tokens, deadletter
from tillstream_consumers.runtime.api import Consumer
from tillstream_consumers.runtime.applier import Applier, BatchOutcome
from tillstream_consumers.runtime.applying import BatchApplying, account
from tillstream_consumers.runtime.db import Database, redact_url
from tillstream_consumers.runtime.deadletter_sender import DeadLetterSender
from tillstream_consumers.runtime.fetching import Message, decode_batch
from tillstream_consumers.runtime.guard import Access
from tillstream_consumers.runtime.membership import Membership, Rebalance
from tillstream_consumers.runtime.partitioning import RoutingCheck, TopicPartition
from tillstream_consumers.runtime.relay import Relay
from tillstream_consumers.runtime.retrying import Readiness, RetryPolicy, Stopping
from tillstream_consumers.runtime.sender import Refused, Sender
from tillstream_consumers.runtime.signin import SignIn
from tillstream_consumers.runtime.transient import KAFKA_REFUSED
from tillstream_consumers.runtime.web import service_app

log = logging.getLogger(__name__)
T = TypeVar("T")

POLL_MS = 500
HOUSEKEEPING_INTERVAL = 2.0

__all__ = ["ConsumerService", "Refused", "RunnerConfig", "Stopping"]


@dataclass(frozen=True)
class RunnerConfig:
    """What one run of a service has of its own; everything else comes from its Settings."""

    db_url: str
    batch_size: int | None = None
    """Records per batch; default ``Settings.consumer_batch_size``."""


class ConsumerService:
    """One instance of a consumer in its group: Kafka in, database effects out."""

    def __init__(self, consumer: Consumer, settings: Settings, config: RunnerConfig) -> None:
        self.consumer = consumer
        self.settings = settings
        self.config = config
        self.name = consumer.name
        self.batch_size = config.batch_size or settings.consumer_batch_size
        self.codec = AvroCodec(registry_from_settings(settings))
        self.applied = 0
        self._stop = asyncio.Event()
        self._readiness = Readiness(self.name)
        self._retry = RetryPolicy(self.name, self._stop, self._readiness)
        self._db: Database | None = None
        self._applier: Applier | None = None
        self._membership: Membership | None = None
        self._sender = Sender(settings)
        self._dead_letters = DeadLetterSender(self.name, self._sender, self._retry)
        self._relay = Relay(self.name, self._sender, self._retry, self._database_applier)
        self._applying = BatchApplying(
            self.name, self._database_applier, self._retry, self._dead_letters
        )
        self._routing = RoutingCheck(self.name, consumer.topics)
        self._server: EmbeddedServer | None = None
        self._batch_lock = asyncio.Lock()
        self._tokens_active: int | None = None

    # -- public -----------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """In its group and nothing failing: what /readyz answers and the ready gauge shows."""
        return self._readiness.ready

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self, *, handle_signals: bool = False, serve_http: bool = False) -> None:
        """Consume until :meth:`request_stop` (or SIGTERM/SIGINT with ``handle_signals``);
        with ``serve_http``, serve ``/metrics``, ``/healthz``, ``/readyz`` and the consumer's
        read APIs on ``Settings.consumer_listen``."""
        if handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, self.request_stop)
        server_task = None
        if serve_http:
            host, port = self.http_address()
            if (host, port) != split_host_port(self.settings.consumer_listen):
                log.warning(
                    "%s: listening on 127.0.0.1:%d only: neither sign-in "
                    "(TILLSTREAM_OIDC_ISSUER) nor API tokens are configured, so nobody on "
                    "the network may acknowledge; TILLSTREAM_INSECURE_DEV=1 serves every "
                    "interface (development only)",
                    self.name,
                    port,
                )
            self._server = embedded_server(
                self.http_app(),
                host,
                port,
                read_timeout=self.settings.http_read_timeout_s,
                max_connections=self.settings.http_max_connections,
            )
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

    def http_address(self) -> tuple[str, int]:
        """Where ``run(serve_http=True)`` listens: ``Settings.consumer_listen``, but loopback
        only for a service people act on that could not tell them apart (no sign-in, no
        tokens; ``TILLSTREAM_INSECURE_DEV`` allows it)."""
        host, port = split_host_port(self.settings.consumer_listen)
        if self.consumer.signs_in and self._loopback_only() and not self.settings.insecure_dev:
            host = "127.0.0.1"
        return host, port

    def url(self) -> str:
        """What the start-up line names: a service's pages (a consumer people sign in to),
        else its metrics."""
        host, port = self.http_address()
        return f"http://{host}:{port}/" + ("" if self.consumer.signs_in else "metrics")

    def assignment(self) -> set[TopicPartition]:
        """The partitions this instance holds now (empty before it joined its group)."""
        return self._membership.assignment() if self._membership is not None else set()

    async def query(self, fn: Callable[[Database], T]) -> T:
        """Run ``fn(db)`` on the database thread, between batches (for read APIs)."""
        return await self._retry.on_db(lambda: fn(self._database()))

    def http_app(self) -> Starlette:
        """The service's HTTP app: probes, metrics and the consumer's :meth:`Consumer.routes`
        (behind sign-in and tokens for a service people act on)."""
        token = self.settings.consumer_api_token
        access = None
        if self.consumer.signs_in:
            signin = SignIn(self.settings) if self.settings.oidc_issuer else None
            access = Access(self.settings, self.query, signin, self._loopback_only())
        return service_app(
            self.name,
            lambda: (self.ready, self.applied),
            self.consumer.routes(self.query),
            token.get_secret_value() if token is not None else None,
            access,
        )

    def _loopback_only(self) -> bool:
        """Neither sign-in nor any token: nobody on the network could be told apart."""
        if self.settings.oidc_issuer or self.settings.consumer_api_token:
            return False
        if self._tokens_active is None:
            self._tokens_active = _count_tokens(self.config.db_url)
        return self._tokens_active == 0

    def batch_committed(self, outcome: BatchOutcome, started: float) -> None:
        """Called right after each batch's transaction committed; ``started`` is when the
        batch arrived (``time.perf_counter()``). Does nothing; benchmarks measure here."""

    # -- rebalances (membership.RebalanceHandler) -------------------------------------

    async def partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Finish the batch in flight and commit before the partitions are given up."""
        membership = self._joined()
        async with self._batch_lock:
            await membership.commit()
        membership.forget(revoked)

    async def partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Seek to the offsets the database stored; from the start of retention where it
        has none (a partition never applied to this database)."""
        membership = self._joined()
        applier = self._database_applier()
        wanted = list(assigned)
        offsets = await self._retry.on_db_retrying("read offsets", lambda: applier.offsets(wanted))
        membership.seek({tp: o for tp, o in offsets.items() if tp in assigned})
        await membership.seek_to_beginning([tp for tp in assigned if tp not in offsets])
        log.info(
            "%s: assigned %s",
            self.name,
            ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(assigned)) or "nothing",
        )

    # -- start and stop ---------------------------------------------------------------

    async def _start(self) -> None:
        self._applier = await self._retry.on_db_retrying("open the database", self._open_database)
        log.info("%s: database %s ready", self.name, redact_url(self.config.db_url))
        dlq = deadletter.topic_for(self.name)
        owned = (dlq, *(topic_named(t) for t in self.consumer.publishes))
        await self._retry.retrying("create topics", lambda: create_topics(self.settings, owned))
        try:
            await self._retry.retrying("start the producer", self._sender.start)
        except KAFKA_REFUSED as exc:  # no WRITE anywhere: no producer id for idempotence
            raise Refused(
                f"{self.name}: the broker refuses this consumer's producer "
                f"({deadletter.describe(exc)}): grant it WRITE on {dlq.name} "
                "(tillstream acls apply); nothing was read"
            ) from exc
        await self._relay.publish()
        kafka = make_consumer(self.settings, group_id=self.name)
        self._membership = Membership(self.name, kafka)
        kafka.subscribe(list(self.consumer.topics), listener=Rebalance(self))
        await self._retry.retrying("join the consumer group", kafka.start)
        self._readiness.started = True
        self._readiness.set(True)
        log.info("%s: consuming %s", self.name, ", ".join(self.consumer.topics))

    def _open_database(self) -> Applier:
        if self._db is None:
            self._db = Database(self.config.db_url)
            self._retry.db = self._db
        else:
            self._db.connect()
        applier = Applier(self.consumer, self._db, self.codec.encode)
        applier.prepare()
        return applier

    async def _shutdown(self) -> None:
        self._readiness.started = False
        self._readiness.set(False)
        if self._membership is not None:
            await self._membership.leave()
        await self._sender.stop()
        if self._db is not None:
            await self._retry.on_db(self._db.close)
        self._retry.shutdown()
        log.info("%s: stopped after applying %d records", self.name, self.applied)

    # -- the loop ---------------------------------------------------------------------

    async def _loop(self) -> None:
        membership = self._joined()
        next_housekeeping = 0.0
        while not self._stop.is_set():
            batch = await membership.fetch(POLL_MS, self.batch_size)
            if batch:
                async with self._batch_lock:
                    await self._handle(batch)
                await membership.commit_due()
            if time.monotonic() >= next_housekeeping:
                next_housekeeping = time.monotonic() + HOUSEKEEPING_INTERVAL
                await self._housekeeping()

    async def _handle(self, batch: Mapping[TopicPartition, Sequence[Message]]) -> None:
        membership = self._joined()
        started = time.perf_counter()
        fetched = decode_batch(
            self.codec, batch, membership.assignment(), self._routing, membership.partition_count
        )
        for msg, exc in fetched.undecodable:
            await self._dead_letters.send(msg, "undecodable", exc)
        for msg, refusal in fetched.unbelievable:  # before the batch moves past them
            await self._dead_letters.send(
                msg, refusal.reason, refusal, rules=refusal.rules, omit_value=refusal.omit_value
            )
        if not fetched.positions:
            return
        outcome = await self._applying.apply(fetched)
        account(self.name, outcome, started)
        self.applied += len(outcome.applied)
        self.batch_committed(outcome, started)
        if outcome.published:
            await self._relay.publish()
        membership.applied(fetched.positions)

    async def _housekeeping(self) -> None:
        REPEATED.report()  # how often a flooding log line was not logged
        await self._joined().commit()  # what the last batches applied, if not yet told
        await self._joined().report_lag()
        applier = self._database_applier()
        async with self._batch_lock:
            if self._relay.retry_due():
                await self._relay.publish()  # the broker refused us a while ago: try again
            try:
                await self._retry.on_db(applier.refresh)
            except Exception as exc:  # a read-side hook must not stop the service
                log.warning("%s: refresh failed: %s", self.name, deadletter.describe(exc))

    # -- parts that exist once started ------------------------------------------------

    def _joined(self) -> Membership:
        assert self._membership is not None, "the service has not joined its group yet"
        return self._membership

    def _database(self) -> Database:
        assert self._db is not None, "the database is not open yet"
        return self._db

    def _database_applier(self) -> Applier:
        assert self._applier is not None, "the database is not open yet"
        return self._applier


def _count_tokens(db_url: str) -> int:
    """Active API tokens in the service's database (none before its first start)."""
    db = Database(db_url)
    try:
        return api_tokens.active(db)
    except Exception:  # no such table yet: the service never ran on this database
        return 0
    finally:
        db.close()
