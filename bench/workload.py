"""The records every stage uses: realistic sales of five lines from the store simulator, and
for the sales audit whole store-days (sales, payments, till events), seeded, so both sides of
a comparison get the very same events."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from tillstream.simulate.catalog import CATALOG
from tillstream.simulate.clock import store_clock
from tillstream.simulate.shifts import TillShift, store_day_event
from tillstream.simulate.shopper import StoreTraffic


def sales(count: int, *, stores: int = 6, lines: int = 5, seed: int = 42) -> list[dict[str, Any]]:
    """``count`` sale records of exactly ``lines`` SALE lines, spread over ``stores`` stores."""
    traffic = [
        StoreTraffic(f"B{n:03d}", random.Random(seed + n), bad_ratio=0.0, stock_limited=False)
        for n in range(stores)
    ]
    at = datetime.now(UTC)
    out = []
    for i in range(count):
        shop = traffic[i % stores]
        while True:
            sale = shop.transaction(i % 3, at).sale
            if (
                all(line["kind"] == "SALE" for line in sale["lines"])
                and len(sale["lines"]) >= lines
            ):
                break
        sale["lines"] = sale["lines"][:lines]
        total = sum(line["extended_amount"] for line in sale["lines"])
        tax = sum(line["tax_amount"] for line in sale["lines"])
        sale["totals"] = {**sale["totals"], "gross_amount": total, "net_amount": total,
                          "tax_amount": tax}  # fmt: skip
        out.append(sale)
    return out


assert len(CATALOG) >= 5  # five distinct lines per sale


def store_days(
    count: int, *, stores: int = 6, tills: int = 3, seed: int = 42
) -> list[tuple[str, dict[str, Any]]]:
    """About ``count`` events of one trading day across ``stores`` stores, as the simulator's
    tills send them: the store-day opened, tills signing on with a float, receipts with their
    payments, pickups, then declarations, settlements and the store-day closed. In order of
    time; ``(event type, record)`` pairs."""
    rng = random.Random(f"tills-{seed}")  # not the stores' seeds: other event ids
    start = datetime.now(UTC) - timedelta(hours=1)
    clocks = [store_clock(n) for n in range(stores)]
    shops = [
        StoreTraffic(
            f"A{n:03d}",
            random.Random(seed + n),
            bad_ratio=0.0,
            clock=clocks[n],
            stock_limited=False,
        )
        for n in range(stores)
    ]
    shifts = [
        [TillShift(shop.store_id, t, random.Random(rng.getrandbits(64)), clock=shop.clock)
         for t in range(tills)]
        for shop in shops
    ]  # fmt: skip
    events: list[tuple[str, dict[str, Any]]] = []
    for shop, clock in zip(shops, clocks, strict=True):
        clock.open(start)
        events.append(store_day_event("STORE_DAY_OPEN", shop.store_id, clock, start, rng))
    for till_shifts in shifts:
        for shift in till_shifts:
            events += shift.open(start)
    receipts = max(1, round(count / EVENTS_PER_RECEIPT))
    for i in range(receipts):
        at = start + timedelta(milliseconds=100 * i)
        n, till = i % stores, (i // stores) % tills
        tx = shops[n].transaction(till, at)
        events += tx.events
        events += shifts[n][till].took(tx.payments, at)
    end = start + timedelta(milliseconds=100 * receipts + 60_000)
    for n, shop in enumerate(shops):
        for shift in shifts[n]:
            events += shift.close(end)
        events.append(store_day_event("STORE_DAY_CLOSE", shop.store_id, clocks[n], end, rng))
    return events


EVENTS_PER_RECEIPT = 2.1
"""A sale, its payment (the odd declined card adds one) and the odd pickup."""
