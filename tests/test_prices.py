"""The price rule (tillstream.core.prices): store over chain, windows in the store's time zone,
latest start among equals; no clock, no Kafka."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tillstream.core.prices import format_amount, is_valid, valid_price, window

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
PUBLISHED = datetime(2026, 11, 1, tzinfo=UTC)


def price(amount: str, store: str | None = None, **validity: Any) -> dict[str, Any]:
    return {
        "event_id": f"id-{amount}-{store}",
        "sku": "SKU-1",
        "store_id": store,
        "amount": Decimal(amount),
        "currency": "EUR",
        "valid_from": None,
        "valid_from_day": None,
        "valid_until": None,
        "valid_until_day": None,
        "published_at": PUBLISHED,
        **validity,
    }


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_open_ended_chain_price_is_valid_always() -> None:
    chain = price("1.99")
    assert window(chain, BERLIN) == (None, None)
    assert valid_price([chain], "S001", at("2026-12-01T10:00:00+01:00"), BERLIN) is chain


def test_the_stores_price_wins_over_the_chains_only_within_its_window() -> None:
    chain = price("1.99")
    store = price(
        "1.49", "S001", valid_from_day=date(2026, 12, 1), valid_until_day=date(2026, 12, 3)
    )
    prices = [store, chain]
    # Local midnight in Berlin (UTC+1 in winter) starts the window: 23:00 UTC the day before.
    assert valid_price(prices, "S001", at("2026-11-30T22:59:59+00:00"), BERLIN) is chain
    assert valid_price(prices, "S001", at("2026-11-30T23:00:00+00:00"), BERLIN) is store
    # valid_until_day is inclusive: through 23:59:59.999999 local on Dec 3.
    assert valid_price(prices, "S001", at("2026-12-03T23:59:59+01:00"), BERLIN) is store
    assert valid_price(prices, "S001", at("2026-12-04T00:00:00+01:00"), BERLIN) is chain
    # Another store never gets S001's price.
    assert valid_price(prices, "S002", at("2026-12-02T12:00:00+01:00"), BERLIN) is chain


def test_day_bounds_follow_the_stores_zone() -> None:
    sale = price("0.99", valid_from_day=date(2026, 12, 1))
    instant = at("2026-12-01T03:00:00+00:00")  # Dec 1 in Berlin, still Nov 30 in New York
    assert is_valid(sale, instant, BERLIN)
    assert not is_valid(sale, instant, NEW_YORK)
    assert is_valid(sale, instant + timedelta(hours=2), NEW_YORK)  # 00:00 EST


def test_day_bounds_across_a_daylight_saving_change() -> None:
    # Berlin's clocks go forward on 2026-03-29: that day has 23 hours.
    day = price("2.00", valid_from_day=date(2026, 3, 29), valid_until_day=date(2026, 3, 29))
    start, end = window(day, BERLIN)
    assert start == at("2026-03-28T23:00:00+00:00") and end == at("2026-03-29T22:00:00+00:00")


def test_instant_bounds_until_is_exclusive() -> None:
    promo = price(
        "0.50",
        valid_from=at("2026-12-01T08:00:00+00:00"),
        valid_until=at("2026-12-01T12:00:00+00:00"),
    )
    assert is_valid(promo, at("2026-12-01T09:00:00+01:00"), BERLIN)  # 08:00 UTC
    assert is_valid(promo, at("2026-12-01T11:59:59.999999+00:00"), BERLIN)
    assert not is_valid(promo, at("2026-12-01T12:00:00+00:00"), BERLIN)
    assert not is_valid(promo, at("2026-12-01T07:59:59+00:00"), BERLIN)


def test_among_equals_the_latest_start_wins_whatever_the_order() -> None:
    old = price("1.99")
    newer = price("2.09", valid_from_day=date(2026, 6, 1))
    newest = price("2.19", valid_from=at("2026-11-15T00:00:00+00:00"))
    when = at("2026-12-01T10:00:00+01:00")
    for order in ([old, newer, newest], [newest, old, newer], [newer, newest, old]):
        assert valid_price(order, "S001", when, BERLIN) is newest
    # Before the newest one starts, the next latest.
    assert valid_price([old, newer, newest], "S001", at("2026-11-14T12:00:00+00:00"), BERLIN) is (
        newer
    )


def test_store_price_wins_even_when_the_chain_price_starts_later() -> None:
    store = price("1.00", "S001")
    chain = price("3.00", valid_from_day=date(2026, 11, 30))
    assert valid_price([chain, store], "S001", at("2026-12-01T10:00:00+01:00"), BERLIN) is store


def test_no_valid_price() -> None:
    future = price("1.00", valid_from_day=date(2027, 1, 1))
    assert valid_price([future], "S001", at("2026-12-01T10:00:00+01:00"), BERLIN) is None
    assert valid_price([], "S001", at("2026-12-01T10:00:00+01:00"), BERLIN) is None


def test_a_naive_instant_is_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        valid_price([price("1.00")], "S001", datetime(2026, 12, 1, 10), BERLIN)


def test_offsets_are_instants() -> None:
    promo = price("0.50", valid_from=datetime(2026, 12, 1, 9, tzinfo=timezone(timedelta(hours=1))))
    assert is_valid(promo, at("2026-12-01T08:00:00+00:00"), NEW_YORK)
    assert not is_valid(promo, at("2026-12-01T07:59:00+00:00"), NEW_YORK)


@pytest.mark.parametrize(
    ("amount", "text"),
    [("1.9900", "1.99"), ("0.1250", "0.125"), ("5", "5.00"), ("10.0000", "10.00"), ("0", "0.00")],
)
def test_amounts_are_decimal_strings(amount: str, text: str) -> None:
    assert format_amount(Decimal(amount)) == text


ZONES = [ZoneInfo(z) for z in ("Pacific/Kiritimati", "Etc/GMT+12", "Europe/Berlin", "UTC")]
EDGES_OF_THE_CALENDAR = [
    {"valid_until_day": date(9999, 12, 31)},  # ERP exports' "for ever"
    {"valid_until": datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)},
    {"valid_from_day": date(1, 1, 1)},  # before the year 1 in UTC, east of Greenwich
    {"valid_from_day": date(1, 1, 1), "valid_until_day": date(9999, 12, 31)},
    {"valid_from": datetime.min.replace(tzinfo=UTC), "valid_until_day": date(9999, 12, 30)},
    {"valid_from_day": date(9999, 12, 31)},
]


@pytest.mark.parametrize("zone", ZONES, ids=str)
@pytest.mark.parametrize("validity", EDGES_OF_THE_CALENDAR, ids=repr)
def test_the_ends_of_the_calendar_never_overflow(zone: ZoneInfo, validity: dict[str, Any]) -> None:
    edge = price("1.00", **validity)
    for when in (
        datetime(2026, 12, 1, 10, tzinfo=UTC),
        datetime.min.replace(tzinfo=UTC),
        datetime.max.replace(tzinfo=UTC),
    ):
        window(edge, zone)
        is_valid(edge, when, zone)
        valid_price([edge, price("2.00", "S001", **validity)], "S001", when, zone)


@pytest.mark.parametrize("zone", ZONES, ids=str)
def test_an_end_in_the_year_9999_is_open_ended(zone: ZoneInfo) -> None:
    for end in ({"valid_until_day": date(9999, 12, 31)}, {"valid_until_day": date(9999, 1, 1)},
                {"valid_until": datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)}):  # fmt: skip
        forever = price("1.00", valid_from_day=date(2026, 3, 1), **end)
        assert window(forever, zone)[1] is None
        assert valid_price([forever], "S001", datetime.max.replace(tzinfo=UTC), zone) is forever
    # The day before is an end like any other.
    assert window(price("1.00", valid_until_day=date(9998, 12, 30)), zone)[1] is not None


def test_a_day_starting_before_the_calendar_in_utc_is_since_ever() -> None:
    ancient = price("1.00", valid_from_day=date(1, 1, 1))  # 0000-12-31T23:00Z in Berlin
    assert window(ancient, BERLIN) == (None, None)
    assert valid_price([ancient], "S001", datetime.min.replace(tzinfo=UTC), BERLIN) is ancient
