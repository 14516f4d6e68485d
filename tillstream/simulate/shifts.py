"""A till's shift as the sales audit sees it: sign-on with an opening float, cash pickups when
the drawer fills up, and at close a tender declaration, the settlement and sign-off; and the
store's day, opened before the first till signs on and closed after the last one settled.

The drawer follows the till's payments, so the declaration matches what the till expects,
except for the odd cashier who comes out short (:data:`SHORT_RATIO`): the over/short the
audit (issue #14) must find. A till settles after its last payment (a customer paying at
close is in the drawer that is counted). Records are ``till_event`` contracts' shapes, with
the store's business day and offset from its :class:`~tillstream.simulate.clock.StoreClock`.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from tillstream.simulate.clock import StoreClock

OPENING_FLOAT = Decimal("150.00")
PICKUP_ABOVE = Decimal("400.00")
"""Cash in the drawer beyond which a supervisor takes a pickup to the safe."""
SHORT_RATIO = 0.2
"""Share of shifts whose declared cash is short of what the till expects (by 0.50 to 20.00:
those beyond the audit's tolerance, 1.00 by default, are flagged)."""

BACK_OFFICE = "BO"
"""The workstation a store manager opens and closes the store-day on."""


@dataclass
class TillShift:
    """One till's control events; ``numbers`` gives the till's own sequence numbers."""

    store_id: str
    till: int
    rng: random.Random
    currency: str = "EUR"
    operator: str = ""
    cash: Decimal = Decimal(0)
    """What the till expects in its drawer."""
    card: Decimal = Decimal(0)
    sequence: int = 0
    clock: StoreClock | None = None
    """The store's clock (its business day and offset); UTC without one."""
    last_payment: datetime | None = None
    """The latest payment the drawer took (or gave back): the till settles no earlier."""

    closed_at: datetime | None = None
    """When the till settled (its :meth:`close`)."""
    short_by: Decimal = Decimal(0)
    """What this shift's cashier will come out short by, decided at sign-on (a seed decides
    it, however many pickups the shift's timing gives)."""

    def open(self, at: datetime) -> list[tuple[str, dict[str, Any]]]:
        self.operator = f"op-{self.rng.randint(1, 12)}"
        if self.rng.random() < SHORT_RATIO:
            self.short_by = Decimal(self.rng.randint(50, 2000)) / 100
        self.cash = OPENING_FLOAT
        return [
            self._event("SIGN_ON", at),
            self._event("OPENING_FLOAT", at, {"CASH": OPENING_FLOAT}),
        ]

    def took(
        self, payments: list[dict[str, Any]], at: datetime
    ) -> list[tuple[str, dict[str, Any]]]:
        """Follow a receipt's payments; a pickup when the drawer holds too much cash."""
        for p in payments:
            if self.last_payment is None or p["occurred_at"] > self.last_payment:
                self.last_payment = p["occurred_at"]
            sign = {"CAPTURED": 1, "REFUNDED": -1}.get(p["status"], 0)
            if p["method"] == "CASH":
                self.cash += sign * p["amount"]
            elif p["method"] == "CARD":
                self.card += sign * p["amount"]
        if self.cash <= PICKUP_ABOVE:
            return []
        taken = (self.cash - OPENING_FLOAT).quantize(Decimal(50)) or Decimal(50)
        self.cash -= taken
        return [self._event("PICKUP", at, {"CASH": taken})]

    def gave_back(self, payments: list[dict[str, Any]], at: datetime) -> None:
        """A receipt post-voided at ``at``: the money it took goes back out of the drawer (and
        off the card total), as its payments leave the audit's expected amounts; the till
        settles no earlier."""
        if self.last_payment is None or at > self.last_payment:
            self.last_payment = at
        for p in payments:
            sign = {"CAPTURED": 1, "REFUNDED": -1}.get(p["status"], 0)
            if p["method"] == "CASH":
                self.cash -= sign * p["amount"]
            elif p["method"] == "CARD":
                self.card -= sign * p["amount"]

    def close(self, at: datetime) -> list[tuple[str, dict[str, Any]]]:
        """Count, settle and sign off at ``at``, or at the last payment if that is later."""
        at = max(at, self.last_payment or at)
        self.closed_at = at
        counted = self.cash - min(self.cash, self.short_by)
        expected = {"CASH": self.cash, "CARD": self.card}
        return [
            self._event("TENDER_DECLARATION", at, {"CASH": counted, "CARD": self.card}),
            self._event("TILL_CLOSE", at, expected),
            self._event("SIGN_OFF", at),
        ]

    def _event(
        self, kind: str, at: datetime, amounts: dict[str, Decimal] | None = None
    ) -> tuple[str, dict[str, Any]]:
        self.sequence += 1
        clock = self.clock or StoreClock()
        tenders = [
            {"tender": t, "amount": max(a, Decimal(0)).quantize(Decimal("0.01"))}
            for t, a in (amounts or {}).items()
        ]
        return (
            "till_event",
            {
                "event_id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
                "store_id": self.store_id,
                "terminal_id": f"T{self.till + 1:02d}",
                "kind": kind,
                "sequence_number": f"C{self.sequence:06d}",
                "operator_id": self.operator,
                "business_day": clock.day(at),
                "occurred_at": at,
                "utc_offset_minutes": clock.utc_offset_minutes,
                "currency": self.currency if tenders else None,
                "tenders": tenders,
                "reason": None,
                "source": "api",
            },
        )


def store_day_event(
    kind: str, store_id: str, clock: StoreClock, at: datetime, rng: random.Random
) -> tuple[str, dict[str, Any]]:
    """``STORE_DAY_OPEN`` or ``STORE_DAY_CLOSE``, from the store's back office (``BO``: no
    till, no sequence number, so no till's numbering or balance is touched)."""
    return (
        "till_event",
        {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "store_id": store_id,
            "terminal_id": BACK_OFFICE,
            "kind": kind,
            "sequence_number": None,
            "operator_id": "manager",
            "business_day": clock.day(at),
            "occurred_at": at,
            "utc_offset_minutes": clock.utc_offset_minutes,
            "currency": None,
            "tenders": [],
            "reason": None,
            "source": "api",
        },
    )
