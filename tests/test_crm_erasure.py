"""Right to erasure, down to the storage: after an ERASE nothing in the CRM's database names
the customer, not in any table (the runtime's included), nor in what deleted rows leave
behind: SQLite's free space and write-ahead log, PostgreSQL's dead rows and statistics."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.consumer_support import publish, running, scalar, wait_until
from tillstream.core.codec import AvroCodec
from tillstream.core.settings import Settings
from tillstream.dev.samples import sample_sale
from tillstream_consumers.crm import CrmProfiles, load_profile
from tillstream_consumers.crm.tables import PERSONAL_TABLES
from tillstream_consumers.runtime.db import Database
from tillstream_consumers.runtime.testing import ConsumerHarness

# Every customer of these tests flagged as implausible (a visit a day is already too many),
# so every personal table, the flags included, holds them before the erasure.
EVERY_ONE_FLAGGED = Settings(crm_max_visits_per_day=1)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def sales(customer: str, n: int, store: str = "S-A") -> list[tuple[str, dict[str, Any]]]:
    """``n`` visits: the first inserts the customer's rows, the others update them (updates
    leave old row versions behind, which erasure must clear too)."""
    return [("sale", sample_sale(store, at=T0 + timedelta(hours=i), customer=customer))
            for i in range(n)]  # fmt: skip


def erase(customer: str) -> tuple[str, dict[str, Any]]:
    return "customer_request", {
        "event_id": str(uuid.uuid4()),
        "customer_id": customer,
        "action": "ERASE",
        "reference": "CASE-7",
        "requested_at": T0 + timedelta(days=2),
    }


def tables(db: Database) -> list[str]:
    if db.dialect == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    else:
        sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    return [str(name) for (name,) in db.fetchall(sql)]


def traces(db: Database, *needles: str) -> set[str]:
    """Tables of the whole database where any value, text or bytes, contains a needle."""
    wanted = [n.encode() for n in needles]
    found = set()
    for table in tables(db):
        for row in db.fetchall(f"SELECT * FROM {table}"):
            for value in row:
                blob = (
                    bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode()
                )
                if any(w in blob for w in wanted):
                    found.add(table)
    return found


def identifying(customer: str) -> tuple[str, ...]:
    """The id itself, and the plain SHA-256 anyone could compute from it."""
    return customer, hashlib.sha256(customer.encode()).hexdigest()


@pytest.fixture
def harness(db_url: str, codec: AvroCodec) -> Any:
    h = ConsumerHarness(CrmProfiles(EVERY_ONE_FLAGGED), db_url, codec=codec)
    yield h
    h.db.close()


def test_no_table_names_the_customer_after_erasure(harness: ConsumerHarness) -> None:
    c, other = f"C-{uuid.uuid4().hex[:8]}", f"C-{uuid.uuid4().hex[:8]}"
    harness.apply_events(*sales(c, 4), *sales(other, 2), *sales(c, 2, store="S-B"))
    everything = set(tables(harness.db))
    assert {"crm_profiles", "runtime_events", "runtime_outbox", "runtime_offsets"} <= everything
    assert traces(harness.db, c) == set(PERSONAL_TABLES)

    harness.apply_events(erase(c), *sales(c, 1, store="S-C"))  # a later sale is ignored
    harness.applier.refresh()  # what the runtime does between batches
    assert traces(harness.db, *identifying(c)) == set()
    assert load_profile(harness.db, c) is None
    assert traces(harness.db, other) == set(PERSONAL_TABLES)


def test_sqlite_files_keep_no_bytes_of_an_erased_customer(tmp_path: Path, codec: AvroCodec) -> None:
    path = tmp_path / "crm.db"
    harness = ConsumerHarness(CrmProfiles(EVERY_ONE_FLAGGED), f"sqlite:///{path}", codec=codec)
    # As on builds where secure_delete is off by default (it is on in Debian's SQLite).
    harness.db.execute("PRAGMA secure_delete = OFF")
    c, other = f"C-{uuid.uuid4().hex[:8]}", f"C-{uuid.uuid4().hex[:8]}"
    harness.apply_events(*sales(c, 5), *sales(other, 3))
    harness.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the rows are in the main file
    harness.apply_events(*sales(c, 3, store="S-B"))  # and newer versions in the log

    def on_disk(needle: str) -> int:
        files = [p for p in tmp_path.iterdir() if p.name.startswith("crm.db")]
        return sum(p.read_bytes().count(needle.encode()) for p in files)

    assert on_disk(c) > 0 and on_disk(other) > 0
    harness.apply_events(erase(c))
    harness.applier.refresh()
    assert on_disk(c) == 0
    assert on_disk(other) > 0  # the scan would have found it
    harness.db.close()


def test_postgres_keeps_no_dead_rows_or_statistics_of_an_erased_customer(
    postgres_url: str, codec: AvroCodec
) -> None:
    harness = ConsumerHarness(CrmProfiles(EVERY_ONE_FLAGGED), postgres_url, codec=codec)
    db = harness.db
    c, other, third = (f"C-{uuid.uuid4().hex[:8]}" for _ in range(3))
    harness.apply_events(*sales(c, 3), *sales(other, 3), *sales(third, 1), *sales(c, 2, "S-B"))
    db.execute("ANALYZE")  # as autovacuum does: pg_stats now samples customer ids
    db.execute("CREATE EXTENSION IF NOT EXISTS pageinspect")

    def in_stats(customer: str) -> list[tuple[Any, ...]]:
        return db.fetchall(
            "SELECT tablename FROM pg_stats WHERE schemaname = 'public' "
            "AND concat(most_common_vals::text, histogram_bounds::text) LIKE ?",
            (f"%{customer}%",),
        )

    def in_row_versions(customer: str) -> list[str]:
        """Tables with a row version (live or dead) holding ``customer``, page by page."""
        found = []
        for table in PERSONAL_TABLES:
            pages = db.fetchone(f"SELECT pg_relation_size('{table}') / 8192")[0]  # type: ignore[index]
            for page in range(int(pages)):
                rows = db.fetchall(
                    "SELECT t_data FROM heap_page_items(get_raw_page(?, ?)) "
                    "WHERE t_data IS NOT NULL",
                    (table, page),
                )
                if any(customer.encode() in bytes(data) for (data,) in rows):
                    found.append(table)
        return found

    every = len(PERSONAL_TABLES)
    # crm_implausible holds one row per flagged customer and day, every value unique:
    # PostgreSQL may keep no sample of it in pg_stats (its row versions are checked below).
    sampled = {t for (t,) in in_stats(c)}
    assert sampled >= set(PERSONAL_TABLES) - {"crm_implausible"}
    assert len(in_row_versions(c)) == every
    harness.apply_events(erase(c))
    assert len(in_row_versions(c)) == every  # deleted, yet still in the pages as dead rows
    harness.applier.refresh()
    assert in_stats(c) == [] and in_row_versions(c) == []
    assert {t for (t,) in in_stats(other)} >= set(PERSONAL_TABLES) - {"crm_implausible"}
    assert len(in_row_versions(other)) == every
    db.close()


def _crm_group() -> type[CrmProfiles]:
    return type("Crm", (CrmProfiles,), {"name": f"crm-{uuid.uuid4().hex[:8]}"})


async def test_the_running_service_scrubs_after_an_erasure_from_kafka(
    kafka_topics: Settings, codec: AvroCodec, tmp_path: Path
) -> None:
    path = tmp_path / "crm.db"
    url = f"sqlite:///{path}"
    c = f"C-{uuid.uuid4().hex[:8]}"
    visits = "SELECT visits FROM crm_profiles WHERE customer_id = ?"
    now = datetime.now(UTC)
    mine = [("sale", sample_sale(f"S-{uuid.uuid4().hex[:6]}", at=now - timedelta(minutes=i),
                                 customer=c)) for i in range(3)]  # fmt: skip

    def on_disk() -> int:
        return sum(p.read_bytes().count(c.encode()) for p in tmp_path.glob("crm.db*"))

    async with running(_crm_group()(kafka_topics), kafka_topics, url):
        await publish(kafka_topics, codec, mine)
        await wait_until(lambda: scalar(url, visits, (c,)) == 3, what="3 visits")
        assert on_disk() > 0
        await publish(kafka_topics, codec, [erase(c)])
        await wait_until(lambda: scalar(url, visits, (c,)) is None, what="the erasure")
        await wait_until(lambda: on_disk() == 0, timeout=20, what="no bytes of the id on disk")
