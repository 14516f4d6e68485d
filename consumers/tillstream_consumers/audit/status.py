"""A store-day's status: the words an auditor signs off with, in one place (the read API,
the page, ``tillstream audit``, the ``tillstream_audit_store_days`` gauge and docs/audit.md
use these).

Acknowledged is not balanced: a closed day whose flags are all acknowledged is
``closed-reviewed``, its money at stake still shown (``at_stake.py``); only a closed day with
nothing flagged at all is ``closed-balanced``.
"""

from __future__ import annotations

SILENT = "silent"
OPEN = "open"
CLOSING = "closing"
CLOSED_BALANCED = "closed-balanced"
CLOSED_REVIEWED = "closed-reviewed"
CLOSED_UNBALANCED = "closed-unbalanced"

STATUSES: dict[str, str] = {
    SILENT: "The store was expected to trade and sent nothing for the day.",
    OPEN: "Events arrive; no till is settled and the day is not closed.",
    CLOSING: "At least one till is settled; the store-day is not closed.",
    CLOSED_BALANCED: "The store-day is closed and nothing is flagged: no open flag at all.",
    CLOSED_REVIEWED: "The store-day is closed and every open flag is acknowledged, but the "
    "flags stay open: the day does not balance, and its money at stake is shown.",
    CLOSED_UNBALANCED: "The store-day is closed and some open flag is not acknowledged.",
}
"""Every status and what it means, in the order a day goes through them."""


def status_of(
    events: int, tills_closed: int, closed: bool, open_flags: int, unacknowledged: int
) -> str:
    """The status of a store-day with ``events`` (0: silent), ``tills_closed`` tills settled,
    closed or not, and its open flags (how many, and how many no auditor acknowledged)."""
    if events == 0:
        return SILENT
    if not closed:
        return CLOSING if tills_closed else OPEN
    if unacknowledged:
        return CLOSED_UNBALANCED
    return CLOSED_REVIEWED if open_flags else CLOSED_BALANCED
