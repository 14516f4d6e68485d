"""Post-voids in the ERP: a voided sale's stock and demand as if it had never been rung up,
whichever of the two the ERP reads first (docs/erp.md, "Post-voids").

- The sale already applied: its ledger rows are reversed by rows of the post-void (kind
  ``post_void``, the sale's line numbers, the opposite quantities) at the sale's own
  ``occurred_at``, so stock follows the event-time rule (a count after the sale saw it: its
  adjustment is corrected, not stock on hand), and its units sold come off its day.
- The sale not read yet: the post-void waits in ``erp_voids``, and the sale, when it comes
  (in this batch or a later one), is not applied at all: no stock, no demand, no suggestion.
- A sale is voided once per store: a second post-void of it changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime

from tillstream.core import rules
from tillstream.core.events import SaleVoid
from tillstream.core.topics import SALES
from tillstream_consumers.erp.movements import Movement, StockEvent
from tillstream_consumers.runtime.api import Record
from tillstream_consumers.runtime.db import Database, chunks, marks

POST_VOID = "post_void"
"""Ledger kind of a row that reverses a voided sale's line."""

Voided = tuple[str, str]
"""(store id, the voided sale's event id)."""


@dataclass
class PostVoids:
    """What a batch's post-voids do: the sales not to apply, and the reversals to book."""

    skipped: set[Voided] = field(default_factory=set)
    """Sales of this batch that are voided (now or before): never applied."""
    reversals: list[StockEvent] = field(default_factory=list)
    """Stock events that undo sales applied by earlier batches."""

    def applies(self, record: Record) -> bool:
        """Whether a sale or stock movement record of the batch is applied."""
        if record.topic != SALES.name:
            return True
        return (record.value["store_id"], str(record.event_id)) not in self.skipped


def post_voids(db: Database, voids: list[Record], sales: Iterable[Record]) -> PostVoids:
    """Remember this batch's post-voids and work out their effect on the batch and on the
    sales applied before (``sales``: the batch's sale records)."""
    batch_sales = {(r.value["store_id"], str(r.event_id)) for r in sales}
    fresh: dict[Voided, SaleVoid] = {}
    for record in voids:
        void = record.sale_void()
        fresh.setdefault((void["store_id"], str(void["voided_event_id"])), void)
    known = _known(db, fresh.keys() | batch_sales)
    new = {key: void for key, void in fresh.items() if key not in known}  # once per sale
    db.insert_many(
        "erp_voids",
        ("store_id", "voided_event_id", "event_id", "occurred_at"),
        [(*key, v["event_id"], v["occurred_at"].isoformat()) for key, v in new.items()],
    )
    out = PostVoids(skipped=batch_sales & (known | new.keys()))
    applied_before = {key: v for key, v in new.items() if key not in batch_sales}
    out.reversals = _reversals(db, applied_before)
    return out


def _known(db: Database, keys: Iterable[Voided]) -> set[Voided]:
    """Which of ``keys`` were voided by an earlier batch."""
    by_store: dict[str, list[str]] = {}
    for store, sale_id in keys:
        by_store.setdefault(store, []).append(sale_id)
    found: set[Voided] = set()
    for store, ids in sorted(by_store.items()):
        for chunk in chunks(sorted(ids)):
            found |= {
                (store, str(sale_id))
                for (sale_id,) in db.fetchall(
                    "SELECT voided_event_id FROM erp_voids "
                    f"WHERE store_id = ? AND voided_event_id IN ({marks(chunk)})",
                    (store, *chunk),
                )
            }
    return found


def _reversals(db: Database, voids: dict[Voided, SaleVoid]) -> list[StockEvent]:
    """A stock event per voided sale that has ledger rows: each row reversed, at the sale's
    time, on its day. A sale not read yet (or of no stock item) has none."""
    rows: dict[Voided, list[tuple[int, str, int, str, str, str | None]]] = {}
    by_store: dict[str, list[str]] = {}
    for store, sale_id in voids:
        by_store.setdefault(store, []).append(sale_id)
    for store, ids in sorted(by_store.items()):
        for chunk in chunks(sorted(ids)):
            for sale_id, line, sku, change, kind, at, day in db.fetchall(
                "SELECT event_id, line_no, sku, qty_change, kind, occurred_at, sales_day "
                f"FROM erp_ledger WHERE event_id IN ({marks(chunk)}) AND store_id = ? "
                "ORDER BY event_id, line_no",
                (*chunk, store),
            ):
                rows.setdefault((store, str(sale_id)), []).append(
                    (int(line), str(sku), int(change), str(kind), str(at), day)
                )
    out = []
    for key, lines in sorted(rows.items()):
        void = voids[key]
        at = datetime.fromisoformat(lines[0][4])
        day = date.fromisoformat(lines[0][5]) if lines[0][5] else at.date()
        number = void["receipt_number"]
        out.append(
            StockEvent(
                event_id=void["event_id"],
                store_id=key[0],
                occurred_at=at,  # the sale's: a count taken after it saw it
                day=day,
                reference=f"{void['terminal_id']}/{number}" if number else None,
                movements=tuple(
                    Movement(line, sku, POST_VOID, -change, sold=-_sold(kind, change))
                    for line, sku, change, kind, _, _ in lines
                ),
                reverses=True,
            )
        )
    return out


def _sold(kind: str, change: int) -> int:
    """The units a sale's ledger row added to its day's demand (``rules.LINE_KINDS``)."""
    meaning = rules.LINE_KINDS[kind.upper()]
    return meaning.demand * change * meaning.stock  # quantity = change * stock sign (+-1)
