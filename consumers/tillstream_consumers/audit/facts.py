"""What the tills reported, as the audit keeps it: one fact per sale, payment and till event.

Facts are written once (an event id is applied once by the runtime) and never changed; the
audit of a store-day is a function of its facts (``checks.py``), so it is the same whatever
order the events arrived in. A fact's ``content`` is a digest of what its event says (a
sale: :func:`receipt_digest`; a till event: everything but the event id and the channel):
two with the same till, day and number but another digest are a duplicate number, two with
the same digest are the same transaction sent twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from functools import cached_property
from operator import itemgetter
from typing import Any, cast

from tillstream.core.events import Payment, Sale, TillEvent
from tillstream.core.rules import totals_problems
from tillstream_consumers.audit.reading import ReadMarks, read_marks
from tillstream_consumers.runtime.api import MONEY_SCALE, from_units, to_units
from tillstream_consumers.runtime.db import Database, chunks, marks

_NOT_CONTENT = frozenset({"event_id", "source"})
"""Fields that do not make two events different transactions (a resend, a POSLog backfill)."""


@dataclass(frozen=True, slots=True)
class Transaction:
    """A sale (receipt) as the audit sees it."""

    event_id: str
    terminal_id: str
    number: str
    cashier_id: str | None
    occurred_at: datetime
    utc_offset_minutes: int
    net: Decimal
    content: str
    problems: tuple[str, ...]
    """Where its totals disagree with its lines (``tillstream.core.rules.totals_problems``)."""
    published_ms: int | None = None
    """When the edge published it (its Kafka timestamp; None: stored before that was kept)."""


@dataclass(frozen=True, slots=True)
class Control:
    """A till or store-day control event (sign-on, pickup, declaration, close...)."""

    event_id: str
    terminal_id: str
    kind: str
    number: str | None
    operator_id: str | None
    occurred_at: datetime
    utc_offset_minutes: int
    content: str
    amounts: tuple[tuple[str, Decimal], ...] = ()
    """(tender, amount) pairs, amounts never negative (the kind gives the direction)."""
    published_ms: int | None = None
    """When the edge published it (its Kafka timestamp; None: stored before that was kept)."""


_SIGN = {"CAPTURED": 1, "REFUNDED": -1}


@dataclass(frozen=True, slots=True)
class Tender:
    """A payment of a sale: CAPTURED moves money in, REFUNDED out, the rest nothing."""

    event_id: str
    sale_event_id: str
    terminal_id: str
    method: str
    status: str
    amount: Decimal
    occurred_at: datetime
    published_ms: int | None = None
    """When the edge published it (its Kafka timestamp; None: stored before that was kept)."""

    @property
    def signed(self) -> Decimal:
        """The money it moved into the till (negative: paid back)."""
        return _SIGN.get(self.status, 0) * self.amount


@dataclass(frozen=True)
class StoreDayFacts:
    """Everything the audit knows of one store's business day."""

    store_id: str
    business_day: date
    transactions: Sequence[Transaction]
    controls: Sequence[Control]
    payments: Sequence[Tender]
    """Payments of this day's sales (on whichever till took them)."""
    orphans: Sequence[Tender] = ()
    """Payments of sales the audit does not have, made within this day's :attr:`window`."""
    read: ReadMarks = field(default_factory=dict)
    """How far the store's events of each type were read (``reading.py``)."""

    @property
    def events(self) -> int:
        return len(self.transactions) + len(self.controls)

    @property
    def size(self) -> int:
        """Every fact an audit of the day reads: what it costs."""
        return self.events + len(self.payments) + len(self.orphans)

    @cached_property
    def window(self) -> tuple[datetime, datetime] | None:
        """The first and last event of the day (sales and till events), or None."""
        times = [t.occurred_at for t in self.transactions]
        times += [c.occurred_at for c in self.controls]
        return (min(times), max(times)) if times else None

    @cached_property
    def utc_offset_minutes(self) -> int:
        """The store's offset: of its earliest event (0 with none)."""
        timed = [(t.occurred_at, t.event_id, t.utc_offset_minutes) for t in self.transactions]
        timed += [(c.occurred_at, c.event_id, c.utc_offset_minutes) for c in self.controls]
        return min(timed)[2] if timed else 0


_CENT = Decimal("0.01")


def money(units: int) -> Decimal:
    """Stored money as a decimal, to the cent where that loses nothing (``20.00``, not
    ``20.0000``; ``0.125`` stays)."""
    value = from_units(units, MONEY_SCALE)
    cents = value.quantize(_CENT)
    return cents if cents == value else value.normalize()


def local_iso(value: datetime, utc_offset_minutes: int) -> str:
    """A time as the store's staff read it: local, with its offset."""
    zone = timezone(timedelta(minutes=utc_offset_minutes))
    return value.astimezone(zone).isoformat(timespec="seconds")


def ts(value: datetime) -> str:
    """A time as fixed-width UTC text that sorts in time order."""
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


def problems_text(sale: Sale) -> str | None:
    problems = [f"{field}: {message}" for field, message in totals_problems(sale)]
    return json.dumps(problems) if problems else None


def content_digest(value: dict[str, Any]) -> str:
    """A digest of what an event says, without its id and channel. Over ``repr``: the
    codec decodes every event of a type to the same fields in the same order, as strings,
    numbers, decimals of the schema's scale, dates and UTC times, whose reprs are stable."""
    body = [(k, v) for k, v in sorted(value.items()) if k not in _NOT_CONTENT]
    return hashlib.sha256(repr(body).encode()).hexdigest()[:32]


_RECEIPT = ("terminal_id", "receipt_number", "business_day", "occurred_at",
            "utc_offset_minutes", "cashier_id", "customer_id", "currency")  # fmt: skip
_LINE = ("line_number", "kind", "sku", "gtin", "quantity", "unit_of_measure", "unit_price",
         "discount_amount", "tax_amount", "extended_amount", "stock_item")  # fmt: skip
_receipt_fields, _line_fields = itemgetter(*_RECEIPT), itemgetter(*_LINE)


def receipt_digest(sale: Sale) -> str:
    """What makes a receipt, to tell a resend from another receipt under its number: till,
    number, day, time, cashier, customer, currency, totals, and each line's number, kind,
    item, quantity, prices, discount, tax, amount and stock flag. Named fields, not the
    whole event: a field a later version adds (``list_price``, set by the edge, not the
    till) does not make a resend another receipt, and it is three times faster to make
    than :func:`content_digest` (it is made for every sale)."""
    value = cast(dict[str, Any], sale)
    parts = [*_receipt_fields(value), *value["totals"].values()]
    for line in value["lines"]:
        parts += _line_fields(line)
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:32]


# -- writing ---------------------------------------------------------------------------


def insert_facts(
    db: Database, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], conflict: str
) -> None:
    """``db.insert_many``, but on PostgreSQL the rows go as one JSON parameter
    (``json_populate_recordset``): a short statement psycopg parses once, where a multi-row
    VALUES of thousands of placeholders is split in Python on every batch (the conflict
    clause rules out COPY). The audit's columns are text and integers, which JSON keeps."""
    if db.dialect != "postgresql" or not rows:
        db.insert_many(table, columns, rows, conflict)
        return
    names = ", ".join(columns)
    payload = json.dumps([dict(zip(columns, r, strict=True)) for r in rows])
    db.execute(
        f"INSERT INTO {table} ({names}) SELECT {names} "
        f"FROM json_populate_recordset(NULL::{table}, CAST(? AS json)) {conflict}",
        (payload,),
    )


def store_sales(db: Database, sales: Sequence[tuple[Sale, int]], received_at: datetime) -> None:
    received = ts(received_at)
    insert_facts(
        db,
        "audit_transactions",
        (
            "event_id",
            "store_id",
            "business_day",
            "terminal_id",
            "number",
            "cashier_id",
            "occurred_at",
            "utc_offset_minutes",
            "currency",
            "net_amount",
            "content",
            "problems",
            "received_at",
            "published_ms",
        ),
        [
            (
                s["event_id"],
                s["store_id"],
                s["business_day"].isoformat(),
                s["terminal_id"],
                s["receipt_number"],
                s["cashier_id"],
                ts(s["occurred_at"]),
                s["utc_offset_minutes"],
                s["currency"],
                to_units(s["totals"]["net_amount"], MONEY_SCALE),
                receipt_digest(s),
                problems_text(s),
                received,
                published_ms,
            )
            for s, published_ms in sales
        ],
        "ON CONFLICT (event_id) DO NOTHING",
    )


def store_controls(
    db: Database, events: Sequence[tuple[TillEvent, int]], received_at: datetime
) -> None:
    received = ts(received_at)
    insert_facts(
        db,
        "audit_controls",
        (
            "event_id",
            "store_id",
            "business_day",
            "terminal_id",
            "kind",
            "number",
            "operator_id",
            "occurred_at",
            "utc_offset_minutes",
            "currency",
            "reason",
            "content",
            "received_at",
            "published_ms",
        ),
        [
            (
                e["event_id"],
                e["store_id"],
                e["business_day"].isoformat(),
                e["terminal_id"],
                e["kind"],
                e["sequence_number"],
                e["operator_id"],
                ts(e["occurred_at"]),
                e["utc_offset_minutes"],
                e["currency"],
                e["reason"],
                content_digest(dict(e)),
                received,
                published_ms,
            )
            for e, published_ms in events
        ],
        "ON CONFLICT (event_id) DO NOTHING",
    )
    insert_facts(
        db,
        "audit_control_amounts",
        ("event_id", "tender", "amount"),
        [
            (e["event_id"], t["tender"], to_units(t["amount"], MONEY_SCALE))
            for e, _ in events
            for t in e["tenders"]
        ],
        "ON CONFLICT (event_id, tender) DO NOTHING",
    )


def store_payments(
    db: Database, payments: Sequence[tuple[Payment, int]], received_at: datetime
) -> None:
    """Each payment with when it was published (its Kafka timestamp, milliseconds); the
    same for :func:`store_sales` and :func:`store_controls`."""
    received = ts(received_at)
    insert_facts(
        db,
        "audit_payments",
        (
            "event_id",
            "sale_event_id",
            "store_id",
            "terminal_id",
            "method",
            "status",
            "amount",
            "occurred_at",
            "received_at",
            "published_ms",
        ),
        [
            (
                p["event_id"],
                str(p["sale_event_id"]),
                p["store_id"],
                p["terminal_id"],
                p["method"],
                p["status"],
                to_units(p["amount"], MONEY_SCALE),
                ts(p["occurred_at"]),
                received,
                published_ms,
            )
            for p, published_ms in payments
        ],
        "ON CONFLICT (event_id) DO NOTHING",
    )


def days_of_sales(db: Database, sale_ids: Iterable[str]) -> dict[str, tuple[str, date]]:
    """The store-day of each sale with one of these event ids (of those the audit has)."""
    found: dict[str, tuple[str, date]] = {}
    for chunk in chunks(sorted(set(sale_ids))):
        found |= {
            str(event_id): (str(store), date.fromisoformat(str(day)))
            for event_id, store, day in db.fetchall(
                "SELECT event_id, store_id, business_day FROM audit_transactions "
                f"WHERE event_id IN ({marks(chunk)})",
                chunk,
            )
        }
    return found


def payments_of_sales(db: Database, sale_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
    """The payments the audit has of these sales: event id -> (store, time as :func:`ts`)."""
    found: dict[str, tuple[str, str]] = {}
    for chunk in chunks(sorted(set(sale_ids))):
        found |= {
            str(event_id): (str(store), str(at))
            for event_id, store, at in db.fetchall(
                "SELECT event_id, store_id, occurred_at FROM audit_payments "
                f"WHERE sale_event_id IN ({marks(chunk)})",
                chunk,
            )
        }
    return found


# -- reading ---------------------------------------------------------------------------


def load_store_day(db: Database, store_id: str, day: date) -> StoreDayFacts:
    """The facts of one store-day, in a stable order (time, then event id)."""
    key = (store_id, day.isoformat())
    transactions = [
        Transaction(
            str(event_id),
            str(terminal),
            str(number),
            cashier,
            parse_ts(at),
            int(offset),
            money(int(net)),
            str(content),
            tuple(json.loads(problems)) if problems else (),
            published,
        )
        for (
            event_id,
            terminal,
            number,
            cashier,
            at,
            offset,
            net,
            content,
            problems,
            published,
        ) in db.fetchall(
            "SELECT event_id, terminal_id, number, cashier_id, occurred_at, utc_offset_minutes, "
            "net_amount, content, problems, published_ms FROM audit_transactions "
            "WHERE store_id = ? AND business_day = ? ORDER BY occurred_at, event_id",
            key,
        )
    ]
    amounts: dict[str, list[tuple[str, Decimal]]] = {}
    for event_id, tender, amount in db.fetchall(
        "SELECT a.event_id, a.tender, a.amount FROM audit_control_amounts a "
        "JOIN audit_controls c ON c.event_id = a.event_id "
        "WHERE c.store_id = ? AND c.business_day = ? ORDER BY a.event_id, a.tender",
        key,
    ):
        amounts.setdefault(str(event_id), []).append((str(tender), money(int(amount))))
    controls = [
        Control(
            str(event_id),
            str(terminal),
            str(kind),
            number,
            operator,
            parse_ts(at),
            int(offset),
            str(content),
            tuple(amounts.get(str(event_id), ())),
            published,
        )
        for event_id, terminal, kind, number, operator, at, offset, content, published in (
            db.fetchall(
                "SELECT event_id, terminal_id, kind, number, operator_id, occurred_at, "
                "utc_offset_minutes, content, published_ms FROM audit_controls "
                "WHERE store_id = ? AND business_day = ? ORDER BY occurred_at, event_id",
                key,
            )
        )
    ]
    payments = _tenders(
        db,
        "JOIN audit_transactions t ON t.event_id = p.sale_event_id "
        "WHERE t.store_id = ? AND t.business_day = ?",
        key,
    )
    facts = StoreDayFacts(store_id, day, transactions, controls, payments)
    if facts.window is None:
        return facts
    first, last = facts.window
    orphans = _tenders(
        db,
        "WHERE p.store_id = ? AND p.occurred_at >= ? AND p.occurred_at <= ? AND NOT EXISTS "
        "(SELECT 1 FROM audit_transactions t WHERE t.event_id = p.sale_event_id)",
        (store_id, ts(first), ts(last)),
    )
    read = read_marks(db, store_id)
    return StoreDayFacts(store_id, day, transactions, controls, payments, orphans, read)


def _tenders(db: Database, where: str, params: Sequence[Any]) -> list[Tender]:
    return [
        Tender(
            str(event_id),
            str(sale_id),
            str(terminal),
            str(method),
            str(status),
            money(int(amount)),
            parse_ts(at),
            None if published is None else int(published),
        )
        for event_id, sale_id, terminal, method, status, amount, at, published in db.fetchall(
            "SELECT p.event_id, p.sale_event_id, p.terminal_id, p.method, p.status, p.amount, "
            f"p.occurred_at, p.published_ms FROM audit_payments p {where} "
            "ORDER BY p.occurred_at, p.event_id",
            params,
        )
    ]


def days_around(db: Database, moments: Iterable[tuple[str, str]]) -> set[tuple[str, date]]:
    """The store-days whose window (first to last event) holds one of these (store, time as
    :func:`ts`): where a payment made then without its sale is counted (and must be counted
    no more once its sale came). One look at the windows of the stores concerned."""
    wanted: dict[str, list[str]] = {}
    for store, at in moments:
        wanted.setdefault(store, []).append(at)
    if not wanted:
        return set()
    stores = sorted(wanted)
    times = [at for ats in wanted.values() for at in ats]
    found: set[tuple[str, date]] = set()
    for chunk in chunks(stores):
        for store, day, first, last in db.fetchall(
            "SELECT store_id, business_day, first_at, last_at FROM audit_days "
            f"WHERE store_id IN ({marks(chunk)}) AND first_at <= ? AND last_at >= ?",
            (*chunk, max(times), min(times)),
        ):
            if any(first <= at <= last for at in wanted[str(store)]):
                found.add((str(store), date.fromisoformat(str(day))))
    return found
