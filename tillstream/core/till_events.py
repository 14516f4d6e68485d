"""Till and store-day control events: what each kind means, and when one is valid.

Written once here for every channel (HTTP, POSLog) and for the sales audit that reads them
(issue #14). The kinds follow the ARTS tender-settlement model: a till's closing balance is
its opening float + what it took in + loans + paid in - pickups - paid out; the tender
declaration is what was counted at close, and the difference is the cashier's over/short.

Amounts are never negative: the kind gives the direction. A kind either carries money
(``tenders`` required), may carry it (a till close may give the till's own expected
amounts), or carries none.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Literal

Problem = tuple[str, str]
"""(field path, message), as :mod:`tillstream.core.rules` gives them."""

WrittenKind = Literal[
    "SIGN_ON",
    "SIGN_OFF",
    "TILL_OPEN",
    "TILL_CLOSE",
    "OPENING_FLOAT",
    "PICKUP",
    "LOAN",
    "PAID_IN",
    "PAID_OUT",
    "NO_SALE",
    "TENDER_DECLARATION",
    "STORE_DAY_OPEN",
    "STORE_DAY_CLOSE",
]
"""The kinds a till or a POSLog file may send: the schema's ``TillEventKind``
(``tillstream.core.events``) but ``OTHER``, which only an older reader sees, never written."""

STORE_DAY_KINDS: frozenset[str] = frozenset({"STORE_DAY_OPEN", "STORE_DAY_CLOSE"})
"""Kinds about the store's business day, not the till they name: the store's to post (the
edge takes them from the store's token only), and the day's open and close to the audit."""
MONEY_IN: frozenset[str] = frozenset({"OPENING_FLOAT", "LOAN", "PAID_IN"})
"""Kinds that put money into the till."""
MONEY_OUT: frozenset[str] = frozenset({"PICKUP", "PAID_OUT"})
"""Kinds that take money out of the till."""
WITH_AMOUNTS: frozenset[str] = MONEY_IN | MONEY_OUT | {"TENDER_DECLARATION"}
"""Kinds that are about money: at least one tender amount is required."""
MAY_HAVE_AMOUNTS: frozenset[str] = WITH_AMOUNTS | {"TILL_CLOSE"}
"""A till close may state what the till expected per tender; other kinds carry no money."""

_ZERO = Decimal(0)


def till_event_problems(record: Mapping[str, Any]) -> list[Problem]:
    """Every rule a till event record breaks (amounts against its kind)."""
    kind = str(record.get("kind"))
    tenders: list[Mapping[str, Any]] = list(record.get("tenders") or [])
    problems: list[Problem] = []
    if kind in WITH_AMOUNTS and not tenders:
        problems.append(("tenders", f"a {kind} event needs at least one tender amount"))
    if tenders and kind not in MAY_HAVE_AMOUNTS:
        problems.append(("tenders", f"a {kind} event carries no amounts; send an empty list"))
    if tenders and not record.get("currency"):
        problems.append(("currency", "required when the event has tender amounts"))
    seen: set[str] = set()
    for i, tender in enumerate(tenders):
        if Decimal(tender["amount"]) < _ZERO:
            problems.append(
                (f"tenders[{i}].amount", "must be zero or positive; the kind gives the direction")
            )
        if tender["tender"] in seen:
            problems.append((f"tenders[{i}].tender", "each tender type at most once per event"))
        seen.add(str(tender["tender"]))
    return problems
