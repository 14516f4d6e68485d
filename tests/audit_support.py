"""Building store-days for the sales audit's tests: tills that sign on, sell, take pickups
and declare at close, numbered by the till's own counter, with faults planted on purpose."""

from __future__ import annotations

import contextlib
import threading
import time as clock
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from tillstream.core.http import embedded_server
from tillstream.core.settings import Settings
from tillstream.dev.ports import free_port
from tillstream.dev.samples import sample_payment, sample_sale
from tillstream_consumers.audit import SalesAudit
from tillstream_consumers.runtime.db import Database
from tillstream_consumers.runtime.web import service_app

OFFSET = 60
"""The stores' UTC offset (minutes): a store east of UTC, so its day is not the UTC day."""
FLOAT = Decimal("150.00")
Event = tuple[str, dict[str, Any]]
DAY = date(2026, 3, 2)
"""The chain day of :class:`ChainDay`."""
Found = set[tuple[str, str, str]]
"""(store, kind, subject) of open flags."""


def local(day: date, hour: int, minute: int = 0) -> datetime:
    """``hour:minute`` store-local time on ``day``, in UTC."""
    return datetime.combine(day, time(hour, minute), UTC) - timedelta(minutes=OFFSET)


def event_id(*parts: object) -> str:
    """A stable event id (the same record in every order a test applies it in)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(map(str, parts))))


@dataclass
class Till:
    """One till's day; ``events`` are what it reported, in the order it reported them."""

    store: str
    terminal: str
    day: date
    operator: str
    events: list[Event] = field(default_factory=list)
    number: int = 0
    cash: Decimal = Decimal(0)
    """What the drawer holds."""

    def _next(self) -> str:
        self.number += 1
        return f"{self.number:06d}"

    def control(
        self, kind: str, at: datetime, amounts: dict[str, Decimal] | None = None
    ) -> dict[str, Any]:
        number = self._next()
        record = {
            "event_id": event_id(self.store, self.day, self.terminal, kind, number),
            "store_id": self.store,
            "terminal_id": self.terminal,
            "kind": kind,
            "sequence_number": number,
            "operator_id": self.operator,
            "business_day": self.day,
            "occurred_at": at,
            "utc_offset_minutes": OFFSET,
            "currency": "EUR" if amounts else None,
            "tenders": [{"tender": t, "amount": a} for t, a in (amounts or {}).items()],
            "reason": None,
            "source": "api",
        }
        self.events.append(("till_event", record))
        return record

    def open(self, at: datetime) -> None:
        self.control("SIGN_ON", at)
        self.control("OPENING_FLOAT", at, {"CASH": FLOAT})
        self.cash = FLOAT

    def sell(
        self, at: datetime, method: str = "CASH", *, variant: int = 0, number: str | None = None
    ) -> list[Event]:
        """A receipt and its payment; returns them (a test may hold them back). ``number``
        reuses a number the till gave before; ``variant`` makes other content."""
        sale = sample_sale(self.store, at=at)
        number = number or self._next()
        sale.update(
            event_id=event_id(self.store, self.day, self.terminal, "sale", number, variant),
            terminal_id=self.terminal,
            receipt_number=number,
            business_day=self.day,
            utc_offset_minutes=OFFSET,
            cashier_id=self.operator,
        )
        if variant:  # other content: one line fewer
            sale["lines"] = sale["lines"][:1]
            amount = sale["lines"][0]["extended_amount"]
            tax = sale["lines"][0]["tax_amount"]
            sale["totals"] = {
                "gross_amount": amount,
                "discount_amount": Decimal(0),
                "tax_amount": tax,
                "net_amount": amount,
            }
        payment = sample_payment(sale)
        payment.update(
            event_id=event_id(sale["event_id"], "payment"),
            method=method,
            card=None if method != "CARD" else payment["card"],
        )
        if method == "CASH":
            self.cash += payment["amount"]
        made: list[Event] = [("sale", sale), ("payment", payment)]
        self.events += made
        return made

    def post_void(self, at: datetime, made: list[Event], *, number: bool = True) -> Event:
        """A post-void of the receipt ``made`` (its sale and payments), with a number of the
        till's own (or none): its cash goes back out of the drawer."""
        sale = made[0][1]
        own = self._next() if number else None
        void = {
            "event_id": event_id(self.store, self.day, self.terminal, "void", sale["event_id"]),
            "voided_event_id": sale["event_id"],
            "store_id": self.store,
            "terminal_id": self.terminal,
            "receipt_number": own,
            "voided_terminal_id": sale["terminal_id"],
            "voided_receipt_number": sale["receipt_number"],
            "business_day": self.day,
            "occurred_at": at,
            "utc_offset_minutes": OFFSET,
            "cashier_id": self.operator,
            "reason": "WRONG_TENDER",
            "currency": "EUR",
            "voided_amount": sale["totals"]["net_amount"],
            "source": "api",
        }
        for kind, record in made:
            if kind == "payment" and record["method"] == "CASH":
                self.cash -= {"CAPTURED": 1, "REFUNDED": -1}.get(record["status"], 0) * record[
                    "amount"
                ]
        self.events.append(("sale_void", void))
        return "sale_void", void

    def pickup(self, at: datetime, amount: Decimal) -> None:
        self.control("PICKUP", at, {"CASH": amount})
        self.cash -= amount

    def close(self, at: datetime, *, short: Decimal = Decimal(0), totals: bool = False) -> None:
        """Count (``short`` missing from the drawer), settle (with the till's own cash total
        if ``totals``) and sign off."""
        self.control("TENDER_DECLARATION", at, {"CASH": self.cash - short})
        self.control("TILL_CLOSE", at, {"CASH": self.cash} if totals else None)
        self.control("SIGN_OFF", at)


@dataclass
class StoreDay:
    store: str
    day: date
    tills: list[Till] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def till(self, terminal: str, operator: str) -> Till:
        till = Till(self.store, terminal, self.day, operator)
        self.tills.append(till)
        return till

    def store_event(self, kind: str, at: datetime) -> None:
        self.events.append(
            (
                "till_event",
                {
                    "event_id": event_id(self.store, self.day, kind),
                    "store_id": self.store,
                    "terminal_id": "BO",
                    "kind": kind,
                    "sequence_number": None,
                    "operator_id": None,
                    "business_day": self.day,
                    "occurred_at": at,
                    "utc_offset_minutes": OFFSET,
                    "currency": None,
                    "tenders": [],
                    "reason": None,
                    "source": "api",
                },
            )
        )

    def all_events(self) -> list[Event]:
        return self.events + [e for till in self.tills for e in till.events]


def clean_store_day(store: str, day: date, tills: int = 2, *, totals: bool = False) -> StoreDay:
    """A day that balances: every till signs on, sells for cash and card, takes a pickup,
    declares exactly what it holds and settles; the store opens and closes its day."""
    sd = StoreDay(store, day)
    sd.store_event("STORE_DAY_OPEN", local(day, 7))
    for n in range(1, tills + 1):
        till = sd.till(f"T{n:02d}", f"op-{n}")
        till.open(local(day, 8))
        for i in range(4):
            till.sell(local(day, 9 + i, 10 * n), "CASH" if i % 2 == 0 else "CARD")
        till.pickup(local(day, 14), Decimal("20.00"))
        till.sell(local(day, 15), "CASH")
        till.close(local(day, 20), totals=totals)
    sd.store_event("STORE_DAY_CLOSE", local(day, 21))
    return sd


class ChainDay:
    """Four stores: a clean day for each before, then on ``DAY``: one store clean, one with a
    receipt that never arrives and a number used twice, one with a cashier 20.00 short in
    cash, a till never settled and a sale after the store closed, and one silent all day."""

    def __init__(self, prefix: str) -> None:
        self.stores = [f"{prefix}-{n}" for n in range(1, 5)]
        s1, s2, s3, _ = self.stores
        self.before: list[Event] = []
        for store in self.stores:
            self.before += clean_store_day(store, DAY - timedelta(days=1)).all_events()
        self.clean = clean_store_day(s1, DAY)

        two = StoreDay(s2, DAY)
        two.store_event("STORE_DAY_OPEN", local(DAY, 7))
        t1 = two.till("T01", "op-21")
        t1.open(local(DAY, 8))
        t1.sell(local(DAY, 9))
        self.missing = t1.sell(local(DAY, 10), "CARD")
        for made in self.missing:
            t1.events.remove(made)
        t1.sell(local(DAY, 11))
        t1.close(local(DAY, 20))
        t2 = two.till("T02", "op-22")
        t2.open(local(DAY, 8))
        first = t2.sell(local(DAY, 9), "CARD")
        self.duplicated = first[0][1]["receipt_number"]
        t2.sell(local(DAY, 9, 30), "CARD", variant=1, number=self.duplicated)
        t2.sell(local(DAY, 10))
        t2.close(local(DAY, 20))
        two.store_event("STORE_DAY_CLOSE", local(DAY, 21))

        three = StoreDay(s3, DAY)
        three.store_event("STORE_DAY_OPEN", local(DAY, 7))
        short = three.till("T01", "op-31")
        short.open(local(DAY, 8))
        for hour in (9, 10, 11):
            short.sell(local(DAY, hour))
        short.close(local(DAY, 20), short=Decimal("20.00"))
        self.late = short.sell(local(DAY, 21, 30), "CARD")[0][1]["receipt_number"]
        unsettled = three.till("T02", "op-32")
        unsettled.open(local(DAY, 8))
        unsettled.sell(local(DAY, 12))
        unsettled.sell(local(DAY, 13), "CARD")
        three.store_event("STORE_DAY_CLOSE", local(DAY, 21))

        self.day = self.clean.all_events() + two.all_events() + three.all_events()

    def events(self) -> list[Event]:
        return self.before + self.day

    def planted(self) -> Found:
        _, s2, s3, s4 = self.stores
        missing = self.missing[0][1]["receipt_number"]
        return {
            (s2, "receipt_gap", f"T01 {missing}"),
            (s2, "duplicate_number", f"T02 {self.duplicated}"),
            (s3, "over_short", "T01 CASH"),
            (s3, "till_not_closed", "T02"),
            (s3, "late_event", f"T01 receipt {self.late}"),
            (s4, "silent_store", s4),
        }


@contextlib.contextmanager
def audit_service_http(db_url: str) -> Iterator[str]:
    """The audit service's HTTP app (probes, metrics, read API and the page, as
    ``tillstream consume audit --listen`` serves them) over ``db_url``, on loopback, in a
    thread of its own; yields its base URL."""
    databases: list[Database] = []

    async def query(fn: Callable[[Database], Any]) -> Any:
        if not databases:  # opened in the server's thread, as the service's database thread
            databases.append(Database(db_url))
        return fn(databases[0])

    consumer = SalesAudit(Settings())
    app = service_app(consumer.name, lambda: (True, 0), consumer.routes(query), None)
    port = free_port()
    server = embedded_server(app, "127.0.0.1", port)
    thread = threading.Thread(target=server.run, name="audit-http", daemon=True)
    thread.start()
    deadline = clock.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and clock.monotonic() < deadline, "the audit page did not start"
        clock.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        for db in databases:
            db.close()
