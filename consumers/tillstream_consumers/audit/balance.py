"""Till balance: what a till should hold of each tender against what was counted (over/short
per till and cashier), and against the till's own totals at settlement.

expected cash = opening float + cash taken - cash refunded - pickups + loans + paid in - paid out
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from tillstream.core.settings import Settings
from tillstream.core.till_events import MONEY_IN, MONEY_OUT
from tillstream_consumers.audit.facts import Control, Tender
from tillstream_consumers.audit.flags import NO_DECLARATION, OVER_SHORT, TILL_TOTALS_MISMATCH, Flag


@dataclass(frozen=True, slots=True)
class Balance:
    """A till's declared amount of one tender against what it should hold."""

    terminal_id: str
    operator_id: str | None
    tender: str
    expected: Decimal
    declared: Decimal

    @property
    def over_short(self) -> Decimal:
        """Declared - expected: negative is short."""
        return self.declared - self.expected


def expected_amounts(
    terminal: str, controls: Sequence[Control], payments: Sequence[Tender], cutoff: datetime
) -> dict[str, Decimal]:
    """What the till should hold of each tender at ``cutoff``, from the events head office
    has: float + taken - refunded - pickups + loans + paid in - paid out."""
    expected: dict[str, Decimal] = defaultdict(Decimal)
    for c in controls:
        if c.occurred_at > cutoff:
            continue
        sign = 1 if c.kind in MONEY_IN else -1 if c.kind in MONEY_OUT else 0
        for tender, amount in c.amounts:
            expected[tender] += sign * amount
    for p in payments:
        if p.terminal_id == terminal and p.occurred_at <= cutoff:
            expected[p.method] += p.signed
    return expected


def till_totals_flags(
    terminal: str, controls: Sequence[Control], payments: Sequence[Tender]
) -> list[Flag]:
    """The till's own totals at its settlement (a TILL_CLOSE with amounts) against what its
    events at head office add up to: a difference means money events or payments the till
    made never arrived (or arrived twice)."""
    closes = sorted(
        (c for c in controls if c.kind == "TILL_CLOSE" and c.amounts),
        key=lambda c: (c.occurred_at, c.event_id),
    )
    if not closes:
        return []
    close = closes[-1]
    ours = expected_amounts(terminal, controls, payments, close.occurred_at)
    return [
        Flag(
            TILL_TOTALS_MISMATCH,
            terminal,
            f"{terminal} {tender}",
            f"till {terminal}, {tender}: the till's own total at settlement is {theirs}, its "
            f"events at head office add up to {ours[tender]}",
            amount=ours[tender] - theirs,
            events=(close.event_id,),
        )
        for tender, theirs in sorted(close.amounts)
        if ours[tender] != theirs
    ]


def balance(
    terminal: str,
    controls: Sequence[Control],
    payments: Sequence[Tender],
    settled: datetime | None,
    settings: Settings,
) -> tuple[list[Balance], list[Flag]]:
    """Declared against expected per tender, as of the till's last declaration."""
    declarations = sorted(
        (c for c in controls if c.kind == "TENDER_DECLARATION"),
        key=lambda c: (c.occurred_at, c.event_id),
    )
    if not declarations:
        if settled is None:
            return [], []
        return [], [
            Flag(
                NO_DECLARATION,
                terminal,
                terminal,
                f"till {terminal} was settled without a tender declaration",
            )
        ]
    declaration = declarations[-1]
    cutoff = declaration.occurred_at
    expected = expected_amounts(terminal, controls, payments, cutoff)
    operator = declaration.operator_id or next(
        (
            c.operator_id
            for c in sorted(controls, key=lambda c: (c.occurred_at, c.event_id), reverse=True)
            if c.kind == "SIGN_ON" and c.occurred_at <= cutoff and c.operator_id
        ),
        None,
    )
    balances = [
        Balance(terminal, operator, tender, expected[tender], declared)
        for tender, declared in sorted(declaration.amounts)
    ]
    flags = [
        Flag(
            OVER_SHORT,
            terminal,
            f"{terminal} {b.tender}",
            f"till {terminal}, {b.tender}: declared {b.declared}, expected {b.expected}: "
            f"{'short' if b.over_short < 0 else 'over'} by {abs(b.over_short)}"
            + (f" (cashier {operator})" if operator else ""),
            amount=b.over_short,
            operator_id=operator,
            events=(declaration.event_id,),
        )
        for b in balances
        if abs(b.over_short) > settings.audit_over_short_tolerance
    ]
    return balances, flags
