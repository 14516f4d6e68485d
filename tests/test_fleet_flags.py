"""Each kind of fleet flag raised and cleared, by a report or by time alone, through the real
codec and applier into a database (``ConsumerHarness``): an edge gone silent and back, an
outbox growing (old and deepening), a clock off, a device down in opening hours (not after
closing), a till not seen on a trading day, drift (not applied in time, refused), a
suspended till still posting. And what the evaluation leaves alone while an edge is silent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.fleet_support import Harnessed, report, settings_json
from tillstream.core.settings import Settings
from tillstream_consumers.fleet.flags import KINDS, NEXT_STEPS

ALWAYS = Settings(fleet_opening_hours="00:00-24:00", fleet_till_grace=0)
BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture
def fleet(tmp_path: Path) -> Harnessed:
    return Harnessed(f"sqlite:///{tmp_path / 'fleet.db'}", ALWAYS)


def now() -> datetime:
    return datetime.now(UTC)


def test_an_edge_that_stops_reporting_is_silent_and_back_with_its_next_report(
    fleet: Harnessed,
) -> None:
    t0 = now()
    fleet.send(report("S1", t0, heartbeat_seconds=10))
    assert fleet.kinds("S1") == set()
    fleet.at(t0 + timedelta(seconds=24), "S1")  # 2.5 heartbeats of 10 s: not yet
    assert fleet.kinds("S1") == set()
    assert fleet.due(t0 + timedelta(seconds=26)) == 1  # the store was due: time alone
    assert fleet.kinds("S1") == {"edge_silent"}
    message = fleet.open_flags("S1")[("edge_silent", "edge")]
    assert "silent after 2.5 heartbeats without one" in message
    fleet.send(report("S1", now(), heartbeat_seconds=10))
    assert fleet.kinds("S1") == set() and fleet.resolved("S1", "edge_silent") == 1


def test_with_the_defaults_a_killed_edge_is_silent_within_90_s_and_a_lost_heartbeat_is_not(
    fleet: Harnessed,
) -> None:
    """Killed just after a report, the worst case: 30 s heartbeats by default."""
    t0 = now()
    fleet.send(report("S1", t0, heartbeat_seconds=30))
    fleet.at(t0 + timedelta(seconds=64), "S1")  # one heartbeat lost, the next 4 s late
    assert fleet.kinds("S1") == set()
    fleet.at(t0 + timedelta(seconds=76), "S1")
    assert fleet.kinds("S1") == {"edge_silent"}


def test_an_outbox_whose_oldest_event_waits_too_long_is_growing(fleet: Harnessed) -> None:
    t0 = now()
    waiting = {"outbox_depth": 40, "oldest_unsent_at": t0 - timedelta(minutes=11)}
    fleet.send(report("S1", t0, edge=waiting))
    (message,) = fleet.open_flags("S1").values()
    assert "the oldest of 40 unsent events waits since" in message
    fleet.send(report("S1", now()))
    assert fleet.kinds("S1") == set() and fleet.resolved("S1", "outbox_growing") == 1


def test_an_outbox_deeper_in_each_of_five_reports_is_growing(fleet: Harnessed) -> None:
    t0 = now() - timedelta(minutes=1)
    for n in range(6):  # depth 0, then deeper five times
        fresh = {"outbox_depth": n * 10, "oldest_unsent_at": t0 if n else None}
        fleet.send(report("S1", t0 + timedelta(seconds=n), edge=fresh))
        assert ("outbox_growing" in fleet.kinds("S1")) is (n >= 5), n
    fleet.send(report("S1", t0 + timedelta(seconds=7), edge={"outbox_depth": 12}))
    assert fleet.kinds("S1") == set()


def test_a_clock_off_by_more_than_the_setting_is_skewed(fleet: Harnessed) -> None:
    t0 = now()
    fleet.send(report("S1", t0 + timedelta(seconds=45)), appended=t0)  # the edge is ahead
    assert fleet.open_flags("S1") == {
        ("clock_skew", "edge"): "the edge's clock is 45s ahead of the broker's"
    }
    fleet.send(report("S1", t0 - timedelta(seconds=20)), appended=t0)  # within 30 s
    assert fleet.kinds("S1") == set()
    fleet.send(report("S1", t0 - timedelta(minutes=3)), appended=t0)
    assert "3m 00s behind" in fleet.open_flags("S1")[("clock_skew", "edge")]


def test_a_device_disconnected_during_opening_hours_is_down_until_it_is_back(
    fleet: Harnessed,
) -> None:
    t0 = now()
    unplugged = report("S1", t0, devices=[])
    base = report("S1", t0)
    scanner = {**base["devices"][0], "connected": False, "connected_since": None}
    down = {**scanner, "disconnected_since": t0}
    fleet.send({**unplugged, "devices": [down]})
    assert fleet.kinds("S1") == set()  # not for 5 minutes yet
    later = t0 + timedelta(minutes=4, seconds=50)  # the edge reports on: not silent
    fleet.send({**report("S1", later), "devices": [down]})
    fleet.due(t0 + timedelta(minutes=5, seconds=1))  # time alone raises it
    assert fleet.open_flags("S1") == {
        ("device_down", "scanner-1"): "scanner-1 (scanner on /dev/ttyUSB0) disconnected since "
        + t0.astimezone(BERLIN).isoformat(sep=" ", timespec="seconds")
    }
    fleet.send(report("S1", t0 + timedelta(minutes=5, seconds=5)))  # plugged in again
    assert fleet.kinds("S1") == set() and fleet.resolved("S1", "device_down") == 1


def test_a_device_down_outside_opening_hours_is_flagged_when_the_store_opens(
    tmp_path: Path,
) -> None:
    hours = Settings(fleet_opening_hours="08:00-21:00")
    fleet = Harnessed(f"sqlite:///{tmp_path / 'fleet.db'}", hours)
    night = datetime(2026, 3, 4, 23, 0, tzinfo=BERLIN)
    base = report("S1", night)
    down = {**base["devices"][0], "connected": False, "disconnected_since": night}
    fleet.send({**base, "devices": [down]})
    fleet.at(night + timedelta(minutes=30), "S1")
    assert "device_down" not in fleet.kinds("S1")
    fleet.send({**report("S1", night + timedelta(hours=8)), "devices": [down]})
    fleet.at(night + timedelta(hours=8, minutes=1), "S1")  # 07:01: still closed
    assert "device_down" not in fleet.kinds("S1")
    fleet.send({**report("S1", night + timedelta(hours=9, seconds=5)), "devices": [down]})
    fleet.at(night + timedelta(hours=9, seconds=10), "S1")  # 08:00:10: open, down 9 h
    assert "device_down" in fleet.kinds("S1")
    fleet.send({**report("S1", night + timedelta(hours=22, seconds=15)), "devices": [down]})
    fleet.at(night + timedelta(hours=22, seconds=20), "S1")  # 21:00:20: closed again
    assert "device_down" not in fleet.kinds("S1")


def test_a_till_seen_in_the_last_days_and_not_today_is_not_seen(fleet: Harnessed) -> None:
    t0 = now()
    made = report("S1", t0, tills=2)
    made["tills"][1]["last_seen_at"] = t0 - timedelta(days=1, minutes=5)  # yesterday, local
    made["tills"][0]["last_seen_at"] = t0 - timedelta(days=30)  # long gone: not expected
    fleet.send(made)
    assert fleet.kinds("S1") == {"till_not_seen"}
    assert set(fleet.open_flags("S1")) == {("till_not_seen", "T02")}
    again = report("S1", now(), tills=2)
    again["tills"][0]["last_seen_at"] = t0 - timedelta(days=30)
    fleet.send(again)
    assert fleet.kinds("S1") == set() and fleet.resolved("S1", "till_not_seen") == 1


def test_a_till_is_expected_only_after_opening_and_grace(tmp_path: Path) -> None:
    hours = Settings(fleet_opening_hours="08:00-21:00", fleet_till_grace=7200)
    fleet = Harnessed(f"sqlite:///{tmp_path / 'fleet.db'}", hours)
    morning = datetime(2026, 3, 4, 9, 0, tzinfo=BERLIN)
    made = report("S1", morning, tills=1)
    made["tills"][0]["last_seen_at"] = morning - timedelta(days=1)
    fleet.send(made)
    fleet.at(morning, "S1")
    assert fleet.kinds("S1") == set()  # 09:00 < 08:00 + 2 h
    later = report("S1", morning.replace(hour=10, minute=1), tills=1)
    later["tills"][0]["last_seen_at"] = morning - timedelta(days=1)
    fleet.send(later)
    fleet.at(morning.replace(hour=10, minute=1, second=5), "S1")
    assert fleet.kinds("S1") == {"till_not_seen"}


def test_drift_not_applied_in_time_and_refused(fleet: Harnessed) -> None:
    t0 = now()
    suspended = {"lifecycle": "SUSPENDED", "token_sha256": None, "previous_token_until": None,
                 "previous_token_sha256": None}  # fmt: skip
    fleet.decide("S1", "till/T01", 2, t0 - timedelta(minutes=20), till=suspended)
    applied_v1 = [{"target": "till/T01", "version": 1, "applied": True, "error": None, "at": t0}]
    fleet.send(report("S1", t0, applied=applied_v1))
    assert "version 2" in fleet.open_flags("S1")[("drift", "till/T01")]
    assert "the edge has version 1" in fleet.open_flags("S1")[("drift", "till/T01")]
    applied_v2 = [{"target": "till/T01", "version": 2, "applied": True, "error": None, "at": t0}]
    fleet.send(report("S1", now(), applied=applied_v2))
    assert fleet.kinds("S1") == set()
    table = {"protocol": "scanner", "port": "/dev/ttyUSB9"}
    fleet.decide("S1", "device/scanner-1", 1, now(), **settings_json(**table))
    refused = [{"target": "device/scanner-1", "version": 1, "applied": False,
                "error": "port /dev/ttyUSB9: no such device", "at": now()}]  # fmt: skip
    fleet.send(report("S1", now(), applied=applied_v2 + refused))  # at once: not a wait
    assert fleet.open_flags("S1") == {
        ("drift", "device/scanner-1"): "device/scanner-1: version 1 refused by the edge: "
        "port /dev/ttyUSB9: no such device"
    }


def test_a_desired_state_not_applied_is_drift_only_after_the_setting(fleet: Harnessed) -> None:
    t0 = now()
    fleet.send(report("S1", t0))
    fleet.decide("S1", "edge", 1, t0, edge={"log_level": "WARNING", "max_event_age_seconds": None,
                                            "max_future_seconds": None})  # fmt: skip
    assert fleet.kinds("S1") == set()
    fleet.send(report("S1", t0 + timedelta(seconds=5)))
    fleet.due(t0 + timedelta(minutes=10, seconds=1))
    assert fleet.kinds("S1") == {"drift", "edge_silent"}


def test_a_suspended_till_still_trying_to_post(fleet: Harnessed) -> None:
    t0 = now()
    made = report("S1", t0, tills=1)
    made["tills"][0].update(lifecycle="SUSPENDED", refused_while_suspended=0)
    fleet.send(made)
    assert fleet.kinds("S1") == set()
    again = report("S1", now(), tills=1)
    again["tills"][0].update(lifecycle="SUSPENDED", refused_while_suspended=3)
    fleet.send(again)
    (message,) = fleet.open_flags("S1").values()
    assert message.startswith("till T01 (suspended) still tries to post: 3 requests refused")
    fleet.at(now() + timedelta(hours=1, minutes=1), "S1")
    assert "suspended_posting" not in fleet.kinds("S1")


def test_a_suspended_tills_refusals_are_counted_as_the_edge_keeps_them(fleet: Harnessed) -> None:
    """The edge keeps a till's count across its restarts and starts it over when the
    lifecycle changes: only a count above the one before is a new attempt to post."""
    t0 = now() - timedelta(minutes=5)

    def send(at: datetime, lifecycle: str, refused: int, started: datetime) -> str | None:
        made = report("S1", at, tills=1, edge={"started_at": started})
        made["tills"][0].update(lifecycle=lifecycle, refused_while_suspended=refused)
        fleet.send(made)
        row = fleet.db.fetchone("SELECT refused_rose_at FROM fleet_tills WHERE till_id = 'T01'")
        return None if row is None or row[0] is None else str(row[0])

    first = t0 - timedelta(hours=1)
    assert send(t0, "SUSPENDED", 0, first) is None
    rose = send(t0 + timedelta(seconds=10), "SUSPENDED", 4, first)
    assert rose is not None
    restarted = t0 + timedelta(seconds=20)
    assert send(restarted, "SUSPENDED", 4, restarted) == rose  # the same count, kept
    lost = t0 + timedelta(seconds=30)
    assert send(lost, "SUSPENDED", 1, lost) != rose  # started over (its file lost): new
    decommissioned = send(t0 + timedelta(seconds=40), "DECOMMISSIONED", 0, lost)
    assert decommissioned == send(t0 + timedelta(seconds=40), "DECOMMISSIONED", 0, lost)
    assert send(t0 + timedelta(seconds=50), "DECOMMISSIONED", 1, lost) != decommissioned


def test_while_silent_the_last_reports_flags_are_left_as_they_were(fleet: Harnessed) -> None:
    t0 = now()
    base = report("S1", t0, heartbeat_seconds=10)
    down = {**base["devices"][0], "connected": False, "disconnected_since": t0 - timedelta(hours=1)}
    fleet.send({**base, "devices": [down]})
    assert fleet.kinds("S1") == {"device_down"}
    fleet.at(t0 + timedelta(minutes=5), "S1")
    assert fleet.kinds("S1") == {"device_down", "edge_silent"}


def test_every_kind_has_a_next_step_and_the_docs_list_them() -> None:
    assert set(NEXT_STEPS) == set(KINDS)
    docs = (Path(__file__).resolve().parent.parent / "docs" / "fleet.md").read_text()
    for kind, step in NEXT_STEPS.items():
        assert f"| `{kind}` |" in docs, kind
        assert step in " ".join(docs.split()), f"docs/fleet.md: the next step of {kind}"


def test_a_report_applied_twice_changes_nothing(fleet: Harnessed) -> None:
    made = report("S1", now())
    fleet.send(made)
    fleet.send(made)  # a replay: same report id at another offset
    assert fleet.db.fetchone("SELECT COUNT(*) FROM fleet_history") == (1,)
