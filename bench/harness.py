"""Rounds, medians, spreads and pairwise ratios.

A noisy, shared machine moves both sides of a comparison alike, so every stage runs ours and
the reference alternately, round after round, and each ratio is taken within its round; the
reported ratio is the median of those.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Figure:
    """One measured quantity over several rounds."""

    unit: str
    rounds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.rounds) if self.rounds else float("nan")

    def as_json(self) -> dict[str, Any]:
        return {
            "median": round(self.median, 3),
            "min": round(min(self.rounds), 3) if self.rounds else None,
            "max": round(max(self.rounds), 3) if self.rounds else None,
            "unit": self.unit,
            "rounds": [round(r, 3) for r in self.rounds],
        }


def ratio(ours: Figure, reference: Figure) -> dict[str, Any]:
    """Ours / reference, computed round by round (pairs measured back to back)."""
    pairs = [o / r for o, r in zip(ours.rounds, reference.rounds, strict=True) if r]
    return {
        "median": round(statistics.median(pairs), 3) if pairs else None,
        "min": round(min(pairs), 3) if pairs else None,
        "max": round(max(pairs), 3) if pairs else None,
        "rounds": [round(p, 3) for p in pairs],
    }


Measure = Callable[[], Awaitable[float]]
"""Runs one round of a workload and returns its rate (or whatever the figure is)."""


async def paired(
    ours: Measure, reference: Measure, *, rounds: int, warmup: int = 1, unit: str
) -> tuple[Figure, Figure]:
    """Warm both up, then alternate them ``rounds`` times."""
    for _ in range(warmup):
        await ours()
        await reference()
    mine, theirs = Figure(unit), Figure(unit)
    for n in range(rounds):
        # Alternate which goes first, so neither always gets the warmer caches.
        if n % 2 == 0:
            mine.rounds.append(await ours())
            theirs.rounds.append(await reference())
        else:
            theirs.rounds.append(await reference())
            mine.rounds.append(await ours())
    return mine, theirs


def rate(count: int, started: float) -> float:
    """Events per second since ``started`` (a ``time.perf_counter()``)."""
    return count / max(time.perf_counter() - started, 1e-9)


def stage_result(
    *,
    figures: dict[str, Figure],
    reference_name: str,
    reference: dict[str, Figure],
    ratios: dict[str, dict[str, Any]],
    target: str,
    met: bool | None,
    notes: str = "",
) -> dict[str, Any]:
    """The shape of every stage in ``bench/results.json``."""
    return {
        "figures": {k: f.as_json() for k, f in figures.items()},
        "reference": {
            "name": reference_name,
            "figures": {k: f.as_json() for k, f in reference.items()},
        },
        "ratio": ratios,
        "target": target,
        "met": met,
        "notes": notes,
    }
