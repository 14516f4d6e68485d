"""Flags made to match the evaluations (``flags.py``): a finding not open yet is raised (a
new flag, with its own id: each time a fault starts is one flag, kept after it is resolved),
an open flag no longer found is resolved with the time, and a message that changed (the
outbox's depth) is updated. Only the kinds an evaluation decided on are touched."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime

from tillstream_consumers.fleet.flags import Evaluation
from tillstream_consumers.fleet.tables import FLAG_COLUMNS
from tillstream_consumers.fleet.times import stamp
from tillstream_consumers.runtime.db import Database, chunks, marks


def sync(db: Database, evaluations: Mapping[str, Evaluation], now: datetime) -> int:
    """Raise, update and resolve the flags of these stores, and note when each is due to be
    evaluated again; returns how many flags were raised or resolved."""
    at = stamp(now)
    stores = sorted(evaluations)
    open_flags: dict[tuple[str, str, str], tuple[str, str]] = {}
    for part in chunks(stores):
        for flag_id, store, kind, subject, message in db.fetchall(
            "SELECT flag_id, store_id, kind, subject, message FROM fleet_flags "
            f"WHERE is_open = 1 AND store_id IN ({marks(part)})",
            part,
        ):
            open_flags[(str(store), str(kind), str(subject))] = (str(flag_id), str(message))
    raised, updated, resolved = [], [], []
    for store in stores:
        evaluation = evaluations[store]
        found = {(store, f.kind, f.subject): f.message for f in evaluation.findings}
        for key, message in found.items():
            held = open_flags.get(key)
            if held is None:
                raised.append((str(uuid.uuid4()), *key, message, 1, at, at, None))
            elif held[1] != message:
                updated.append((message, at, held[0]))
        resolved += [
            (at, at, flag_id)
            for key, (flag_id, _) in open_flags.items()
            if key[0] == store and key[1] in evaluation.kinds and key not in found
        ]
    db.insert_many("fleet_flags", FLAG_COLUMNS, raised)
    db.executemany("UPDATE fleet_flags SET message = ?, updated_at = ? WHERE flag_id = ?", updated)
    db.executemany(
        "UPDATE fleet_flags SET is_open = 0, resolved_at = ?, updated_at = ? WHERE flag_id = ?",
        resolved,
    )
    for part in chunks(stores):
        db.execute(f"DELETE FROM fleet_due WHERE store_id IN ({marks(part)})", part)
    due = [(s, stamp(e.due)) for s, e in evaluations.items() if e.due is not None]
    db.insert_many("fleet_due", ("store_id", "due_at"), sorted(due))
    return len(raised) + len(resolved)
