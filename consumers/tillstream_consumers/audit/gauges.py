"""The audit's gauges on the service's /metrics, read from its tables on every refresh (so
they are right after a restart and the same on every instance sharing one database).

- ``tillstream_audit_flags{kind, store}``: open flags no auditor acknowledged: what should
  alert (an acknowledged flag stops alerting). Flags of any day.
- ``tillstream_audit_unbalanced_store_days{store}``: closed store-days with an open flag no
  auditor acknowledged (``closed-unbalanced``), of any day.
- ``tillstream_audit_store_days{status}``: store-days of the recent business days (the last
  ``TILLSTREAM_AUDIT_SILENT_DAYS``), per status (``status.py``): unbalanced, reviewed (every
  flag acknowledged, not balanced) and silent ones among them.

The store's series are there, at 0, for every store of the recent days (or with a flag
still open), and for every kind of flag: alerts and panels see a 0, not "no data", and a
store's series go once it is neither.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

from prometheus_client import Gauge

from tillstream_consumers.audit import queries
from tillstream_consumers.audit.flags import KINDS
from tillstream_consumers.audit.status import STATUSES
from tillstream_consumers.runtime.db import Database

FLAGS = Gauge(
    "tillstream_audit_flags",
    "Open sales-audit flags no auditor acknowledged, per kind and store.",
    ["kind", "store"],
)
UNBALANCED = Gauge(
    "tillstream_audit_unbalanced_store_days",
    "Closed store-days with an open sales-audit flag no auditor acknowledged, per store.",
    ["store"],
)
STORE_DAYS = Gauge(
    "tillstream_audit_store_days",
    "Store-days of the recent business days, per audit status.",
    ["status"],
)

_UNACKNOWLEDGED = (
    "f.is_open = 1 AND NOT EXISTS (SELECT 1 FROM audit_acks a WHERE a.flag_id = f.flag_id "
    "AND a.reopened_at IS NULL)"
)

_stores: set[str] = set()


def publish(db: Database, today: date, recent_days: int) -> None:
    """Set the gauges from the tables (flags and unbalanced days of any day; statuses of the
    recent days)."""
    global _stores
    since = (today - timedelta(days=recent_days)).isoformat()
    counts = {
        (str(kind), str(store)): int(n)
        for kind, store, n in db.fetchall(
            f"SELECT f.kind, f.store_id, COUNT(*) FROM audit_flags f WHERE {_UNACKNOWLEDGED} "
            "GROUP BY f.kind, f.store_id"
        )
    }
    unbalanced = {
        str(store): int(n)
        for store, n in db.fetchall(
            "SELECT d.store_id, COUNT(DISTINCT d.business_day) FROM audit_flags f "
            "JOIN audit_days d ON d.store_id = f.store_id AND d.business_day = f.business_day "
            f"WHERE {_UNACKNOWLEDGED} AND d.closed_at IS NOT NULL AND d.events > 0 "
            "GROUP BY d.store_id"
        )
    }
    recent = {
        str(store)
        for (store,) in db.fetchall(
            "SELECT DISTINCT store_id FROM audit_days WHERE business_day >= ?", (since,)
        )
    }
    stores = recent | {store for _, store in counts} | set(unbalanced)
    for store in _stores - stores:  # gone quiet, nothing open: its series go
        for kind in KINDS:
            FLAGS.remove(kind, store)
        UNBALANCED.remove(store)
    for store in stores:
        for kind in KINDS:
            FLAGS.labels(kind, store).set(counts.get((kind, store), 0))
        UNBALANCED.labels(store).set(unbalanced.get(store, 0))
    _stores = stores
    statuses = Counter(d.status for d in queries.store_days(db, since=since))
    for status in STATUSES:
        STORE_DAYS.labels(status).set(statuses.get(status, 0))
