"""Reconciling payments with sales: does what was captured add up to what was rung up?

Each sale's net total and the sum of its payments (CAPTURED in, REFUNDED out) meet in
``an_reconcile``, whichever arrives first. Once the grace period has passed since the sale
(or, with no sale, since its first payment) a disagreement is flagged in ``an_flags``:

- ``payment_mismatch``: the sale is in and its payments do not add up to its net total;
- ``payment_without_sale``: payments are in and their sale is not.

Flags are recomputed on every check, so a flag goes away as soon as late data settles it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from tillstream_consumers.analytics.tables import ts
from tillstream_consumers.runtime.db import Database

PAYMENT_MISMATCH = "payment_mismatch"
PAYMENT_WITHOUT_SALE = "payment_without_sale"
KINDS = (PAYMENT_MISMATCH, PAYMENT_WITHOUT_SALE)


def reconcile(db: Database, now: datetime, grace_seconds: int) -> dict[str, int]:
    """Bring ``an_flags`` up to date as of ``now``; returns the number of flags per kind."""
    cutoff = ts(now - timedelta(seconds=grace_seconds))
    with db.transaction():
        wanted = {
            str(sale_id): (
                PAYMENT_WITHOUT_SALE if sale_at is None else PAYMENT_MISMATCH,
                str(store),
                str(sale_at or first_payment_at),
                None if expected is None else int(expected),
                int(paid),
            )
            for sale_id, store, sale_at, first_payment_at, expected, paid in db.fetchall(
                "SELECT sale_event_id, store_id, sale_at, first_payment_at, sale_net, paid "
                "FROM an_reconcile WHERE "
                "(sale_at IS NOT NULL AND sale_at <= ? AND paid <> sale_net) OR "
                "(sale_at IS NULL AND payments > 0 AND first_payment_at <= ?)",
                (cutoff, cutoff),
            )
        }
        existing = {
            str(sale_id): (str(kind), str(store), str(at), expected, int(paid))
            for sale_id, kind, store, at, expected, paid in db.fetchall(
                "SELECT sale_event_id, kind, store_id, event_at, expected, paid FROM an_flags"
            )
        }
        db.executemany(
            "DELETE FROM an_flags WHERE sale_event_id = ?",
            [(sale_id,) for sale_id in existing.keys() - wanted.keys()],
        )
        # Only new or changed flags are written; flagged_at keeps when it was first raised.
        db.executemany(
            "INSERT INTO an_flags (sale_event_id, kind, store_id, event_at, expected, paid, "
            "flagged_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sale_event_id) DO UPDATE SET "
            "kind = excluded.kind, event_at = excluded.event_at, expected = excluded.expected, "
            "paid = excluded.paid",
            [
                (sale_id, *flag, ts(now))
                for sale_id, flag in wanted.items()
                if existing.get(sale_id) != flag
            ],
        )
    counts = dict.fromkeys(KINDS, 0)
    for kind, *_ in wanted.values():
        counts[kind] += 1
    return counts
