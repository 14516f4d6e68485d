"""Recency / frequency / monetary segments: a deliberately simple, fixed-threshold rule.

Each dimension scores 1-5 against the thresholds below (5 is best):

- recency: days since the last visit: <=7 -> 5, <=30 -> 4, <=90 -> 3, <=180 -> 2, else 1;
- frequency: visits: >=20 -> 5, >=10 -> 4, >=5 -> 3, >=2 -> 2, else 1;
- monetary: lifetime net spend in the customer's biggest currency, in whole units:
  >=1000 -> 5, >=500 -> 4, >=200 -> 3, >=50 -> 2, else 1 (currencies are never added up).

The first rule that matches names the segment:

1. ``lost``: R = 1 (no visit for more than 180 days);
2. ``new``: a single visit, within the last 30 days (F = 1, R >= 4);
3. ``champion``: R >= 4, F >= 4 and M >= 4;
4. ``loyal``: R >= 3 and F >= 3;
5. ``at_risk``: R = 2 (last visit 91-180 days ago);
6. ``occasional``: everyone else.

The segment depends on *when* it is asked, so it is computed on read against a reference
time rather than stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from tillstream_consumers.crm.tables import Profile

RECENCY_DAYS = (7, 30, 90, 180)
FREQUENCY_VISITS = (20, 10, 5, 2)
MONETARY_UNITS = (Decimal(1000), Decimal(500), Decimal(200), Decimal(50))


@dataclass(frozen=True)
class Segment:
    name: str
    recency: int
    frequency: int
    monetary: int


def _score_at_most(value: float, limits: tuple[int, ...]) -> int:
    for index, limit in enumerate(limits):
        if value <= limit:
            return 5 - index
    return 1


def _score_at_least(value: Decimal, limits: tuple[Decimal, ...]) -> int:
    for index, limit in enumerate(limits):
        if value >= limit:
            return 5 - index
    return 1


def score(last_visit: datetime, visits: int, spend: Decimal, now: datetime) -> Segment:
    """The segment of a customer last seen at ``last_visit``, as of ``now``."""
    days = max(0.0, (now - last_visit).total_seconds() / 86400)
    r = _score_at_most(days, RECENCY_DAYS)
    f = _score_at_least(Decimal(visits), tuple(Decimal(v) for v in FREQUENCY_VISITS))
    m = _score_at_least(spend, MONETARY_UNITS)
    if r == 1:
        name = "lost"
    elif f == 1 and r >= 4:
        name = "new"
    elif r >= 4 and f >= 4 and m >= 4:
        name = "champion"
    elif r >= 3 and f >= 3:
        name = "loyal"
    elif r == 2:
        name = "at_risk"
    else:
        name = "occasional"
    return Segment(name, r, f, m)


def segment_of(profile: Profile, now: datetime) -> Segment:
    biggest = max((s.total for s in profile.spend), default=Decimal(0))
    return score(profile.last_visit, profile.visits, biggest, now)
