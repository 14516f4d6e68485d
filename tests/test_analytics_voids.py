"""Post-voids in analytics: a voided sale and its payments are in no rollup (sales by hour,
units, lines and returns, top SKUs, tender mix), whichever of the sale, its payments and the
post-void is read first, once; on DuckDB, SQLite and a real PostgreSQL."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.test_analytics import DAY, Feed, payment, sale
from tillstream.core.codec import AvroCodec
from tillstream.dev.samples import sample_sale_void
from tillstream_consumers.analytics import daily_summary
from tillstream_consumers.runtime.api import PermanentError

Event = tuple[str, dict[str, Any]]


@pytest.fixture(params=["duckdb", "sqlite", "postgresql"])
def feed(request: pytest.FixtureRequest, tmp_path: Path, codec: AvroCodec) -> Iterator[Feed]:
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
    else:
        url = f"{request.param}:///{tmp_path / ('an.' + request.param)}"
    f = Feed(url, codec)
    yield f
    f.db.close()


def day_of(store: str) -> tuple[list[Event], list[Event]]:
    """A store's day: two sales kept, paid by card, and between them one (the only coffee,
    a return line, the only mobile payment) that is post-voided: (kept events, voided sale
    and its payments)."""
    first = sale(store, DAY.replace(hour=9, minute=10))
    voided = sale(
        store,
        DAY.replace(hour=9, minute=20),
        [("SALE", "SKU-COFFEE", "3", "5.00"), ("RETURN", "SKU-TEA", "1", "2.00")],
    )
    last = sale(store, DAY.replace(hour=9, minute=30))
    kept = [first, payment(first, "2.08"), last, payment(last, "2.08")]
    return kept, [voided, payment(voided, "13.00", "MOBILE")]


def void_of(sold: Event) -> Event:
    return "sale_void", sample_sale_void(sold[1])


ORDERS: dict[str, Callable[[list[Event], Event], list[list[Event]]]] = {
    "sale and payment, then the void": lambda v, void: [v, [void]],
    "the void first": lambda v, void: [[void], v],
    "the payment, the void, then the sale": lambda v, void: [v[1:], [void], v[:1]],
    "the sale, the void, then the payment": lambda v, void: [v[:1], [void], v[1:]],
    "one batch": lambda v, void: [[*v, void]],
    "one batch, the void first": lambda v, void: [[void, *v]],
}


def rollups(feed: Feed, store: str) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for table, columns in (
        ("an_sales_hourly", "sale_day, hour_start, currency, transactions, units, net_units, "
         "lines, return_lines"),
        ("an_sku_daily", "sale_day, sku, currency, units, net_units"),
        ("an_tenders", "sale_day, method, currency, amount_units, payments"),
        ("an_unplaced_payments", "method, currency, amount_units, payments"),
    ):  # fmt: skip
        out[table] = feed.db.fetchall(
            f"SELECT {columns} FROM {table} WHERE store_id = ? ORDER BY {columns}", (store,)
        )
    return out


@pytest.mark.parametrize("order", ORDERS)
def test_a_voided_sale_and_its_payments_count_nowhere_in_any_order(feed: Feed, order: str) -> None:
    store, control = f"S-{uuid.uuid4().hex[:8]}", f"S-{uuid.uuid4().hex[:8]}"
    kept, voided = day_of(store)
    feed(*kept)
    void = void_of(voided[0])
    for batch in ORDERS[order](voided, void):
        feed(*batch)
    feed(*day_of(control)[0])  # the same day, the voided sale never rung up
    assert rollups(feed, store) == rollups(feed, control)
    day = DAY.date().isoformat()
    got = daily_summary(feed.db, store, day)
    assert dataclasses.replace(got, store_id=control) == daily_summary(feed.db, control, day)
    assert (got.transactions, got.net, got.return_lines) == (2, {"EUR": Decimal("4.16")}, 2)
    assert [t.method for t in got.tenders] == ["CARD"]
    assert "SKU-COFFEE" not in {s.sku for s in got.top_skus}
    # A second post-void of the sale, and the first one resent, change nothing.
    again = feed.apply_events(void_of(voided[0]), void)
    assert [r.event_id for r in again.duplicates] == [void[1]["event_id"]]
    assert rollups(feed, store) == rollups(feed, control)


def test_a_void_whose_sale_never_comes_changes_nothing(feed: Feed) -> None:
    store = f"S-{uuid.uuid4().hex[:8]}"
    kept, voided = day_of(store)
    feed(*kept)
    before = rollups(feed, store)
    feed(void_of(voided[0]))
    assert rollups(feed, store) == before


def test_a_void_breaking_the_rules_is_a_permanent_error(feed: Feed) -> None:
    store = f"S-{uuid.uuid4().hex[:8]}"
    kept, _ = day_of(store)
    feed(*kept)
    bad = void_of(kept[0])
    bad[1]["voided_event_id"] = bad[1]["event_id"]
    with pytest.raises(PermanentError, match="voided_event_id"):
        feed(bad)
    assert daily_summary(feed.db, store, DAY.date().isoformat()).transactions == 2
