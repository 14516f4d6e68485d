"""Post-voids in the CRM: the voided sale's visit, spend, points and store visit as if it had
never happened, whichever the CRM reads first, once; erasure erases what it keeps for it. On
SQLite and a real PostgreSQL through the real Applier."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from tests.test_crm import T0, Feed, request, sale
from tillstream.core.codec import AvroCodec
from tillstream.dev.samples import sample_sale_void
from tillstream_consumers.crm import load_profile
from tillstream_consumers.crm.tables import PERSONAL_TABLES
from tillstream_consumers.runtime.api import PermanentError

Event = tuple[str, dict[str, Any]]


@pytest.fixture
def feed(db_url: str, codec: AvroCodec) -> Any:
    f = Feed(db_url, codec)
    yield f
    f.db.close()


def void(sold: Event, **changes: Any) -> Event:
    return "sale_void", {**sample_sale_void(sold[1]), **changes}


def visits_of(customer: str) -> list[Event]:
    """10.00 at S-A, 20.00 at S-B (the one voided), 25.00 back at S-A, 3.00 at S-A: points
    10, 30, 5, 8 as sold; without the second sale 10, 0 (never below zero), 3."""
    return [
        sale(customer, "S-A", T0, "10.00"),
        sale(customer, "S-B", T0 + timedelta(hours=1), "20.00"),
        sale(customer, "S-A", T0 + timedelta(hours=2), "-25.00"),
        sale(customer, "S-A", T0 + timedelta(hours=3), "3.00"),
    ]


ORDERS = {
    "sale, then its void": lambda sales, v: [sales, [v]],
    "the void first": lambda sales, v: [[v], sales],
    "one batch": lambda sales, v: [[*sales, v]],
    "one batch, the void first": lambda sales, v: [[v, *sales]],
}


@pytest.mark.parametrize("order", ORDERS)
def test_a_post_void_takes_the_sale_off_the_profile_in_any_order(feed: Feed, order: str) -> None:
    voided, control = f"C-{uuid.uuid4().hex[:8]}", f"C-{uuid.uuid4().hex[:8]}"
    sales = visits_of(voided)
    post_void = void(sales[1])
    for batch in ORDERS[order](sales, post_void):
        feed(*batch)
    feed(*(e for i, e in enumerate(visits_of(control)) if i != 1))  # as if never sold
    got, want = load_profile(feed.db, voided), load_profile(feed.db, control)
    assert got is not None and want is not None
    assert dataclasses.replace(got, customer_id=control) == want
    assert (got.visits, got.points, got.favourite_store) == (3, 3, "S-A")
    assert [(s.currency, s.visits, s.total) for s in got.spend] == [("EUR", 3, Decimal("-12"))]
    assert feed.db.fetchall(
        "SELECT store_id FROM crm_store_visits WHERE customer_id = ?", (voided,)
    ) == [("S-A",)]
    # A second post-void of the sale, and the first one resent, change nothing.
    again = feed.apply_events(void(sales[1]), post_void)
    assert [r.event_id for r in again.duplicates] == [post_void[1]["event_id"]]
    assert load_profile(feed.db, voided) == got


def test_a_customers_only_visit_voided_leaves_no_profile_and_last_visits_follow(
    feed: Feed,
) -> None:
    once, twice = f"C-{uuid.uuid4().hex[:8]}", f"C-{uuid.uuid4().hex[:8]}"
    only = sale(once, "S-A", T0, "5.00")
    first = sale(twice, "S-A", T0, "5.00")
    last = sale(twice, "S-A", T0 + timedelta(hours=5), "7.00")
    feed(only, first, last)
    feed(void(only), void(last))
    assert load_profile(feed.db, once) is None
    assert feed.db.fetchall("SELECT * FROM crm_spend WHERE customer_id = ?", (once,)) == []
    profile = load_profile(feed.db, twice)
    assert profile is not None
    assert (profile.visits, profile.points, profile.last_visit) == (1, 5, T0)
    assert feed.db.fetchone(
        "SELECT visits, last_visit FROM crm_store_visits WHERE customer_id = ?", (twice,)
    ) == (1, "2026-03-02T09:00:00.000000Z")


def test_erasure_erases_what_is_kept_to_undo_a_sale_and_a_later_void_is_harmless(
    feed: Feed,
) -> None:
    c = f"C-{uuid.uuid4().hex[:8]}"
    sold = sale(c, "S-A", T0, "5.00")
    feed(sold, sale(c, "S-A", T0 + timedelta(hours=1), "2.00"))
    assert "crm_sales" in PERSONAL_TABLES
    assert feed.db.fetchone("SELECT COUNT(*) FROM crm_sales WHERE customer_id = ?", (c,)) == (2,)
    feed(request(c, "ERASE", T0 + timedelta(days=1)))
    feed(void(sold))  # the sale is forgotten with its customer: nothing to take back
    for table in PERSONAL_TABLES:
        assert feed.db.fetchall(f"SELECT * FROM {table} WHERE customer_id = ?", (c,)) == []
    assert load_profile(feed.db, c) is None


def test_a_void_breaking_the_rules_is_a_permanent_error(feed: Feed) -> None:
    c = f"C-{uuid.uuid4().hex[:8]}"
    sold = sale(c, "S-A", T0, "5.00")
    feed(sold)
    bad = void(sold, currency=None)
    with pytest.raises(PermanentError, match="currency: required when voided_amount is given"):
        feed(bad)
    profile = load_profile(feed.db, c)
    assert profile is not None and profile.visits == 1
