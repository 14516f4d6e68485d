"""The estate's gauges on the fleet service's /metrics, read from its tables (so they are
right after a restart, and the same on every instance sharing one database): head office's
Prometheus watches every store through this one service, no route into a store needed.

Every known store (one that reported, or that head office decided something for) has each
series, at 0 when nothing is wrong, and a series for every kind of flag: alerts and panels
see a 0, not "no data". A store's series go when it is no longer known.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from prometheus_client import Gauge

from tillstream_consumers.fleet.flags import KINDS, Rules, is_silent
from tillstream_consumers.fleet.queries import drift_counts
from tillstream_consumers.fleet.times import parse
from tillstream_consumers.fleet.views import known_stores
from tillstream_consumers.runtime.db import Database

EDGE_UP = Gauge(
    "tillstream_fleet_edge_up",
    "1 while the store's edge reports (its last report within its heartbeats), 0 silent.",
    ["store"],
)
HEARTBEAT_AGE = Gauge(
    "tillstream_fleet_heartbeat_age_seconds",
    "Seconds since the broker appended the store's last estate report.",
    ["store"],
)
OUTBOX_DEPTH = Gauge(
    "tillstream_fleet_outbox_depth",
    "Events waiting in the store's outbox, as its last report said.",
    ["store"],
)
OUTBOX_AGE = Gauge(
    "tillstream_fleet_outbox_oldest_age_seconds",
    "Age of the oldest unsent event when the store last reported (0: none waits).",
    ["store"],
)
CLOCK_SKEW = Gauge(
    "tillstream_fleet_clock_skew_seconds",
    "The store edge's clock minus the broker's, from its last report.",
    ["store"],
)
DEVICES_DOWN = Gauge(
    "tillstream_fleet_devices_down",
    "Serial devices disconnected at the store, as its last report said.",
    ["store"],
)
DRIFT = Gauge(
    "tillstream_fleet_drift",
    "Targets whose desired version the store's edge has not applied (not yet, or refused).",
    ["store"],
)
FLAGS = Gauge(
    "tillstream_fleet_flags",
    "Open fleet flags, per kind and store.",
    ["kind", "store"],
)
EDGES = Gauge(
    "tillstream_fleet_edges",
    "Store edges known to the fleet service, per state (up, silent).",
    ["state"],
)

_PER_STORE = (EDGE_UP, HEARTBEAT_AGE, OUTBOX_DEPTH, OUTBOX_AGE, CLOCK_SKEW, DEVICES_DOWN, DRIFT)
_stores: set[str] = set()


def publish(db: Database, now: datetime, rules: Rules) -> None:
    """Set the gauges from the tables."""
    global _stores
    stores = set(known_stores(db))
    edges = {
        str(r[0]): r
        for r in db.fetchall(
            "SELECT store_id, appended_at, heartbeat_seconds, outbox_depth, sent_at, "
            "oldest_unsent_at, skew_ms FROM fleet_edges"
        )
    }
    down = Counter(
        {
            str(s): int(n)
            for s, n in db.fetchall(
                "SELECT store_id, COUNT(*) FROM fleet_devices WHERE connected = 0 GROUP BY store_id"
            )
        }
    )
    drift = drift_counts(db)
    flags = {
        (str(k), str(s)): int(n)
        for k, s, n in db.fetchall(
            "SELECT kind, store_id, COUNT(*) FROM fleet_flags WHERE is_open = 1 "
            "GROUP BY kind, store_id"
        )
    }
    for store in _stores - stores:
        for gauge in _PER_STORE:
            gauge.remove(store)
        for kind in KINDS:
            FLAGS.remove(kind, store)
    states: Counter[str] = Counter()
    for store in stores:
        row = edges.get(store)
        if row is None:
            up = age = depth = oldest = skew = 0.0
        else:
            _, appended, heartbeat, depth_n, sent, unsent, skew_ms = row
            last = parse(appended)
            assert last is not None
            age = (now - last).total_seconds()
            up = 0.0 if is_silent(last, int(heartbeat), now, rules) else 1.0
            states["up" if up else "silent"] += 1
            depth = float(depth_n)
            since = parse(unsent)
            sent_at = parse(sent)
            oldest = (sent_at - since).total_seconds() if since and sent_at else 0.0
            skew = int(skew_ms) / 1000
        EDGE_UP.labels(store).set(up)
        HEARTBEAT_AGE.labels(store).set(max(age, 0.0))
        OUTBOX_DEPTH.labels(store).set(depth)
        OUTBOX_AGE.labels(store).set(max(oldest, 0.0))
        CLOCK_SKEW.labels(store).set(skew)
        DEVICES_DOWN.labels(store).set(down.get(store, 0))
        DRIFT.labels(store).set(drift.get(store, 0))
        for kind in KINDS:
            FLAGS.labels(kind, store).set(flags.get((kind, store), 0))
    for state in ("up", "silent"):
        EDGES.labels(state).set(states[state])
    _stores = stores
