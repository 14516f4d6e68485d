"""The shared rules of a valid event (tillstream/core/rules.py): what they accept and refuse, that
the simulator's traffic passes them, and that the consumers can hold every time they let in.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tillstream.cli import main
from tillstream.core import rules
from tillstream.core.settings import Settings
from tillstream.core.topics import EVENT_TOPICS
from tillstream.dev.samples import (
    sample_payment,
    sample_sale,
    sample_sale_void,
    sample_stock_movement,
)
from tillstream.simulate.poslog import poslog
from tillstream.simulate.shopper import StoreTraffic
from tillstream_consumers.analytics import Analytics
from tillstream_consumers.crm import CrmProfiles, load_profile
from tillstream_consumers.erp import ErpInventory
from tillstream_consumers.runtime.api import PermanentError
from tillstream_consumers.runtime.db import Database
from tillstream_consumers.runtime.testing import ConsumerHarness
from tillstream_edge.poslog import parse_poslog

NOW = datetime(2026, 11, 25, 10, 30, tzinfo=UTC)


def sale(**totals: str) -> dict[str, Any]:
    value = sample_sale("S1", at=NOW)
    value["totals"] = {**value["totals"], **{k: Decimal(v) for k, v in totals.items()}}
    return value


def fields(problems: list[tuple[str, str]]) -> list[str]:
    return [field for field, _ in problems]


def test_the_simulators_sales_pass_directly_and_through_poslog() -> None:
    traffic = StoreTraffic("S1", random.Random(11))
    kinds: set[str] = set()
    for i in range(3000):
        tx = traffic.transaction(i % 3, NOW + timedelta(seconds=i))
        kinds |= {line["kind"] for line in tx.sale["lines"]}
        assert rules.event_problems("sale", tx.sale) == [], tx.sale
        if i % 5 == 0:
            for event, record in parse_poslog(poslog(tx)).events:
                assert rules.event_problems(event, record) == [], record
    assert kinds == {"SALE", "RETURN", "VOID"}  # every line kind was exercised


def test_totals_must_match_the_lines_within_the_rounding_tolerance() -> None:
    good = sale()  # 2 x 1.19 + 0.734 kg x 2.99 - 2.49 = 2.08
    assert rules.sale_problems(good) == []
    assert good["totals"]["net_amount"] == Decimal("2.08")
    three_lines = Decimal("0.03")
    assert rules.sale_problems(sale(net_amount=str(Decimal("2.08") + three_lines))) == []
    assert fields(rules.sale_problems(sale(net_amount="2.12"))) == ["totals.net_amount"]
    refused = rules.sale_problems(sale(net_amount="-99999999999999.9999"))
    assert fields(refused) == ["totals.net_amount"]
    assert "99999" not in refused[0][1] and "0.03" in refused[0][1]  # names the limit only
    # Tax added to prices (US sales tax) is the other accepted net.
    assert rules.sale_problems(sale(tax_amount="0.17", net_amount="2.25")) == []
    assert fields(rules.sale_problems(sale(gross_amount="5.00", net_amount="5.00"))) == [
        "totals.gross_amount"
    ]
    assert fields(rules.sale_problems(sale(discount_amount="1000.00", net_amount="-997.92"))) == [
        "totals.discount_amount"
    ]
    assert fields(rules.sale_problems(sale(tax_amount="1000.00"))) == ["totals.tax_amount"]


def test_a_void_line_cancels_a_sale_line_and_stated_line_taxes_must_add_up() -> None:
    value = sale()
    milk = value["lines"][0]
    value["lines"].append({**milk, "line_number": 4, "kind": "VOID"})
    # The void not taken off the totals: neither its amount nor its tax.
    assert fields(rules.sale_problems(value)) == ["totals.gross_amount", "totals.tax_amount"]
    value["totals"] = {
        **value["totals"],
        "gross_amount": Decimal("-0.30"),
        "tax_amount": value["totals"]["tax_amount"] - milk["tax_amount"],
        "net_amount": Decimal("-0.30"),
    }
    assert rules.sale_problems(value) == []
    taxed = sale()
    for line in taxed["lines"]:
        line["tax_amount"] = Decimal("0.10")
    # SALE + SALE - RETURN = 0.10, which the totals must say when every line states its tax.
    taxed["totals"] = {**taxed["totals"], "tax_amount": Decimal("0.50")}
    assert fields(rules.sale_problems(taxed)) == ["totals.tax_amount"]
    taxed["totals"] = {**taxed["totals"], "tax_amount": Decimal("0.10")}
    assert rules.sale_problems(taxed) == []


def test_quantities_follow_the_line_kind_and_the_quantity_type() -> None:
    value = sale()
    value["lines"][1]["quantity"] = Decimal(0)
    value["lines"][2]["quantity"] = Decimal(-1)
    assert fields(rules.sale_problems(value))[:2] == ["lines[1].quantity", "lines[2].quantity"]
    count = sample_stock_movement("S1", at=NOW) | {"quantity_type": "COUNT"}
    assert rules.event_problems("stock_movement", count) == []
    assert rules.event_problems("stock_movement", count | {"quantity": Decimal(0)}) == []
    negative = rules.event_problems("stock_movement", count | {"quantity": Decimal(-3)})
    assert negative == [("quantity", "a COUNT sets stock on hand, so it cannot be negative")]
    change = count | {"quantity_type": "CHANGE", "quantity": Decimal(-3)}
    assert rules.event_problems("stock_movement", change) == []  # stock going out


def test_a_post_void_names_another_event_and_states_its_amount_in_a_currency() -> None:
    void = sample_sale_void(sale())
    assert rules.event_problems("sale_void", void) == []
    assert rules.event_problems("sale_void", void | {"voided_amount": None, "currency": None}) == []

    def broken(**changes: Any) -> list[str]:
        return fields(rules.event_problems("sale_void", void | changes))

    assert broken(voided_event_id=void["event_id"]) == ["voided_event_id"]
    assert broken(voided_amount=Decimal("-2.08")) == ["voided_amount"]
    assert broken(voided_amount=Decimal("NaN")) == ["voided_amount"]
    assert broken(currency=None) == ["currency"]  # an amount needs its currency
    assert broken(voided_amount=None) == ["currency"]  # and a currency its amount
    assert broken(receipt_number=void["voided_receipt_number"]) == ["receipt_number"]
    # The same number on another till is that till's own number.
    assert broken(receipt_number=void["voided_receipt_number"], voided_terminal_id="T09") == []
    assert broken(occurred_at=datetime(1, 1, 1, tzinfo=UTC)) == ["occurred_at"]


@pytest.mark.parametrize(
    ("at", "ok"),
    [
        ("9999-12-31T23:59:59-14:00", False),
        ("0001-01-01T00:00:00Z", False),
        ("0002-12-31T23:59:59+14:00", False),
        ("9998-01-01T00:00:00Z", False),
        ("0003-01-01T00:00:00Z", True),
        ("9997-12-31T23:59:59.999999Z", True),
        ("2026-11-25T10:30:00+01:00", True),
    ],
)
def test_times_every_consumer_can_store(at: str, ok: bool) -> None:
    problem = rules.time_problem(datetime.fromisoformat(at))
    assert (problem is None) is ok, problem
    if not ok:
        assert problem is not None and "0003-01-01T00:00:00Z" in problem


def test_the_plausibility_window() -> None:
    window = rules.TimeWindow(timedelta(days=30), timedelta(hours=1))
    assert window.problem(NOW - timedelta(days=29), NOW) is None
    assert window.problem(NOW + timedelta(minutes=59), NOW) is None
    old = window.problem(NOW - timedelta(days=31), NOW)
    assert old is not None and "30 day(s)" in old and "tillstream edge import" in old
    ahead = window.problem(NOW + timedelta(hours=2), NOW)
    assert ahead is not None and "1 hour(s)" in ahead and "TILLSTREAM_EDGE_MAX_FUTURE" in ahead


# -- the consumers hold what the edge lets in ----------------------------------------------


def extreme_events(store: str) -> list[tuple[str, dict[str, Any]]]:
    """A sale, its payment and a stock count at each end of the accepted range, with the
    store-local offsets that push local time furthest out."""
    events: list[tuple[str, dict[str, Any]]] = []
    for at, offset in ((rules.EARLIEST, -14 * 60), (rules.LATEST, 14 * 60)):
        value = sample_sale(store, at=at, customer=f"C-{store}")
        value["utc_offset_minutes"] = offset
        payment = sample_payment(value)
        payment["occurred_at"] = at
        count = sample_stock_movement(store, at=at) | {"quantity_type": "COUNT"}
        events += [("sale", value), ("payment", payment), ("stock_movement", count)]
    return events


@pytest.mark.parametrize("kind", ["erp", "crm", "analytics"])
def test_every_consumer_applies_events_at_both_ends_of_the_range(
    kind: str, db_url: str, tmp_path: Path
) -> None:
    consumer = {"erp": ErpInventory, "crm": CrmProfiles, "analytics": Analytics}[kind](Settings())
    harness = ConsumerHarness(consumer, db_url)
    try:
        events = [
            (e, r) for e, r in extreme_events("S-EDGE") if EVENT_TOPICS[e].name in consumer.topics
        ]
        outcome = harness.apply_events(*events)
        assert len(outcome.applied) == len(events)
        if kind == "crm":
            profile = load_profile(harness.db, "C-S-EDGE")
            assert profile is not None
            assert (profile.first_visit, profile.last_visit) == (rules.EARLIEST, rules.LATEST)
    finally:
        harness.db.close()
    if kind == "analytics":  # its other production database
        duck = ConsumerHarness(Analytics(Settings()), f"duckdb:///{tmp_path / 'a.duckdb'}")
        try:
            events = [(e, r) for e, r in extreme_events("S-DUCK") if e in ("sale", "payment")]
            assert len(duck.apply_events(*events).applied) == len(events)
        finally:
            duck.db.close()


def test_crm_show_reads_a_year_one_visit_stored_before_the_edge_refused_it(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    harness = ConsumerHarness(CrmProfiles(Settings()), url)
    try:
        harness.apply("sale", sample_sale("S1", at=NOW, customer="C-OLD"))
        # What the CRM wrote for a year-1 sale before: strftime's unpadded '1-01-01...'.
        harness.db.execute(
            "UPDATE crm_profiles SET first_visit = ? WHERE customer_id = ?",
            ("1-01-01T00:00:00.000000Z", "C-OLD"),
        )
    finally:
        harness.db.close()
    shown = CliRunner().invoke(main, ["crm", "show", "C-OLD", "--db", url, "--json"])
    assert shown.exit_code == 0, shown.output
    assert '"first_visit": "0001-01-01T00:00:00+00:00"' in shown.output


# -- the ERP refuses with the edge's rule -------------------------------------------------


def test_the_erp_refuses_what_the_edge_refuses_with_the_same_rule(db_url: str) -> None:
    harness = ConsumerHarness(ErpInventory(Settings()), db_url)
    try:
        count = sample_stock_movement("S-RULE", at=NOW) | {
            "quantity_type": "COUNT",
            "quantity": Decimal(-2),
        }
        edge_says = rules.event_problems("stock_movement", count)
        with pytest.raises(PermanentError) as refused:
            harness.apply("stock_movement", count)
        assert edge_says and edge_says[0][1] in str(refused.value)
        zero = sample_sale("S-RULE", at=NOW)
        zero["lines"][0]["quantity"] = Decimal(0)
        line_rule = rules.sale_line_quantity_problem(Decimal(0))
        with pytest.raises(PermanentError) as refused_line:
            harness.apply("sale", zero)
        assert line_rule is not None and line_rule in str(refused_line.value)
        assert ("lines[0].quantity", line_rule) in rules.event_problems("sale", zero)
        assert Database.fetchall(harness.db, "SELECT * FROM erp_ledger") == []
    finally:
        harness.db.close()


def test_the_window_settings_take_seconds_or_iso_durations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tillstream.core.settings import SettingsError, load_settings

    monkeypatch.setenv("TILLSTREAM_EDGE_MAX_EVENT_AGE", "P7D")
    monkeypatch.setenv("TILLSTREAM_EDGE_MAX_FUTURE", "600")
    loaded = load_settings()
    assert (loaded.edge_max_event_age, loaded.edge_max_future) == (
        timedelta(days=7),
        timedelta(minutes=10),
    )
    for bad in ("0", "999999999999", "x"):  # none, past what the window can subtract, garbage
        monkeypatch.setenv("TILLSTREAM_EDGE_MAX_EVENT_AGE", bad)
        with pytest.raises(SettingsError, match="TILLSTREAM_EDGE_MAX_EVENT_AGE"):
            load_settings()
    monkeypatch.delenv("TILLSTREAM_EDGE_MAX_EVENT_AGE")
    assert load_settings().edge_max_event_age == timedelta(days=30)
