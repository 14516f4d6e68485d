"""A simulated store's clock: its UTC offset and the business day its tills write.

One object per store, shared by its sales (:mod:`tillstream.simulate.shopper`) and its till
events (:mod:`tillstream.simulate.shifts`), so both say the same day and offset: the audit
groups a store's events by ``business_day`` and reads times in ``utc_offset_minutes``.
Once the store-day is opened (:meth:`StoreClock.open`) every event carries that day, as a
till closing after midnight still closes the day it opened.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

ZONES = (60, 0, -300, 330)
"""UTC offsets (minutes) the simulated stores are spread over, store by store: a chain from
Berlin to London, New York and Mumbai, so business days are not UTC days."""


@dataclass
class StoreClock:
    utc_offset_minutes: int = 0
    business_day: date | None = None
    """The open store-day; None before :meth:`open`: each event's local date."""

    @property
    def zone(self) -> timezone:
        return timezone(timedelta(minutes=self.utc_offset_minutes))

    def local(self, at: datetime) -> datetime:
        """``at`` in the store's local time, with its offset."""
        return at.astimezone(self.zone)

    def day(self, at: datetime) -> date:
        """The business day of an event at ``at``."""
        return self.business_day or self.local(at).date()

    def open(self, at: datetime) -> date:
        """Open the store-day at ``at``: its local date, carried by every event until the
        next opening."""
        self.business_day = self.local(at).date()
        return self.business_day


def store_clock(index: int) -> StoreClock:
    """The clock of the ``index``-th simulated store (0-based), zones taken in turn."""
    return StoreClock(ZONES[index % len(ZONES)])
