"""The flags the sales audit must raise for a plan, worked out from the plan alone.

The rules are docs/audit.md's, written here a second time on purpose (a checker that called
the audit's own code would agree with its bugs): a till's numbers of the day, read as a
series (the text before the trailing digits) and a number, must have no hole between two
that arrived; a settled till's declared tenders must match opening float + payments taken -
refunded - pickups + loans + paid in - paid out, as of the declaration, within the
tolerance; a till that traded must be settled. A post-voided sale is out of the money (its
payments in no drawer), and a post-void's own number is used like a receipt's. The plan
keeps everything else clean (balanced receipts, payments and post-voids before each
settlement, the store-day closed last), so any other flag is a false one.
"""

from __future__ import annotations

import itertools
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from chaos.plan import Plan

MONEY = Decimal(10000)  # ten-thousandths, as the audit stores amounts
TOLERANCE = Decimal("1.00")
"""The audit's default over/short tolerance (TILLSTREAM_AUDIT_OVER_SHORT_TOLERANCE)."""
TILL_SIGN = {"OPENING_FLOAT": 1, "LOAN": 1, "PAID_IN": 1, "PICKUP": -1, "PAID_OUT": -1}
PAYMENT_SIGN = {"CAPTURED": 1, "REFUNDED": -1}
_NUMBER = re.compile(r"^(.*?)(\d+)$")

FlagKey = tuple[str, str, str, str, str]
"""(kind, store, business day, till, subject) as the audit names a flag."""


@dataclass
class _Till:
    numbers: list[str] = field(default_factory=list)
    money: list[tuple[datetime, str, Decimal]] = field(default_factory=list)
    """(time, tender, signed amount) of every payment and cash movement."""
    declared: list[tuple[datetime, dict[str, Decimal]]] = field(default_factory=list)
    settled: bool = False


def planted_flags(plan: Plan) -> dict[FlagKey, int | None]:
    """Every flag the audit must hold open after the run, with its amount (ten-thousandths;
    None where money is not the point)."""
    tills: dict[tuple[str, str, str], _Till] = defaultdict(_Till)
    sale_till: dict[str, tuple[str, str, str]] = {}
    for step in plan.all_steps():
        if step.refused:  # refused at the edge: its number is a hole, its money nowhere
            continue
        for kind, record in step.events:
            if kind == "payment" and str(record["sale_event_id"]) in step.voided:
                continue  # post-voided: given back, in no drawer
            _read(kind, record, tills, sale_till)
    flags: dict[FlagKey, int | None] = {}
    for (store, day, terminal), till in tills.items():
        for subject in _holes(terminal, till.numbers):
            flags[("receipt_gap", store, day, terminal, subject)] = None
        if not till.settled:
            flags[("till_not_closed", store, day, terminal, terminal)] = None
        for at, declared in till.declared:
            for tender, amount in declared.items():
                held = sum((a for t, k, a in till.money if k == tender and t <= at), Decimal(0))
                if abs(amount - held) > TOLERANCE:
                    key = ("over_short", store, day, terminal, f"{terminal} {tender}")
                    flags[key] = int((amount - held) * MONEY)
    return flags


def _read(
    kind: str,
    record: dict[str, Any],
    tills: dict[tuple[str, str, str], _Till],
    sale_till: dict[str, tuple[str, str, str]],
) -> None:
    if kind in ("sale", "sale_void"):  # a post-void takes a number of its till's too
        key = (record["store_id"], record["business_day"].isoformat(), record["terminal_id"])
        sale_till[str(record["event_id"])] = key
        tills[key].numbers.append(record["receipt_number"])
    elif kind == "payment":
        sign = PAYMENT_SIGN.get(record["status"], 0)
        if sign:  # a payment counts on its sale's till and day
            till = tills[sale_till[str(record["sale_event_id"])]]
            till.money.append((record["occurred_at"], record["method"], sign * record["amount"]))
    elif kind == "till_event" and record["sequence_number"] is not None:  # not the back office
        key = (record["store_id"], record["business_day"].isoformat(), record["terminal_id"])
        till = tills[key]
        till.numbers.append(record["sequence_number"])
        amounts = {t["tender"]: t["amount"] for t in record["tenders"]}
        at = record["occurred_at"]
        if record["kind"] == "TENDER_DECLARATION":
            till.declared.append((at, amounts))
        elif record["kind"] == "TILL_CLOSE":
            till.settled = True
        elif record["kind"] in TILL_SIGN:
            till.money += [(at, t, TILL_SIGN[record["kind"]] * a) for t, a in amounts.items()]


def _holes(terminal: str, numbers: list[str]) -> list[str]:
    """Each run of numbers missing between two that arrived, as ``T01 01-000124`` or
    ``T01 01-000124..01-000126``, series by series."""
    series: dict[str, set[tuple[int, int]]] = defaultdict(set)
    for number in numbers:
        if match := _NUMBER.match(number):
            series[match[1]].add((int(match[2]), len(match[2])))
    out = []
    for prefix, found in series.items():
        ordered = sorted(found)
        for (low, width), (high, _) in itertools.pairwise(ordered):
            if high - low > 1:
                first, last = f"{prefix}{low + 1:0{width}d}", f"{prefix}{high - 1:0{width}d}"
                out.append(f"{terminal} {first if high - low == 2 else f'{first}..{last}'}")
    return out
