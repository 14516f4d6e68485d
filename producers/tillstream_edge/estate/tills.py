"""What the edge knows of each till: when it last posted, its last receipt, its software,
what it last said of itself (``POST /v1/tills/status``), and its lifecycle as head office
set it; and the one rule that refuses a suspended or decommissioned till.

Kept in memory and written to the estate file every few seconds (``take_dirty``), never
once per sale. The lifecycle is head office's desired state, applied again from the estate
file at every start, before the edge serves a request; it is kept here too, so a restart
does not count a suspension as new (``refused`` goes on).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Literal

from tillstream.core.pan import mask_pans

log = logging.getLogger(__name__)

Lifecycle = Literal["ACTIVE", "SUSPENDED", "DECOMMISSIONED"]
LIFECYCLES: tuple[Lifecycle, ...] = ("ACTIVE", "SUSPENDED", "DECOMMISSIONED")
MAX_TILLS = 200
"""Tills the edge keeps (and reports) at most: with tokens off, any terminal id an event
names is a till; a report must stay small."""
MAX_RECEIPT = 64
SOFTWARE_HEADER = "X-Till-Software"
"""The header a till names its software and version in, on any request (``PosVendor
Till/4.2.1``)."""
MAX_SOFTWARE = 128
_NOT_PRINTABLE = re.compile(r"[^\x20-\x7e]+")


def software_of(header: str | None) -> str | None:
    """The ``X-Till-Software`` header as it is kept and reported: printable ASCII only,
    spaces collapsed, at most 128 characters, a card number masked; None when nothing is
    left. A header is the till's to write, so nothing in it is trusted."""
    if not header:
        return None
    text = " ".join(_NOT_PRINTABLE.sub(" ", header[: 4 * MAX_SOFTWARE]).split())
    return mask_pans(text)[:MAX_SOFTWARE] or None


@dataclass(frozen=True, slots=True)
class Condition:
    """One thing a till reports of itself (estate_report ``TillCondition``)."""

    code: str
    state: str
    detail: str | None = None
    since: float | None = None
    """Unix time, by the till's clock."""


@dataclass
class TillState:
    till_id: str
    lifecycle: Lifecycle = "ACTIVE"
    last_seen_at: float | None = None
    last_receipt: str | None = None
    software: str | None = None
    refused: int = 0
    """Requests refused since its lifecycle last changed (``refused_while_suspended``)."""
    status_at: float | None = None
    conditions: list[Condition] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> TillState:
        raw = json.loads(text)
        raw["conditions"] = [Condition(**c) for c in raw.get("conditions", [])]
        return cls(**raw)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a till's request is refused: the reason counted and answered, and the message."""

    reason: str
    message: str


class Tills:
    """The book of one edge's tills (module docstring)."""

    def __init__(
        self, on_change: Callable[[], None] = lambda: None, clock: Callable[[], float] = time.time
    ) -> None:
        self._on_change = on_change
        self._clock = clock
        self._tills: dict[str, TillState] = {}
        self._dirty: set[str] = set()
        self._refusing = 0
        self._full_logged = False

    def load(self, stored: dict[str, str]) -> None:
        """What the estate file kept (at start, before anything is served)."""
        for till_id, text in stored.items():
            try:
                state = self._tills[till_id] = TillState.from_json(text)
            except (ValueError, TypeError) as exc:  # a state an older edge wrote: forgotten
                log.warning("estate: the kept state of a till could not be read (%s)", exc)
                continue
            self._refusing += state.lifecycle != "ACTIVE"

    def lifecycles(self) -> dict[str, Lifecycle]:
        return {t: s.lifecycle for t, s in self._tills.items()}

    # -- the rule -----------------------------------------------------------------------------

    @property
    def any_refused(self) -> bool:
        """Whether any till is refused now (the tokens-off channels then look at each
        event's till)."""
        return self._refusing > 0

    def refusal(self, till_id: str) -> Refusal | None:
        """Why this till's request is refused (suspended or decommissioned by head office),
        counted; None: it may post."""
        state = self._tills.get(till_id)
        if state is None or state.lifecycle == "ACTIVE":
            return None
        state.refused += 1
        self._dirty.add(till_id)
        word = state.lifecycle.lower()
        return Refusal(word, f"till {till_id} is {word} by head office")

    def set_lifecycle(self, till_id: str, lifecycle: Lifecycle) -> None:
        """Head office's lifecycle of a till (ACTIVE when its record is deleted)."""
        state = self._tills.get(till_id)
        if state is None:
            if lifecycle == "ACTIVE":
                return
            state = self._tills[till_id] = TillState(till_id)  # named by head office: kept
        if state.lifecycle != lifecycle:
            self._refusing += (lifecycle != "ACTIVE") - (state.lifecycle != "ACTIVE")
            state.lifecycle, state.refused = lifecycle, 0
            self._dirty.add(till_id)
            self._on_change()

    # -- what the tills say -----------------------------------------------------------------

    def seen(
        self, till_id: str, *, receipt: str | None = None, software: str | None = None
    ) -> None:
        """A request of this till was taken; ``receipt``: the sequence number of its last
        sale or till event in it."""
        state = self._state(till_id)
        if state is None:
            return
        state.last_seen_at = self._clock()
        if receipt is not None:
            state.last_receipt = receipt[:MAX_RECEIPT]
        self._dirty.add(till_id)
        if software is not None and software != state.software:
            state.software = software
            self._on_change()

    def status(
        self, till_id: str, conditions: Iterable[Condition], software: str | None = None
    ) -> None:
        """What the till reports of itself now, replacing what it reported before."""
        state = self._state(till_id)
        if state is None:
            return
        state.conditions = list(conditions)
        state.status_at = state.last_seen_at = self._clock()
        if software is not None:
            state.software = software
        self._dirty.add(till_id)
        self._on_change()

    def _state(self, till_id: str) -> TillState | None:
        state = self._tills.get(till_id)
        if state is not None:
            return state
        if len(self._tills) >= MAX_TILLS:
            if not self._full_logged:  # once: it is a store's set-up, not an event
                log.warning(
                    "estate: %d tills known, no more are kept or reported (till ids are the "
                    "terminal ids events name)",
                    MAX_TILLS,
                )
                self._full_logged = True
            return None
        state = self._tills[till_id] = TillState(till_id)
        self._on_change()  # a till not seen before
        return state

    # -- the report, the file --------------------------------------------------------------

    def states(self) -> list[TillState]:
        return [self._tills[t] for t in sorted(self._tills)]

    def take_dirty(self) -> dict[str, str]:
        """The states changed since the last call, to be written."""
        dirty, self._dirty = self._dirty, set()
        return {t: self._tills[t].to_json() for t in dirty if t in self._tills}
