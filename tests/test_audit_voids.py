"""Post-voids in the sales audit: the voided sale out of the store-day's money (its totals,
payments and the till's expected cash), both numbers used (no gap), the post-voids per till
and cashier in the read API, the page and the command line; in any order, once, nothing
flagged before the post-voids are read. On SQLite and a real PostgreSQL."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.audit_support import DAY, Event, StoreDay, local
from tests.test_audit import SETTINGS, audit_api, audited, open_flags
from tillstream.cli import main
from tillstream.dev.samples import sample_sale_void
from tillstream_consumers.audit import SalesAudit, queries
from tillstream_consumers.audit.reading import HOLD_SECONDS
from tillstream_consumers.runtime.api import PermanentError
from tillstream_consumers.runtime.testing import ConsumerHarness


def voided_day(store: str, day: date = DAY) -> tuple[list[Event], list[Event]]:
    """A clean store-day with two post-voids on T01: a cash sale rung with the wrong tender
    (its cash given back) and a sale the customer walked away from, half paid by card. The
    day's events (published in time order), and its post-voids."""
    sd = StoreDay(store, day)
    sd.store_event("STORE_DAY_OPEN", local(day, 7))
    till = sd.till("T01", "op-1")
    till.open(local(day, 8))
    till.sell(local(day, 9))
    wrong = till.sell(local(day, 10))
    voids = [till.post_void(local(day, 10, 5), wrong)]
    till.sell(local(day, 11), "CARD")
    walked = till.sell(local(day, 12), "CARD")
    walked[1][1]["amount"] = Decimal("0.50")  # the card paid part of it
    voids.append(till.post_void(local(day, 12, 5), walked))
    till.sell(local(day, 13))
    till.close(local(day, 20), totals=True)
    sd.store_event("STORE_DAY_CLOSE", local(day, 21))
    events = sorted(sd.all_events(), key=lambda e: e[1]["occurred_at"])
    return events, voids


def net(event: Event) -> Decimal:
    amount: Decimal = event[1]["voided_amount"]
    return amount


def test_a_post_void_takes_its_sale_out_of_the_days_money_in_any_order(db_url: str) -> None:
    store = "PV-1"
    events, voids = voided_day(store)
    # Without its post-voids the day is short in cash, a receipt half paid, numbers missing.
    without = audited(db_url, [e for e in events if e[0] != "sale_void"])
    assert {kind for _, kind, _ in open_flags(without.db)} == {
        "receipt_gap",
        "payment_mismatch",
        "over_short",
        "till_totals_mismatch",
    }
    without.apply_events(*voids)
    assert open_flags(without.db) == set()
    detail = queries.store_day(without.db, store, DAY, datetime.now(UTC), SETTINGS)
    assert detail is not None
    total = str(net(voids[0]) + net(voids[1]))
    voided = {"count": 2, "amount": total, "currency": "EUR"}
    assert detail["post_voids_by_till"] == {"T01": voided}
    assert detail["post_voids_by_cashier"] == {"op-1": voided}
    assert [t["transactions"] for t in detail["tills"]] == [3]  # the voided two left out
    assert [v["number"] for v in detail["post_voids"]] == ["000005", "000008"]
    assert all(v["sale_received"] and v["counted"] for v in detail["post_voids"])
    [cash] = [b for b in detail["balances"] if b["tender"] == "CASH"]
    assert cash["over_short"] == "0.00"
    # The same day of other stores, read in other orders and batches (post-voids before
    # their sales too): the same.
    for seed in range(3):
        other = f"{store}-{seed}"
        shuffled, _ = voided_day(other)
        random.Random(seed).shuffle(shuffled)
        for start in range(0, len(shuffled), 5):
            without.apply_events(*shuffled[start : start + 5])
        without.consumer.settle(without.db, datetime.now(UTC))
        assert open_flags(without.db) == set(), seed
        again = queries.store_day(without.db, other, DAY, datetime.now(UTC), SETTINGS)
        assert again is not None
        assert again["post_voids_by_till"]["T01"] == voided


def test_a_void_before_its_sale_uses_both_numbers_and_its_stated_amount(db_url: str) -> None:
    """The post-void is read, its sale not yet (the payment is): no gap (the post-void names
    the receipt), no payment without a sale, the amount it states; then the sale comes."""
    store = "PV-2"
    events, voids = voided_day(store)
    wrong_sale = next(e for e in events if e[1]["event_id"] == voids[0][1]["voided_event_id"])
    harness = audited(db_url, [e for e in events if e is not wrong_sale])
    assert open_flags(harness.db) == set()
    detail = queries.store_day(harness.db, store, DAY, datetime.now(UTC), SETTINGS)
    assert detail is not None
    first = detail["post_voids"][0]
    assert not first["sale_received"] and first["amount"] == str(net(voids[0]))
    assert first["voided_number"] == wrong_sale[1]["receipt_number"]
    harness.apply_events(wrong_sale)
    assert open_flags(harness.db) == set()
    detail = queries.store_day(harness.db, store, DAY, datetime.now(UTC), SETTINGS)
    assert detail is not None and detail["post_voids"][0]["sale_received"]
    # A second post-void of the same sale takes a number, and counts for nothing more.
    second = {**voids[0][1], "event_id": sample_sale_void(wrong_sale[1])["event_id"]}
    second.update(receipt_number="000013", occurred_at=local(DAY, 14))
    harness.apply_events(("sale_void", second))
    detail = queries.store_day(harness.db, store, DAY, datetime.now(UTC), SETTINGS)
    assert detail is not None
    assert [v["counted"] for v in detail["post_voids"]] == [True, True, False]
    assert detail["post_voids_by_till"]["T01"]["count"] == 2
    assert open_flags(harness.db) == set()  # 14:00: before the till settled at 20:00


def test_nothing_is_flagged_before_the_post_voids_are_read(db_url: str) -> None:
    """A consumer catching up reads sales, payments and till events first: the short cash,
    the half-paid receipt and the post-voids' numbers must wait for the post-voids."""
    today = datetime.now(UTC).date()  # not over: only the reading clears a finding
    events, _ = voided_day("PV-3", today)
    start = int(datetime.now(UTC).timestamp() * 1000)
    stamped = [(e, r, start + i) for i, (e, r) in enumerate(events)]
    harness = ConsumerHarness(SalesAudit(SETTINGS), db_url)
    for topic in ("sale", "payment", "till_event", "sale_void"):
        batch = [s for s in stamped if s[0] == topic]
        harness.apply_events(*((e, r) for e, r, _ in batch), published_ms=[m for *_, m in batch])
        harness.consumer.settle(harness.db, datetime.now(UTC))
        assert open_flags(harness.db) == set(), f"after the {topic} topic"
    later = datetime.now(UTC) + timedelta(seconds=HOLD_SECONDS + 1)
    harness.consumer.settle(harness.db, later)
    assert open_flags(harness.db) == set()


async def test_the_read_api_page_and_cli_show_post_voids_per_till_and_cashier(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    events, voids = voided_day("PV-4")
    harness = audited(url, events)
    total = str(net(voids[0]) + net(voids[1]))
    async with audit_api(harness) as client:
        detail = (await client.get(f"/v1/audit/days/PV-4/{DAY.isoformat()}")).json()
        page = (await client.get(f"/audit/PV-4/{DAY.isoformat()}")).text
    voided = {"count": 2, "amount": total, "currency": "EUR"}
    assert detail["post_voids_by_cashier"] == {"op-1": voided}
    assert 'id="post-voids"' in page and f"op-1 2 ({total} EUR)" in page
    runner = CliRunner()
    shown = runner.invoke(main, ["audit", "--db", url, "--store", "PV-4", "--day", str(DAY)])
    assert shown.exit_code == 0, shown.output
    assert "Post-voids" in shown.output and f"T01 2 ({total} EUR)" in shown.output
    as_json: dict[str, Any] = json.loads(
        runner.invoke(
            main, ["audit", "--db", url, "--store", "PV-4", "--day", str(DAY), "--json"]
        ).output
    )
    assert as_json["post_voids_by_till"] == detail["post_voids_by_till"]
    harness.db.close()


def test_a_void_breaking_the_rules_is_dead_lettered_naming_it(db_url: str) -> None:
    events, voids = voided_day("PV-5")
    harness = audited(db_url, [e for e in events if e[0] != "sale_void"])
    bad = {**voids[0][1], "voided_amount": Decimal("-1")}
    with pytest.raises(PermanentError, match="voided_amount: must be zero or positive"):
        harness.apply_events(("sale_void", bad))
