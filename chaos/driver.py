"""The tills of a chaos run: each store's planned events posted to its edge, in order, as
fast as the edge takes them, retried (same event ids) while the edge is down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from chaos.plan import Event, Plan, Step
from tillstream.core.records import jsonable

BATCH_EVENTS = 400
RETRY_FOR = 600.0
"""Seconds a till keeps retrying one batch before it gives up (and the events count as lost)."""


@dataclass
class Progress:
    accepted: int = 0
    """Events the edges acknowledged (2xx)."""
    refused: int = 0
    """Events carrying a card number that the edges refused, as they must."""
    unexpected: list[str] = field(default_factory=list)
    """Answers that should not happen: a good batch refused, a bad one accepted."""
    wrongly_accepted: int = 0
    given_up: int = 0
    retries: int = 0


def batches(steps: Iterator[Step], size: int) -> Iterator[tuple[list[Event], bool]]:
    """Steps grouped into requests of about ``size`` events; a step to be refused always goes
    alone."""
    pending: list[Event] = []
    for step in steps:
        if step.refused:
            if pending:
                yield pending, False
                pending = []
            yield step.events, True
            continue
        pending.extend(step.events)
        if len(pending) >= size:
            yield pending, False
            pending = []
    if pending:
        yield pending, False


class Driver:
    def __init__(
        self, plan: Plan, edge_url: Callable[[str], str], *, rate: float | None = None
    ) -> None:
        self.plan = plan
        self.edge_url = edge_url
        self.rate = rate
        """Events per second offered, all stores together (None: as fast as edges take them)."""
        self.progress = Progress()

    @property
    def done(self) -> float:
        """0..1: share of the planned events answered so far."""
        answered = self.progress.accepted + self.progress.given_up
        return min(1.0, answered / self.plan.events)

    async def run(self) -> Progress:
        async with httpx.AsyncClient(timeout=30) as client:
            await asyncio.gather(*(self._store(client, s) for s in self.plan.stores))
        return self.progress

    async def _store(self, client: httpx.AsyncClient, store: str) -> None:
        started, sent = time.monotonic(), 0
        size = BATCH_EVENTS
        if self.rate:  # paced: a few requests a second, so that every fault meets traffic
            size = max(10, min(BATCH_EVENTS, int(self.rate / len(self.plan.stores) / 4)))
        for events, refused in batches(self.plan.steps(store), size):
            if self.rate:  # paced, so that the traffic lasts as long as the faults do
                due = started + sent * len(self.plan.stores) / self.rate
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            sent += len(events)
            body = [{"type": kind, **jsonable(record)} for kind, record in events]
            status = await self._post(client, store, body)
            if status is None:
                self.progress.given_up += len(events)
            elif refused and status == 422:
                self.progress.refused += len(events)
            elif refused:
                self.progress.wrongly_accepted += len(events)
                self.progress.unexpected.append(f"{store}: a card number was answered {status}")
            elif status < 300:
                self.progress.accepted += len(events)
            else:
                self.progress.given_up += len(events)
                self.progress.unexpected.append(f"{store}: a good batch was answered {status}")

    async def _post(self, client: httpx.AsyncClient, store: str, body: list[Any]) -> int | None:
        """The edge's final answer, or None if it never gave one within :data:`RETRY_FOR`."""
        deadline = time.monotonic() + RETRY_FOR
        delay = 0.1
        while time.monotonic() < deadline:
            try:
                response = await client.post(f"{self.edge_url(store)}/v1/events", json=body)
            except httpx.TransportError:
                pass  # edge down or restarting
            else:
                if response.status_code not in (502, 503, 504):
                    return response.status_code
            self.progress.retries += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        return None
