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

The tills keep the books the sales audit reads (docs/audit.md): the store-day opens, each
till signs on with its float, takes pickups as its drawer fills and, at the end, declares,
settles and signs off; the store-day closes last. The seed plants what the audit must find
(:class:`Planted`): a cashier short, a receipt number never sent, and in one store of the
chain a till never settled. Refused receipts keep their numbers too, as a real till printed
them.

Every :data:`VOID_EVERY` receipts a till post-voids a purchase it rang up (docs/topics.md,
"Post-voids"): :data:`VOID_LAG` receipts later, or, one in :data:`VOID_FIRST_EVERY`, posted
before the sale itself. The post-void takes the till's next number and gives the money back
out of the drawer; every stage must hold the sale as if it had never been rung up.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from tillstream.simulate.clock import store_clock
from tillstream.simulate.shifts import TillShift, store_day_event
from tillstream.simulate.shopper import StoreTraffic, Transaction

DELIVERY_EVERY = 200
"""Receipts between two deliveries of a store."""
COUNT_EVERY = 150
"""Receipts between two stock-takes of a store."""
COUNT_LAG = 12
"""Receipts rung up between counting the shelves and posting the count."""
RECEIPT_SPACING = timedelta(milliseconds=250)
"""Time between two receipts of a store: the events' ``occurred_at`` clock."""
TILLS = 3
VOID_EVERY = 97
"""Receipts of a store between two post-voids."""
VOID_LAG = 5
"""Receipts rung up between a sale and its post-void."""
VOID_FIRST_EVERY = 3
"""One post-void in this many is posted before its sale."""
SKIP_WITHIN = (40, 400)
"""Store receipts between which the planted skipped number falls (a store sells about
3,000 receipts in a short run; at most a third of a smaller plan's): never a till's first or
last number, which no gap shows."""

Event = tuple[str, dict[str, Any]]
"""(event type, record) as the Avro contracts describe it."""


@dataclass(frozen=True)
class Step:
    """What the driver sends in one go: a receipt's events, or a delivery's."""

    store: str
    events: list[Event]
    refused: bool = False
    """Carries a card number: the edge must refuse it, and it must appear nowhere."""
    voided: tuple[str, ...] = ()
    """Event ids of its sales that a post-void of the plan cancels (before or after)."""


@dataclass(frozen=True)
class Planted:
    """What a store's tills get wrong on purpose, for the sales audit to find."""

    short_till: int
    """The till (0-based) whose cashier declares less cash than the drawer should hold."""
    short_by: Decimal
    """By this much: always beyond the audit's default tolerance (1.00)."""
    skip_at: int
    """The store's receipt (0-based) before which its till skips a number."""
    unsettled_till: int | None
    """A till that trades and is never settled (one store of the chain has one)."""


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

    def planted(self, store: str) -> Planted:
        """The faults the seed plants in ``store``'s tills."""
        index = self.stores.index(store)
        rng = random.Random(f"{self.seed}/{index}/audit")
        short_till = rng.randrange(TILLS)
        short_by = Decimal(rng.randint(200, 5000)) / 100
        low, high = SKIP_WITHIN
        skip_at = rng.randint(low, max(low, min(high, self.per_store // 6)))
        unsettled = random.Random(f"{self.seed}/unsettled").randrange(len(self.stores))
        unsettled_till = (short_till + 1) % TILLS if index == unsettled else None
        return Planted(short_till, short_by, skip_at, unsettled_till)

    def steps(self, store: str) -> Iterator[Step]:
        """The steps of one store, in the order its edge receives them."""
        index = self.stores.index(store)
        planted = self.planted(store)
        clock = store_clock(index)
        clock.open(self.start)
        traffic = StoreTraffic(
            store,
            random.Random(f"{self.seed}/{index}"),
            tills=TILLS,
            bad_ratio=self.bad_ratio,
            clock=clock,
            stock_limited=False,  # the plan's shape, not a believable shelf
        )
        shifts = [
            TillShift(store, till, random.Random(f"{self.seed}/{index}/till/{till}"), clock=clock)
            for till in range(TILLS)
        ]
        day_ids = random.Random(f"{self.seed}/{index}/day")
        at = self.start
        opening = [("stock_movement", m) for m in traffic.opening_delivery(at)]
        yield Step(store, opening)
        signed_on = [store_day_event("STORE_DAY_OPEN", store, clock, at, day_ids)]
        for shift in shifts:
            signed_on += shift.open(at)
            shift.short_by = planted.short_by if shift.till == planted.short_till else Decimal(0)
        yield Step(store, signed_on)
        planned = len(opening) + len(signed_on)
        receipts = voids = 0
        pending: list[tuple[int, Transaction]] = []  # (receipt due, sale) of post-voids to come

        def post_void(tx: Transaction, at: datetime) -> Step:
            void = traffic.post_void(tx, at)
            shifts[tx.till].gave_back(tx.payments, void["occurred_at"])
            return Step(store, [("sale_void", void)])

        while planned < self.per_store:
            at += RECEIPT_SPACING
            till = receipts % TILLS
            if receipts == planted.skip_at:
                traffic.skip_number(till)
            tx = traffic.transaction(till, at)
            receipts += 1
            if tx.bad:
                yield Step(store, tx.events, refused=True)
                continue
            events = tx.events + shifts[till].took(tx.payments, at)
            voided = receipts % VOID_EVERY == 0 and tx.sale["totals"]["net_amount"] > 0
            if voided:
                voids += 1
                if voids % VOID_FIRST_EVERY == 0:  # the driver sends it before the sale
                    yield post_void(tx, at)
                    planned += 1
                else:
                    pending.append((receipts + VOID_LAG, tx))
            yield Step(store, events, voided=(tx.sale["event_id"],) if voided else ())
            planned += len(events)
            while pending and pending[0][0] <= receipts:
                yield post_void(pending.pop(0)[1], at)
                planned += 1
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
        for _, tx in pending:  # voided before the tills settle
            yield post_void(tx, at)
        closing: list[Event] = []
        for shift in shifts:
            if shift.till != planted.unsettled_till:
                closing += shift.close(at)
        last = max([at, *(s.last_payment for s in shifts if s.last_payment)])
        closing.append(store_day_event("STORE_DAY_CLOSE", store, clock, last, day_ids))
        yield Step(store, closing)

    def all_steps(self) -> Iterator[Step]:
        for store in self.stores:
            yield from self.steps(store)
