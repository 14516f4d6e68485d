"""Times as the fleet service stores and shows them: fixed-width UTC text in its tables (so
they sort and compare as text on SQLite and PostgreSQL alike), the store's local time with
its offset wherever a person reads one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def stamp(at: datetime | None) -> str | None:
    """``2026-03-02T09:00:00.000000Z``; None for none."""
    if at is None:
        return None
    if at.tzinfo is not UTC:  # the codec gives UTC already: most times skip this
        at = at.astimezone(UTC)
    return at.isoformat(timespec="microseconds")[:-6] + "Z"


def parse(text: object) -> datetime | None:
    """A stored time back (aware, UTC); None for none."""
    if text is None or text == "":
        return None
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """The store's time zone as its edge reports it; UTC for a name this machine does not
    know (the edge checked it against its own: a newer zone database)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local(at: datetime | None, timezone: str | None) -> str | None:
    """``2026-03-02 09:00:00+01:00``: a time as the store's staff read it (UTC without a
    zone); None for none."""
    if at is None:
        return None
    shown = at.astimezone(zone(timezone or "UTC"))
    return shown.isoformat(sep=" ", timespec="seconds")


def span(seconds: float | None) -> str:
    """``2h 05m``, ``45s``: an age or a duration as people read it."""
    if seconds is None:
        return ""
    left = round(abs(seconds))
    sign = "-" if seconds < 0 else ""
    days, left = divmod(left, 86400)
    hours, left = divmod(left, 3600)
    minutes, secs = divmod(left, 60)
    if days:
        return f"{sign}{days}d {hours:02d}h"
    if hours:
        return f"{sign}{hours}h {minutes:02d}m"
    if minutes:
        return f"{sign}{minutes}m {secs:02d}s"
    return f"{sign}{secs}s"


def age(since: datetime | None, now: datetime) -> timedelta | None:
    return None if since is None else now - since
