"""Inputs the audit should not believe (issue 22), rule by rule (tillstream/core/rules.py): a
business day that is no day of its sale, a UTC offset no time zone has, empty identifiers, a
currency that is no ISO code, a sale without lines, line numbers twice, negative amounts...
Each message names the field and the limit, never the value. And the traffic the project
makes itself (the simulator, in every zone, and the chaos plan) keeps every rule."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from chaos.plan import Plan
from tillstream.core import rules
from tillstream.dev.samples import (
    sample_payment,
    sample_sale,
    sample_sale_void,
    sample_stock_movement,
)
from tillstream.simulate.clock import StoreClock
from tillstream.simulate.shifts import TillShift, store_day_event
from tillstream.simulate.shopper import StoreTraffic

NOW = datetime(2026, 12, 7, 10, 30, tzinfo=UTC)
SECRET = "Q7Z9-SECRET"
"""A value no message may quote."""


def till_event(**changes: Any) -> dict[str, Any]:
    clock = StoreClock(60)
    clock.open(NOW)
    record = store_day_event("STORE_DAY_OPEN", "S1", clock, NOW, random.Random(1))[1]
    return {**record, **changes}


def problems(event: str, record: dict[str, Any]) -> dict[str, str]:
    """Field -> its messages (joined by "; "), each checked to quote no value."""
    found: dict[str, str] = {}
    for field, message in rules.event_problems(event, record):
        assert SECRET not in message
        found[field] = f"{found[field]}; {message}" if field in found else message
    return found


def sale(**changes: Any) -> dict[str, Any]:
    return {**sample_sale("S1", at=NOW), **changes}


# -- the business day ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "offset", "day", "ok"),
    [
        ("2026-12-07T10:30:00Z", 60, "2026-12-07", True),
        ("2026-12-07T10:30:00Z", 60, "2026-12-06", True),  # a night shift's day
        ("2026-12-07T10:30:00Z", 60, "2026-12-08", True),
        ("2026-12-07T10:30:00Z", 60, "2026-12-09", False),
        ("2026-12-07T10:30:00Z", 60, "2027-01-06", False),  # 30 days ahead: the tester's
        ("2026-12-07T10:30:00Z", 60, "2026-11-30", False),
        # Kiribati (+14:00) at 11:00 UTC is already the next day: two days from the UTC date.
        ("2026-12-07T11:00:00Z", 840, "2026-12-09", True),
        ("2026-12-07T11:00:00Z", 840, "2026-12-05", False),
        # Baker Island (-12:00) at 06:00 UTC is still the day before.
        ("2026-12-07T06:00:00Z", -720, "2026-12-05", True),
        ("2026-12-07T06:00:00Z", -720, "2026-12-08", False),
        ("2026-12-07T23:59:59+05:30", 330, "2026-12-08", True),  # a time with another zone
        ("2026-12-07T23:59:59+05:30", 330, "2026-12-09", False),
    ],
)
def test_the_business_day_is_the_local_date_of_the_sale_give_or_take_a_day(
    at: str, offset: int, day: str, ok: bool
) -> None:
    moment = datetime.fromisoformat(at)
    for event, record in (
        ("sale", sale()),
        ("till_event", till_event()),
        ("sale_void", sample_sale_void(sale())),
    ):
        record.update(
            occurred_at=moment, utc_offset_minutes=offset, business_day=date.fromisoformat(day)
        )
        found = problems(event, record)
        assert ("business_day" not in found) is ok, (event, found)
        if not ok:
            assert "store-local date of occurred_at" in found["business_day"]
            assert "1 day before or after" in found["business_day"]
            assert day not in found["business_day"]  # the limit, not the value


def test_the_business_day_is_not_compared_with_a_time_or_offset_that_breaks_its_own_rule() -> None:
    far = sale(occurred_at=datetime(9999, 1, 1, tzinfo=UTC), business_day=date(2026, 1, 1))
    assert list(problems("sale", far)) == ["occurred_at"]
    odd = sale(utc_offset_minutes=1_000_000, business_day=date(2026, 1, 1))
    assert list(problems("sale", odd)) == ["utc_offset_minutes"]


# -- offsets, identifiers, currencies ----------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "ok"), [(840, True), (-840, True), (0, True), (841, False), (-841, False)]
)
def test_a_utc_offset_is_one_a_time_zone_can_have(offset: int, ok: bool) -> None:
    for event, record in (
        ("sale", sale()),
        ("till_event", till_event()),
        ("sale_void", sample_sale_void(sale())),
    ):
        record["utc_offset_minutes"] = offset
        found = problems(event, record)
        assert ("utc_offset_minutes" not in found) is ok
    assert problems("sale", sale(utc_offset_minutes=1_000_000)) == {
        "utc_offset_minutes": "must be between -840 and 840 minutes (UTC-14:00 to UTC+14:00, "
        "what time zones have)"
    }


@pytest.mark.parametrize("value", ["", "   ", SECRET * 20])
def test_identifying_strings_are_neither_empty_nor_too_long(value: str) -> None:
    for event, record, field in (
        ("sale", sale(), "receipt_number"),
        ("sale", sale(), "store_id"),
        ("sale", sale(), "terminal_id"),
        ("payment", sample_payment(sale()), "terminal_id"),
        ("stock_movement", sample_stock_movement("S1", at=NOW), "store_id"),
        ("till_event", till_event(), "terminal_id"),
        ("sale_void", sample_sale_void(sale()), "terminal_id"),
    ):
        record[field] = value
        message = problems(event, record)[field]
        assert "empty" in message or "at most 200 characters" in message
    assert problems("sale", sale(receipt_number="x" * 200)) == {}
    long_number = till_event(sequence_number="1" * 201)
    assert "at most 200" in problems("till_event", long_number)["sequence_number"]
    assert problems("till_event", till_event(sequence_number=None)) == {}


@pytest.mark.parametrize("code", ["ZZZZZZ", "eur", "EU", "E1R", "ÉUR", "", SECRET])
def test_a_currency_is_an_iso_4217_code_wherever_it_is(code: str) -> None:
    void = sample_sale_void(sale())
    for event, record in (
        ("sale", sale()),
        ("payment", sample_payment(sale())),
        ("sale_void", void),
        ("till_event", till_event(kind="PAID_IN", tenders=[{"tender": "CASH", "amount": 1}])),
    ):
        record["currency"] = code
        assert "ISO 4217" in problems(event, record)["currency"], event
    assert rules.currency_problem("ZZZ") is None  # three capitals: the form, not a registry


# -- sales, payments, items ----------------------------------------------------------------------


def test_a_sale_has_lines_numbered_once_with_amounts_never_negative() -> None:
    assert problems("sale", sale(lines=[])) == {"lines": "a sale has at least one line"}
    twice = sale()
    twice["lines"][1]["line_number"] = twice["lines"][0]["line_number"]
    assert list(problems("sale", twice)) == ["lines[1].line_number"]
    zero = sale()
    zero["lines"][0]["line_number"] = 0
    assert list(problems("sale", zero)) == ["lines[0].line_number"]
    negative = sale()
    negative["lines"][0]["unit_price"] = Decimal("-1.19")
    negative["lines"][1]["discount_amount"] = Decimal("-0.01")
    assert list(problems("sale", negative)) == [
        "lines[0].unit_price",
        "lines[1].discount_amount",
    ]
    direction = problems("sale", negative)["lines[0].unit_price"]
    assert "the line's kind gives the direction" in direction
    unnamed = sale()
    unnamed["lines"][2]["sku"] = ""
    assert list(problems("sale", unnamed)) == ["lines[2].sku"]


def test_a_payment_never_moves_a_negative_amount() -> None:
    payment = sample_payment(sale())
    assert problems("payment", payment) == {}
    payment["amount"] = Decimal("-2.08")
    assert problems("payment", payment) == {
        "amount": "must be zero or more (the status gives the direction)"
    }


def test_skus_and_customer_ids_other_consumers_key_on() -> None:
    movement = sample_stock_movement("S1", at=NOW) | {"sku": " bad sku"}
    assert list(problems("stock_movement", movement)) == ["sku"]
    request = {
        "event_id": "e",
        "customer_id": "",
        "action": "ERASE",
        "reference": None,
        "requested_at": NOW,
    }
    assert list(problems("customer_request", request)) == ["customer_id"]


def test_every_broken_rule_is_named_at_once() -> None:
    bad = sale(
        utc_offset_minutes=5000,
        receipt_number="",
        currency="ZZZZZZ",
        lines=[],
        store_id=" ",
    )
    assert set(problems("sale", bad)) == {
        "utc_offset_minutes",
        "receipt_number",
        "currency",
        "lines",
        "store_id",
    }


# -- what the project makes itself keeps them ---------------------------------------------------


@pytest.mark.parametrize("offset", [-720, -300, 0, 330, 840])
def test_the_simulators_stores_keep_the_rules_in_every_zone_past_midnight(offset: int) -> None:
    clock = StoreClock(offset)
    start = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
    clock.open(start)
    shop = StoreTraffic("S1", random.Random(offset), bad_ratio=0.0, clock=clock)
    shift = TillShift("S1", 0, random.Random(offset), clock=clock)
    events = [store_day_event("STORE_DAY_OPEN", "S1", clock, start, random.Random(2))]
    events += shift.open(start)
    for i in range(300):  # a store-day running on for 20 hours, across local midnight
        at = start + timedelta(minutes=4 * i)
        tx = shop.transaction(0, at)
        events += tx.events + shift.took(tx.payments, at)
    for event, record in events:
        assert rules.event_problems(event, record) == [], (event, record)


def test_the_chaos_plan_keeps_the_rules() -> None:
    plan = Plan.new(seed=7, stores=4, events=4_000)
    checked = 0
    for step in plan.all_steps():
        if step.refused:  # a card number typed into a text field: the edge refuses it
            continue
        for event, record in step.events:
            assert rules.event_problems(event, record) == [], (event, record)
            checked += 1
    assert checked >= 4_000
