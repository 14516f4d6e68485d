"""The audit's gauges on the service's /metrics, read from its tables on every refresh (so
they are right after a restart and the same on every instance sharing one database).

- ``tillstream_audit_flags{kind, store}``: open flags no auditor acknowledged: what should
  alert (an acknowledged flag stops alerting).
- ``tillstream_audit_store_days{status}``: store-days of the recent business days (the last
  ``TILLSTREAM_AUDIT_SILENT_DAYS``), per status: unbalanced and silent ones among them.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

from prometheus_client import Gauge

from tillstream_consumers.audit import queries
from tillstream_consumers.runtime.db import Database

FLAGS = Gauge(
    "tillstream_audit_flags",
    "Open sales-audit flags no auditor acknowledged, per kind and store.",
    ["kind", "store"],
)
STORE_DAYS = Gauge(
    "tillstream_audit_store_days",
    "Store-days of the recent business days, per audit status.",
    ["status"],
)

_shown: set[tuple[str, str]] = set()


def publish(db: Database, today: date, recent_days: int) -> None:
    """Set the gauges from the tables (flags of any day; statuses of the recent days)."""
    global _shown
    counts = {
        (str(kind), str(store)): int(n)
        for kind, store, n in db.fetchall(
            "SELECT f.kind, f.store_id, COUNT(*) FROM audit_flags f WHERE f.is_open = 1 "
            "AND NOT EXISTS (SELECT 1 FROM audit_acks a WHERE a.flag_id = f.flag_id) "
            "GROUP BY f.kind, f.store_id"
        )
    }
    for labels in _shown - counts.keys():  # resolved or acknowledged: the series goes
        FLAGS.remove(*labels)
    for labels, n in counts.items():
        FLAGS.labels(*labels).set(n)
    _shown = set(counts)
    since = (today - timedelta(days=recent_days)).isoformat()
    statuses = Counter(d.status for d in queries.store_days(db, since=since))
    for status in queries.STATUSES:
        STORE_DAYS.labels(status).set(statuses.get(status, 0))
