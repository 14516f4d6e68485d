"""The stores' opening hours (``TILLSTREAM_FLEET_OPENING_HOURS``, one span a day for the
chain), read in each store's own time zone, as its edge reports it: a store in Lisbon opens
an hour after one in Berlin, and each day is the store's own, summer time included."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from tillstream.core.estate import opening_hours
from tillstream_consumers.fleet.times import zone


@dataclass(frozen=True)
class OpeningHours:
    opens: time
    closes: time | None
    """None: open until midnight."""

    @classmethod
    def parse(cls, text: str) -> OpeningHours:
        return cls(*opening_hours(text))

    def day(self, day: date, timezone: str) -> tuple[datetime, datetime]:
        """When the store opens and closes on its local ``day`` (aware datetimes)."""
        tz = zone(timezone)
        start = datetime.combine(day, self.opens, tzinfo=tz)
        if self.closes is None:
            return start, datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
        return start, datetime.combine(day, self.closes, tzinfo=tz)

    def is_open(self, now: datetime, timezone: str) -> bool:
        start, end = self.day(today(now, timezone), timezone)
        return start <= now < end

    def next_change(self, now: datetime, timezone: str) -> datetime:
        """The next time the store opens or closes after ``now``."""
        day = today(now, timezone)
        for offset in range(3):
            start, end = self.day(day + timedelta(days=offset), timezone)
            for at in (start, end):
                if at > now:
                    return at
        raise AssertionError("a store opens within two days")


def today(now: datetime, timezone: str) -> date:
    """The store's local date at ``now``."""
    return now.astimezone(zone(timezone)).date()


def midnight_after(now: datetime, timezone: str) -> datetime:
    """The store's next local midnight: when its day, and so its tills' trading day, ends."""
    day = today(now, timezone) + timedelta(days=1)
    return datetime.combine(day, time(0), tzinfo=zone(timezone))
