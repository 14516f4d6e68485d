"""The item master, from the compacted topic ``tillstream.items`` (head office publishes it
with ``tillstream items publish``): one row of ``erp_items`` per SKU, upserted from each
item record, deleted by a tombstone.

An item's ``reorder_point`` and ``lead_time_days`` drive the reorder policy (``reorder.py``);
``supplier``, ``stock_item``, ``unit_of_measure`` and ``description`` are kept for people and
reports. Applying by SKU is idempotent, so a record seen again (a tombstone has no event id
to deduplicate by) sets the same row again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tillstream.core.events import Item
from tillstream_consumers.runtime.api import QTY_SCALE, PermanentError, Record, to_units
from tillstream_consumers.runtime.db import Database, chunks, marks

COLUMNS = (
    "sku",
    "description",
    "reorder_point",
    "lead_time_days",
    "supplier",
    "stock_item",
    "unit_of_measure",
    "published_at",
)


def apply_items(db: Database, records: Sequence[Record]) -> None:
    """Apply item records and tombstones, in order: the last one of a SKU wins."""
    latest: dict[str, Item | None] = {}
    for record in records:
        latest[_sku(record)] = None if record.tombstone else record.item()
    deleted = sorted(sku for sku, item in latest.items() if item is None)
    for chunk in chunks(deleted):
        db.execute(f"DELETE FROM erp_items WHERE sku IN ({marks(chunk)})", chunk)
    rows = [_row(item) for item in latest.values() if item is not None]
    updates = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[1:])
    db.insert_many("erp_items", COLUMNS, rows, f"ON CONFLICT (sku) DO UPDATE SET {updates}")


def _sku(record: Record) -> str:
    if not record.tombstone:
        return record.item()["sku"]
    try:
        return (record.key or b"").decode("utf-8")
    except UnicodeDecodeError:
        raise PermanentError("an item tombstone whose key is not a SKU (UTF-8)") from None


def _row(item: Item) -> tuple[Any, ...]:
    point = item["reorder_point"]
    return (
        item["sku"],
        item["description"],
        None if point is None else to_units(point, QTY_SCALE),
        item["lead_time_days"],
        item["supplier"],
        int(item["stock_item"]),
        item["unit_of_measure"],
        item["published_at"].isoformat(),
    )
