"""One store as the fleet service holds it: its edge's last report (the edge, its tills and
devices, what it applied) and head office's desired state for it. What the flags are
evaluated on (``flags.py``), and what the pages, the API and ``tillstream fleet`` show
(``queries.py``). Rows are dicts of the tables' columns, their values as stored."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tillstream_consumers.fleet.tables import (
    APPLIED_COLUMNS,
    DESIRED_COLUMNS,
    DEVICE_COLUMNS,
    EDGE_COLUMNS,
    TILL_COLUMNS,
)
from tillstream_consumers.runtime.db import Database, chunks, marks

Row = dict[str, Any]


@dataclass
class StoreView:
    store_id: str
    edge: Row | None = None
    tills: list[Row] = field(default_factory=list)
    devices: list[Row] = field(default_factory=list)
    applied: dict[str, Row] = field(default_factory=dict)
    """Target -> what the edge last said it applied."""
    desired: dict[str, Row] = field(default_factory=dict)
    """Target -> head office's record (``payload`` None: cleared)."""


def rows(db: Database, table: str, columns: Sequence[str], stores: Sequence[str]) -> list[Row]:
    """Every row of ``table`` of these stores, as dicts."""
    found: list[Row] = []
    for part in chunks(stores):
        found += [
            dict(zip(columns, r, strict=True))
            for r in db.fetchall(
                f"SELECT {', '.join(columns)} FROM {table} WHERE store_id IN ({marks(part)})",
                part,
            )
        ]
    return found


def load_views(
    db: Database, stores: Iterable[str], *, desired: bool = True
) -> dict[str, StoreView]:
    """The views of ``stores`` (those the service knows nothing of are empty)."""
    wanted = sorted(set(stores))
    views = {s: StoreView(s) for s in wanted}
    for row in rows(db, "fleet_edges", EDGE_COLUMNS, wanted):
        views[row["store_id"]].edge = row
    for row in rows(db, "fleet_tills", TILL_COLUMNS, wanted):
        views[row["store_id"]].tills.append(row)
    for row in rows(db, "fleet_devices", DEVICE_COLUMNS, wanted):
        views[row["store_id"]].devices.append(row)
    for row in rows(db, "fleet_applied", APPLIED_COLUMNS, wanted):
        views[row["store_id"]].applied[row["target"]] = row
    if desired:
        load_desired(db, views)
    for view in views.values():
        view.tills.sort(key=lambda t: str(t["till_id"]))
        view.devices.sort(key=lambda d: str(d["device_id"]))
    return views


def load_desired(db: Database, views: dict[str, StoreView]) -> None:
    """Head office's desired state into ``views``."""
    for row in rows(db, "fleet_desired", DESIRED_COLUMNS, list(views)):
        views[row["store_id"]].desired[row["target"]] = row


def known_stores(db: Database) -> list[str]:
    """Every store with a report or a desired state."""
    found = db.fetchall("SELECT store_id FROM fleet_edges UNION SELECT store_id FROM fleet_desired")
    return sorted(str(s) for (s,) in found)
