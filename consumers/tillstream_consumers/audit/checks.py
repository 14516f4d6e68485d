"""The audit of one store-day: every check, as a pure function of the day's facts.

Nothing here depends on the order the events arrived in, only on what they say (times are
event times, ties broken by event id); ``now`` matters only to decide whether a day that
never closed is overdue. See ``docs/audit.md`` for each check from an auditor's side.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from tillstream.core.settings import Settings
from tillstream.core.till_events import MONEY_IN, MONEY_OUT
from tillstream_consumers.audit.facts import (
    Control,
    StoreDayFacts,
    Tender,
    Transaction,
    local_iso,
)

RECEIPT_GAP = "receipt_gap"
DUPLICATE_NUMBER = "duplicate_number"
DUPLICATE_COPY = "duplicate_copy"
AFTER_TILL_CLOSE = "after_till_close"
LATE_EVENT = "late_event"
TILL_NOT_CLOSED = "till_not_closed"
DAY_NOT_CLOSED = "day_not_closed"
TOTALS_MISMATCH = "totals_mismatch"
PAYMENT_MISMATCH = "payment_mismatch"
PAYMENT_WITHOUT_SALE = "payment_without_sale"
TILL_TOTALS_MISMATCH = "till_totals_mismatch"
OVER_SHORT = "over_short"
NO_DECLARATION = "no_declaration"
SILENT_STORE = "silent_store"

KINDS: tuple[str, ...] = (
    RECEIPT_GAP,
    DUPLICATE_NUMBER,
    DUPLICATE_COPY,
    AFTER_TILL_CLOSE,
    LATE_EVENT,
    TILL_NOT_CLOSED,
    DAY_NOT_CLOSED,
    TOTALS_MISMATCH,
    PAYMENT_MISMATCH,
    PAYMENT_WITHOUT_SALE,
    TILL_TOTALS_MISMATCH,
    OVER_SHORT,
    NO_DECLARATION,
    SILENT_STORE,
)
"""Every kind of flag, in the order an auditor reads them."""

STORE_DAY_KINDS = frozenset({"STORE_DAY_OPEN", "STORE_DAY_CLOSE"})
"""Control events about the store's day, not about the till they were keyed on."""
_SESSION_RANK = {"TILL_OPEN": 0, "TILL_CLOSE": 1}
_DAY_RANK = {"STORE_DAY_OPEN": 0, "STORE_DAY_CLOSE": 1}
_NUMBER = re.compile(r"(.*?)(\d+)")
_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Flag:
    """Something an auditor must look at. Its id is stable: the same fault found again (after
    a restart, a rebuild, in another arrival order) is the same flag."""

    kind: str
    terminal_id: str | None
    subject: str
    """What it is about, in an auditor's words: ``T01 01-000124``, ``T02 CASH``."""
    message: str
    amount: Decimal | None = None
    """Over/short (declared - expected) or paid - due, where money is the point."""
    operator_id: str | None = None
    events: tuple[str, ...] = ()
    """Event ids behind the flag."""

    def flag_id(self, store_id: str, day: date) -> str:
        return flag_id(store_id, day, self.kind, self.subject)


def flag_id(store_id: str, day: date, kind: str, subject: str) -> str:
    key = "\x1f".join((store_id, day.isoformat(), kind, subject))
    return hashlib.sha256(key.encode()).hexdigest()[:12]


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


def day_end(day: date, utc_offset_minutes: int) -> datetime:
    """Local midnight at the end of ``day``, in UTC."""
    midnight = datetime.combine(day + timedelta(days=1), time(), UTC)
    return midnight - timedelta(minutes=utc_offset_minutes)


def audit_day(facts: StoreDayFacts, now: datetime, settings: Settings) -> DayAudit:
    """Every check of one store-day."""
    end = day_end(facts.business_day, facts.utc_offset_minutes)
    overdue = now >= end + timedelta(hours=settings.audit_close_grace_hours)
    closed_at = _closed_at(facts.controls)
    due = overdue or closed_at is not None
    flags: list[Flag] = []
    late = set(_late(facts, closed_at))
    flags += [
        Flag(LATE_EVENT, terminal, f"{terminal} {label}", message, events=(event_id,))
        for _, terminal, label, event_id, message in sorted(late)
    ]
    flags += _numbering(facts)
    tills: list[Till] = []
    balances: list[Balance] = []
    pending: list[str] = []
    paid = _paid(facts.payments)
    for terminal, transactions, controls in _by_till(facts):
        sessions = sorted(
            (c.occurred_at, _SESSION_RANK[c.kind], c.event_id, c.kind)
            for c in controls
            if c.kind in _SESSION_RANK
        )
        settled = sessions[-1][0] if sessions and sessions[-1][3] == "TILL_CLOSE" else None
        late_ids = {e[3] for e in late}
        for at, label, event_id in _till_activity(transactions, controls):
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
        for t, copies, subject in _receipts(transactions):
            got = sum((paid.get(c.event_id, _ZERO) for c in copies), _ZERO)
            ids = {c.event_id for c in copies}
            paying = sorted(p.event_id for p in facts.payments if p.sale_event_id in ids)
            for flag in _transaction_flags(t, subject, got, paying):
                if flag.kind == PAYMENT_MISMATCH and not _payments_due(t, sessions, due):
                    pending.append(t.event_id)  # its till trades on: payments may follow
                else:
                    flags.append(flag)
        orphans = [p for p in facts.orphans if p.terminal_id == terminal]
        flags += _orphan_flags(terminal, orphans, sessions, due)
        flags += _till_totals(terminal, controls, [*facts.payments, *orphans])
        till_balances, balance_flags = _balance(
            terminal, controls, [*facts.payments, *orphans], settled, settings
        )
        balances += till_balances
        flags += balance_flags
        operators = {c.operator_id for c in controls if c.kind == "SIGN_ON" and c.operator_id}
        operators |= {t.cashier_id for t in transactions if t.cashier_id}
        tills.append(Till(terminal, tuple(sorted(operators)), len(transactions), settled))
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
    return DayAudit(tuple(flags), tuple(tills), tuple(balances), tuple(pending), closed_at, overdue)


def _payments_due(
    sale: Transaction, sessions: Sequence[tuple[datetime, int, str, str]], due: bool
) -> bool:
    """Whether a sale's payments must add up by now: its till settled after it, or the day
    closed or is over."""
    return due or any(
        kind == "TILL_CLOSE" and at >= sale.occurred_at for at, _, _, kind in sessions
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
    return [
        (at, till, label, event_id, f"till {till}: {label} at {_local(at, facts)}, after the "
         "store-day was closed")
        for at, till, label, event_id in out
    ]  # fmt: skip


def _till_activity(
    transactions: Sequence[Transaction], controls: Sequence[Control]
) -> list[tuple[datetime, str, str]]:
    """What a settled till must not do: sell, or move money."""
    out = [
        (t.occurred_at, _label(t.number, t.event_id, "receipt"), t.event_id) for t in transactions
    ]
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
    return [(k, transactions[k], controls[k]) for k in sorted(tills)]


def _numbering(facts: StoreDayFacts) -> list[Flag]:
    """Duplicates and gaps in each till's own numbering (one series per prefix)."""
    numbered: dict[tuple[str, str], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for t in facts.transactions:
        numbered[(t.terminal_id, t.number)][t.content].append(t.event_id)
    for c in facts.controls:
        if c.number:
            numbered[(c.terminal_id, c.number)][c.content].append(c.event_id)
    flags: list[Flag] = []
    series: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
    holders: dict[tuple[str, str, int], tuple[str, ...]] = {}
    for (terminal, number), contents in sorted(numbered.items()):
        ids = tuple(sorted(i for found in contents.values() for i in found))
        if len(contents) > 1:
            flags.append(
                Flag(
                    DUPLICATE_NUMBER,
                    terminal,
                    f"{terminal} {number}",
                    f"till {terminal}: number {number} was used by {len(ids)} different "
                    "transactions",
                    events=ids,
                )
            )
        elif len(ids) > 1:
            flags.append(
                Flag(
                    DUPLICATE_COPY,
                    terminal,
                    f"{terminal} {number}",
                    f"till {terminal}: number {number} arrived {len(ids)} times with the same "
                    "content under different event ids (a resend that other services count twice)",
                    events=ids,
                )
            )
        match = _NUMBER.fullmatch(number)
        if match is not None:
            series[(terminal, match[1])][int(match[2])] = len(match[2])
            holders[(terminal, match[1], int(match[2]))] = ids
    for (terminal, prefix), numbers in sorted(series.items()):
        ordered = sorted(numbers)
        for low, high in itertools.pairwise(ordered):
            if high - low <= 1:
                continue
            width = numbers[low]
            first, last = f"{prefix}{low + 1:0{width}d}", f"{prefix}{high - 1:0{width}d}"
            missing = high - low - 1
            span = first if missing == 1 else f"{first}..{last}"
            flags.append(
                Flag(
                    RECEIPT_GAP,
                    terminal,
                    f"{terminal} {span}",
                    f"till {terminal}: "
                    + (
                        f"number {first} never reached head office"
                        if missing == 1
                        else f"numbers {first} to {last} ({missing}) never reached head office"
                    ),
                    events=(*holders[(terminal, prefix, low)], *holders[(terminal, prefix, high)]),
                )
            )
    return flags


def _orphan_flags(
    terminal: str,
    orphans: Sequence[Tender],
    sessions: Sequence[tuple[datetime, int, str, str]],
    due: bool,
) -> list[Flag]:
    """Payments on this till whose sale never arrived, once the till settled after them or
    the day is due: money taken for a receipt head office does not have."""
    by_sale: dict[str, list[Tender]] = defaultdict(list)
    for p in orphans:
        by_sale[p.sale_event_id].append(p)
    flags = []
    for sale_id, found in sorted(by_sale.items()):
        last = max(p.occurred_at for p in found)
        settled_after = any(k == "TILL_CLOSE" and at >= last for at, _, _, k in sessions)
        if not (due or settled_after):
            continue
        paid = sum((p.signed for p in found), _ZERO)
        flags.append(
            Flag(
                PAYMENT_WITHOUT_SALE,
                terminal,
                f"{terminal} {sale_id}",
                f"till {terminal}: payments of {paid} for sale {sale_id}, which never reached "
                "head office",
                amount=paid,
                events=tuple(sorted(p.event_id for p in found)),
            )
        )
    return flags


def _paid(payments: Iterable[Tender]) -> dict[str, Decimal]:
    paid: dict[str, Decimal] = defaultdict(Decimal)
    for p in payments:
        paid[p.sale_event_id] += p.signed
    return paid


def _receipts(
    transactions: Sequence[Transaction],
) -> list[tuple[Transaction, list[Transaction], str]]:
    """A till's receipts, copies (same number and content) taken as one: (the receipt, its
    copies, the subject of its flags). The subject names the event too where one number
    was used by different receipts, so their flags stay apart."""
    copies: dict[tuple[str, str], list[Transaction]] = defaultdict(list)
    for t in transactions:
        copies[(t.number, t.content)].append(t)
    contents: dict[str, int] = defaultdict(int)
    for number, _ in copies:
        contents[number] += 1
    out = []
    for (number, _), found in sorted(copies.items()):
        first = min(found, key=lambda c: c.event_id)
        subject = f"{first.terminal_id} {number}"
        if contents[number] > 1:
            subject += f" {first.event_id}"
        out.append((first, found, subject))
    return out


def _transaction_flags(
    t: Transaction, subject: str, paid: Decimal, payment_ids: Sequence[str]
) -> list[Flag]:
    flags = []
    if t.problems:
        flags.append(
            Flag(
                TOTALS_MISMATCH,
                t.terminal_id,
                subject,
                f"receipt {t.number}: " + "; ".join(t.problems),
                events=(t.event_id,),
            )
        )
    if paid != t.net:
        flags.append(
            Flag(
                PAYMENT_MISMATCH,
                t.terminal_id,
                subject,
                f"receipt {t.number}: payments come to {paid}, the receipt's total is {t.net}",
                amount=paid - t.net,
                events=(t.event_id, *payment_ids),
            )
        )
    return flags


def _expected(
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


def _till_totals(
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
    ours = _expected(terminal, controls, payments, close.occurred_at)
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


def _balance(
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
    expected = _expected(terminal, controls, payments, cutoff)
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


def _local(at: datetime, facts: StoreDayFacts) -> str:
    return local_iso(at, facts.utc_offset_minutes)
