"""The demo's summary says what each figure counts: events or receipts, stock now or
reorder suggestions during the run, all the audit's flags or the reconciliation's."""

from __future__ import annotations

from collections import Counter

from tillstream.demo.summary import deliveries_line, flags_line, shelves, stock_lines
from tillstream.demo.view import Snapshot
from tillstream.simulate.driver import Stats


def test_refused_events_are_told_apart_from_refused_receipts() -> None:
    stats = Stats(
        sent=Counter(S001=1000), accepted=Counter(S001=978), rejected=Counter(S001=22),
        refused_receipts=Counter(S001=7, S002=4), poslog_files=12,
    )  # fmt: skip
    line = deliveries_line(stats)
    assert line.startswith("tills sent 1,000 events (12 as POSLog files): 978 accepted, 22 ")
    assert (
        "22 refused by the edges as intended (the events of 11 receipts with a card number "
        "typed into a text field: each its sale and its payments)"
    ) in line


def test_stock_now_and_reorder_suggestions_are_two_figures() -> None:
    found = shelves(
        [
            {"store_id": "S001", "sku": "MILK-1L", "on_hand": "64.000"},
            {"store_id": "S001", "sku": "BANANAS", "on_hand": "7.250"},  # reorder point 8 kg
            {"store_id": "S002", "sku": "EGGS-10", "on_hand": "-1.000"},
        ]
    )
    now, suggested = stock_lines(found, Snapshot(low_stock=5))
    assert now == (
        "stock now (ERP): 3 store-SKUs, 2 at or below their reorder point, 1 below zero "
        "(lowest: S002 EGGS-10 -1.000)"
    )
    assert suggested.startswith(
        "reorder suggestions: 5 store-SKUs reached their reorder point at some time"
    )


def test_the_reconciliation_flags_are_named_as_part_of_the_audits() -> None:
    last = Snapshot(audit_flags={"S001": 8, "S002": 4}, flags=0)
    assert flags_line(last) == (
        "audit: 12 open flags in all; of them sale/payment reconciliation "
        "(payment_mismatch, payment_without_sale): 0"
    )
