"""What the sales audit raises: the kinds of flag, and a flag's stable identity.

A flag's id is stable (the same fault found again, after a restart, a rebuild, in another
arrival order, is the same flag) but cannot be worked out from the outside: it is an HMAC of
the store, day, kind and subject under a key the audit's database makes once and keeps
(``flag_ids``), so a page on another site cannot name a flag to acknowledge.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import weakref
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from tillstream_consumers.runtime.db import Database

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

NEXT_STEPS: dict[str, str] = {
    RECEIPT_GAP: "Fetch the missing numbers from the till's electronic journal (or its POSLog "
    "export) and backfill them with `tillstream edge import`: the gap closes by itself. If the "
    "till never printed them (a reboot, a number skipped), acknowledge with the store's reason.",
    NUMBERING_BREAK: "Ask the store why the till's numbering jumped (a reset after a repair, "
    "a new series, a till replaced): with a reason, acknowledge it. If receipts are missing "
    "before the jump too, fetch them from the till's journal and backfill them with "
    "`tillstream edge import`.",
    DUPLICATE_NUMBER: "Compare the receipts behind the flag with the till's journal: one "
    "number holds one sale. Ask the store which is real; a till that reuses numbers after a "
    "restart needs its counter fixed.",
    DUPLICATE_COPY: "Nothing to recount here: the audit counts the copies once, but the ERP, "
    "CRM and analytics counted the sale twice. Find the channel that resent it (a POSLog file "
    "both posted and dropped, a till retrying under new event ids).",
    AFTER_TILL_CLOSE: "Ask the store why the till traded after its settlement: that money is "
    "outside the drawer that was counted, so check it reached the safe.",
    LATE_EVENT: "Ask the store why the till traded after the store-day closed (a customer at "
    "the door, a clock set wrong), and check the money reached the safe.",
    TILL_NOT_CLOSED: "Have the store settle the till: count the drawer (tender declaration) "
    "and close it (TILL_CLOSE). Until then its drawer is in no over/short.",
    DAY_NOT_CLOSED: "Have the store manager close the business day from the back office "
    "(STORE_DAY_CLOSE, with the store's token), or acknowledge why the store stayed open.",
    TOTALS_MISMATCH: "Fetch the receipt from the till's journal: its lines are what was "
    "charged. Report the till's totals to its vendor as a software fault.",
    PAYMENT_MISMATCH: "Look the receipt's payments up in the till's journal and the card "
    "terminal's batch: a payment head office lacks is backfilled with `tillstream edge "
    "import`; one taken twice is refunded to the customer.",
    PAYMENT_WITHOUT_SALE: "Money was taken for a receipt head office does not have: fetch the "
    "receipt from the till's journal and backfill it with `tillstream edge import`.",
    TILL_TOTALS_MISMATCH: "A pickup, loan or payment the till made never reached head office "
    "(or came twice): compare the till's own settlement report with the events behind the "
    "flag, and backfill what is missing.",
    OVER_SHORT: "Have the store recount the drawer and its safe bags (pickups) the same day. "
    "A difference that stays is recorded against the drawer's cashiers as the chain "
    "attributes it (see who worked the drawer) and acknowledged with the outcome.",
    NO_DECLARATION: "Have the cashier (or the store manager, with a witness) count the drawer "
    "and post the tender declaration; until then its over/short is unknown.",
    SILENT_STORE: "Was the store closed? Acknowledge with the reason. Otherwise its events "
    "are stuck: check its edge (outbox, quarantine) and tills; the flag goes when they come.",
}
"""What an auditor does next about each kind of flag: shown beside every flag on the page
and in the read API, listed in docs/audit.md (a test keeps them equal)."""


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
    missing: int | None = None
    """Numbers a receipt gap leaves out (what money at stake counts as receipts missing)."""


def flag_id(key: bytes, store_id: str, day: date, kind: str, subject: str) -> str:
    """24 hex digits: the HMAC-SHA256 of the store, day, kind and subject under ``key``."""
    what = "\x1f".join((store_id, day.isoformat(), kind, subject))
    return hmac.new(key, what.encode(), hashlib.sha256).hexdigest()[:24]


_KEYS: weakref.WeakKeyDictionary[Database, bytes] = weakref.WeakKeyDictionary()


def flag_key(db: Database) -> bytes:
    """The database's key of flag ids, made on first use (once per database, kept for ever:
    a new key would give every flag a new id and orphan its acknowledgements)."""
    if db not in _KEYS:
        db.execute(
            "INSERT INTO audit_keys (name, secret) VALUES ('flag_ids', ?) ON CONFLICT (name) "
            "DO NOTHING",
            (secrets.token_hex(32),),
        )
        row = db.fetchone("SELECT secret FROM audit_keys WHERE name = 'flag_ids'")
        assert row is not None
        _KEYS[db] = bytes.fromhex(str(row[0]))
    return _KEYS[db]


def rekey_flags(db: Database) -> int:
    """Give flags made before the key (12-digit ids of a plain hash) their keyed ids, and
    their acknowledgements with them; returns how many. Run once at start, in a transaction."""
    key = flag_key(db)
    rows = db.fetchall(
        "SELECT flag_id, store_id, business_day, kind, subject FROM audit_flags "
        "WHERE length(flag_id) = 12"
    )
    for old, store, day, kind, subject in rows:
        new = flag_id(key, str(store), date.fromisoformat(str(day)), str(kind), str(subject))
        db.execute("UPDATE audit_flags SET flag_id = ? WHERE flag_id = ?", (new, old))
        db.execute("UPDATE audit_acks SET flag_id = ? WHERE flag_id = ?", (new, old))
    return len(rows)
