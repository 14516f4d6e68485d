"""The estate at one store's edge, composed: the tills' book and who may post, head office's
desired state read and applied, and the reports that tell head office about it all.

``open()`` runs before the edge serves anything: the estate file is read and its desired
state put in force, so a till suspended yesterday is refused from the first request, with
Kafka away too. ``run()`` keeps reading head office's decisions, reporting, and writing the
tills' book every few seconds; ``stop()`` sends the STOP report and writes what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from tillstream import __version__
from tillstream.core import kafka
from tillstream.core.codec import AvroCodec
from tillstream.core.registry import registry_from_settings
from tillstream.core.settings import Settings
from tillstream_edge.auth import TillTokens
from tillstream_edge.devices import DeviceService
from tillstream_edge.estate.access import TillAccess
from tillstream_edge.estate.db import EstateDb, estate_path
from tillstream_edge.estate.desired_apply import DesiredApplier
from tillstream_edge.estate.desired_copy import DesiredCopy
from tillstream_edge.estate.desired_sync import DesiredSync
from tillstream_edge.estate.report import EdgeFacts, build_report
from tillstream_edge.estate.reporter import Reporter
from tillstream_edge.estate.tills import Tills
from tillstream_edge.live_settings import LiveSettings
from tillstream_edge.outbox import Backlog, Outbox

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 5.0
"""Seconds between writes of the tills' book (never one write per sale)."""
STOP_TIMEOUT = 3.0
"""How long a stopping edge waits for its STOP report to be taken."""
EDGE_ID = "edge_id"
"""The outbox's progress marker holding the edge's id: made with the outbox, kept with it."""


@dataclass
class EdgeParts:
    """What the estate reads of the rest of the edge."""

    outbox: Outbox
    backlog: Callable[[], Backlog | None]
    kafka_up: Callable[[], bool]
    last_publish_at: Callable[[], float | None]
    masterdata_caught_up_at: Callable[[], float | None]


class EstateService:
    """The estate of the store ``settings`` name (module docstring)."""

    def __init__(
        self,
        settings: Settings,
        store_id: str,
        parts: EdgeParts,
        devices: DeviceService,
        live: LiveSettings,
        tokens: TillTokens | None,
        *,
        make_producer: Callable[[], AIOKafkaProducer] | None = None,
    ) -> None:
        self.settings = settings
        self.store_id = store_id
        self.parts = parts
        self.devices = devices
        self.live = live
        self.started_at = time.time()
        self.edge_id = ""
        codec = AvroCodec(registry_from_settings(settings))
        self.db = EstateDb(estate_path(settings))
        self.reporter = Reporter(
            store_id,
            codec,
            self._report,
            make_producer or (lambda: _report_producer(settings)),
            heartbeat_s=settings.edge_heartbeat_s,
        )
        self.tills = Tills(on_change=self.reporter.changed)
        self.access = TillAccess(tokens, self.tills)
        self.copy = DesiredCopy(self.db, store_id, codec)
        self.applier = DesiredApplier(
            self.db, self.access, devices, live, on_change=self.reporter.changed
        )
        self.sync = DesiredSync(
            settings,
            self.copy,
            self._desired_changed,
            rebuild_after=settings.edge_masterdata_rebuild_after,
        )
        self._tasks: list[asyncio.Task[Any]] = []

    async def open(self) -> None:
        """Read the estate file and put its desired state in force (before serving)."""
        try:
            stored = await self.db.open()
        except sqlite3.DatabaseError as exc:
            # Sales go on: the file is moved aside for the store's IT, and head office's
            # desired state is read again from Kafka into a new one (within seconds online).
            aside = self.db.path.with_name(f"{self.db.path.name}.unreadable-{int(time.time())}")
            log.error(
                "estate: %s cannot be read (%s): moved to %s; head office's desired state "
                "is read again from Kafka",
                self.db.path,
                exc,
                aside,
            )
            await self.db.close()
            self.db.path.rename(aside)
            self.db = self.copy.db = self.applier.db = EstateDb(self.db.path)
            stored = await self.db.open()
        self.edge_id = await self._edge_id()
        self.tills.load(stored.tills)
        self.copy.load(stored)
        await self.applier.start(self.copy.records, stored.applied)

    async def run(self) -> None:
        """Read, apply and report until cancelled."""
        self._tasks = [
            asyncio.create_task(self.sync.run(), name="estate-desired"),
            asyncio.create_task(self.reporter.run(), name="estate-reports"),
            asyncio.create_task(self._flush_tills(), name="estate-tills"),
        ]
        try:
            await asyncio.gather(*self._tasks)
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def stop(self) -> None:
        """The STOP report (briefly: Kafka may be away) and the tills' book written; the
        caller has cancelled :meth:`run`."""
        await self.reporter.stop(STOP_TIMEOUT)
        with contextlib.suppress(Exception):  # a broken disk is logged by whoever hits it
            await self.db.save_tills(self.tills.take_dirty())
        await self.db.close()

    async def _desired_changed(self, targets: set[str]) -> None:
        await self.applier.apply(targets, self.copy.records)

    async def _flush_tills(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            try:
                await self.db.save_tills(self.tills.take_dirty())
            except Exception as exc:  # the book stays in memory; tried again next time
                log.error("estate: the tills' state could not be written: %s", exc)

    async def _edge_id(self) -> str:
        edge_id = await self.parts.outbox.get_progress(EDGE_ID)
        if edge_id is None:
            edge_id = str(uuid.uuid4())
            await self.parts.outbox.set_progress(EDGE_ID, edge_id)
        return edge_id

    def _report(self, reason: str, sent_at: datetime, skew: int | None) -> dict[str, Any]:
        parts = self.parts
        facts = EdgeFacts(
            version=__version__,
            timezone=self.settings.store_timezone,
            started_at=self.started_at,
            clock_skew_ms=skew,
            backlog=parts.backlog(),
            masterdata_caught_up_at=parts.masterdata_caught_up_at(),
            disk_free_bytes=_disk_free(self.settings),
            last_publish_at=parts.last_publish_at(),
            kafka_connected=parts.kafka_up(),
            live=self.live.in_force,
        )
        return build_report(
            store_id=self.store_id,
            edge_id=self.edge_id,
            reason=reason,
            heartbeat_s=self.settings.edge_heartbeat_s,
            sent_at=sent_at,
            edge=facts,
            devices=self.devices.status(),
            tills=self.tills.states(),
            applied=list(self.applier.applied.values()),
        )


def _report_producer(settings: Settings) -> AIOKafkaProducer:
    """Reports' own producer: a lost report is replaced by the next, so no idempotence and
    one acknowledgement; it never shares a connection's queue with the outbox's events."""
    return kafka.make_producer(
        settings, enable_idempotence=False, acks=1, linger_ms=0, request_timeout_ms=10_000
    )


def _disk_free(settings: Settings) -> int:
    try:
        return shutil.disk_usage(settings.edge_outbox.resolve().parent).free
    except OSError:
        return 0
