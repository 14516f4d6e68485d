"""Two fleet service instances evaluating one store: a store's reports and its desired state
travel on different topics, which the consumer group may give to different instances. Each
takes the store's lock before reading anything of it, so the one that commits last has
evaluated the other's rows too (here: head office's version 2 of a till held uncommitted by
one instance while the other applies the edge's report of version 1 — drift, not missed).
On PostgreSQL the lock is the store's, not the database's: another store goes on."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.fleet_support import Harnessed, report
from tillstream.core.identifiers import field_problem, text_problem
from tillstream.core.settings import Settings
from tillstream_consumers.fleet import FleetService
from tillstream_consumers.fleet.service import lock_stores
from tillstream_consumers.runtime.api import Context, Record
from tillstream_consumers.runtime.db import Database
from tillstream_consumers.runtime.testing import ConsumerHarness

ALWAYS = Settings(fleet_opening_hours="00:00-24:00", fleet_till_grace=0)
WAIT = 1.5
"""Seconds a blocked instance is watched still waiting."""


class Holding(FleetService):
    """The fleet service pausing inside its batch's transaction, after applying it."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.inside = threading.Event()
        self.release = threading.Event()

    def apply(self, ctx: Context, records: list[Record]) -> None:
        super().apply(ctx, records)
        self.inside.set()
        assert self.release.wait(30), "never released"


def suspend_v2(store: str, at: datetime) -> dict[str, Any]:
    till = {"lifecycle": "SUSPENDED", "token_sha256": None, "previous_token_until": None,
            "previous_token_sha256": None}  # fmt: skip
    return {
        "change_id": str(uuid.uuid4()),
        "store_id": store,
        "target": "till/T01",
        "version": 2,
        "published_at": at,
        "published_by": "anna@example.org (sign-in)",
        "till": till,
        "device": None,
        "edge": None,
    }


def started(target: Any, *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def test_a_report_waits_for_a_desired_change_of_its_store_and_evaluates_it(db_url: str) -> None:
    t0 = datetime.now(UTC)
    service = Holding(ALWAYS)
    holding = ConsumerHarness(service, db_url)
    other = Harnessed(db_url, ALWAYS)  # the second instance: its own connection
    change = suspend_v2("S1", t0 - timedelta(minutes=20))
    deciding = started(holding.apply, "estate_desired", change)
    assert service.inside.wait(30)
    applied_v1 = [{"target": "till/T01", "version": 1, "applied": True, "error": None, "at": t0}]
    reporting = started(other.send, report("S1", t0, applied=applied_v1))
    reporting.join(WAIT)
    assert reporting.is_alive(), "the report was evaluated beside an uncommitted change"
    service.release.set()
    deciding.join(30)
    reporting.join(30)
    assert not deciding.is_alive() and not reporting.is_alive()
    flags = other.open_flags("S1")
    assert "the edge has version 1" in flags[("drift", "till/T01")]


def test_a_held_store_holds_only_its_own_evaluation(postgres_url: str) -> None:
    t0 = datetime.now(UTC)
    fleet = Harnessed(postgres_url, ALWAYS)
    fleet.send(report("S1", t0), report("S2", t0))
    holder = Database(postgres_url)
    done: list[str] = []
    try:
        with holder.transaction():
            lock_stores(holder, ["S1", "S9"])
            for store in ("S2", "S1"):
                evaluating = started(lambda s=store: (fleet.at(t0, s), done.append(s)))
                evaluating.join(WAIT)
                if store == "S2":
                    assert done == ["S2"], "a store not held waited"
                else:
                    assert evaluating.is_alive(), "a held store was evaluated"
        evaluating.join(30)
        assert done == ["S2", "S1"]
    finally:
        holder.close()


@pytest.mark.parametrize("keys", [["b", "a", "a"], []])
def test_advisory_locks_take_each_key_once_and_nothing_on_sqlite(
    postgres_url: str, keys: list[str]
) -> None:
    db = Database(postgres_url)
    try:
        with db.transaction():
            db.advisory_locks(7, keys)
            row = db.fetchone("SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' "
                              "AND pid = pg_backend_pid()")  # fmt: skip
            assert row == (len(set(keys)),)
    finally:
        db.close()
    lite = Database("sqlite:///:memory:")
    with lite.transaction():
        lite.advisory_locks(7, keys)  # nothing to do: one writer at a time
    lite.close()


def test_a_token_sha256_is_never_read_as_a_card_number() -> None:
    """One SHA-256 in a few hundred holds a run of digits passing for a card number: the
    runtime's walk of every string (main's issue 23) would dead-letter that rotation."""
    digest = "61541e34453627161574cd69af21d0661befa568152ab3485afe879fe356d1a9"
    assert text_problem(digest) is not None  # as free text: a card number
    till = {"lifecycle": "ACTIVE", "token_sha256": digest, "previous_token_sha256": digest,
            "previous_token_until": None}  # fmt: skip
    assert field_problem({**suspend_v2("S1", datetime.now(UTC)), "till": till}) is None
    problem = field_problem({"till": {**till, "token_sha256": "not a digest"}})
    assert problem is not None and problem[0] == "till.token_sha256"
