"""The exact events of a chaos run, decided by a seed.

A :class:`Plan` (seed, stores, event count, start time) regenerates the same events every
time it is iterated, event ids included. The driver iterates it once to send the events;
the checker iterates it again, independently, to work out what every stage must hold.
Nothing the services report is taken on trust.

Each store's events come in one sequence (its tills take turns), which is also the order in
which the driver hands them to the edge: opening stock, then receipts (a sale and its
payments), with a delivery every :data:`DELIVERY_EVERY` receipts and a stock-take of a few
SKUs every :data:`COUNT_EVERY`. A stock-take is posted :data:`COUNT_LAG` receipts after the
shelves were counted, so the ERP reads it after sales that happened later; stock on hand
must still follow event time (docs/erp.md, "Counts"), however the topics interleave.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tillstream.simulate.shopper import StoreTraffic

DELIVERY_EVERY = 200
"""Receipts between two deliveries of a store."""
COUNT_EVERY = 150
"""Receipts between two stock-takes of a store."""
COUNT_LAG = 12
"""Receipts rung up between counting the shelves and posting the count."""
RECEIPT_SPACING = timedelta(milliseconds=250)
"""Time between two receipts of a store: the events' ``occurred_at`` clock."""
TILLS = 3

Event = tuple[str, dict[str, Any]]
"""(event type, record) as the Avro contracts describe it."""


@dataclass(frozen=True)
class Step:
    """What the driver sends in one go: a receipt's events, or a delivery's."""

    store: str
    events: list[Event]
    refused: bool = False
    """Carries a card number: the edge must refuse it, and it must appear nowhere."""


@dataclass(frozen=True)
class Plan:
    seed: int
    stores: tuple[str, ...]
    events: int
    """At least this many events are planned (all stores together, refused ones excluded)."""
    start: datetime
    bad_ratio: float = 0.001

    @classmethod
    def new(cls, seed: int, stores: int, events: int) -> Plan:
        # Whole seconds, a day back: the run's sales fall in recent, closed hours.
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
        return cls(seed, tuple(f"CH{n:02d}" for n in range(1, stores + 1)), events, start)

    def manifest(self) -> dict[str, Any]:
        return {**asdict(self), "start": self.start.isoformat()}

    @classmethod
    def from_manifest(cls, data: dict[str, Any]) -> Plan:
        return cls(
            seed=int(data["seed"]),
            stores=tuple(data["stores"]),
            events=int(data["events"]),
            start=datetime.fromisoformat(data["start"]),
            bad_ratio=float(data["bad_ratio"]),
        )

    @property
    def per_store(self) -> int:
        return -(-self.events // len(self.stores))

    def steps(self, store: str) -> Iterator[Step]:
        """The steps of one store, in the order its edge receives them."""
        index = self.stores.index(store)
        traffic = StoreTraffic(
            store,
            random.Random(f"{self.seed}/{index}"),
            tills=TILLS,
            bad_ratio=self.bad_ratio,
        )
        at = self.start
        opening = [("stock_movement", m) for m in traffic.opening_delivery(at)]
        yield Step(store, opening)
        planned = len(opening)
        receipts = 0
        while planned < self.per_store:
            at += RECEIPT_SPACING
            tx = traffic.transaction(receipts % TILLS, at)
            receipts += 1
            if tx.bad:
                yield Step(store, tx.events, refused=True)
                continue
            yield Step(store, tx.events)
            planned += len(tx.events)
            if receipts % COUNT_EVERY == 0:
                counted_at = at - COUNT_LAG * RECEIPT_SPACING
                counts = [("stock_movement", m) for m in traffic.stock_take(counted_at)]
                yield Step(store, counts)
                planned += len(counts)
            if receipts % DELIVERY_EVERY == 0:
                delivery = [("stock_movement", m) for m in traffic.delivery(at)]
                if delivery:
                    yield Step(store, delivery)
                    planned += len(delivery)

    def all_steps(self) -> Iterator[Step]:
        for store in self.stores:
            yield from self.steps(store)
