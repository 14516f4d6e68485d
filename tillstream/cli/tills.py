"""The simulated tills' options, one definition for ``tillstream demo`` and ``tillstream
simulate``: how many stores and tills, at what rate, for how long, from which seed."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

R = TypeVar("R")


@dataclass(frozen=True)
class Traffic:
    """What the tills are told to do (the options below, read)."""

    stores: int
    tills: int
    rate: float
    duration: float | None
    seed: int | None

    def store_ids(self, prefix: str = "S") -> list[str]:
        """``S001``, ``S002``, ... one per store."""
        return [f"{prefix}{n:03d}" for n in range(1, self.stores + 1)]


MAX_STORES = 1000
"""Simulated stores at most; the demo starts an edge process per store, so it takes fewer."""


def traffic_options(
    *,
    rate: float,
    duration_help: str,
    duration_required: bool = False,
    max_stores: int = MAX_STORES,
) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """``--stores --tills --rate --duration --seed``, handed to the command as one
    ``traffic: Traffic`` argument; ``rate`` is the command's default rate."""
    options = [
        click.option(
            "--stores", type=click.IntRange(1, max_stores), default=3, show_default=True,
            help="Stores, each with its own tills (and, in the demo, its own edge service).",
        ),
        click.option(
            "--tills", type=click.IntRange(1, 50), default=3, show_default=True,
            help="Tills per store; the last one is a POSLog till.",
        ),
        click.option(
            "--rate", type=click.FloatRange(0.1, 100_000), default=rate, show_default=True,
            help="Events per second offered by all tills together.",
        ),
        click.option(
            "--duration", type=click.FloatRange(1), required=duration_required,
            help=duration_help,
        ),
        click.option("--seed", type=int, help="Same seed, same receipts (and event ids)."),
    ]  # fmt: skip

    def decorate(command: Callable[..., R]) -> Callable[..., R]:
        @functools.wraps(command)
        def with_traffic(
            *args: Any,
            stores: int,
            tills: int,
            rate: float,
            duration: float | None,
            seed: int | None,
            **kwargs: Any,
        ) -> R:
            traffic = Traffic(stores, tills, rate, duration, seed)
            return command(*args, traffic=traffic, **kwargs)

        decorated: Callable[..., R] = with_traffic
        for option in reversed(options):
            decorated = option(decorated)
        return decorated

    return decorate
