"""Who may post what to the edge: the role of each table of the tokens file (``auth.py``),
and the event types and kinds each role may post. One place for the rule: the HTTP API
refuses by it, and docs/edge.md's table of roles is checked against :data:`MAY_POST`.

- A till's token (``[tills]``) posts its own till's sales, payments, post-voids and till
  events (sign-on to settlement), and stock movements. Not the store's day: opening and
  closing it is the store manager's act, whichever workstation it is done on.
- The store's token (``[store]``: the store manager's, the back office's) posts the
  store-day's open and close, and stock movements.
- A stock-only token (``[stock_only]``: a stock-count app) posts stock movements only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from tillstream.core.till_events import STORE_DAY_KINDS

TILL: Final = "tills"
STORE: Final = "store"
STOCK_ONLY: Final = "stock_only"
Role = Literal["tills", "store", "stock_only"]
ROLES: tuple[Role, ...] = (TILL, STORE, STOCK_ONLY)
"""The tables of the tokens file, each a role."""

TILL_WORK = "till_event"
STORE_DAY = "till_event:store_day"
POSTED: tuple[str, ...] = ("sale", "payment", "sale_void", TILL_WORK, STORE_DAY, "stock_movement")
"""What an event is to the roles: its type, a store-day open or close apart from the rest of
the till events."""

MAY_POST: dict[Role, frozenset[str]] = {
    TILL: frozenset({"sale", "payment", "sale_void", TILL_WORK, "stock_movement"}),
    STORE: frozenset({STORE_DAY, "stock_movement"}),
    STOCK_ONLY: frozenset({"stock_movement"}),
}
"""What each role may post (a till's events only of its own till)."""

ABOUT_A_TILL = frozenset({"sale", "payment", "sale_void", TILL_WORK})
"""What names the till that did it, and must be the posting till's own. A store-day's open
and close name the workstation it was done on: the store's act, not that till's."""

_WHAT = {
    TILL: "a till's own sales, payments, post-voids and till events, and stock movements",
    STORE: "the store-day's open and close (STORE_DAY_OPEN, STORE_DAY_CLOSE), and stock movements",
    STOCK_ONLY: "stock movements only",
}


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a role may not post an event: the field to name, and the message."""

    field: str
    message: str


def posted(event_type: str, kind: str | None = None) -> str:
    """What an event is to the roles (one of :data:`POSTED`)."""
    if event_type == "till_event":
        return STORE_DAY if kind in STORE_DAY_KINDS else TILL_WORK
    return event_type


def refusal(role: Role, event_type: str, kind: str | None = None) -> Refusal | None:
    """Why ``role`` may not post this event, or None if it may."""
    what = posted(event_type, kind)
    if what in MAY_POST[role]:
        return None
    if what == STORE_DAY:  # a till's token: it names the kind, the one thing wrong
        return Refusal(
            "kind",
            f"a {kind} is the store's to post, with the store's token ([{STORE}] in the "
            f"tokens file); this token's role is {role}: {_WHAT[role]}",
        )
    return Refusal(
        "type",
        f"this token's role is {role}: {_WHAT[role]}; sales, payments, post-voids and till "
        "events need the till's own token",
    )


def names_a_till(event_type: str, kind: str | None = None) -> bool:
    """Whether the till the event names must be the posting till's own."""
    return posted(event_type, kind) in ABOUT_A_TILL
