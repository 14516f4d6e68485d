"""Estate reports into the fleet service's tables: each report once into the history, and a
store's latest report as its current state, whole (its edge, tills, devices and what it
applied: a device no longer in the report is no longer at the store).

The broker stamps each report when it appends it (``LogAppendTime``): that instant is when
head office last heard of the edge, and the report's ``sent_at`` (the edge's clock) against
it is the store's clock skew. A report whose id the history holds is a copy (a replay):
nothing changes. Two things need the report before: whether the outbox grew again (depth,
report after report) and whether a suspended till's refusals rose.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tillstream.core.events import EstateReport
from tillstream_consumers.fleet.tables import (
    APPLIED_COLUMNS,
    DEVICE_COLUMNS,
    EDGE_COLUMNS,
    HISTORY_COLUMNS,
    TILL_COLUMNS,
)
from tillstream_consumers.fleet.times import from_ms, stamp
from tillstream_consumers.fleet.views import StoreView
from tillstream_consumers.runtime.db import Database, chunks, marks

ACTIVE = "ACTIVE"


@dataclass(frozen=True)
class Arrived:
    """A report, and when the broker appended it (the record's timestamp)."""

    report: EstateReport
    appended_ms: int


@dataclass
class _Before:
    """What the state holds of a store before a report, as far as the next one needs."""

    outbox_depth: int
    depth_rises: int
    appended_at: str
    started_at: str
    first_seen_at: str
    refused: dict[str, tuple[str, int, str | None]]
    """Till -> (lifecycle, refused_while_suspended, refused_rose_at)."""


@dataclass
class _State:
    edge: tuple[Any, ...]
    tills: list[tuple[Any, ...]]
    devices: list[tuple[Any, ...]]
    applied: list[tuple[Any, ...]]

    def view(self, store: str) -> StoreView:
        """The rows as :func:`~tillstream_consumers.fleet.views.load_views` would read
        them back (the flags are evaluated on them, not on a second read)."""
        return StoreView(
            store,
            dict(zip(EDGE_COLUMNS, self.edge, strict=True)),
            sorted((dict(zip(TILL_COLUMNS, t, strict=True)) for t in self.tills),
                   key=lambda t: str(t["till_id"])),
            sorted((dict(zip(DEVICE_COLUMNS, d, strict=True)) for d in self.devices),
                   key=lambda d: str(d["device_id"])),
            {p[1]: dict(zip(APPLIED_COLUMNS, p, strict=True)) for p in self.applied},
        )  # fmt: skip


def store_reports(db: Database, arrived: Sequence[Arrived]) -> dict[str, StoreView]:
    """Store ``arrived`` (in the order they were read); returns the new state of each store
    whose state changed (without head office's desired state: the caller adds it)."""
    fresh = _fresh(db, arrived)
    if not fresh:
        return {}
    stores = sorted({a.report["store_id"] for a in fresh})
    before = _before(db, stores, fresh)
    latest: dict[str, _State] = {}
    history = []
    for a in fresh:
        report, store = a.report, a.report["store_id"]
        appended = stamp(from_ms(a.appended_ms))
        assert appended is not None
        prior = before.get(store)
        if prior is not None and appended < prior.appended_at:
            history.append(_history(a, appended))  # older than what is held: history only
            continue
        state = _state(a, appended, prior)
        latest[store] = state
        history.append(_history(a, appended))
        before[store] = _Before(
            report["edge"]["outbox_depth"],
            state.edge[EDGE_COLUMNS.index("depth_rises")],
            appended,
            str(stamp(report["edge"]["started_at"])),
            state.edge[EDGE_COLUMNS.index("first_seen_at")],
            {t[1]: (t[2], t[6], t[7]) for t in state.tills},
        )
    db.insert_many("fleet_history", HISTORY_COLUMNS, history, "ON CONFLICT (report_id) DO NOTHING")
    changed = sorted(latest)
    for table in ("fleet_edges", "fleet_tills", "fleet_devices", "fleet_applied"):
        for part in chunks(changed):
            db.execute(f"DELETE FROM {table} WHERE store_id IN ({marks(part)})", part)
    states = [latest[s] for s in changed]
    db.insert_many("fleet_edges", EDGE_COLUMNS, [state.edge for state in states])
    db.insert_many("fleet_tills", TILL_COLUMNS, [r for state in states for r in state.tills])
    db.insert_many("fleet_devices", DEVICE_COLUMNS, [r for state in states for r in state.devices])
    db.insert_many("fleet_applied", APPLIED_COLUMNS, [r for state in states for r in state.applied])
    return {store: latest[store].view(store) for store in changed}


def _fresh(db: Database, arrived: Sequence[Arrived]) -> list[Arrived]:
    """The reports not applied before (by id), each once."""
    ids = sorted({str(a.report["report_id"]) for a in arrived})
    seen: set[str] = set()
    for part in chunks(ids):
        seen |= {
            str(r)
            for (r,) in db.fetchall(
                f"SELECT report_id FROM fleet_history WHERE report_id IN ({marks(part)})", part
            )
        }
    fresh = []
    for a in arrived:
        report_id = str(a.report["report_id"])
        if report_id not in seen:
            seen.add(report_id)
            fresh.append(a)
    return fresh


def _before(db: Database, stores: list[str], fresh: Sequence[Arrived]) -> dict[str, _Before]:
    found: dict[str, _Before] = {}
    for part in chunks(stores):
        for store, depth, rises, appended, started, first in db.fetchall(
            "SELECT store_id, outbox_depth, depth_rises, appended_at, started_at, first_seen_at "
            f"FROM fleet_edges WHERE store_id IN ({marks(part)})",
            part,
        ):
            found[str(store)] = _Before(
                int(depth), int(rises), str(appended), str(started), str(first), {}
            )
    # Refusals only matter for tills not active: read theirs only.
    suspending = sorted(
        {a.report["store_id"] for a in fresh if any(_held_back(t) for t in a.report["tills"])}
        & set(found)
    )
    for part in chunks(suspending):
        for store, till, lifecycle, refused, rose in db.fetchall(
            "SELECT store_id, till_id, lifecycle, refused_while_suspended, refused_rose_at "
            f"FROM fleet_tills WHERE lifecycle <> 'ACTIVE' AND store_id IN ({marks(part)})",
            part,
        ):
            found[str(store)].refused[str(till)] = (str(lifecycle), int(refused), rose)
    return found


def _held_back(till: Any) -> bool:
    """A till the edge refuses (suspended or decommissioned)."""
    return bool(till["lifecycle"] != ACTIVE)


def _state(a: Arrived, appended: str, prior: _Before | None) -> _State:
    report = a.report
    store, edge = report["store_id"], report["edge"]
    started = stamp(edge["started_at"])
    restarted = prior is None or prior.started_at != started
    depth = edge["outbox_depth"]
    rises = 0
    if prior is not None and depth > prior.outbox_depth and not restarted:
        rises = prior.depth_rises + 1
    skew_ms = int((report["sent_at"] - from_ms(a.appended_ms)).total_seconds() * 1000)
    edge_row = (
        store,
        report["edge_id"],
        edge["timezone"],
        edge["version"],
        started,
        str(report["report_id"]),
        report["reason"],
        report["heartbeat_seconds"],
        stamp(report["sent_at"]),
        appended,
        skew_ms,
        edge["clock_skew_ms"],
        depth,
        edge["outbox_unsent_bytes"],
        stamp(edge["oldest_unsent_at"]),
        edge["quarantine_depth"],
        edge["set_aside_open"],
        stamp(edge["masterdata_caught_up_at"]),
        edge["disk_free_bytes"],
        stamp(edge["last_publish_at"]),
        int(edge["kafka_connected"]),
        edge["log_level"],
        edge["max_event_age_seconds"],
        edge["max_future_seconds"],
        rises,
        prior.first_seen_at if prior is not None else appended,
    )
    tills = []
    for t in report["tills"]:
        refused, rose = t["refused_while_suspended"], None
        if t["lifecycle"] != ACTIVE:
            held = prior.refused.get(t["till_id"]) if prior is not None else None
            rose = (
                appended
                if refused > _baseline(held, t["lifecycle"], refused, restarted)
                else (held[2] if held else None)
            )
        tills.append(
            (
                store,
                t["till_id"],
                t["lifecycle"],
                stamp(t["last_seen_at"]),
                t["last_receipt"],
                t["software"],
                refused,
                rose,
                stamp(t["status_at"]),
                json.dumps([_condition(c) for c in t["conditions"]]),
            )
        )
    devices = [
        (
            store,
            d["device_id"],
            d["kind"],
            d["protocol"],
            d["port"],
            int(d["connected"]),
            stamp(d["connected_since"]),
            stamp(d["disconnected_since"]),
            stamp(d["last_frame_at"]),
            d["frames"],
            d["communication_errors"],
            d["model"],
            d["firmware"],
            d["serial_number"],
            None if d["scale_zero"] is None else int(d["scale_zero"]),
            None if d["scale_stable"] is None else int(d["scale_stable"]),
            d["scale_status"],
        )
        for d in report["devices"]
    ]
    applied = {
        p["target"]: (
            store, p["target"], p["version"], int(p["applied"]), p["error"], stamp(p["at"])
        )
        for p in report["applied"]
    }  # fmt: skip
    return _State(edge_row, _unique(tills, 1), _unique(devices, 1), list(applied.values()))


def _baseline(
    held: tuple[str, int, str | None] | None, lifecycle: str, refused: int, restarted: bool
) -> int:
    """The refusals a till's count is compared with to tell whether it still tries to post.

    The edge counts a till's refusals since its lifecycle last changed and keeps the count
    in its estate file across restarts (``tillstream_edge.estate.tills``): a restarted edge
    reports the same count, which is no new attempt. Only a count that went back at a
    restart (the file lost, or the last few seconds' counts not written before a crash) is
    a count started over: every refusal in it is new."""
    if held is None or held[0] != lifecycle:
        return 0  # suspended (or decommissioned) since the report before: counted from 0
    if restarted and refused < held[1]:
        return 0
    return held[1]


def _history(a: Arrived, appended: str) -> tuple[Any, ...]:
    report = a.report
    skew_ms = int((report["sent_at"] - from_ms(a.appended_ms)).total_seconds() * 1000)
    return (
        str(report["report_id"]),
        report["store_id"],
        report["edge_id"],
        appended,
        stamp(report["sent_at"]),
        report["reason"],
        skew_ms,
        report["edge"]["outbox_depth"],
        stamp(report["edge"]["oldest_unsent_at"]),
        int(report["edge"]["kafka_connected"]),
        sum(1 for d in report["devices"] if not d["connected"]),
        len(report["tills"]),
    )


def _condition(condition: Any) -> dict[str, Any]:
    return {
        "code": condition["code"],
        "state": condition["state"],
        "detail": condition["detail"],
        "since": stamp(condition["since"]),
    }


def _unique(rows: list[tuple[Any, ...]], at: int) -> list[tuple[Any, ...]]:
    """One row per id (the last), as the primary key wants: a report naming a till twice."""
    return list({r[at]: r for r in rows}.values())
