"""Balanced transactions: a receipt's payments against its total, copies of a receipt taken
as one, and payments whose sale never arrived."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal

from tillstream_consumers.audit.facts import Tender, Transaction, in_currency
from tillstream_consumers.audit.flags import (
    PAYMENT_MISMATCH,
    PAYMENT_WITHOUT_SALE,
    TOTALS_MISMATCH,
    Flag,
)
from tillstream_consumers.audit.reading import ReadMarks, read_past

_ZERO = Decimal(0)
Session = tuple[datetime, int, str, str]
"""A till's TILL_OPEN or TILL_CLOSE: (time, rank, event id, kind), in time order."""


def payments_due(sale: Transaction, sessions: Sequence[Session], due: bool) -> bool:
    """Whether a sale's payments must add up by now: its till settled after it, or the day
    closed or is over."""
    return due or any(
        kind == "TILL_CLOSE" and at >= sale.occurred_at for at, _, _, kind in sessions
    )


def receipts(
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


def transaction_flags(
    t: Transaction,
    subject: str,
    paid: Decimal,
    payment_ids: Sequence[str],
    currency: str | None = None,
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
                f"receipt {t.number}: payments come to {in_currency(paid, currency)}, the "
                f"receipt's total is {in_currency(t.net, currency)}",
                amount=paid - t.net,
                events=(t.event_id, *payment_ids),
            )
        )
    return flags


def orphan_flags(
    terminal: str,
    orphans: Sequence[Tender],
    sessions: Sequence[Session],
    due: bool,
    read: ReadMarks | None,
    currency: str | None = None,
) -> tuple[list[Flag], list[Flag]]:
    """Payments on this till whose sale never arrived, once the till settled after them or
    the day is due, and the store's sales were read past them (a sale is published before
    its payments; ``reading.py``): money taken for a receipt head office does not have.
    And those held back only until the store's sales are read past them."""
    by_sale: dict[str, list[Tender]] = defaultdict(list)
    for p in orphans:
        by_sale[p.sale_event_id].append(p)
    flags: list[Flag] = []
    held: list[Flag] = []
    for sale_id, found in sorted(by_sale.items()):
        last = max(p.occurred_at for p in found)
        settled_after = any(k == "TILL_CLOSE" and at >= last for at, _, _, k in sessions)
        if not (due or settled_after):
            continue
        first = min((p.published_ms for p in found if p.published_ms is not None), default=None)
        paid = sum((p.signed for p in found), _ZERO)
        (flags if read_past(read, "sale", first) else held).append(
            Flag(
                PAYMENT_WITHOUT_SALE,
                terminal,
                f"{terminal} {sale_id}",
                f"till {terminal}: payments of {in_currency(paid, currency)} for sale {sale_id}, "
                "which never reached "
                "head office",
                amount=paid,
                events=tuple(sorted(p.event_id for p in found)),
            )
        )
    return flags, held


def paid_by_sale(payments: Iterable[Tender]) -> dict[str, Decimal]:
    paid: dict[str, Decimal] = defaultdict(Decimal)
    for p in payments:
        paid[p.sale_event_id] += p.signed
    return paid
