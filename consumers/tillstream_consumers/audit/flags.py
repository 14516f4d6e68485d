"""What the sales audit raises: the kinds of flag, and a flag's stable identity."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

RECEIPT_GAP = "receipt_gap"
NUMBERING_BREAK = "numbering_break"
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
    NUMBERING_BREAK,
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
    """12 hex digits from the store, day, kind and subject."""
    key = "\x1f".join((store_id, day.isoformat(), kind, subject))
    return hashlib.sha256(key.encode()).hexdigest()[:12]
