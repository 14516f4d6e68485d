"""The ERP's item master from tillstream.items: item records upsert by SKU, tombstones delete,
through the real Applier (SQLite and PostgreSQL) and end to end from ``items publish``."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.consumer_support import running, scalar, wait_until
from tests.masterdata_support import ITEMS_HEADER, clear, publish, write
from tests.test_erp import Erp, movement, records, sale, store
from tillstream.core.codec import AvroCodec
from tillstream.core.settings import Settings
from tillstream.core.topics import ITEMS, SALES, item_key
from tillstream_consumers.erp import ErpInventory
from tillstream_consumers.runtime.api import Record, Tombstone
from tillstream_consumers.runtime.fetching import decode_batch
from tillstream_consumers.runtime.partitioning import RoutingCheck, TopicPartition
from tillstream_consumers.runtime.testing import ConsumerHarness

_offsets = itertools.count()
PUBLISHED = datetime(2026, 3, 1, 6, tzinfo=UTC)


def item(sku: str, point: str | None = "5", lead: int | None = 4, **more: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "sku": sku,
        "gtins": [],
        "description": f"Item {sku}",
        "unit_of_measure": "EA",
        "weighed": False,
        "stock_item": True,
        "tax_class": None,
        "reorder_point": None if point is None else Decimal(point),
        "lead_time_days": lead,
        "supplier": "Dairy Co",
        "published_at": PUBLISHED,
        **more,
    }


def item_record(codec: AvroCodec, value: dict[str, Any]) -> Record:
    decoded = codec.decode(codec.encode("item", value)).record
    key = item_key(value["sku"])
    return Record.decoded(ITEMS.name, 0, next(_offsets), key, "item", decoded, 0)


def tombstone(sku: str) -> Record:
    return Record.deleted(ITEMS.name, 0, next(_offsets), item_key(sku), "item", 0)


@pytest.fixture
def erp(db_url: str, codec: AvroCodec) -> Iterator[Erp]:
    e = Erp(db_url, codec, Settings())
    yield e
    e.db.close()


def items_table(erp: Erp) -> list[tuple[Any, ...]]:
    return erp.db.fetchall(
        "SELECT sku, reorder_point, lead_time_days, supplier, stock_item, unit_of_measure "
        "FROM erp_items ORDER BY sku"
    )


# -- applying item records and tombstones ----------------------------------------------------


def test_items_upsert_by_sku_and_a_tombstone_deletes(erp: Erp, codec: AvroCodec) -> None:
    milk, eggs = f"MILK-{uuid.uuid4().hex[:6]}", f"EGGS-{uuid.uuid4().hex[:6]}"
    erp.apply_records([item_record(codec, item(milk, "24")), item_record(codec, item(eggs))])
    assert items_table(erp) == [
        (eggs, 5000, 4, "Dairy Co", 1, "EA"),
        (milk, 24000, 4, "Dairy Co", 1, "EA"),
    ]
    changed = item(milk, "30", lead=None, supplier=None, stock_item=False, unit_of_measure="LTR")
    erp.apply_records([item_record(codec, changed), tombstone(eggs)])
    assert items_table(erp) == [(milk, 30000, None, None, 0, "LTR")]
    # In one batch, the last record of a SKU wins: deleted, then published again.
    erp.apply_records([tombstone(milk), item_record(codec, item(milk, "1"))])
    assert items_table(erp) == [(milk, 1000, 4, "Dairy Co", 1, "EA")]
    erp.apply_records([item_record(codec, item(milk, "2")), tombstone(milk)])
    assert items_table(erp) == []


def test_a_tombstone_again_or_of_an_unknown_sku_changes_nothing(erp: Erp, codec: AvroCodec) -> None:
    erp.apply_records([item_record(codec, item("KEEP"))])
    gone = tombstone("GONE")
    outcome = erp.apply_records([gone, tombstone("NEVER-SEEN")])
    assert len(outcome.applied) == 2 and outcome.duplicates == []  # no event id to dedupe by
    erp.apply_records([Record.deleted(ITEMS.name, 0, next(_offsets), gone.key, "item", 0)])
    assert [row[0] for row in items_table(erp)] == ["KEEP"]


def test_the_reorder_point_from_the_topic_drives_suggestions(erp: Erp, codec: AvroCodec) -> None:
    s = store()
    erp.apply_records([item_record(codec, item("MILK", "5", lead=2))])
    erp.apply(movement(s, "MILK", "10"))
    # The item master changes in the same batch as the sale that crosses its new point.
    batch = [
        item_record(codec, item("MILK", "8", lead=2)),
        *records(sale(s, ("SALE", "MILK", "3"))),
    ]
    assert erp.apply_records(batch).published == 1
    (suggestion,) = erp.suggestions()
    assert suggestion["reorder_point"] == Decimal("8.000") and suggestion["basis"] == "STATIC"
    assert suggestion["lead_time_days"] == 2


def test_the_harness_applies_items_and_tombstones(db_url: str) -> None:
    harness = ConsumerHarness(ErpInventory(Settings()), db_url)
    try:
        harness.apply("item", item("A", "3"), item("B"))
        assert harness.delete("item", item_key("A")).applied[0].tombstone
        rows = harness.db.fetchall("SELECT sku, reorder_point FROM erp_items ORDER BY sku")
        assert rows == [("B", 5000)]
    finally:
        harness.db.close()


def test_a_tombstone_has_no_value_to_read() -> None:
    with pytest.raises(Tombstone, match="tombstone"):
        tombstone("MILK").item()


# -- the runtime hands tombstones of compacted topics on -------------------------------------


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int = 0
    headers: tuple[tuple[str, bytes], ...] = ()


def test_a_null_value_is_a_tombstone_on_a_compacted_topic_and_undecodable_elsewhere(
    codec: AvroCodec,
) -> None:
    items, sales = TopicPartition(ITEMS.name, 0), TopicPartition(SALES.name, 0)
    batch = {
        items: [Message(ITEMS.name, 0, 7, b"MILK", None)],
        sales: [Message(SALES.name, 0, 3, b"S1", None)],
    }
    fetched = decode_batch(codec, batch, {items, sales}, RoutingCheck("t"), lambda _t: 0)
    (record,) = fetched.records
    assert record.tombstone and record.key == b"MILK" and record.event == "item"
    assert record.event_id is None and record.offset == 7
    ((message, error),) = fetched.undecodable
    assert message.topic == SALES.name and "tombstone" in str(error)
    assert fetched.positions == {items: 8, sales: 4}


# -- end to end ------------------------------------------------------------------------------


async def test_the_erp_takes_reorder_points_from_items_publish_and_a_deletion_removes_one(
    kafka_topics: Settings, db_url: str, tmp_path: Path
) -> None:
    settings = kafka_topics
    # The command runs its own event loop: on a thread, beside the test's.
    await asyncio.to_thread(clear, settings, tmp_path)
    rows = [f"E2E-{n},,Item {n},EA,false,true,{n + 1},{n % 5}" for n in range(10)]
    all_items = write(tmp_path / "all.csv", ITEMS_HEADER, rows)
    first = await asyncio.to_thread(publish, settings, "items", str(all_items))
    assert first.exit_code == 0, first.output
    consumer = ErpInventory.in_group(f"erp-items-{uuid.uuid4().hex[:6]}")(settings)
    async with running(consumer, settings, db_url):
        await wait_until(
            lambda: (
                scalar(db_url, "SELECT COUNT(*) FROM erp_items WHERE sku LIKE ?", ("E2E-%",)) == 10
            ),
            what="ten items in the ERP",
        )
        point = scalar(db_url, "SELECT reorder_point FROM erp_items WHERE sku = 'E2E-7'")
        assert point == 8000
        fewer = write(tmp_path / "fewer.csv", ITEMS_HEADER, rows[:9])
        deleted = await asyncio.to_thread(publish, settings, "items", str(fewer), "--full")
        assert "items: 0 new, 0 changed, 1 deleted, 9 unchanged" in deleted.stderr
        await wait_until(
            lambda: scalar(db_url, "SELECT COUNT(*) FROM erp_items WHERE sku = 'E2E-9'") == 0,
            what="the deleted item gone from the ERP",
        )
        assert scalar(db_url, "SELECT COUNT(*) FROM erp_items WHERE sku LIKE ?", ("E2E-%",)) == 9
