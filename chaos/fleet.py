"""The fleet view against the faults: head office's fleet service must call an edge silent
while it is down, and only then.

The faults note each edge outage (:class:`Outage`): an edge killed until it was started
again, the offline store cut off until its uplink came back. The fleet service's
``edge_silent`` flags (raised and resolved, kept after they are resolved) are then judged
against them (:func:`judge`), with the documented slack (:class:`Watch`):

- an outage at least ``silent_after + latency`` long must have been flagged silent, the
  flag raised during the outage (or within ``latency`` after it) and resolved within
  ``back_within`` of the edge's restart (its first report) and not before it: else *lost*;
- a silence raised when no edge of its store was down (outside every outage, with
  ``latency`` after its end) is *false*, counted *wrong*; so is one resolved before the edge
  was back, or never.

An edge reports every ``heartbeat_s`` seconds (``TILLSTREAM_EDGE_HEARTBEAT_S``) and is
silent after ``silent_heartbeats`` of them without a report
(``TILLSTREAM_FLEET_SILENT_HEARTBEATS``, docs/fleet.md): a run sets both short, so that an
edge kill is seen, and the silence still longer than any other fault keeps a report from
head office (a broker's failover, PostgreSQL's outage stalling the fleet service).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from chaos.check import Stage
from tillstream_consumers.fleet.flags import EDGE_SILENT
from tillstream_consumers.fleet.times import parse
from tillstream_consumers.runtime.db import Database

KILL = "kill"
OFFLINE = "offline"


@dataclass(frozen=True)
class Watch:
    """How quickly the run's fleet service calls an edge silent, and the slack allowed."""

    heartbeat_s: int
    silent_heartbeats: int
    latency: float = 5.0
    """Seconds from a report (or its absence) to the flag: the service's consumer poll and
    its refresh every 2 s, each up to a batch late."""
    back_within: float = 45.0
    """Seconds from an edge's restart to its silence resolved: the edge starting up (its
    first report is sent at start; 12 s under a short run's load on 2 cores, slower on a
    busy CI machine), then :attr:`latency`."""

    @classmethod
    def for_run(cls, short: bool) -> Watch:
        # Silent after 32 s (short) or 60 s: longer than PostgreSQL's outage (8 s / 20 s)
        # until the fleet service's next retry (its backoff doubles: 12.6 s, 25.4 s, 51 s
        # after the first failure) and than a broker's failover (about 10 s).
        if short:
            return cls(heartbeat_s=2, silent_heartbeats=16)
        return cls(heartbeat_s=5, silent_heartbeats=12)

    @property
    def silent_after(self) -> float:
        return float(self.heartbeat_s * self.silent_heartbeats)

    @property
    def long_enough(self) -> float:
        """An outage at least this long must be seen."""
        return self.silent_after + self.latency


@dataclass(frozen=True)
class Outage:
    """An edge that head office cannot hear: killed (until started again) or its store cut
    off (until the uplink is back)."""

    store: str
    kind: str
    down_at: datetime
    up_at: datetime

    @property
    def seconds(self) -> float:
        return (self.up_at - self.down_at).total_seconds()


@dataclass(frozen=True)
class Silence:
    """One ``edge_silent`` flag of the fleet service."""

    store: str
    raised_at: datetime
    resolved_at: datetime | None


@dataclass
class Seen:
    outage: Outage
    required: bool
    silences: list[Silence] = field(default_factory=list)

    @property
    def flagged_after(self) -> float | None:
        """Seconds from the outage's start to its silence raised (None: never)."""
        if not self.silences:
            return None
        return (self.silences[0].raised_at - self.outage.down_at).total_seconds()

    @property
    def back_after(self) -> float | None:
        """Seconds from the edge back to its silence resolved (None: never)."""
        last = self.silences[-1].resolved_at if self.silences else None
        return None if last is None else (last - self.outage.up_at).total_seconds()


@dataclass
class Verdict:
    seen: list[Seen]
    missed: list[str]
    """What a required outage lacked (no silence, or not resolved in time)."""
    false: list[str]
    """Silences that no outage explains, or resolved while the edge was still away."""
    long_enough: float

    def stage(self) -> Stage:
        required = [s for s in self.seen if s.required]
        stage = Stage("fleet", len(required), lost=len(self.missed), wrong=len(self.false))
        stage.note = self.summary()
        stage.details = self.lines()
        problems = self.missed + self.false
        if problems:
            stage.note += "; " + "; ".join(problems[:3])
        return stage

    def summary(self) -> str:
        """``1 of 1 kill seen silent (at most 27 s after the kill), back within 4 s of the
        restart; 0 of 1 cut-off seen silent (1 under 29 s: too short to be seen); 0 false
        silences``"""
        parts = []
        for kind, what, back in ((KILL, "kill", "restart"), (OFFLINE, "cut-off", "reconnect")):
            ours = [s for s in self.seen if s.outage.kind == kind]
            if not ours:
                continue
            flagged = [s for s in ours if s.flagged_after is not None]
            short = len(ours) - sum(s.required for s in ours)
            text = f"{len(flagged)} of {len(ours)} {what}{'s' if len(ours) > 1 else ''} seen silent"
            if flagged:
                worst = max(s.flagged_after or 0.0 for s in flagged)
                text += f" (at most {worst:.0f} s after the {what})"
            backs = [s.back_after for s in flagged if s.back_after is not None]
            if backs:
                text += f", back within {max(backs):.0f} s of the {back}"
            if short:
                text += f" ({short} under {self.long_enough:.0f} s: too short to be seen)"
            parts.append(text)
        parts.append(f"{len(self.false)} false silence{'' if len(self.false) == 1 else 's'}")
        return "; ".join(parts)

    def lines(self) -> list[str]:
        """Each outage and what the fleet service made of it, for the report."""
        out = []
        for s in self.seen:
            o = s.outage
            text = (
                f"{o.store} {o.kind} {o.down_at:%H:%M:%S}-{o.up_at:%H:%M:%S} ({o.seconds:.0f} s"
                f"{'' if s.required else ', too short to require'}):"
            )
            for silence in s.silences:
                back = f"{silence.resolved_at:%H:%M:%S}" if silence.resolved_at else "never"
                text += f" silent {silence.raised_at:%H:%M:%S}, back {back};"
            out.append(text.rstrip(";") + ("" if s.silences else " not seen silent"))
        return out


def judge(outages: Sequence[Outage], silences: Sequence[Silence], watch: Watch) -> Verdict:
    """The fleet's silences against the run's outages (module docstring)."""
    seen = [Seen(o, o.seconds >= watch.long_enough) for o in outages]
    false: list[str] = []
    for silence in sorted(silences, key=lambda s: s.raised_at):
        during = [
            s
            for s in seen
            if s.outage.store == silence.store
            and s.outage.down_at <= silence.raised_at
            and (silence.raised_at - s.outage.up_at).total_seconds() <= watch.latency
        ]
        if not during:
            false.append(f"{silence.store} silent at {silence.raised_at:%H:%M:%S}, not down")
            continue
        during[0].silences.append(silence)
        resolved, up = silence.resolved_at, during[0].outage.up_at
        if resolved is not None and resolved < up:
            false.append(f"{silence.store} back at {resolved:%H:%M:%S} while still down")
    missed: list[str] = []
    for s in seen:
        o = s.outage
        if not s.required:
            continue
        if not s.silences:
            missed.append(f"{o.store} {o.kind} {o.seconds:.0f} s not seen silent")
        elif s.back_after is None or s.back_after > watch.back_within:
            after = "never" if s.back_after is None else f"{s.back_after:.0f} s after"
            missed.append(f"{o.store} {o.kind}: silence resolved {after}")
    return Verdict(seen, missed, false, watch.long_enough)


def silences_of(db: Database) -> list[Silence]:
    """Every ``edge_silent`` flag the fleet service raised, open or resolved."""
    rows = db.fetchall(
        "SELECT store_id, first_seen_at, resolved_at FROM fleet_flags WHERE kind = ? "
        "ORDER BY first_seen_at",
        (EDGE_SILENT,),
    )
    out = []
    for store, raised, resolved in rows:
        at = parse(raised)
        assert at is not None, "a flag is raised at a time"
        out.append(Silence(str(store), at, parse(resolved)))
    return out


def check_fleet(db: Database, outages: Sequence[Outage], watch: Watch) -> Stage:
    """The fleet stage: outages to see (``expected``), missed (``lost``), false silences
    (``wrong``)."""
    return judge(outages, silences_of(db), watch).stage()
