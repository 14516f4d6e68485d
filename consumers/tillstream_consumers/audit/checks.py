"""The audit of one store-day: every check, as a pure function of the day's facts. The
closing checks (settlement, late events, unclosed tills and days) live here; numbering
(``numbering.py``), balanced transactions (``payments.py``), till balance (``balance.py``)
and post-voids (``voids.py``: a voided sale is out of the day's money) in their own modules.

Nothing here depends on the order the events arrived in, only on what they say (times are
event times, ties broken by event id); ``now`` matters only to decide whether a day that
never closed is overdue. See ``docs/audit.md`` for each check from an auditor's side.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from tillstream.core.settings import Settings
from tillstream.core.till_events import MONEY_IN, MONEY_OUT, STORE_DAY_KINDS
from tillstream_consumers.audit.balance import Balance, balance, till_totals_flags
from tillstream_consumers.audit.facts import (
    Control,
    PostVoid,
    StoreDayFacts,
    Tender,
    Transaction,
    local_iso,
)
from tillstream_consumers.audit.flags import (
    AFTER_TILL_CLOSE,
    DAY_NOT_CLOSED,
    KINDS,
    LATE_EVENT,
    OVER_SHORT,
    PAYMENT_MISMATCH,
    TILL_NOT_CLOSED,
    TILL_TOTALS_MISMATCH,
    Flag,
)
from tillstream_consumers.audit.numbering import numbering_flags
from tillstream_consumers.audit.payments import (
    orphan_flags,
    paid_by_sale,
    payments_due,
    receipts,
    transaction_flags,
)
from tillstream_consumers.audit.reading import read_past

_SESSION_RANK = {"TILL_OPEN": 0, "TILL_CLOSE": 1}
_COUNTS = frozenset({"TENDER_DECLARATION", "TILL_CLOSE"})
"""A till's own counts of its money, compared with the payments it took."""
_DAY_RANK = {"STORE_DAY_OPEN": 0, "STORE_DAY_CLOSE": 1}
_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Till:
    terminal_id: str
    operators: tuple[str, ...]
    transactions: int
    closed_at: datetime | None
    """The till's settlement (its last TILL_CLOSE, if no TILL_OPEN followed), or None."""


@dataclass(frozen=True, slots=True)
class DayAudit:
    flags: tuple[Flag, ...]
    tills: tuple[Till, ...]
    balances: tuple[Balance, ...]
    pending: tuple[str, ...]
    """Sales whose payments do not add up yet, not flagged while their till trades on."""
    closed_at: datetime | None
    """The store-day's close (its last STORE_DAY_CLOSE, if no STORE_DAY_OPEN followed)."""
    overdue: bool
    """The day ended (local midnight) more than the grace ago."""
    held: tuple[Flag, ...] = ()
    """Findings held back until the store's other topics are read past them
    (``reading.py``): the day is audited again until none is. One already flagged stays
    flagged meanwhile (a new hold does not take back what an auditor was shown)."""

    @property
    def waiting(self) -> int:
        return len(self.held)


def day_end(day: date, utc_offset_minutes: int) -> datetime:
    """Local midnight at the end of ``day``, in UTC."""
    midnight = datetime.combine(day + timedelta(days=1), time(), UTC)
    return midnight - timedelta(minutes=utc_offset_minutes)


def audit_day(
    facts: StoreDayFacts, now: datetime, settings: Settings, *, hold: bool = True
) -> DayAudit:
    """Every check of one store-day; with ``hold``, findings that events not read yet could
    take back wait for them (``reading.py``), unless the day is over."""
    end = day_end(facts.business_day, facts.utc_offset_minutes)
    overdue = now >= end + timedelta(hours=settings.audit_close_grace_hours)
    read = facts.read if hold and not overdue else None
    closed_at = _closed_at(facts.controls)
    due = overdue or closed_at is not None
    flags: list[Flag] = []
    late = set(_late(facts, closed_at))
    flags += [
        Flag(LATE_EVENT, terminal, f"{terminal} {label}", message, events=(event_id,))
        for _, terminal, label, event_id, message in sorted(late)
    ]
    numbering, held = numbering_flags(facts, read)
    flags += numbering
    tills: list[Till] = []
    balances: list[Balance] = []
    pending: list[str] = []
    paid = paid_by_sale(facts.payments)
    paying_of: dict[str, list[str]] = defaultdict(list)  # sale event id -> its payments' ids
    taken_on: dict[str, list[Tender]] = defaultdict(list)  # till -> the payments it took
    for p in facts.payments:
        paying_of[p.sale_event_id].append(p.event_id)
        taken_on[p.terminal_id].append(p)
    cashiers = {t.event_id: t.cashier_id for t in facts.transactions}  # per-cashier drawers
    voided_on: dict[str, list[PostVoid]] = defaultdict(list)  # till -> its post-voids
    for v in facts.voids:
        voided_on[v.terminal_id].append(v)
    day_close = _published(c for c in facts.controls if c.kind == "STORE_DAY_CLOSE")
    for terminal, transactions, controls in _by_till(facts):
        sessions = sorted(
            (c.occurred_at, _SESSION_RANK[c.kind], c.event_id, c.kind)
            for c in controls
            if c.kind in _SESSION_RANK
        )
        settled = sessions[-1][0] if sessions and sessions[-1][3] == "TILL_CLOSE" else None
        late_ids = {e[3] for e in late}
        for at, label, event_id in _till_activity(transactions, controls, voided_on[terminal]):
            before = [s for s in sessions if s[0] < at]
            if before and before[-1][3] == "TILL_CLOSE" and event_id not in late_ids:
                flags.append(
                    Flag(
                        AFTER_TILL_CLOSE,
                        terminal,
                        f"{terminal} {label}",
                        f"till {terminal}: {label} at {_local(at, facts)} after the till was "
                        f"settled at {_local(before[-1][0], facts)}",
                        events=(event_id,),
                    )
                )
        if due and settled is None:
            flags.append(
                Flag(
                    TILL_NOT_CLOSED,
                    terminal,
                    terminal,
                    f"till {terminal} traded and was never settled (no TILL_CLOSE)",
                )
            )
        for t, copies, subject in receipts(transactions):
            if any(c.event_id in facts.voided for c in copies):
                continue  # post-voided: out of the day's money, as if never rung up
            if len(copies) == 1:
                got = paid.get(t.event_id, _ZERO)
            else:
                got = sum((paid.get(c.event_id, _ZERO) for c in copies), _ZERO)
            if got == t.net and not t.problems:
                continue  # most receipts: nothing to flag
            paying = sorted(i for c in copies for i in paying_of.get(c.event_id, ()))
            for flag in transaction_flags(t, subject, got, paying, facts.currency):
                if flag.kind == PAYMENT_MISMATCH and not payments_due(t, sessions, due):
                    pending.append(t.event_id)  # its till trades on: payments may follow
                elif flag.kind == PAYMENT_MISMATCH and not read_past(
                    read, "payment", t.published_ms
                ):
                    held.append(flag)  # its payments are published after it: not read yet
                elif flag.kind == PAYMENT_MISMATCH and not read_past(
                    read, "sale_void", _settled_mark(t, controls, day_close)
                ):
                    held.append(flag)  # a post-void before the settlement may void it
                else:
                    flags.append(flag)
        orphans = [p for p in facts.orphans if p.terminal_id == terminal]
        orphaned, waits = orphan_flags(terminal, orphans, sessions, due, read, facts.currency)
        flags += orphaned
        held += waits
        taken = [*taken_on[terminal], *orphans]
        till_balances, balance_flags = balance(
            terminal, controls, taken, settled, settings, cashiers, facts.currency
        )
        balances += till_balances
        counted = till_totals_flags(terminal, controls, taken, facts.currency) + balance_flags
        counts = [f for f in counted if f.kind in (OVER_SHORT, TILL_TOTALS_MISMATCH)]
        if counts and not all(
            read_past(read, event, c.published_ms)
            for c in controls
            if c.kind in _COUNTS
            for event in ("payment", "sale_void")
        ):  # the payments (and post-voids) its counts cover are published before them
            counted = [f for f in counted if f not in counts]
            held += counts
        flags += counted
        operators = {c.operator_id for c in controls if c.kind == "SIGN_ON" and c.operator_id}
        operators |= {t.cashier_id for t in transactions if t.cashier_id}
        kept = sum(1 for t in transactions if t.event_id not in facts.voided)
        tills.append(Till(terminal, tuple(sorted(operators)), kept, settled))
    if overdue and closed_at is None and facts.events:
        flags.append(
            Flag(
                DAY_NOT_CLOSED,
                None,
                "day",
                "the store-day was never closed (no STORE_DAY_CLOSE "
                f"{settings.audit_close_grace_hours} h after local midnight)",
            )
        )
    order = {kind: i for i, kind in enumerate(KINDS)}
    flags.sort(key=lambda f: (order[f.kind], f.terminal_id or "", f.subject))
    return DayAudit(
        tuple(flags), tuple(tills), tuple(balances), tuple(pending), closed_at, overdue, tuple(held)
    )


# -- the parts ---------------------------------------------------------------------------


def _closed_at(controls: Iterable[Control]) -> datetime | None:
    closed: datetime | None = None
    for c in sorted(
        (c for c in controls if c.kind in _DAY_RANK),
        key=lambda c: (c.occurred_at, _DAY_RANK[c.kind], c.event_id),
    ):
        closed = c.occurred_at if c.kind == "STORE_DAY_CLOSE" else None
    return closed


def _label(number: str | None, event_id: str, what: str) -> str:
    return f"{what} {number}" if number else f"{what} {event_id}"


def _late(
    facts: StoreDayFacts, closed_at: datetime | None
) -> list[tuple[datetime, str, str, str, str]]:
    """(time, till, label, event id, message) of each event about a till (not the day) after
    the store-day's close."""
    if closed_at is None:
        return []
    out = [
        (t.occurred_at, t.terminal_id, _label(t.number, t.event_id, "receipt"), t.event_id)
        for t in facts.transactions
        if t.occurred_at > closed_at
    ]
    out += [
        (c.occurred_at, c.terminal_id, _label(c.number, c.event_id, c.kind), c.event_id)
        for c in facts.controls
        if c.kind not in STORE_DAY_KINDS and c.occurred_at > closed_at
    ]
    out += [
        (v.occurred_at, v.terminal_id, _label(v.number, v.event_id, "post-void"), v.event_id)
        for v in facts.voids
        if v.occurred_at > closed_at
    ]
    return [
        (at, till, label, event_id, f"till {till}: {label} at {_local(at, facts)}, after the "
         "store-day was closed")
        for at, till, label, event_id in out
    ]  # fmt: skip


def _till_activity(
    transactions: Sequence[Transaction], controls: Sequence[Control], voids: Sequence[PostVoid]
) -> list[tuple[datetime, str, str]]:
    """What a settled till must not do: sell, void a sale, or move money."""
    out = [
        (t.occurred_at, _label(t.number, t.event_id, "receipt"), t.event_id) for t in transactions
    ]
    out += [(v.occurred_at, _label(v.number, v.event_id, "post-void"), v.event_id) for v in voids]
    out += [
        (c.occurred_at, _label(c.number, c.event_id, c.kind), c.event_id)
        for c in controls
        if c.kind in MONEY_IN | MONEY_OUT | {"NO_SALE"}
    ]
    return sorted(out)


def _by_till(
    facts: StoreDayFacts,
) -> list[tuple[str, list[Transaction], list[Control]]]:
    transactions: dict[str, list[Transaction]] = defaultdict(list)
    controls: dict[str, list[Control]] = defaultdict(list)
    for t in facts.transactions:
        transactions[t.terminal_id].append(t)
    for c in facts.controls:
        if c.kind not in STORE_DAY_KINDS:
            controls[c.terminal_id].append(c)
    tills = {*transactions, *controls, *(p.terminal_id for p in facts.orphans)}
    tills |= {v.terminal_id for v in facts.voids}
    return [(k, transactions[k], controls[k]) for k in sorted(tills)]


def _published(controls: Iterable[Control]) -> int | None:
    """When the last of ``controls`` was published (None: none, or not known)."""
    return max((c.published_ms for c in controls if c.published_ms is not None), default=None)


def _settled_mark(
    sale: Transaction, controls: Sequence[Control], day_close: int | None
) -> int | None:
    """When what made a sale's payments due was published: its till's first settlement
    after it, else the store-day's close. A post-void of the sale comes before either."""
    closes = sorted(
        (c.occurred_at, c.event_id, c.published_ms)
        for c in controls
        if c.kind == "TILL_CLOSE" and c.occurred_at >= sale.occurred_at
    )
    return closes[0][2] if closes else day_close


def _local(at: datetime, facts: StoreDayFacts) -> str:
    """A time in a flag's message as the store's staff read it: ``2026-03-02 21:30 +01:00``."""
    local = datetime.fromisoformat(local_iso(at, facts.utc_offset_minutes))
    shown = local.strftime("%Y-%m-%d %H:%M:%S" if local.second else "%Y-%m-%d %H:%M")
    offset = local.strftime("%z")
    return f"{shown} {offset[:3]}:{offset[3:]}"
