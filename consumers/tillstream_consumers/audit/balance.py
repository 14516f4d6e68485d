"""Till balance: what a till should hold of each tender against what was counted (over/short
per till and cashier), and against the till's own totals at settlement.

expected cash = opening float + cash taken - cash refunded - pickups + loans + paid in - paid out

A till's drawer is counted once, at its last declaration; where each cashier has a drawer of
their own (``per-cashier``, ``drawers.py``), each cashier's is counted at their own last one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from tillstream.core.settings import Settings
from tillstream.core.till_events import MONEY_IN, MONEY_OUT
from tillstream_consumers.audit.drawers import PER_CASHIER, SPLITS, UNKNOWN, signed_on_at
from tillstream_consumers.audit.facts import Control, Tender, in_currency
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
    terminal: str,
    controls: Sequence[Control],
    payments: Sequence[Tender],
    currency: str | None = None,
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
            f"till {terminal}, {tender}: the till's own total at settlement is "
            f"{in_currency(theirs, currency)}, its events at head office add up to "
            f"{in_currency(ours[tender], currency)}",
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
    cashiers: Mapping[str, str | None] | None = None,
    currency: str | None = None,
) -> tuple[list[Balance], list[Flag]]:
    """Declared against expected per tender, as of the till's last declaration (each
    cashier's own last one, with per-cashier drawers: ``cashiers`` gives each sale's)."""
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
    attribution = settings.audit_drawer_attribution
    if attribution == PER_CASHIER:
        return _per_cashier(
            terminal, controls, payments, settled, settings, cashiers or {}, currency
        )
    declaration = declarations[-1]
    cutoff = declaration.occurred_at
    expected = expected_amounts(terminal, controls, payments, cutoff)
    operator = declaration.operator_id or signed_on_at(controls, terminal, cutoff)
    balances = [
        Balance(terminal, operator, tender, expected[tender], declared)
        for tender, declared in sorted(declaration.amounts)
    ]
    # A shared drawer is nobody's alone: its flag names no cashier (the view splits it).
    shared = attribution in SPLITS
    whose = None if shared else operator
    flags = [
        _over_short(b, declaration, f"{terminal} {b.tender}", whose, currency, shared)
        for b in balances
        if abs(b.over_short) > settings.audit_over_short_tolerance
    ]
    return balances, flags


def _over_short(
    b: Balance,
    declaration: Control,
    subject: str,
    cashier: str | None,
    currency: str | None,
    shared: bool = False,
) -> Flag:
    whose = " (a shared drawer: see its cashiers)" if shared else ""
    whose = f" (cashier {cashier})" if cashier else whose
    return Flag(
        OVER_SHORT,
        b.terminal_id,
        subject,
        f"till {b.terminal_id}, {b.tender}: declared {in_currency(b.declared, currency)}, "
        f"expected {in_currency(b.expected, currency)}: "
        f"{'short' if b.over_short < 0 else 'over'} by "
        f"{in_currency(abs(b.over_short), currency)}{whose}",
        amount=b.over_short,
        operator_id=cashier,
        events=(declaration.event_id,),
    )


def _per_cashier(
    terminal: str,
    controls: Sequence[Control],
    payments: Sequence[Tender],
    settled: datetime | None,
    settings: Settings,
    cashiers: Mapping[str, str | None],
    currency: str | None,
) -> tuple[list[Balance], list[Flag]]:
    """Each cashier's own drawer: their float, movements and takings (a movement is its
    operator's, a payment its sale's cashier's, else whoever was signed on) against their
    own last declaration. A cashier who took money and declared nothing is flagged."""

    def of_control(c: Control) -> str:
        return c.operator_id or signed_on_at(controls, terminal, c.occurred_at) or UNKNOWN

    def of_payment(p: Tender) -> str:
        return (
            cashiers.get(p.sale_event_id)
            or signed_on_at(controls, terminal, p.occurred_at)
            or UNKNOWN
        )

    last: dict[str, Control] = {}
    for c in sorted(controls, key=lambda c: (c.occurred_at, c.event_id)):
        if c.kind == "TENDER_DECLARATION":
            last[of_control(c)] = c  # a recount replaces the cashier's earlier count
    balances: list[Balance] = []
    flags: list[Flag] = []
    for cashier, declaration in sorted(last.items(), key=lambda kv: (kv[1].occurred_at, kv[0])):
        expected = expected_amounts(
            terminal,
            [c for c in controls if of_control(c) == cashier],
            [p for p in payments if of_payment(p) == cashier],
            declaration.occurred_at,
        )
        for tender, declared in sorted(declaration.amounts):
            b = Balance(terminal, cashier, tender, expected[tender], declared)
            balances.append(b)
            if abs(b.over_short) > settings.audit_over_short_tolerance:
                subject = f"{terminal} {tender} {cashier}"
                flags.append(
                    _over_short(
                        b, declaration, subject, None if cashier == UNKNOWN else cashier, currency
                    )
                )
    if settled is not None:
        took = {of_control(c) for c in controls if c.amounts and c.kind in MONEY_IN | MONEY_OUT}
        took |= {of_payment(p) for p in payments if p.signed}
        flags += [
            Flag(
                NO_DECLARATION,
                terminal,
                f"{terminal} {cashier}",
                f"till {terminal}: cashier {cashier} had money in a drawer of their own and "
                "declared none",
                operator_id=None if cashier == UNKNOWN else cashier,
            )
            for cashier in sorted(took - set(last))
        ]
    return balances, flags
