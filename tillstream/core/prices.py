"""Which list price holds: the one rule, for the edge's API, its sales and anyone else.

A price (``tillstream.core.events.Price``) is chain-wide (``store_id`` null) or one store's,
and valid for a window of time. Among the prices of one SKU, the price valid for store S at
instant ``at`` is:

1. only prices of the chain or of S count (another store's never does);
2. a price counts when ``at`` lies in its window: from ``valid_from`` (an instant,
   inclusive) or ``valid_from_day`` (local midnight starting that day in the store's time
   zone), until ``valid_until`` (an instant, exclusive) or through the end of
   ``valid_until_day`` (inclusive: until the local midnight that starts the next day); no
   start: valid since ever; no end: open-ended;
3. the store's own price wins over the chain's;
4. among prices of the same precedence, the one with the latest start wins (no start is
   the earliest), then the latest ``published_at``, then the greatest ``event_id``, so the
   answer never depends on the order the prices are given in.

The ends of the calendar are ends of time: an end in the year 9999 (:data:`FOREVER_YEAR`,
ERP exports' "for ever", SAP's ``9999-12-31``) is no end, and a start whose local midnight
falls before the year 1 in UTC is no start; nothing here overflows on them.

Pure functions: no clock, no I/O. ``at`` must carry a time zone (a naive time is refused).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from typing import Any, TypeVar

__all__ = [
    "FOREVER_YEAR",
    "format_amount",
    "is_forever",
    "is_valid",
    "valid_price",
    "window",
]

_BEGINNING = datetime.min.replace(tzinfo=UTC)

FOREVER_YEAR = 9999
"""An end of validity in this year is open-ended: ERP exports write "for ever" as
``9999-12-31`` (or a time on it), and the day after it is beyond what a date can hold."""

PriceLike = Mapping[str, Any]
"""A ``Price`` record, or any mapping with its validity fields (``valid_from``,
``valid_from_day``, ``valid_until``, ``valid_until_day``, ``store_id``, ``published_at``,
``event_id``); absent fields read as null."""
P = TypeVar("P", bound=PriceLike)


def is_forever(end: date | datetime | None) -> bool:
    """Whether an end of validity is ERP exports' "for ever" (:data:`FOREVER_YEAR`)."""
    return end is not None and end.year >= FOREVER_YEAR


def _local_midnight(day: date, zone: tzinfo) -> datetime | None:
    """The instant the local day ``day`` starts in ``zone`` (as UTC); None where UTC leaves
    the calendar (0001-01-01 starts in 0000 UTC east of Greenwich)."""
    try:
        return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    except OverflowError:
        return None


def window(price: PriceLike, zone: tzinfo) -> tuple[datetime | None, datetime | None]:
    """``(start, end)`` of a price's validity as UTC instants in a store of ``zone``: start
    inclusive, end exclusive; None: open on that side (also a start before the calendar and
    an end "for ever", :func:`is_forever`)."""
    start: datetime | None = None
    if price.get("valid_from") is not None:
        start = _aware(price["valid_from"], "valid_from")
    elif price.get("valid_from_day") is not None:
        start = _local_midnight(price["valid_from_day"], zone)
    end: datetime | None = None
    until, until_day = price.get("valid_until"), price.get("valid_until_day")
    if until is not None:
        instant = _aware(until, "valid_until")
        end = None if is_forever(instant) else instant
    elif until_day is not None and not is_forever(until_day):
        # Through the end of the day: up to the next local midnight (a year before 9999
        # has a next day, and its midnight is inside the calendar in every zone).
        end = _local_midnight(until_day + timedelta(days=1), zone)
    return start, end


def is_valid(price: PriceLike, at: datetime, zone: tzinfo) -> bool:
    """Whether ``price`` is valid at instant ``at`` in a store of time zone ``zone``."""
    instant = _aware(at, "at")
    start, end = window(price, zone)
    return (start is None or start <= instant) and (end is None or instant < end)


def valid_price(prices: Iterable[P], store_id: str, at: datetime, zone: tzinfo) -> P | None:
    """The price of one SKU valid for store ``store_id`` at ``at`` (module docstring), or
    None. ``prices`` are the SKU's prices: the chain's, this store's, maybe others'."""
    best: P | None = None
    best_rank: tuple[Any, ...] | None = None
    for price in prices:
        store = price.get("store_id")
        if store is not None and store != store_id:
            continue
        if not is_valid(price, at, zone):
            continue
        start, _ = window(price, zone)
        published = price.get("published_at")
        rank = (
            store is not None,
            start or _BEGINNING,
            _aware(published, "published_at") if published is not None else _BEGINNING,
            str(price.get("event_id") or ""),
        )
        if best_rank is None or rank > best_rank:
            best, best_rank = price, rank
    return best


def format_amount(amount: Decimal) -> str:
    """An amount as a decimal string with at least two places, never through a float:
    ``Decimal('1.9900')`` -> ``'1.99'``, ``Decimal('0.1250')`` -> ``'0.125'``,
    ``Decimal(5)`` -> ``'5.00'``."""
    if not amount.is_finite():
        raise ValueError("an amount must be a finite number")
    cents = amount.quantize(Decimal("0.01"))
    if cents == amount:
        return f"{cents:f}"
    return f"{amount.normalize():f}"


def _aware(value: Any, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must carry a time zone (a naive time is ambiguous)")
    return value
