"""Right to erasure: forget a customer, and keep them forgotten.

ERASE deletes every row naming the customer
(:data:`~tillstream_consumers.crm.tables.PERSONAL_TABLES`)
and keeps only a salted SHA-256 of the id, so that sales still on the topics (30 days of
retention, or a replay) cannot build the profile again. REENROL lifts that: sales that
occurred at or after the re-enrolment request build a new profile; older ones stay ignored,
so a late or replayed pre-erasure sale never brings old history back.

Deleted rows leave bytes behind in the database files until overwritten; :func:`protect`
and :func:`scrub` make sure the customer's id does not outlive the erasure there either.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from tillstream_consumers.crm.tables import PERSONAL_TABLES, ts
from tillstream_consumers.runtime.db import Database

# A constant salt: the hash only has to match later events for the same id, and must not be
# a plain SHA-256 of the id that anyone can look up.
_SALT = b"tillstream-crm-erasure-v1:"


def customer_hash(customer_id: str) -> str:
    return hashlib.sha256(_SALT + customer_id.encode("utf-8")).hexdigest()


def erase(db: Database, customer_id: str, requested_at: datetime) -> None:
    for table in PERSONAL_TABLES:
        db.execute(f"DELETE FROM {table} WHERE customer_id = ?", (customer_id,))
    db.execute(
        "INSERT INTO crm_erasures (customer_hash, erased_at, reenrolled_at) VALUES (?, ?, NULL) "
        "ON CONFLICT (customer_hash) DO UPDATE SET erased_at = excluded.erased_at, "
        "reenrolled_at = NULL",
        (customer_hash(customer_id), ts(requested_at)),
    )


def protect(db: Database) -> None:
    """Inside every write transaction: SQLite then zeroes the bytes of deleted rows and of
    the old versions that updates leave, instead of keeping them as free space (the
    ``secure_delete`` default differs between builds, and it is per connection)."""
    if db.dialect == "sqlite":
        db.execute("PRAGMA secure_delete = ON")


def scrub(db: Database) -> bool:
    """Outside any transaction, after erasures: clear what deleted rows left behind.

    SQLite: the write-ahead log still holds the pages as they were before the deletion, and
    a checkpoint reuses the file without clearing it, so it is truncated. PostgreSQL: the
    deleted rows stay in the table as dead tuples until VACUUM, and the planner statistics
    (``pg_stats``) list sampled customer ids until the next ANALYZE. Returns False while a
    reader keeps the SQLite log busy (try again later).
    """
    if db.dialect == "sqlite":
        row = db.fetchone("PRAGMA wal_checkpoint(TRUNCATE)")
        return row is None or row[0] == 0
    if db.dialect == "postgresql":
        db.execute(f"VACUUM (ANALYZE) {', '.join(PERSONAL_TABLES)}")
    return True


def reenrol(db: Database, customer_id: str, requested_at: datetime) -> None:
    """Let sales from ``requested_at`` on count again (a no-op for an id never erased)."""
    db.execute(
        "UPDATE crm_erasures SET reenrolled_at = ? WHERE customer_hash = ?",
        (ts(requested_at), customer_hash(customer_id)),
    )


def suppressed(db: Database, customer_id: str, occurred_at: datetime) -> bool:
    """Whether a sale of ``customer_id`` at ``occurred_at`` must be ignored."""
    row = db.fetchone(
        "SELECT reenrolled_at FROM crm_erasures WHERE customer_hash = ?",
        (customer_hash(customer_id),),
    )
    if row is None:
        return False
    reenrolled_at = row[0]
    return reenrolled_at is None or ts(occurred_at) < str(reenrolled_at)
