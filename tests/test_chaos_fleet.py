"""The chaos run's fleet check (``chaos/fleet.py``): every edge kill long enough must be
flagged silent by the fleet service and resolved after the restart; a silence when no edge
was down is false. The verdict is tried on made-up outages and silences, then read from the
fleet service's own table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chaos.faults import Timing
from chaos.fleet import KILL, OFFLINE, Outage, Silence, Watch, check_fleet, judge
from tillstream_consumers.fleet import FleetService
from tillstream_consumers.fleet.tables import FLAG_COLUMNS
from tillstream_consumers.fleet.times import stamp
from tillstream_consumers.runtime.retrying import FIRST_BACKOFF, MAX_BACKOFF
from tillstream_consumers.runtime.testing import ConsumerHarness

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
WATCH = Watch(heartbeat_s=2, silent_heartbeats=12)  # silent after 24 s; seen from 29 s


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


KILLED = Outage("CH01", KILL, at(0), at(32))
CUT = Outage("CH03", OFFLINE, at(100), at(120))  # too short to be seen, silence allowed
SEEN = Silence("CH01", at(25), at(35))


def test_a_kill_seen_silent_and_back_checks_out() -> None:
    verdict = judge([KILLED, CUT], [SEEN], WATCH)
    stage = verdict.stage()
    assert (stage.expected, stage.lost, stage.wrong) == (1, 0, 0), stage
    assert stage.note.startswith(
        "1 of 1 kill seen silent (at most 25 s after the kill), back within 3 s of the restart; "
        "0 of 1 cut-off seen silent (1 under 29 s: too short to be seen); 0 false silences"
    ), stage.note
    # The offline store may be heard of as silent too, as long as it was cut off.
    cut_seen = Silence("CH03", at(121), at(123))
    assert judge([KILLED, CUT], [SEEN, cut_seen], WATCH).stage().ok


def test_a_missed_kill_is_lost() -> None:
    assert judge([KILLED], [], WATCH).stage().lost == 1
    never_back = Silence("CH01", at(25), None)
    assert judge([KILLED], [never_back], WATCH).stage().lost == 1
    late = Silence("CH01", at(25), at(32 + WATCH.back_within + 1))
    assert judge([KILLED], [late], WATCH).stage().lost == 1
    # A kill too short for the service to see may go unseen.
    brief = Outage("CH01", KILL, at(0), at(10))
    assert judge([brief], [], WATCH).stage().ok


def test_a_false_silence_is_wrong() -> None:
    other_store = Silence("CH02", at(25), at(35))
    stage = judge([KILLED], [SEEN, other_store], WATCH).stage()
    assert (stage.lost, stage.wrong) == (0, 1), stage
    assert "CH02 silent at 09:00:25, not down" in stage.note
    before = Silence("CH01", at(-30), at(-20))  # the same store, before it was killed
    after = Silence("CH01", at(32 + WATCH.latency + 1), at(70))
    assert judge([KILLED], [SEEN, before, after], WATCH).stage().wrong == 2
    back_too_soon = Silence("CH01", at(25), at(30))  # resolved while the edge was still down
    stage = judge([KILLED], [back_too_soon], WATCH).stage()
    assert stage.wrong == 1 and "while still down" in stage.note, stage


def test_the_silences_are_read_from_the_fleet_service(tmp_path: Path) -> None:
    fleet = ConsumerHarness(FleetService(), f"sqlite:///{tmp_path}/fleet.db")
    rows = [  # as flag_store.sync writes them: the flag's first sighting and its resolution
        ("a", "CH01", "edge_silent", "edge", "no report", 0, stamp(at(25)), stamp(at(35)),
         stamp(at(35))),
        ("b", "CH01", "outbox_growing", "edge", "grew", 1, stamp(at(5)), stamp(at(5)), None),
    ]  # fmt: skip
    db = fleet.db
    with db.transaction():
        db.insert_many("fleet_flags", FLAG_COLUMNS, rows)
    assert check_fleet(db, [KILLED], WATCH).ok
    false = ("c", "CH02", "edge_silent", "edge", "no report", 1, stamp(at(60)), stamp(at(60)),
             None)  # fmt: skip
    with db.transaction():
        db.insert_many("fleet_flags", FLAG_COLUMNS, [false])
    assert check_fleet(db, [KILLED], WATCH).wrong == 1


@pytest.mark.parametrize("short", [True, False])
def test_the_run_keeps_an_edge_down_long_enough_to_be_seen(short: bool) -> None:
    timing, watch = Timing.for_run(short), Watch.for_run(short)
    assert timing.edge_down >= watch.long_enough
    # Silent only after PostgreSQL's outage (and 5 s to start again) until the fleet
    # service's next retry: reports held up at head office are no silence of the edge.
    retry, backoff = 0.0, FIRST_BACKOFF
    while retry < timing.database + 5:
        retry, backoff = retry + backoff, min(backoff * 2, MAX_BACKOFF)
    assert watch.silent_after > retry
