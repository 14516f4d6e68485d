"""The fleet service on a real broker, on SQLite and PostgreSQL: estate reports produced
straight into ``tillstream.estate-reports`` as edges produce them, applied exactly once
across a stop and a restart (a report sent twice, an older one arriving late); an edge
whose reports stop is silent within 90 seconds and back when they resume; the gauges on
/metrics, every kind at 0 for a known store."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.consumer_support import running, scalar, wait_until
from tests.fleet_support import produce_reports, report
from tillstream.core.codec import AvroCodec
from tillstream.core.settings import Settings
from tillstream.dev.ports import free_port
from tillstream_consumers.fleet import FleetService
from tillstream_consumers.fleet.flags import KINDS
from tillstream_consumers.runtime.db import Database

pytestmark = pytest.mark.usefixtures("kafka_topics")


def fleet(settings: Settings, **changes: object) -> FleetService:
    """The fleet service in a consumer group of its own (the session broker's topics hold
    every test's reports: read from the start, each test's stores are its own)."""
    cls = FleetService.in_group(f"fleet-test-{uuid.uuid4().hex[:8]}")
    service = cls(settings.model_copy(update=changes))
    assert isinstance(service, FleetService)
    return service


async def test_reports_are_applied_exactly_once_across_a_restart(
    settings: Settings, codec: AvroCodec, db_url: str
) -> None:
    tag = uuid.uuid4().hex[:6].upper()
    stores = [f"X{tag}{n}" for n in range(5)]
    t0 = datetime.now(UTC) - timedelta(minutes=10)
    first = [
        report(s, t0 + timedelta(seconds=n), edge={"outbox_depth": n})
        for n in range(20)
        for s in stores
    ]
    await produce_reports(settings, codec, first)
    consumer = fleet(settings)
    mine = f"store_id IN ({', '.join(repr(s) for s in stores)})"
    async with running(consumer, settings, db_url, batch_size=7):
        await wait_until(
            lambda: scalar(db_url, f"SELECT COUNT(*) FROM fleet_history WHERE {mine}") == 100,
            what="100 reports applied",
        )
    # While it is stopped: more reports, one of them sent twice, and one of the first ones
    # again (a replay: appended last, yet nothing new).
    later = [
        report(s, t0 + timedelta(seconds=30 + n), edge={"outbox_depth": 100 + n})
        for n in range(10)
        for s in stores
    ]
    await produce_reports(settings, codec, [*later, later[-1], first[-1]])
    async with running(consumer, settings, db_url, batch_size=7):
        await wait_until(
            lambda: scalar(db_url, f"SELECT COUNT(*) FROM fleet_history WHERE {mine}") == 150,
            what="every report once",
        )
        await asyncio.sleep(2)  # anything applied twice would show by now
    distinct = f"SELECT COUNT(DISTINCT report_id) FROM fleet_history WHERE {mine}"
    assert scalar(db_url, distinct) == 150
    edge = "SELECT report_id, outbox_depth FROM fleet_edges WHERE store_id = ?"
    for s in stores:  # the latest report is each store's state: not the replayed one
        newest = next(r for r in reversed(later) if r["store_id"] == s)
        assert rows(db_url, edge, (s,)) == [(newest["report_id"], 109)]
    # Each deeper report counted once (19 rises, then 10): the duplicate applied again would
    # have counted no rise, the replay would have started over from depth 19.
    rises = scalar(db_url, "SELECT depth_rises FROM fleet_edges WHERE store_id = ?", (stores[-1],))
    assert rises == 29


async def test_an_edge_that_stops_is_silent_within_90_seconds_and_back_when_it_reports(
    settings: Settings, codec: AvroCodec, tmp_path: object
) -> None:
    db_url = f"sqlite:///{tmp_path}/fleet.db"
    store = f"Q{uuid.uuid4().hex[:6].upper()}"
    port = free_port()
    consumer = fleet(settings, fleet_silent_heartbeats=2)
    async with running(consumer, settings, db_url, listen=("127.0.0.1", port)):
        for _ in range(3):  # a heartbeat of 5 s (sent faster: the test has no time to lose)
            await produce_reports(settings, codec, [report(store, heartbeat_seconds=5)])
            await asyncio.sleep(1)
        last = time.monotonic()
        await wait_until(
            lambda: (
                scalar(db_url, "SELECT COUNT(*) FROM fleet_edges WHERE store_id = ?", (store,)) == 1
            ),
            what="the store's reports applied",
        )
        assert await _gauge(port, f'tillstream_fleet_edge_up{{store="{store}"}}') == 1.0
        silent = (
            "SELECT COUNT(*) FROM fleet_flags WHERE kind = 'edge_silent' AND is_open = 1 "
            f"AND store_id = '{store}'"
        )
        await wait_until(lambda: scalar(db_url, silent) == 1, timeout=90, what="edge silent")
        took = time.monotonic() - last
        assert 8 <= took < 90, took  # silent after 2 x 5 s, seen on a refresh
        print(f"silent detected {took:.1f} s after the last report")
        await _wait_gauge(port, f'tillstream_fleet_edge_up{{store="{store}"}}', 0.0)
        flags = {k: await _gauge(port, f'tillstream_fleet_flags{{kind="{k}",store="{store}"}}')
                 for k in KINDS}  # fmt: skip
        assert flags == {k: 1.0 if k == "edge_silent" else 0.0 for k in KINDS}  # 0, not absent
        await produce_reports(settings, codec, [report(store, heartbeat_seconds=5)])
        await wait_until(lambda: scalar(db_url, silent) == 0, timeout=30, what="edge back")
        await _wait_gauge(port, f'tillstream_fleet_edge_up{{store="{store}"}}', 1.0)
        assert await _gauge(port, f'tillstream_fleet_heartbeat_age_seconds{{store="{store}"}}') < 15


def rows(db_url: str, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
    db = Database(db_url)
    try:
        return db.fetchall(sql, params)
    finally:
        db.close()


async def _gauge(port: int, series: str) -> float | None:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


async def _wait_gauge(port: int, series: str, value: float, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (found := await _gauge(port, series)) != value:
        assert time.monotonic() < deadline, f"{series} is {found}, not {value}"
        await asyncio.sleep(0.5)
