"""A store-day's tills as an auditor reads them: each till with everyone who worked its
drawer (shifts, receipts, sales, their share of the over/short), each balance with whose it
is, and the over/short per cashier, as the chain attributes drawers (``drawers.py``)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any

from tillstream.core.till_events import STORE_DAY_KINDS
from tillstream_consumers.audit.checks import DayAudit
from tillstream_consumers.audit.drawers import Work, shares, worked
from tillstream_consumers.audit.facts import StoreDayFacts, local_iso


def tills_view(
    facts: StoreDayFacts, audit: DayAudit, attribution: str, currency: str | None
) -> tuple[list[dict[str, Any]], dict[str, Decimal], list[dict[str, Any]]]:
    """The tills with everyone who worked them (shifts, receipts, sales, their share of the
    over/short), the over/short per cashier, and the balances with their shares."""
    offset = facts.utc_offset_minutes

    def local(at: datetime | None) -> str | None:
        return None if at is None else local_iso(at, offset)

    controls = [c for c in facts.controls if c.kind not in STORE_DAY_KINDS]
    by_cashier: dict[str, Decimal] = defaultdict(Decimal)
    share_of: dict[tuple[str, str], Decimal] = defaultdict(Decimal)  # (till, cashier)
    balances = []
    counted: dict[str, tuple[datetime, list[Work]]] = {}  # till -> its count, who worked to it
    for b in audit.balances:
        if b.terminal_id not in counted:  # a shared drawer is split up to the till's last count
            count = max(
                c.occurred_at
                for c in controls
                if c.terminal_id == b.terminal_id and c.kind == "TENDER_DECLARATION"
            )
            work = worked(b.terminal_id, controls, facts.transactions, facts.voided, count)
            counted[b.terminal_id] = (count, work)
        count, work = counted[b.terminal_id]
        split = shares(b.over_short, b.operator_id, work, attribution, count)
        for cashier, amount in split.items():
            by_cashier[cashier] += amount
            share_of[(b.terminal_id, cashier)] += amount
        balances.append(
            {
                "terminal_id": b.terminal_id,
                "operator_id": b.operator_id,
                "tender": b.tender,
                "expected": str(b.expected),
                "declared": str(b.declared),
                "over_short": str(b.over_short),
                "currency": currency,
                "attributed": {k: str(v) for k, v in sorted(split.items())},
            }
        )
    tills = []
    for t in audit.tills:
        work = worked(t.terminal_id, controls, facts.transactions, facts.voided)
        tills.append(
            {
                "terminal_id": t.terminal_id,
                "operators": list(t.operators),
                "transactions": t.transactions,
                "settled_at": local(t.closed_at),
                "cashiers": [
                    {
                        "operator_id": w.operator_id,
                        "shifts": [
                            {"signed_on": local(s.signed_on), "signed_off": local(s.signed_off)}
                            for s in w.shifts
                        ],
                        "receipts": w.receipts,
                        "sales": str(w.sales),
                        "over_short": _share(share_of, t.terminal_id, w.operator_id),
                        "currency": currency,
                    }
                    for w in work
                ],
            }
        )
    return tills, by_cashier, balances


def _share(shares: dict[tuple[str, str], Decimal], till: str, cashier: str) -> str | None:
    found = shares.get((till, cashier))
    return None if found is None else str(found)
