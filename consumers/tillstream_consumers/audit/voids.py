"""Post-voids in the audit: a voided sale as if it had never been rung up, and the post-voids
per till and cashier, a loss-prevention signal (docs/audit.md, "Post-voids").

A post-void takes its sale out of the store-day's money (``loading.py``): the sale's totals
and payments are neither checked nor in its till's expected cash. Both numbers stay used:
the voided receipt's and the post-void's own (``numbering.py``). Only the first post-void of
a sale counts; each is shown on the day it was done, on its till, under its cashier (the
one it names, else the till's last sign-on before it), with the voided amount: the sale's
net total, or the one the post-void states while the sale has not come.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tillstream_consumers.audit.drawers import signed_on_at
from tillstream_consumers.audit.facts import Control, PostVoid, local_iso

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class VoidTotal:
    """Post-voids of a till or a cashier: how many, and the amount voided."""

    count: int = 0
    amount: Decimal = _ZERO

    def add(self, void: PostVoid) -> VoidTotal:
        return VoidTotal(self.count + 1, self.amount + (void.amount or _ZERO))

    def as_json(self) -> dict[str, Any]:
        return {"count": self.count, "amount": str(self.amount)}


def cashier_of(void: PostVoid, controls: Sequence[Control]) -> str | None:
    """Who voided: the post-void's operator, else its till's last sign-on before it."""
    return void.cashier_id or signed_on_at(controls, void.terminal_id, void.occurred_at)


@dataclass(frozen=True)
class PostVoidView:
    """A store-day's post-voids as an auditor reads them."""

    voids: list[dict[str, Any]]
    by_till: dict[str, VoidTotal]
    by_cashier: dict[str, VoidTotal]

    def as_json(self) -> dict[str, Any]:
        return {
            "post_voids": self.voids,
            "post_voids_by_till": {k: v.as_json() for k, v in sorted(self.by_till.items())},
            "post_voids_by_cashier": {k: v.as_json() for k, v in sorted(self.by_cashier.items())},
        }


def post_void_view(
    voids: Sequence[PostVoid], controls: Sequence[Control], offset: int
) -> PostVoidView:
    """The day's post-voids (local times at ``offset``), and the totals of those that count
    (a sale's first) per till and per cashier."""
    rows: list[dict[str, Any]] = []
    by_till: dict[str, VoidTotal] = {}
    by_cashier: dict[str, VoidTotal] = {}
    for v in voids:
        cashier = cashier_of(v, controls)
        amount = v.amount
        rows.append(
            {
                "event_id": v.event_id,
                "terminal_id": v.terminal_id,
                "number": v.number,
                "cashier_id": cashier,
                "at": local_iso(v.occurred_at, offset),
                "voided_event_id": v.voided_event_id,
                "voided_terminal_id": v.voided_terminal_id,
                "voided_number": v.voided_number,
                "amount": None if amount is None else str(amount),
                "sale_received": v.sale is not None,
                "counted": v.effective,
                "reason": v.reason,
            }
        )
        if v.effective:
            by_till[v.terminal_id] = by_till.get(v.terminal_id, VoidTotal()).add(v)
            who = cashier or "?"
            by_cashier[who] = by_cashier.get(who, VoidTotal()).add(v)
    return PostVoidView(rows, by_till, by_cashier)
