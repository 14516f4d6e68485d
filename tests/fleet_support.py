"""The fleet service's tests' helpers: estate reports as an edge makes them (the other
engineer's edge publishes them; here they are made and produced straight into Kafka, or
given to the harness), the desired-state records head office publishes read back from the
topic, and the service's HTTP app on loopback."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from time import monotonic, sleep
from typing import Any

from aiokafka import TopicPartition

from tillstream.core.codec import AvroCodec
from tillstream.core.http import embedded_server
from tillstream.core.kafka import make_consumer, make_producer
from tillstream.core.settings import Settings
from tillstream.core.topics import ESTATE_DESIRED, ESTATE_REPORTS, store_key
from tillstream.dev.ports import free_port
from tillstream.dev.samples import sample_estate_report
from tillstream.fleet.topic import key_of
from tillstream_consumers.fleet import FleetService
from tillstream_consumers.runtime import api_tokens
from tillstream_consumers.runtime.db import Database
from tillstream_consumers.runtime.guard import Access
from tillstream_consumers.runtime.signin import SignIn
from tillstream_consumers.runtime.testing import ConsumerHarness
from tillstream_consumers.runtime.web import service_app

STARTED = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)
"""When the edges of these tests started: one run of each edge, however many reports."""


def report(store: str, at: datetime | None = None, **changes: Any) -> dict[str, Any]:
    """An estate report of ``store`` sent at ``at`` (now), with ``changes`` to its top level
    and ``edge=`` entries merged into its edge block; ``tills=N``/``devices=N`` (numbers)
    make that many."""
    counts = {k: changes.pop(k) for k in ("tills", "devices") if isinstance(changes.get(k), int)}
    made = sample_estate_report(store, at=at or datetime.now(UTC), **counts)
    made["edge"]["started_at"] = STARTED
    edge = changes.pop("edge", {})
    made.update(changes)
    made["edge"].update(edge)
    return made


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


class Harnessed:
    """The fleet service over a database, fed through the real codec and applier (no
    Kafka): each report appended by "the broker" at the time given."""

    def __init__(self, db_url: str, settings: Settings | None = None) -> None:
        self.service = FleetService(settings or Settings())
        self.harness = ConsumerHarness(self.service, db_url)
        self.db = self.harness.db

    def send(self, *reports: dict[str, Any], appended: datetime | None = None) -> None:
        """Apply ``reports`` as one batch, each appended at ``appended`` (default: its
        sent_at, no skew)."""
        stamps = [ms(appended or r["sent_at"]) for r in reports]
        self.harness.apply_events(*(("estate_report", r) for r in reports), published_ms=stamps)

    def decide(self, store: str, target: str, version: int, at: datetime, **payload: Any) -> None:
        """Head office's record for ``target``, as the topic would give it."""
        record = {
            "change_id": str(uuid.uuid4()),
            "store_id": store,
            "target": target,
            "version": version,
            "published_at": at,
            "published_by": "anna@example.org (sign-in)",
            "till": payload.get("till"),
            "device": payload.get("device"),
            "edge": payload.get("edge"),
        }
        self.harness.apply("estate_desired", record)

    def at(self, now: datetime, *stores: str) -> None:
        """Evaluate ``stores`` at ``now``, as the service's refresh does."""
        with self.db.transaction():
            self.service.evaluate(self.db, stores, now)

    def due(self, now: datetime) -> int:
        return self.service.evaluate_due(self.db, now)

    def open_flags(self, store: str) -> dict[tuple[str, str], str]:
        """(kind, subject) -> message of the store's open flags."""
        return {
            (str(k), str(s)): str(m)
            for k, s, m in self.db.fetchall(
                "SELECT kind, subject, message FROM fleet_flags WHERE store_id = ? AND is_open = 1",
                (store,),
            )
        }

    def kinds(self, store: str) -> set[str]:
        return {k for k, _ in self.open_flags(store)}

    def resolved(self, store: str, kind: str) -> int:
        row = self.db.fetchone(
            "SELECT COUNT(*) FROM fleet_flags WHERE store_id = ? AND kind = ? AND is_open = 0 "
            "AND resolved_at IS NOT NULL",
            (store, kind),
        )
        return int(row[0]) if row else 0


async def produce_reports(
    settings: Settings, codec: AvroCodec, reports: list[dict[str, Any]]
) -> None:
    """Reports into tillstream.estate-reports, keyed by store, as an edge produces them."""
    producer = make_producer(settings)
    await producer.start()
    try:
        sent = [
            await producer.send(
                ESTATE_REPORTS.name,
                codec.encode("estate_report", r),
                key=store_key(r["store_id"]),
            )
            for r in reports
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def desired_records(
    settings: Settings, codec: AvroCodec, store: str, timeout: float = 30
) -> list[tuple[str, dict[str, Any] | None]]:
    """Every record of ``store`` on tillstream.estate-desired, in the order the broker
    appended them: (target, the record, or None for a tombstone)."""
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    try:
        partitions = [
            TopicPartition(ESTATE_DESIRED.name, n)
            for n in sorted(await _partitions_of(consumer, ESTATE_DESIRED.name))
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found: list[tuple[int, int, str, dict[str, Any] | None]] = []
        async with asyncio.timeout(timeout):
            pending = {tp for tp, end in ends.items() if end > 0}
            while pending:
                for messages in (await consumer.getmany(timeout_ms=500)).values():
                    for m in messages:
                        key = key_of(m.key)
                        if key is None or key[0] != store:
                            continue
                        value = None if m.value is None else codec.decode(m.value).record
                        found.append((m.timestamp, m.offset, key[1], value))
                for tp in list(pending):
                    if await consumer.position(tp) >= ends[tp]:
                        pending.discard(tp)
        return [(target, value) for _, _, target, value in sorted(found, key=lambda f: f[:2])]
    finally:
        await consumer.stop()


async def _partitions_of(consumer: Any, topic: str) -> set[int]:
    async with asyncio.timeout(30):
        while not (found := consumer.partitions_for_topic(topic)):
            await consumer._client.force_metadata_update()
            consumer._client.add_topic(topic)
            await asyncio.sleep(0.2)
    return set(found)


@contextmanager
def fleet_service_http(db_url: str, settings: Settings) -> Iterator[str]:
    """The fleet service's HTTP app (probes, metrics, the API, the page and its door, as
    ``tillstream consume fleet`` serves them) over ``db_url``, on loopback, in a thread of
    its own; the page's decisions are published to the Kafka of ``settings``."""
    databases: list[Database] = []

    async def query(fn: Callable[[Database], Any]) -> Any:
        if not databases:  # opened in the server's thread, as the service's database thread
            databases.append(Database(db_url))
        return fn(databases[0])

    consumer = FleetService(settings)
    signin = SignIn(settings) if settings.oidc_issuer else None
    loopback_only = signin is None and settings.consumer_api_token is None
    if loopback_only:
        db = Database(db_url)  # prepared by the harness (or the service) already
        try:
            loopback_only = api_tokens.active(db) == 0
        finally:
            db.close()
    access = Access(settings, query, signin, loopback_only)
    app = service_app(consumer.name, lambda: (True, 0), consumer.routes(query), None, access)
    port = free_port()
    server = embedded_server(app, "127.0.0.1", port)
    thread = threading.Thread(target=server.run, name="fleet-http", daemon=True)
    thread.start()
    deadline = monotonic() + 30
    while not server.started:
        assert thread.is_alive() and monotonic() < deadline, "the fleet page did not start"
        sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        for db in databases:
            db.close()


def settings_json(**table: Any) -> dict[str, Any]:
    return {"device": {"settings_json": json.dumps(table, sort_keys=True)}}


def ago(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)
