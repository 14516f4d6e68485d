"""Who worked a till's drawer, and whose over/short it is.

A chain says how its drawers are run (``TILLSTREAM_AUDIT_DRAWER_ATTRIBUTION``):

- ``declaring``: a till's over/short is the cashier's who declared the drawer (else the
  till's last sign-on before the count);
- ``per-cashier``: each cashier has a drawer of their own and declares it: their own float,
  movements and takings against their own last declaration (``balance.py``);
- ``split-by-time``, ``split-by-sales``: one drawer shared by everyone who worked it, the
  till's over/short split among them by time signed on, or by sales taken, up to the count.
  A split is an estimate of who handled the money, not a finding about anyone.

Everyone who worked a till is shown with their shifts, receipts and sales, whatever the
setting, so an auditor sees who had access to the drawer.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal

from tillstream_consumers.audit.facts import Control, Transaction

DECLARING = "declaring"
PER_CASHIER = "per-cashier"
SPLIT_BY_TIME = "split-by-time"
SPLIT_BY_SALES = "split-by-sales"
SPLITS = frozenset({SPLIT_BY_TIME, SPLIT_BY_SALES})
ATTRIBUTIONS: dict[str, str] = {
    DECLARING: "goes to the cashier who declared the drawer",
    PER_CASHIER: "is each cashier's own: every cashier declares a drawer of their own",
    SPLIT_BY_TIME: "of a shared drawer is split by time signed on: an estimate, not a finding",
    SPLIT_BY_SALES: "of a shared drawer is split by sales taken: an estimate, not a finding",
}
"""Each setting of ``TILLSTREAM_AUDIT_DRAWER_ATTRIBUTION``, as the page and the command line
say it after "Over/short"."""
UNKNOWN = "?"
"""The cashier of money no sign-on or operator names."""

_HANDOVER = {"SIGN_OFF": 0, "TILL_CLOSE": 1, "SIGN_ON": 2}
"""What ends a shift, in the order they count at one instant: a cashier handing over signs
off as the next one signs on."""
_ZERO = Decimal(0)
_CENT = Decimal("0.01")
_UNIT = Decimal("0.0001")  # the stored precision of money (MONEY_SCALE)


@dataclass(frozen=True, slots=True)
class Shift:
    signed_on: datetime
    signed_off: datetime | None
    """None: never signed off (the till's settlement did not end it either)."""


@dataclass(frozen=True, slots=True)
class Work:
    """One cashier on one till: when they were signed on, and what they rang up."""

    operator_id: str
    shifts: tuple[Shift, ...]
    receipts: int
    sales: Decimal
    """Net total of their receipts (post-voided ones left out)."""

    def seconds(self, until: datetime) -> int:
        """Seconds signed on up to ``until`` (a shift never signed off runs to it)."""
        total = 0
        for s in self.shifts:
            end = until if s.signed_off is None else min(s.signed_off, until)
            total += max(0, int((end - s.signed_on).total_seconds()))
        return total


def signed_on_at(controls: Iterable[Control], terminal: str, at: datetime) -> str | None:
    """The operator of ``terminal``'s last sign-on at or before ``at``: who was at the till."""
    found = [
        (c.occurred_at, c.event_id, c.operator_id)
        for c in controls
        if c.kind == "SIGN_ON"
        and c.terminal_id == terminal
        and c.occurred_at <= at
        and c.operator_id
    ]
    return max(found)[2] if found else None


def worked(
    terminal: str,
    controls: Sequence[Control],
    transactions: Sequence[Transaction],
    voided: frozenset[str],
    until: datetime | None = None,
) -> list[Work]:
    """Everyone who worked ``terminal`` (up to ``until``, if given): each sign-on runs to its
    sign-off, the next sign-on or the till's settlement; a receipt is its cashier's, else the
    one signed on when it was rung up."""
    shifts: dict[str, list[Shift]] = defaultdict(list)
    current: tuple[str, datetime] | None = None
    for c in sorted(controls, key=lambda c: (c.occurred_at, _HANDOVER.get(c.kind, 3), c.event_id)):
        if c.terminal_id != terminal or (until is not None and c.occurred_at > until):
            continue
        if c.kind == "SIGN_OFF" and c.operator_id and current and current[0] != c.operator_id:
            continue  # another cashier's sign-off: theirs ended already
        if c.kind in _HANDOVER and current is not None:
            shifts[current[0]].append(Shift(current[1], c.occurred_at))
            current = None
        if c.kind == "SIGN_ON" and c.operator_id:
            current = (c.operator_id, c.occurred_at)
    if current is not None:
        shifts[current[0]].append(Shift(current[1], None))
    receipts: dict[str, int] = defaultdict(int)
    sales: dict[str, Decimal] = defaultdict(Decimal)
    for t in transactions:
        if t.terminal_id != terminal or t.event_id in voided:
            continue
        if until is not None and t.occurred_at > until:
            continue
        who = t.cashier_id or signed_on_at(controls, terminal, t.occurred_at) or UNKNOWN
        receipts[who] += 1
        sales[who] += t.net
    first_on = {
        op: min((s.signed_on for s in shifts.get(op, ())), default=None)
        for op in {*shifts, *receipts}
    }
    people = sorted(  # in the order they signed on; who never did, last
        first_on, key=lambda op: (first_on[op] is None, str(first_on[op] or ""), op)
    )
    return [
        Work(op, tuple(shifts.get(op, ())), receipts.get(op, 0), sales.get(op, _ZERO))
        for op in people
    ]


def shares(
    over_short: Decimal,
    declaring: str | None,
    work: Sequence[Work],
    attribution: str,
    until: datetime,
) -> dict[str, Decimal]:
    """Whose a drawer's ``over_short`` is, cashier by cashier. Declared drawers (``declaring``,
    ``per-cashier``) are their declaring cashier's; a shared drawer's is split by time or sales
    up to the count (``until``), or the declaring cashier's when there is nothing to split by."""
    if attribution in SPLITS:
        weights = {
            w.operator_id: Decimal(w.seconds(until))
            if attribution == SPLIT_BY_TIME
            else max(w.sales, _ZERO)
            for w in work
        }
        if sum(weights.values(), _ZERO) > 0:
            return split(over_short, weights)
    return {declaring or UNKNOWN: over_short}


def split(amount: Decimal, weights: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """``amount`` in shares proportional to ``weights`` (not all zero), to the cent (to the
    stored ten-thousandth when the amount has more digits); the shares add up to the amount
    exactly: the rounding left over goes a cent at a time to the largest remainders."""
    unit = _CENT if amount == amount.quantize(_CENT) else _UNIT
    total = sum(weights.values(), _ZERO)
    units = int(amount / unit)  # exact: amount is a multiple of unit
    sign = -1 if units < 0 else 1
    exact = {k: abs(units) * w / total for k, w in weights.items()}
    whole = {k: int(v.to_integral_value(ROUND_FLOOR)) for k, v in exact.items()}
    left = abs(units) - sum(whole.values())
    for k in sorted(exact, key=lambda k: (-(exact[k] - whole[k]), k))[:left]:
        whole[k] += 1
    return {k: sign * n * unit for k, n in whole.items()}
