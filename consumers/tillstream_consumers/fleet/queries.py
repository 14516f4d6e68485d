"""The fleet service's reads, as JSON-ready dicts: the estate by store (the page's first
view, ``GET /v1/fleet/stores``, ``tillstream fleet``) and one store's edge, tills and
devices, desired and reported side by side (``GET /v1/fleet/stores/{store}``, ``tillstream
fleet --store S``). Times are the store's local time with its offset; ages and skews in
seconds."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from typing import Any

from tillstream.core.estate import DEVICE, TILL, TargetError, parse_target
from tillstream_consumers.fleet.flags import KINDS, NEXT_STEPS, Rules, is_silent
from tillstream_consumers.fleet.tables import FLAG_COLUMNS, HISTORY_COLUMNS
from tillstream_consumers.fleet.times import local, parse
from tillstream_consumers.fleet.views import Row, StoreView, load_views
from tillstream_consumers.runtime.db import Database

UP = "up"
SILENT = "silent"
NEVER = "never-reported"
STATES: tuple[str, ...] = (UP, SILENT, NEVER)
"""What the estate says of an edge: it reports, it went silent, it never reported (head
office decided something for the store before its edge reported)."""
HISTORY_SHOWN = 20


def drift_counts(db: Database, store: str | None = None) -> Counter[str]:
    """Per store, the targets whose desired version is not in force at the edge (not yet
    applied, or refused)."""
    where = "" if store is None else " AND d.store_id = ?"
    found = db.fetchall(
        "SELECT d.store_id FROM fleet_desired d LEFT JOIN fleet_applied a "
        "ON a.store_id = d.store_id AND a.target = d.target "
        "WHERE d.payload IS NOT NULL AND (a.version IS NULL OR a.version < d.version "
        f"OR (a.version = d.version AND a.applied = 0)){where}",
        () if store is None else (store,),
    )
    return Counter(str(s) for (s,) in found)


def estate(db: Database, now: datetime, rules: Rules, store: str | None = None) -> list[Row]:
    """Every store (or one), those with open flags first."""
    one = () if store is None else (store,)
    by = "" if store is None else " WHERE store_id = ?"
    edges = {
        str(r["store_id"]): r
        for r in _dicts(
            db,
            "SELECT store_id, edge_id, version, timezone, appended_at, heartbeat_seconds, "
            "outbox_depth, oldest_unsent_at, sent_at, skew_ms, kafka_connected "
            f"FROM fleet_edges{by}",
            one,
        )
    }
    stores = set(edges) | {
        str(s) for (s,) in db.fetchall(f"SELECT DISTINCT store_id FROM fleet_desired{by}", one)
    }
    devices = {
        str(s): (int(n), int(down or 0))
        for s, n, down in db.fetchall(
            "SELECT store_id, COUNT(*), SUM(1 - connected) FROM fleet_devices"
            f"{by} GROUP BY store_id",
            one,
        )
    }
    tills = {
        str(s): (int(n), int(out or 0))
        for s, n, out in db.fetchall(
            "SELECT store_id, COUNT(*), SUM(CASE WHEN lifecycle <> 'ACTIVE' THEN 1 ELSE 0 END) "
            f"FROM fleet_tills{by} GROUP BY store_id",
            one,
        )
    }
    flags: dict[str, dict[str, int]] = {}
    for kind, s, n in db.fetchall(
        "SELECT kind, store_id, COUNT(*) FROM fleet_flags WHERE is_open = 1"
        + ("" if store is None else " AND store_id = ?")
        + " GROUP BY kind, store_id",
        one,
    ):
        flags.setdefault(str(s), {})[str(kind)] = int(n)
    drift = drift_counts(db, store)
    listed = []
    for s in sorted(stores):
        entry = _summary(s, edges.get(s), now, rules)
        entry["devices"], entry["devices_down"] = devices.get(s, (0, 0))
        entry["tills"], entry["tills_not_active"] = tills.get(s, (0, 0))
        entry["drift"] = drift.get(s, 0)
        held = flags.get(s, {})
        entry["open_flags"] = {k: held[k] for k in KINDS if held.get(k)}
        listed.append(entry)
    listed.sort(key=lambda e: (not e["open_flags"], e["store_id"]))
    return listed


def store(db: Database, store_id: str, now: datetime, rules: Rules) -> Row | None:
    """One store in detail; None if the service knows nothing of it."""
    (found,) = estate(db, now, rules, store_id) or (None,)
    if found is None:
        return None
    view = load_views(db, [store_id])[store_id]
    timezone = str(view.edge["timezone"]) if view.edge else "UTC"
    found["edge"] = _edge(view, timezone)
    found["tills"] = _tills(view, timezone)
    found["devices"] = _devices(view, timezone)
    found["desired"] = [_desired(view, t, timezone) for t in sorted(view.desired)]
    found["flags"] = _flags(db, store_id, timezone)
    found["history"] = _history(db, store_id, timezone)
    return found


def _summary(store_id: str, edge: Row | None, now: datetime, rules: Rules) -> Row:
    if edge is None:
        return {"store_id": store_id, "state": NEVER, "timezone": None, "last_report_at": None,
                "heartbeat_age_seconds": None, "heartbeat_seconds": None, "outbox_depth": None,
                "outbox_oldest_age_seconds": None, "clock_skew_seconds": None,
                "kafka_connected": None, "edge_id": None, "version": None}  # fmt: skip
    last = parse(edge["appended_at"])
    assert last is not None
    oldest, sent = parse(edge["oldest_unsent_at"]), parse(edge["sent_at"])
    heartbeat = int(edge["heartbeat_seconds"])
    timezone = str(edge["timezone"])
    return {
        "store_id": store_id,
        "state": SILENT if is_silent(last, heartbeat, now, rules) else UP,
        "timezone": timezone,
        "last_report_at": local(last, timezone),
        "heartbeat_age_seconds": round((now - last).total_seconds()),
        "heartbeat_seconds": heartbeat,
        "outbox_depth": int(edge["outbox_depth"]),
        "outbox_oldest_age_seconds": (
            round((sent - oldest).total_seconds()) if oldest and sent else None
        ),
        "clock_skew_seconds": int(edge["skew_ms"]) / 1000,
        "kafka_connected": bool(edge["kafka_connected"]),
        "edge_id": edge["edge_id"],
        "version": edge["version"],
    }


_TIMES = ("started_at", "sent_at", "appended_at", "oldest_unsent_at", "masterdata_caught_up_at",
          "last_publish_at")  # fmt: skip


def _edge(view: StoreView, timezone: str) -> Row | None:
    if view.edge is None:
        return None
    edge = {k: v for k, v in view.edge.items() if k not in ("store_id", "first_seen_at")}
    for name in _TIMES:
        edge[name] = local(parse(edge[name]), timezone) or ""
    edge["kafka_connected"] = bool(edge["kafka_connected"])
    edge["desired"] = _desired(view, "edge", timezone) if "edge" in view.desired else None
    return edge


def _tills(view: StoreView, timezone: str) -> list[Row]:
    shown = {}
    for t in view.tills:
        target = f"{TILL}/{t['till_id']}"
        shown[target] = {
            "till_id": t["till_id"],
            "lifecycle": t["lifecycle"],
            "last_seen_at": local(parse(t["last_seen_at"]), timezone),
            "last_receipt": t["last_receipt"],
            "software": t["software"],
            "refused_while_suspended": int(t["refused_while_suspended"]),
            "status_at": local(parse(t["status_at"]), timezone),
            "conditions": [
                {**c, "since": local(parse(c["since"]), timezone)}
                for c in json.loads(str(t["conditions"]))
            ],
            "reported": True,
        }
    for target in view.desired:  # named by head office, not (yet) reported by the edge
        kind, name = _target(target)
        if kind == TILL and target not in shown:
            shown[target] = {"till_id": name, "lifecycle": None, "last_seen_at": None,
                             "last_receipt": None, "software": None, "refused_while_suspended": 0,
                             "status_at": None, "conditions": [], "reported": False}  # fmt: skip
    for target, till in shown.items():
        till["desired"] = _desired(view, target, timezone) if target in view.desired else None
    return sorted(shown.values(), key=lambda t: str(t["till_id"]))


def _devices(view: StoreView, timezone: str) -> list[Row]:
    shown = {}
    for d in view.devices:
        target = f"{DEVICE}/{d['device_id']}"
        device = {k: v for k, v in d.items() if k != "store_id"}
        for name in ("connected_since", "disconnected_since", "last_frame_at"):
            device[name] = local(parse(device[name]), timezone)
        device["connected"] = bool(device["connected"])
        for name in ("scale_zero", "scale_stable"):
            device[name] = None if device[name] is None else bool(device[name])
        device["reported"] = True
        shown[target] = device
    for target in view.desired:
        kind, device_id = _target(target)
        if kind == DEVICE and target not in shown:
            shown[target] = {"device_id": device_id, "connected": None, "reported": False}
    for target, device in shown.items():
        device["desired"] = _desired(view, target, timezone) if target in view.desired else None
    return sorted(shown.values(), key=lambda d: str(d["device_id"]))


def _desired(view: StoreView, target: str, timezone: str) -> Row:
    """Head office's record for ``target`` beside what the edge applied of it."""
    row = view.desired[target]
    payload = json.loads(row["payload"]) if row["payload"] is not None else None
    applied = view.applied.get(target)
    return {
        "target": target,
        "version": int(row["version"]),
        "cleared": payload is None,
        "published_at": local(parse(row["published_at"]), timezone),
        "published_by": row["published_by"],
        "cleared_at": local(parse(row["cleared_at"]), timezone),
        "settings": _settings(payload),
        "applied": None if applied is None else {
            "version": int(applied["version"]),
            "applied": bool(applied["applied"]),
            "error": applied["error"],
            "at": local(parse(applied["at"]), timezone),
        },
    }  # fmt: skip


def _settings(payload: Row | None) -> Row | None:
    """What a person reads of a desired record: never a token's hash, only that one is set."""
    if payload is None:
        return None
    if payload.get("till"):
        till = payload["till"]
        return {
            "lifecycle": till["lifecycle"],
            "token_set": till.get("token_sha256") is not None,
            "previous_token_until": till.get("previous_token_until"),
        }
    if payload.get("device"):
        settings: Row = json.loads(payload["device"]["settings_json"])
        return settings
    return dict(payload.get("edge") or {})


def _flags(db: Database, store_id: str, timezone: str) -> list[Row]:
    found = _dicts(
        db,
        f"SELECT {', '.join(FLAG_COLUMNS)} FROM fleet_flags WHERE store_id = ? "
        "ORDER BY is_open DESC, first_seen_at DESC",
        (store_id,),
    )
    return [
        {
            "flag_id": f["flag_id"],
            "kind": f["kind"],
            "subject": f["subject"],
            "message": f["message"],
            "open": bool(f["is_open"]),
            "first_seen_at": local(parse(f["first_seen_at"]), timezone),
            "resolved_at": local(parse(f["resolved_at"]), timezone),
            "next_step": NEXT_STEPS.get(str(f["kind"])) if f["is_open"] else None,
        }
        for f in found
    ]


def _history(db: Database, store_id: str, timezone: str) -> list[Row]:
    found = _dicts(
        db,
        f"SELECT {', '.join(HISTORY_COLUMNS)} FROM fleet_history WHERE store_id = ? "
        f"ORDER BY appended_at DESC LIMIT {HISTORY_SHOWN}",
        (store_id,),
    )
    for h in found:
        del h["store_id"]
        for name in ("appended_at", "sent_at", "oldest_unsent_at"):
            h[name] = local(parse(h[name]), timezone)
        h["kafka_connected"] = bool(h["kafka_connected"])
        h["skew_seconds"] = int(h.pop("skew_ms")) / 1000
    return found


def _target(target: str) -> tuple[str, str | None]:
    try:
        return parse_target(target)
    except TargetError:
        return "", None


def _dicts(db: Database, sql: str, params: tuple[Any, ...]) -> list[Row]:
    cursor = db.execute(sql, params)
    names = [c[0] for c in cursor.description]
    return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
