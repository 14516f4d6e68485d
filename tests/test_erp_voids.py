"""Post-voids in the ERP: the voided sale's stock, demand and reorder suggestion as if it had
never been rung up, whichever the ERP reads first, once; on SQLite, PostgreSQL and DuckDB
through the real Applier."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.test_erp import SETTINGS, T0, Erp, movement, records, sale, store
from tillstream.core.codec import AvroCodec
from tillstream.dev.samples import sample_sale_void
from tillstream_consumers.runtime.api import PermanentError


@pytest.fixture(params=["sqlite", "postgresql", "duckdb"])
def erp(request: pytest.FixtureRequest, tmp_path: Path, codec: AvroCodec) -> Iterator[Erp]:
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
    else:
        url = f"{request.param}:///{tmp_path / ('erp.' + request.param)}"
    e = Erp(url, codec, SETTINGS)
    yield e
    e.db.close()


def void_of(value: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**sample_sale_void(value), **changes}


def daily_units(erp: Erp, s: str, sku: str) -> int:
    row = erp.db.fetchone(
        "SELECT COALESCE(SUM(units), 0) FROM erp_daily_sales WHERE store_id = ? AND sku = ?",
        (s, sku),
    )
    return int(row[0]) if row else 0


ORDERS = {
    "sale, then its void": lambda sale, void: [[sale], [void]],
    "the void first": lambda sale, void: [[void], [sale]],
    "one batch": lambda sale, void: [[sale, void]],
    "one batch, the void first": lambda sale, void: [[void, sale]],
}


@pytest.mark.parametrize("order", ORDERS)
def test_a_post_void_takes_back_stock_and_demand_in_any_order(erp: Erp, order: str) -> None:
    s = store()
    erp.set_item("MILK", 7000)  # static point 7: the sale would cross it
    erp.apply(movement(s, "MILK", "10"), movement(s, "APPLES", "5"))
    kept = sale(s, ("SALE", "APPLES", "1"))
    voided = sale(s, ("SALE", "MILK", "4"), ("SALE", "APPLES", "0.5"), ("VOID", "MILK", "1"))
    void = void_of(voided)
    erp.apply(kept)
    for batch in ORDERS[order](voided, void):
        erp.apply(*batch)
    assert erp.on_hand(s, "MILK") == Decimal("10.000")
    assert erp.on_hand(s, "APPLES") == Decimal("4.000")
    assert daily_units(erp, s, "MILK") == 0 and daily_units(erp, s, "APPLES") == 1000
    triggers = {str(x["trigger_event_id"]) for x in erp.suggestions()}
    if order == "sale, then its void":  # published before the void was known; re-armed
        assert triggers == {voided["event_id"]}
        alerted = erp.db.fetchone(
            "SELECT alerted FROM erp_stock WHERE store_id = ? AND sku = 'MILK'", (s,)
        )
        assert alerted == (0,)
        reversed_rows = erp.db.fetchall(
            "SELECT line_no, sku, qty_change FROM erp_ledger "
            "WHERE store_id = ? AND kind = 'post_void' ORDER BY line_no",
            (s,),
        )
        assert reversed_rows == [(1, "MILK", 4000), (2, "APPLES", 500), (3, "MILK", -1000)]
    else:  # the voided sale was never applied: no ledger rows, no suggestion
        assert triggers == set()
        assert all(kind != "post_void" for *_, kind in erp.ledger(s))
        assert len(erp.ledger(s)) == 3
    # A second post-void of the sale, and the first one resent, change nothing.
    again = erp.apply(void_of(voided), void)
    assert [r.event_id for r in again.duplicates] == [void["event_id"]]
    assert erp.on_hand(s, "MILK") == Decimal("10.000") and daily_units(erp, s, "MILK") == 0


def test_the_reversal_is_in_event_time_at_the_sales_own_time(erp: Erp) -> None:
    """A count taken after the sale saw the goods gone: the post-void corrects the count's
    adjustment, as a change from before a count does, and stock on hand follows the count."""
    s = store()
    erp.set_item("BREAD", 0)
    erp.apply(movement(s, "BREAD", "10", at=T0))
    voided = sale(s, ("SALE", "BREAD", "2"))  # at T0 + a few seconds
    count_at = voided["occurred_at"] + timedelta(minutes=1)
    erp.apply(voided)
    erp.apply(movement(s, "BREAD", "8", "COUNT", "COUNTED", at=count_at))
    erp.apply(movement(s, "BREAD", "1", at=count_at + timedelta(minutes=1)))
    erp.apply(void_of(voided, occurred_at=count_at + timedelta(minutes=2)))
    assert erp.on_hand(s, "BREAD") == Decimal("9.000")  # the count's 8, then +1
    counted = erp.db.fetchone(
        "SELECT qty_change FROM erp_ledger WHERE store_id = ? AND kind = 'counted'", (s,)
    )
    assert counted == (-2000,)  # 10 on the shelf as far as the ledger knows, 8 counted
    reversal = erp.db.fetchone(
        "SELECT qty_change, occurred_at, line_no FROM erp_ledger "
        "WHERE store_id = ? AND kind = 'post_void'",
        (s,),
    )
    assert reversal == (2000, voided["occurred_at"].isoformat(), 1)
    total = erp.db.fetchone("SELECT SUM(qty_change) FROM erp_ledger WHERE store_id = ?", (s,))
    assert total == (9000,)  # the ledger still sums to stock on hand


def test_a_void_whose_sale_never_comes_or_of_another_store_changes_nothing(erp: Erp) -> None:
    s, other = store(), store()
    erp.set_item("MILK", 0)
    erp.apply(movement(s, "MILK", "5"))
    theirs = sale(other, ("SALE", "MILK", "1"))
    never = void_of(sale(s, ("SALE", "MILK", "1")))
    erp.apply(never, void_of(theirs, store_id=s))  # a sale is voided by its own store only
    erp.apply(theirs)
    assert erp.on_hand(s, "MILK") == Decimal("5.000")
    assert erp.on_hand(other, "MILK") == Decimal("-1.000")
    assert erp.db.fetchone("SELECT COUNT(*) FROM erp_voids WHERE store_id = ?", (s,)) == (2,)


def test_a_void_breaking_the_rules_is_a_permanent_error_naming_it(erp: Erp) -> None:
    s = store()
    voided = sale(s, ("SALE", "MILK", "1"))
    erp.apply(voided)
    bad = void_of(voided)
    bad["voided_event_id"] = bad["event_id"]
    with pytest.raises(PermanentError, match="voided_event_id: names the post-void itself"):
        erp.apply_records(records(bad))
    negative = void_of(voided, voided_amount=Decimal("-1"))
    with pytest.raises(PermanentError, match="voided_amount: must be zero or positive"):
        erp.apply(negative)
    assert erp.on_hand(s, "MILK") == Decimal("-1.000")  # nothing undone
    assert erp.db.fetchone("SELECT COUNT(*) FROM erp_voids") == (0,)
    assert uuid.UUID(bad["event_id"])
