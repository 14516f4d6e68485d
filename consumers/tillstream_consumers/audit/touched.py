"""Which store-days a batch changed: those its events belong to, and those whose count of
payments without a sale it changed, or whose post-voids or voided sales it changed.

A payment belongs to its sale's day; one whose sale the audit does not have is counted on
the day during which it was made, until its sale comes. So a batch touches the days of its
sales and till events, the days of its payments' sales, the days around its payments
without a sale, and the days around earlier payments of its sales (they were counted
there). Only the last two need a look at the store-days' windows, and they are rare: the
batch's own sales and the sales already stored answer the rest by event id. A post-void
touches its own day, its sale's (out of that day's money), and the days around its sale's
payments if the sale never came; a sale, the days of its post-voids (their view and
numbering change once the sale is in).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import date

from tillstream.core.events import Payment, Sale, SaleVoid, TillEvent
from tillstream_consumers.audit.facts import ts
from tillstream_consumers.audit.loading import (
    days_around,
    days_of_sales,
    days_of_voids,
    payments_of_sales,
)
from tillstream_consumers.runtime.db import Database

StoreDay = tuple[str, date]


def touched_store_days(
    db: Database,
    sales: Sequence[Sale],
    controls: Sequence[TillEvent],
    payments: Sequence[Payment],
    voids: Sequence[SaleVoid] = (),
) -> tuple[set[StoreDay], Counter[StoreDay]]:
    """The store-days the batch (already stored as facts) touched, and how many receipts,
    till events and post-voids each got."""
    new: Counter[StoreDay] = Counter((s["store_id"], s["business_day"]) for s in sales)
    new.update((e["store_id"], e["business_day"]) for e in controls)
    new.update((v["store_id"], v["business_day"]) for v in voids)
    day_of = {str(s["event_id"]): (s["store_id"], s["business_day"]) for s in sales}
    voided = {str(v["voided_event_id"]) for v in voids}
    day_of |= days_of_sales(
        db, ({str(p["sale_event_id"]) for p in payments} | voided) - day_of.keys()
    )
    touched = set(new) | {day_of[sale] for sale in voided if sale in day_of}
    moments = set()  # (store, time) of the payments counted in a window
    for p in payments:
        sale = str(p["sale_event_id"])
        if sale in day_of:
            touched.add(day_of[sale])
        else:
            moments.add((p["store_id"], ts(p["occurred_at"])))
    ours = {str(p["event_id"]) for p in payments}
    earlier = payments_of_sales(db, {str(s["event_id"]) for s in sales} | (voided - day_of.keys()))
    moments |= {moment for event_id, moment in earlier.items() if event_id not in ours}
    touched |= days_around(db, moments)
    if sales:
        touched |= days_of_voids(db, (str(s["event_id"]) for s in sales))
    return touched, new
