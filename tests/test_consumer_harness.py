"""The consumer test harness as a user's test meets it: typed samples with the parameters a
test varies, event types the type checker knows, and clear errors at run time for a
misspelt event type or field (the codec alone would raise a bare KeyError, or drop the
field without a word)."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tillstream.core.events import EVENT_TYPES, EventType
from tillstream.core.topics import EVENT_TOPICS, SALES
from tillstream.dev.samples import (
    sample_line,
    sample_payment,
    sample_sale,
    sample_sale_void,
    sample_stock_movement,
)
from tillstream_consumers.example import VisitCounter
from tillstream_consumers.runtime.testing import ConsumerHarness, UnknownEvent, UnknownField


@pytest.fixture
def harness(tmp_path: Path) -> ConsumerHarness:
    return ConsumerHarness(VisitCounter(), f"sqlite:///{tmp_path / 'visits.db'}")


def test_the_event_type_literal_is_every_event_with_a_topic() -> None:
    assert set(EventType.__args__) == set(EVENT_TYPES) == set(EVENT_TOPICS)  # type: ignore[attr-defined]


def test_samples_take_what_a_test_varies(harness: ConsumerHarness) -> None:
    at = datetime(2026, 3, 2, 9, 15, tzinfo=UTC)
    sale = sample_sale(
        "S042", at=at, customer="C-9", cashier="op-3", terminal="T04", receipt="04-000017",
        lines=[sample_line("SKU-TEA", quantity=3, unit_price="2.50"),
               sample_line("SKU-MUG", unit_price="4.00", kind="RETURN")],
    )  # fmt: skip
    assert (sale["store_id"], sale["terminal_id"], sale["cashier_id"]) == ("S042", "T04", "op-3")
    assert sale["occurred_at"] == at and str(sale["business_day"]) == "2026-03-02"
    assert [line["line_number"] for line in sale["lines"]] == [1, 2]
    assert sale["totals"]["net_amount"] == Decimal("3.50")  # 7.50 sold, 4.00 back
    cash = sample_payment(sale, method="CASH", amount=Decimal("3.50"))
    assert cash["card"] is None and str(cash["sale_event_id"]) == sale["event_id"]
    count = sample_stock_movement("S042", sku="SKU-TEA", quantity=40, quantity_type="COUNT",
                                  reason="COUNTED", gtin=None)  # fmt: skip
    void = sample_sale_void(sale, cashier="sup-2")
    for event, record in (("payment", cash), ("stock_movement", count), ("sale_void", void)):
        harness.codec.encode(event, dict(record))  # valid Avro records of their types
    harness.apply("sale", sale)
    harness.apply(SALES, sale)  # a topic constant names its event type too; applied once
    assert harness.db.fetchone("SELECT n FROM visits WHERE customer_id = 'C-9'") == (1,)


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ("sales", "no event type 'sales': the topic 'sales' carries the event type 'sale'"),
        ("tillstream.sales", "the topic 'tillstream.sales' carries the event type 'sale'"),
        ("payement", "no event type 'payement': did you mean 'payment'?"),
    ],
)
def test_an_unknown_event_type_is_named(harness: ConsumerHarness, event: str, message: str) -> None:
    with pytest.raises(UnknownEvent, match=re.escape(message)) as raised:
        harness.apply(event, sample_sale())  # type: ignore[arg-type]
    named = ", ".join(sorted(EVENT_TYPES))
    assert f"event types are {named}" in str(raised.value)


def test_an_unknown_field_is_refused_naming_it(harness: ConsumerHarness) -> None:
    sale: dict[str, Any] = {**sample_sale(customer=None), "custmer_id": "C-1"}
    with pytest.raises(UnknownField, match=re.escape(
        "sale has no field 'custmer_id' (did you mean 'customer_id'?); its fields are event_id, "
    )):  # fmt: skip
        harness.apply(SALES, sale)
    nested = sample_sale()
    nested["lines"][0]["quantiy"] = Decimal(2)  # type: ignore[typeddict-unknown-key]
    with pytest.raises(UnknownField, match=re.escape("sale.lines[0] has no field 'quantiy'")):
        harness.apply("sale", nested)
    payment: dict[str, Any] = dict(sample_payment(sample_sale()))
    payment["card"] = {"brand": "VISA", "last_four": "4242", "token": None, "pan": "x"}
    with pytest.raises(UnknownField, match=re.escape("payment.card has no field 'pan'")):
        harness.apply("payment", payment)
    # Nothing was applied: the refusal comes before the batch.
    assert harness.db.fetchone("SELECT count(*) FROM visits") == (0,)


GOOD = """
from pathlib import Path

from tillstream.core.topics import SALES
from tillstream.dev.samples import sample_line, sample_sale
from tillstream_consumers.example import VisitCounter
from tillstream_consumers.runtime.testing import ConsumerHarness


def check(tmp: Path) -> None:
    harness = ConsumerHarness(VisitCounter(), f"sqlite:///{tmp}/v.db")
    sale = sample_sale("S1", customer="C-1", cashier="op-2", lines=[sample_line("SKU-1")])
    sale["customer_id"] = "C-2"
    harness.apply("sale", sale)
    harness.apply(SALES, sale)
"""

BAD = """
from pathlib import Path

from tillstream.dev.samples import sample_sale
from tillstream_consumers.example import VisitCounter
from tillstream_consumers.runtime.testing import ConsumerHarness


def check(tmp: Path) -> None:
    harness = ConsumerHarness(VisitCounter(), f"sqlite:///{tmp}/v.db")
    sale = sample_sale("S1", custmer="C-1")
    sale["custmer_id"] = "C-2"
    harness.apply("sales", sale)
    print(sale["lines"][0]["quantiy"])
"""


def test_mypy_strict_finds_a_misspelt_event_type_and_fields(tmp_path: Path) -> None:
    """As a user's project checks its tests: ``mypy --strict`` where tillstream is installed."""
    (tmp_path / "good.py").write_text(GOOD)
    (tmp_path / "bad.py").write_text(BAD)
    done = subprocess.run(
        [str(Path(sys.executable).with_name("mypy")), "--strict", "good.py", "bad.py"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "MYPY_CACHE_DIR": str(tmp_path / ".mypy_cache")},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert not [e for e in errors if e.startswith("good.py")], done.stdout
    lines = {int(e.split(":")[1]) for e in errors if e.startswith("bad.py")}
    source = BAD.splitlines()
    wrong = {n for n, text in enumerate(source, start=1) if "custmer" in text or "sales" in text
             or "quantiy" in text}  # fmt: skip
    assert lines == wrong, done.stdout
    assert 'Unexpected keyword argument "custmer"' in done.stdout
    assert "incompatible type \"Literal['sales']\"" in done.stdout
    assert '"quantiy"' in done.stdout
