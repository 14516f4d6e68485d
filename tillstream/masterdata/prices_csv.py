"""A price file (``tillstream prices publish FILE.csv``) to prices by key.

Columns ``sku,store_id,amount,currency,valid_from,valid_until``, all required in the header:
``store_id`` empty for the chain-wide price; ``amount`` a decimal (up to 4 places, zero or
more: a free item is priced 0); validity a date (``2026-03-01``: the store's own day,
``valid_until`` inclusive), a time with its offset (``2026-03-01T06:00:00+01:00``:
``valid_until`` exclusive), or empty (open-ended); a ``valid_until`` in the year 9999 (ERP
exports' "for ever") is open-ended too, published as empty.

A store sells in one currency, and so do the chain's prices: a store's (or the chain's)
prices in two currencies are a problem, in the file (by row) and against what the topic
holds (:func:`currency_clashes`). Which currency a store sells in is its edge's setting:
an edge uses only the prices in its own (``tillstream_edge.masterdata_copy``).

The key is ``[store or null, sku, start or null]`` (:func:`~tillstream.core.topics.price_key`;
:func:`start_of` spells the start), so the same store, SKU and start twice is a problem.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

from tillstream.core.topics import price_key
from tillstream.masterdata import cells
from tillstream.masterdata.cells import CellProblem
from tillstream.masterdata.csv_file import Problems, Progress, Row, read_rows

REQUIRED = ("sku", "store_id", "amount", "currency", "valid_from", "valid_until")
CONTENT = (
    "sku",
    "store_id",
    "amount",
    "currency",
    "valid_from",
    "valid_from_day",
    "valid_until",
    "valid_until_day",
)
"""The fields of a price that say what it is (not ``event_id`` nor ``published_at``)."""


def start_of(price: dict[str, Any]) -> str | None:
    """How a price's key spells its start: the ISO date, the ISO UTC instant, or None."""
    day: date | None = price["valid_from_day"]
    at: datetime | None = price["valid_from"]
    if day is not None:
        return day.isoformat()
    return None if at is None else at.astimezone(UTC).isoformat()


def key_of(price: dict[str, Any]) -> bytes:
    return price_key(price["store_id"], price["sku"], start_of(price))


def describe_key(key: bytes) -> str:
    """``store/sku/start`` of a price key, ``*`` for the chain and ``-`` for no start."""
    try:
        store, sku, start = json.loads(key)
    except (ValueError, TypeError):
        return repr(key)
    return f"{store or '*'}/{sku}/{start or '-'}"


def read_prices(path: Path, progress: Progress | None = None) -> dict[bytes, dict[str, Any]]:
    """The file's prices by message key, each with the :data:`CONTENT` fields;
    :class:`MasterFileError` listing every problem found."""
    problems = Problems(path)
    prices: dict[bytes, dict[str, Any]] = {}
    first_row: dict[bytes, int] = {}
    currency_row: dict[str | None, tuple[str, int]] = {}
    for row in read_rows(path, REQUIRED, (), problems, progress):
        price = _price(row, problems)
        if price is None:
            continue
        key = key_of(price)
        if key in first_row:
            problems.add(
                row.number, "valid_from", f"the same store, SKU and start as row {first_row[key]}"
            )
            continue
        currency, first = currency_row.setdefault(
            price["store_id"], (price["currency"], row.number)
        )
        if price["currency"] != currency:
            whose = "the chain's" if price["store_id"] is None else "this store's"
            problems.add(
                row.number,
                "currency",
                f"{whose} prices are in {currency} (row {first}): one currency per store",
            )
            continue
        first_row[key] = row.number
        prices[key] = price
    problems.raise_any()
    return prices


def _price(row: Row, problems: Problems) -> dict[str, Any] | None:
    """The row's price, or None after adding its problems."""
    price: dict[str, Any] = {}
    parse = {
        "sku": cells.sku,
        "store_id": cells.store_id,
        "amount": lambda t: cells.decimal(t, scale=4, precision=18),
        "currency": cells.currency,
        "valid_from": cells.validity,
        "valid_until": cells.validity_end,
    }
    ok = not row.refused
    for column, read in parse.items():
        if column in row.refused:
            continue
        try:
            price[column] = read(row.cells[column])
        except CellProblem as problem:
            problems.add(row.number, column, str(problem))
            ok = False
    if not ok:
        return None
    for end in ("valid_from", "valid_until"):
        value = price.pop(end)
        is_day = isinstance(value, date) and not isinstance(value, datetime)
        price[end] = None if is_day else value
        price[f"{end}_day"] = value if is_day else None
    if not _in_order(price):
        problems.add(row.number, "valid_until", "not after valid_from")
        return None
    return {c: price[c] for c in CONTENT}


def _in_order(price: dict[str, Any]) -> bool:
    """Whether the window is not empty. A day is compared as the UTC day: the store's own
    zone is the edge's to apply. ``9999-12-31`` is a day like any other."""
    from_day, until_day = price["valid_from_day"], price["valid_until_day"]
    from_at, until_at = price["valid_from"], price["valid_until"]
    if (from_day is None and from_at is None) or (until_day is None and until_at is None):
        return True  # open at one end
    if from_day is not None and until_day is not None:
        return bool(until_day >= from_day)  # through the end of until_day: inclusive
    start: datetime = from_at or datetime.combine(from_day, time(), UTC)
    if until_at is not None:
        return bool(until_at > start)
    return bool(until_day >= start.date())  # the end of until_day is after start


def currency_clashes(master: Iterable[dict[str, Any]], most: int = 10) -> list[str]:
    """Stores (and the chain) whose prices in ``master`` (what the topic would hold after
    publishing) are in more than one currency, for people."""
    currencies: dict[str | None, list[str]] = {}
    for price in master:
        held = currencies.setdefault(price["store_id"], [])
        if price["currency"] not in held:
            held.append(price["currency"])
    return [
        f"{'the chain' if store is None else f'store {store}'} would have prices in "
        + " and in ".join(held)
        for store, held in currencies.items()
        if len(held) > 1
    ][:most]
