"""Post-voids in analytics: a voided sale and its payments count nowhere, as if it had never
been rung up, whichever of the sale, its payments and the post-void is read first
(docs/analytics.md, "Post-voids").

- The sale kept before: what it added (``an_sale_days.undo``: its local hour, currency,
  units, net amount, lines, return lines and SKU rows) and the payments placed on its day
  (``an_placed_payments``) are taken back in the batch's rollups.
- Not read yet: the post-void waits in ``an_voids``; the sale and its payments, when they
  come, are not counted, and payments that waited for the sale are dropped.
- A sale is voided once per store: a second post-void of it changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tillstream.core.events import SaleVoid
from tillstream_consumers.runtime.api import Record
from tillstream_consumers.runtime.db import Database, chunks, marks

Voided = tuple[str, str]
"""(store id, the voided sale's event id)."""


@dataclass(frozen=True, slots=True)
class SaleEffect:
    """What one sale added to the rollups (integers: thousandths and ten-thousandths)."""

    hour: str
    currency: str
    totals: tuple[int, int, int, int]
    """Units, net amount, lines, return lines (a transaction is 1)."""
    skus: tuple[tuple[str, int, int], ...]
    """(sku, units, amount) of its merchandise."""

    def dumps(self) -> str:
        return json.dumps([self.hour, self.currency, self.totals, self.skus])

    @classmethod
    def loads(cls, text: str) -> SaleEffect:
        hour, currency, totals, skus = json.loads(text)
        return cls(hour, currency, tuple(totals), tuple(tuple(s) for s in skus))


@dataclass
class Reversal:
    """A sale kept before, to take back: its store, business day and effect."""

    store_id: str
    day: str
    effect: SaleEffect
    tenders: list[tuple[str, str, int, int]] = field(default_factory=list)
    """(method, currency, amount, payments) placed on its day."""


@dataclass
class PostVoids:
    voided: set[Voided] = field(default_factory=set)
    """Sales voided (before or in this batch): neither they nor their payments count."""
    reversals: list[Reversal] = field(default_factory=list)


def post_voids(db: Database, voids: list[Record], sales: Iterable[Voided]) -> PostVoids:
    """Remember this batch's post-voids; which sales of the batch (``sales``: those of its
    sales and payments) are voided, and what sales kept before must give back."""
    fresh: dict[Voided, SaleVoid] = {}
    for record in voids:
        void = record.sale_void()
        fresh.setdefault((void["store_id"], str(void["voided_event_id"])), void)
    wanted = set(sales)
    known = _known(db, fresh.keys() | wanted) if fresh or wanted else set()
    new = {key: void for key, void in fresh.items() if key not in known}
    db.insert_many(
        "an_voids",
        ("store_id", "voided_event_id", "event_id"),
        [(*key, void["event_id"]) for key, void in new.items()],
    )
    out = PostVoids(voided=known | new.keys())
    if new:
        out.reversals = _reversals(db, set(new))
        ids = sorted({sale_id for _, sale_id in new})
        for chunk in chunks(ids):  # they waited for a sale that is now voided
            db.execute(
                f"DELETE FROM an_unplaced_payments WHERE sale_event_id IN ({marks(chunk)})",
                chunk,
            )
    return out


def _known(db: Database, keys: set[Voided]) -> set[Voided]:
    found: set[Voided] = set()
    by_store: dict[str, list[str]] = {}
    for store, sale_id in keys:
        by_store.setdefault(store, []).append(sale_id)
    for store, ids in sorted(by_store.items()):
        for chunk in chunks(sorted(ids)):
            found |= {
                (store, str(i))
                for (i,) in db.fetchall(
                    "SELECT voided_event_id FROM an_voids "
                    f"WHERE store_id = ? AND voided_event_id IN ({marks(chunk)})",
                    (store, *chunk),
                )
            }
    return found


def _reversals(db: Database, voided: set[Voided]) -> list[Reversal]:
    """The sales of ``voided`` kept before, with what they added (sales kept before post-voids
    were, have no ``undo`` and are left as they are)."""
    found: dict[str, Reversal] = {}
    ids = sorted({sale_id for _, sale_id in voided})
    for chunk in chunks(ids):
        for sale_id, store, day, undo in db.fetchall(
            "SELECT sale_event_id, store_id, sale_day, undo FROM an_sale_days "
            f"WHERE sale_event_id IN ({marks(chunk)}) AND undo IS NOT NULL",
            chunk,
        ):
            if (str(store), str(sale_id)) in voided:
                found[str(sale_id)] = Reversal(str(store), str(day), SaleEffect.loads(undo))
    for chunk in chunks(sorted(found)):
        rows: list[tuple[Any, ...]] = db.fetchall(
            "SELECT sale_event_id, method, currency, SUM(amount_units), SUM(payments) "
            f"FROM an_placed_payments WHERE sale_event_id IN ({marks(chunk)}) "
            "GROUP BY sale_event_id, method, currency",
            chunk,
        )
        for sale_id, method, currency, amount, n in rows:
            found[str(sale_id)].tenders.append((str(method), str(currency), int(amount), int(n)))
    return [found[i] for i in sorted(found)]
