"""The edge settings head office may change while the edge runs (``estate_desired.edge``):
the log level and the live channels' plausibility window.

One place holds them: the ingestor asks it for the window of each event (it is the window
the ingestor is given), the estate report says what is in force, and head office's desired
state sets or resets them. Unset by head office, each is the edge's own setting
(``TILLSTREAM_LOG_LEVEL``, ``TILLSTREAM_EDGE_MAX_EVENT_AGE``, ``TILLSTREAM_EDGE_MAX_FUTURE``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from tillstream.core.logs import set_log_level
from tillstream.core.rules import TimeWindow
from tillstream.core.settings import LOG_LEVELS, MAX_WINDOW, Settings


@dataclass(frozen=True, slots=True)
class Tunables:
    log_level: str
    max_event_age: timedelta
    max_future: timedelta


class LiveSettings:
    """The edge's own settings, and head office's in their place where it set them."""

    def __init__(self, own: Tunables) -> None:
        self.own = own
        self._in_force = own
        self._window = TimeWindow(own.max_event_age, own.max_future)

    @classmethod
    def from_settings(cls, settings: Settings) -> LiveSettings:
        return cls(
            Tunables(settings.log_level, settings.edge_max_event_age, settings.edge_max_future)
        )

    @property
    def in_force(self) -> Tunables:
        return self._in_force

    @property
    def window(self) -> TimeWindow:
        return self._window

    def problem(self, at: datetime, now: datetime) -> str | None:
        """Why a live event at ``at`` is implausible now (the ingestor's window check)."""
        return self._window.problem(at, now)

    def apply(
        self,
        log_level: str | None = None,
        max_event_age_s: int | None = None,
        max_future_s: int | None = None,
    ) -> None:
        """Head office's values, each None for the edge's own; raises ValueError naming the
        setting, and then changes nothing."""
        if log_level is not None and log_level not in LOG_LEVELS:
            raise ValueError(f"log_level {log_level!r} is not one of {', '.join(LOG_LEVELS)}")
        age = self.own.max_event_age if max_event_age_s is None else _seconds(max_event_age_s)
        future = self.own.max_future if max_future_s is None else _seconds(max_future_s)
        if not timedelta(0) < age <= MAX_WINDOW:
            raise ValueError(f"max_event_age_seconds must be 1 to {_whole(MAX_WINDOW)}")
        if not timedelta(0) <= future <= MAX_WINDOW:
            raise ValueError(f"max_future_seconds must be 0 to {_whole(MAX_WINDOW)}")
        self._set(Tunables(log_level or self.own.log_level, age, future))

    def reset(self) -> None:
        """Back to the edge's own settings (head office's record deleted)."""
        self._set(self.own)

    def _set(self, tunables: Tunables) -> None:
        if tunables.log_level != self._in_force.log_level:
            set_log_level(tunables.log_level)
        self._in_force = tunables
        self._window = TimeWindow(tunables.max_event_age, tunables.max_future)


def _seconds(value: int) -> timedelta:
    try:
        return timedelta(seconds=value)
    except OverflowError:
        return MAX_WINDOW * 2  # out of range: refused by the caller's bound


def _whole(span: timedelta) -> int:
    return int(span.total_seconds())
