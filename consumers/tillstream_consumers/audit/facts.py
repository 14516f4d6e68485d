"""What the tills reported, as the audit keeps it: one fact per sale, payment, till event and
post-void (written by ``writing.py``, a store-day's read back by ``loading.py``).

Facts are written once (an event id is applied once by the runtime) and never changed; the
audit of a store-day is a function of its facts (``checks.py``), so it is the same whatever
order the events arrived in. A fact's ``content`` is a digest of what its event says (a
sale: :func:`receipt_digest`; a till event: everything but the event id and the channel):
two with the same till, day and number but another digest are a duplicate number, two with
the same digest are the same transaction sent twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from functools import cached_property
from operator import itemgetter
from typing import Any, cast

from tillstream.core.events import Sale
from tillstream_consumers.audit.reading import ReadMarks
from tillstream_consumers.runtime.api import MONEY_SCALE, from_units

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
    """Where its totals disagree with its lines (``tillstream.core.rules.totals_problems``):
    only of a receipt stored by an older version; the runtime now dead-letters such a sale
    before the audit reads it (``runtime/validity.py``)."""
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


@dataclass(frozen=True, slots=True)
class PostVoid:
    """A post-void, on the store-day it was done (``voids.py`` says what it changes)."""

    event_id: str
    voided_event_id: str
    terminal_id: str
    number: str | None
    """Its own receipt or sequence number, if the till numbers it."""
    voided_terminal_id: str
    voided_number: str | None
    cashier_id: str | None
    occurred_at: datetime
    utc_offset_minutes: int
    stated: Decimal | None
    """The voided amount the post-void states, if it does."""
    reason: str | None
    content: str
    sale: tuple[date, Decimal] | None = None
    """The voided sale's business day and net total, once the audit has the sale."""
    effective: bool = True
    """The first post-void of its sale: a later one changes nothing."""
    published_ms: int | None = None
    """When the edge published it (its Kafka timestamp)."""

    @property
    def amount(self) -> Decimal | None:
        """The voided amount: the sale's net total, else what the post-void states."""
        return self.sale[1] if self.sale is not None else self.stated


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
    voids: Sequence[PostVoid] = ()
    """Post-voids done on this day."""
    voided: frozenset[str] = frozenset()
    """Event ids of this day's sales that are post-voided (on any day): out of its money."""
    currency: str | None = None
    """The store's currency (ISO 4217): a store sells in one (``TILLSTREAM_STORE_CURRENCY``)."""

    @property
    def events(self) -> int:
        return len(self.transactions) + len(self.controls) + len(self.voids)

    @property
    def size(self) -> int:
        """Every fact an audit of the day reads: what it costs."""
        return self.events + len(self.payments) + len(self.orphans)

    @cached_property
    def window(self) -> tuple[datetime, datetime] | None:
        """The first and last event of the day (sales, till events, post-voids), or None."""
        times = [t.occurred_at for t in self.transactions]
        times += [c.occurred_at for c in self.controls]
        times += [v.occurred_at for v in self.voids]
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


def in_currency(value: Decimal, currency: str | None) -> str:
    """An amount as an auditor reads it, beside its currency: ``20.00 EUR``."""
    return f"{value} {currency}" if currency else str(value)


def local_iso(value: datetime, utc_offset_minutes: int) -> str:
    """A time as the store's staff read it: local, with its offset."""
    zone = timezone(timedelta(minutes=utc_offset_minutes))
    return value.astimezone(zone).isoformat(timespec="seconds")


def ts(value: datetime) -> str:
    """A time as fixed-width UTC text that sorts in time order."""
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


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
