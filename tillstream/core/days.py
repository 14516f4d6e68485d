"""A business day as people and tools type it: exactly ``YYYY-MM-DD``.

Python's ``date.fromisoformat`` also reads ``20261207`` and ``2026-W49-1`` (and ``strptime``
reads ``2026-3-2``), and a day that reaches a query in any spelling but the stored one finds
nothing. So every way a day comes in (the audit's read API and page, ``tillstream audit
--day``, ``tillstream report --day``, the analytics report API) reads it here, and refuses
any other form naming this one.
"""

from __future__ import annotations

import re
from datetime import date

DAY_FORM = "YYYY-MM-DD"
"""The one form a day is written in (ISO 8601 calendar date, ASCII digits)."""

_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse_day(text: str) -> date:
    """The day ``text`` names; ValueError (naming the form, not the text) for any other form
    or a day that does not exist."""
    if _DAY.fullmatch(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    raise ValueError(f"a day is written {DAY_FORM} (a calendar date that exists)")


def day_or_none(text: str) -> date | None:
    """:func:`parse_day`, or None for a day in any other form."""
    try:
        return parse_day(text)
    except ValueError:
        return None
