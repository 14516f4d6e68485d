"""Head office's desired state, as the compacted topic ``tillstream.estate-desired`` holds
it, into ``fleet_desired``: the latest version per store and target, and a tombstone as the
target cleared (its version kept: the next one is one more). A record older than what the
table holds (a replay) changes nothing."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tillstream.core.events import EstateDesired
from tillstream_consumers.fleet.tables import DESIRED_COLUMNS
from tillstream_consumers.fleet.times import stamp
from tillstream_consumers.runtime.db import Database, chunks, marks

Key = tuple[str, str]


@dataclass(frozen=True)
class Cleared:
    """A tombstone of ``key``, appended at ``at``."""

    key: Key
    at: datetime


def store_desired(db: Database, changes: Sequence[EstateDesired | Cleared]) -> set[str]:
    """Apply records and tombstones in the order read; returns the stores they touched."""
    keys = sorted({_key(c) for c in changes})
    held: dict[Key, tuple[Any, ...]] = {}
    for part in chunks(sorted({k[0] for k in keys})):
        for found in db.fetchall(
            f"SELECT {', '.join(DESIRED_COLUMNS)} FROM fleet_desired "
            f"WHERE store_id IN ({marks(part)})",
            part,
        ):
            held[(str(found[0]), str(found[1]))] = found
    touched: dict[Key, tuple[Any, ...]] = {}
    for change in changes:
        key = _key(change)
        row: tuple[Any, ...] | None = touched.get(key) or held.get(key)
        if isinstance(change, Cleared):
            if row is not None and row[3] is not None:
                touched[key] = (*row[:3], None, *row[4:7], stamp(change.at))
            continue
        if row is not None and int(row[2]) > change["version"]:
            continue  # older than what is held
        touched[key] = (
            change["store_id"],
            change["target"],
            change["version"],
            json.dumps(_payload(change), default=_json),
            stamp(change["published_at"]),
            change["published_by"],
            str(change["change_id"]),
            None,
        )
    db.executemany("DELETE FROM fleet_desired WHERE store_id = ? AND target = ?", sorted(touched))
    db.insert_many("fleet_desired", DESIRED_COLUMNS, [touched[k] for k in sorted(touched)])
    return {k[0] for k in touched}


def _key(change: EstateDesired | Cleared) -> Key:
    return change.key if isinstance(change, Cleared) else (change["store_id"], change["target"])


def _payload(change: EstateDesired) -> dict[str, Any]:
    return {"till": change["till"], "device": change["device"], "edge": change["edge"]}


def _json(value: object) -> str:
    if isinstance(value, datetime):
        return str(stamp(value))
    raise TypeError(f"{type(value).__name__} is not JSON")
