"""The POSLog conformance corpus: every document against expectations written from its XML.

`tests/data/poslog/corpus/` holds real public documents (each folder's README names the
repository, path, commit and licence); `tests/data/poslog/shaped/` holds documents written by
tillstream in the shape of vendors whose public files carry no licence (each says which
original it follows). Beside each `X.xml`, `X.expected.json` says what each transaction must
become, written by reading the XML (`corpus/FORMAT.md`). A document is read as the edge of the
store it names reads it: the converter, then the edge's own rules and Avro encoding.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tillstream.core import rules
from tillstream.core.codec import AvroCodec
from tillstream.core.units import unit_of_code
from tillstream_edge.poslog import NAMESPACE, PoslogError
from tillstream_edge.poslog_check import CheckedTransaction, Checker

DATA = Path(__file__).parent / "data" / "poslog"
EXPECTED = sorted([*DATA.glob("corpus/*/*.expected.json"), *DATA.glob("shaped/*/*.expected.json")])


def _name(path: Path) -> str:
    return str(path.relative_to(DATA)).removesuffix(".expected.json")


def test_the_corpus_is_there_with_its_sources() -> None:
    """Each source folder says where its documents come from (and under which licence)."""
    folders = {p.parent for p in EXPECTED}
    assert len(EXPECTED) >= 8
    for folder in folders:
        readme = (folder / "README.md").read_text()
        assert "github.com" in readme, folder
        if folder.parent.name == "corpus":
            assert "icen" in readme, f"{folder}: no licence named"  # Licence / License
        for xml in folder.glob("*.xml"):
            assert xml.with_suffix(".expected.json").exists(), f"{xml} has no expectations"
            assert xml.name in readme, f"{xml.name} is not described in {folder}/README.md"


@pytest.mark.parametrize("expected_path", EXPECTED, ids=_name)
def test_every_transaction_becomes_what_its_xml_says(codec: AvroCodec, expected_path: Path) -> None:
    expected = json.loads(expected_path.read_text())
    document = expected_path.with_name(expected_path.name.removesuffix(".expected.json") + ".xml")
    checker = Checker(
        codec,
        currency=expected.get("store_currency", "EUR"),
        timezone=ZoneInfo(expected.get("store_timezone", "UTC")),
    )
    try:
        if expected["document"] == "refused":
            with pytest.raises(PoslogError):
                checker.check(document.read_bytes())
            return
        checked = checker.check(document.read_bytes())
    finally:
        checker.close()
    wanted = expected["transactions"]
    got = checked.transactions
    assert [t.index for t in got] == list(range(1, len(wanted) + 1)), "a transaction was lost"
    problems: list[str] = []
    for want, have in zip(wanted, got, strict=True):
        where = f"#{have.index} ({want.get('sequence')})"
        problems += [f"{where}: {p}" for p in _compare(want, have)]
    assert not problems, "\n".join(problems)


def _compare(want: Mapping[str, Any], have: CheckedTransaction) -> list[str]:
    outcome = want["outcome"]
    if outcome in ("skipped", "set_aside"):
        if have.outcome != outcome:
            return [f"expected {outcome} ({want.get('reason')}), got {_shown(have)}"]
        return []
    if have.outcome != "converted":
        return [f"expected {outcome}, got {have.outcome}: {have.kind}: {have.reason}"]
    by_type: dict[str, list[dict[str, Any]]] = {}
    for event_type, record in have.events:
        by_type.setdefault(event_type, []).append(record)
    if outcome == "sale":
        return _sale(want, by_type)
    if outcome == "sale_void":
        return _void(want, by_type)
    if outcome == "till_events":
        return _till_events(want, by_type)
    return [f"unknown outcome {outcome!r} in the expectations"]


def _sale(want: Mapping[str, Any], events: dict[str, list[dict[str, Any]]]) -> list[str]:
    if len(events.get("sale", [])) != 1:
        return [f"expected one sale, got {sorted(events)}"]
    sale = events["sale"][0]
    problems = _fields(
        want,
        sale,
        {
            "store": "store_id",
            "terminal": "terminal_id",
            "receipt": "receipt_number",
            "business_day": "business_day",
            "currency": "currency",
            "cashier": "cashier_id",
            "customer": "customer_id",
        },
    )
    lines = [
        (ln["kind"], ln["sku"], _dec(ln["quantity"]), _dec(ln["extended_amount"]))
        for ln in sale["lines"]
    ]
    expected_lines = [
        (ln["kind"], ln["sku"], _quantity(ln), _dec(ln["extended_amount"])) for ln in want["lines"]
    ]
    if lines != expected_lines:
        problems.append(f"lines {lines} != expected {expected_lines}")
    totals = {k.removesuffix("_amount"): _dec(v) for k, v in sale["totals"].items()}
    expected_totals = {k: _dec(v) for k, v in want["totals"].items()}
    tolerance = rules.ROUNDING_PER_LINE * max(len(sale["lines"]), 1)
    for key, value in expected_totals.items():
        if abs(totals[key] - value) > tolerance:
            problems.append(f"totals.{key} {totals[key]} != expected {value}")
    payments = [
        (p["method"], p["status"], _dec(p["amount"]), (p["card"] or {}).get("last_four"))
        for p in events.get("payment", [])
    ]
    expected_payments = [
        (p["method"], p["status"], _dec(p["amount"]), p.get("last_four")) for p in want["payments"]
    ]
    if payments != expected_payments:
        problems.append(f"payments {payments} != expected {expected_payments}")
    return problems


def _void(want: Mapping[str, Any], events: dict[str, list[dict[str, Any]]]) -> list[str]:
    if len(events.get("sale_void", [])) != 1:
        return [f"expected one sale_void, got {sorted(events)}"]
    void = events["sale_void"][0]
    problems = _fields(want, void, {"store": "store_id", "terminal": "terminal_id"})
    voided = want["voided"]
    key = "|".join(
        [
            voided.get("store", want["store"]),
            voided["terminal"],
            voided["sequence"],
            voided["business_day"],
        ]
    )
    if void["voided_event_id"] != str(uuid.uuid5(NAMESPACE, key)):
        named = f"{void['voided_terminal_id']}/{void['voided_receipt_number']}"
        problems.append(f"voids {named}, not {key}")
    amount = want.get("amount")
    if (None if amount is None else _dec(amount)) != void["voided_amount"]:
        problems.append(f"voided_amount {void['voided_amount']} != expected {amount}")
    if "cashier" in want and want["cashier"] != void["cashier_id"]:
        problems.append(f"cashier_id {void['cashier_id']} != expected {want['cashier']}")
    return problems


def _till_events(want: Mapping[str, Any], events: dict[str, list[dict[str, Any]]]) -> list[str]:
    have = [
        (
            e["kind"],
            {a["tender"]: _dec(a["amount"]) for a in e["tenders"]},
            e["operator_id"],
        )
        for e in events.get("till_event", [])
    ]
    expected = [
        (
            e["kind"],
            {tender: _dec(amount) for tender, amount in e["tenders"].items()},
            e.get("operator"),
        )
        for e in want["events"]
    ]
    problems = [] if have == expected else [f"till events {have} != expected {expected}"]
    reasons = [e.get("reason") for e in want["events"]]
    got = [e["reason"] for e in events.get("till_event", [])]
    for reason, found in zip(reasons, got, strict=False):
        if reason is not None and reason != found:
            problems.append(f"reason {found!r} != expected {reason!r}")
    return problems


def _fields(want: Mapping[str, Any], have: Mapping[str, Any], names: dict[str, str]) -> list[str]:
    problems = []
    for key, field in names.items():
        if key not in want:
            continue
        value = have[field]
        value = value.isoformat() if hasattr(value, "isoformat") else value
        if value != want[key]:
            problems.append(f"{field} {value!r} != expected {want[key]!r}")
    return problems


def _quantity(line: Mapping[str, Any]) -> Decimal:
    """The expected quantity in tillstream's unit (pounds become kilograms...)."""
    quantity = _dec(line["quantity"])
    found = unit_of_code(line.get("unit") or "EA")
    if found is None:
        return quantity
    return (quantity * found[1]).quantize(Decimal("0.001"))


def _dec(value: Any) -> Decimal:
    return Decimal(str(value)).normalize()


def _shown(have: CheckedTransaction) -> str:
    if have.outcome == "converted":
        return f"converted to {[t for t, _ in have.events]}"
    return f"{have.outcome}: {have.kind}: {have.reason}"
