"""How often a store-day is audited again while its events keep coming.

An audit reads all of a store-day's facts, so auditing a busy day after every batch costs
more as the day grows (a big store's day holds tens of thousands of facts by evening): the
work would grow with the square of the day. Two rules keep it in bounds.

- **In the batch** (:func:`audit_now`): a store-day is audited within the batch that brought
  its events while it is small: its last audit read fewer than :data:`SMALL_DAY` facts
  (receipts, till events and payments, those without a sale too). A bigger one the batch
  marks dirty.
- **On the refresh** (:class:`Pacing`), every couple of seconds, the dirty store-days are
  audited once their wait has passed: the time the last audits of all busy store-days took,
  times ``1 / SHARE - 1``, so auditing them takes at most :data:`SHARE` of the service's
  time, and a dirty day's flags lag by at most that wait (about a second for six stores of
  a few thousand receipts a day each).

A day is small by what its audit reads, not by its receipts: payments read ahead of their
sales (a consumer catching up reads the topics at their own pace) make a day of few
receipts as costly to audit as a full one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date

SMALL_DAY = 400
"""Facts: a store-day whose last audit read fewer is audited after every batch."""
SHARE = 0.2
"""The most of its time the service spends auditing dirty store-days on its refreshes."""

StoreDay = tuple[str, date]


def audit_now(audited_facts: int | None) -> bool:
    """Whether a batch audits a store-day whose last audit read ``audited_facts`` (None:
    never audited)."""
    return audited_facts is None or audited_facts < SMALL_DAY


class Pacing:
    """When each busy store-day was last audited and what that took, in this process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: dict[StoreDay, tuple[float, float]] = {}  # -> (finished, took)

    def wait(self) -> float:
        """Seconds between two audits of one store-day: the last audits of all the busy
        ones, each auditing :data:`SHARE` of the time."""
        return sum(took for _, took in self._last.values()) * (1 / SHARE - 1)

    def due(self, store_day: StoreDay) -> bool:
        last = self._last.get(store_day)
        return last is None or self._clock() - last[0] >= self.wait()

    @contextmanager
    def timing(self, store_day: StoreDay) -> Iterator[None]:
        """Note what the audit of ``store_day`` inside the block took."""
        started = self._clock()
        yield
        finished = self._clock()
        self._last[store_day] = (finished, finished - started)

    def forget_due(self) -> None:
        """Drop the store-days whose wait has passed (they hold nothing back any more)."""
        wait, now = self.wait(), self._clock()
        self._last = {k: v for k, v in self._last.items() if now - v[0] < wait}
