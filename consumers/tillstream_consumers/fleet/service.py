"""The fleet service (``tillstream consume fleet``): every store edge's estate reports and
head office's desired state in; the estate's current state, its history and its flags out,
on a page, a read API and /metrics (see ``docs/fleet.md``).

Each batch stores its reports and desired records, then evaluates the flags of the stores it
touched (``flags.py``), within its transaction. Between batches the service evaluates the
stores whose flags time alone may change by now (an edge due to report and silent, a store
opening with a device down, a drift's grace over): each evaluation says when that is, so a
refresh reads only those stores, however large the estate.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from starlette.routing import BaseRoute

from tillstream.core.codec import AvroCodec
from tillstream.core.events import EstateDesired
from tillstream.core.registry import registry_from_settings
from tillstream.core.settings import Settings
from tillstream.core.topics import ESTATE_DESIRED, ESTATE_REPORTS
from tillstream.fleet.topic import key_of
from tillstream_consumers.fleet import gauges
from tillstream_consumers.fleet.api import api_routes
from tillstream_consumers.fleet.desired_state import Cleared, store_desired
from tillstream_consumers.fleet.flag_store import sync
from tillstream_consumers.fleet.flags import Rules, evaluate
from tillstream_consumers.fleet.page import page_routes
from tillstream_consumers.fleet.reports import Arrived, store_reports
from tillstream_consumers.fleet.tables import COMPONENT, MIGRATIONS
from tillstream_consumers.fleet.times import from_ms, stamp
from tillstream_consumers.fleet.views import StoreView, load_desired, load_views
from tillstream_consumers.runtime.api import Consumer, Context, PermanentError, Query, Record
from tillstream_consumers.runtime.db import Database

log = logging.getLogger(__name__)

DUE_PER_REFRESH = 500
"""Stores evaluated per refresh transaction (more wait for the next, seconds later)."""
MAX_LOTS = 20
"""Lots of :data:`DUE_PER_REFRESH` per refresh at most (consuming goes on between)."""
GAUGES_EVERY = 5.0
"""Seconds between two readings of the gauges (a refresh comes every couple of seconds)."""
PRUNE_EVERY = 60.0


STORE_LOCKS = 0x7111_F1EE
"""The namespace of the stores' advisory locks (``lock_stores``)."""


def lock_stores(db: Database, stores: Iterable[str]) -> None:
    """Hold ``stores`` until the transaction ends, before reading anything of them: a
    store's reports and its desired state travel on different topics, which the group may
    give to different instances, and each instance evaluates the store on what it reads.
    Without the lock, each could evaluate it without the other's uncommitted rows (a drift
    never raised). PostgreSQL (READ COMMITTED: a statement after the lock sees what the
    holder committed); in one order, so no two wait on each other in a circle."""
    db.advisory_locks(STORE_LOCKS, stores)


def _store(change: EstateDesired | Cleared) -> str:
    return change.key[0] if isinstance(change, Cleared) else change["store_id"]


class FleetService(Consumer):
    name = COMPONENT
    topics = (ESTATE_REPORTS.name, ESTATE_DESIRED.name)
    publishes = (ESTATE_DESIRED.name,)
    """The page's decisions: a till suspended by a signed-in person (or a token), never by
    the service itself."""
    migrations = MIGRATIONS
    signs_in = True
    """Head office IT acts on its page (suspend a till): served behind sign-in and tokens."""
    deduplicates = False
    """A report is applied once by its id (the history holds every id it applied), and a
    desired record by its version: the runtime keeps no row per event id."""

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__(settings)
        self.rules = Rules.of(self.settings)
        self._codec: AvroCodec | None = None
        self._gauges_at = 0.0
        self._pruned_at = 0.0

    @property
    def codec(self) -> AvroCodec:
        """The codec the page's decisions are published with (made on first use)."""
        if self._codec is None:
            self._codec = AvroCodec(registry_from_settings(self.settings))
        return self._codec

    def apply(self, ctx: Context, records: list[Record]) -> None:
        reports: list[Arrived] = []
        desired: list[EstateDesired | Cleared] = []
        for r in records:
            if r.event == "estate_report" and not r.tombstone:
                reports.append(Arrived(r.estate_report(), r.timestamp_ms))
            elif r.event == "estate_desired" and r.tombstone:
                key = key_of(r.key)
                if key is None:
                    raise PermanentError(f"{r.topic}: a tombstone whose key is not [store, target]")
                desired.append(Cleared(key, from_ms(r.timestamp_ms)))
            elif r.event == "estate_desired":
                desired.append(r.estate_desired())
            else:
                raise PermanentError(f"{r.topic}: a {r.event} is not an estate record")
        # Before the first read: what this batch evaluates is read after any other
        # transaction holding one of its stores (a report and a desired change of a store
        # arrive on different topics, maybe at different instances) has committed.
        lock_stores(ctx.db, {a.report["store_id"] for a in reports} | {_store(d) for d in desired})
        reported = store_reports(ctx.db, reports) if reports else {}
        decided = store_desired(ctx.db, desired) if desired else set()
        load_desired(ctx.db, reported)  # the rest of a reporting store's view is in hand
        views = {**load_views(ctx.db, decided - set(reported)), **reported}
        self._sync(ctx.db, views, ctx.now)

    def evaluate(self, db: Database, stores: Iterable[str], now: datetime) -> int:
        """Evaluate ``stores``' flags at ``now`` and make the table match; returns how many
        flags were raised or resolved."""
        wanted = set(stores)
        lock_stores(db, wanted)
        return self._sync(db, load_views(db, wanted), now)

    def _sync(self, db: Database, views: dict[str, StoreView], now: datetime) -> int:
        if not views:
            return 0
        return sync(db, {s: evaluate(v, now, self.rules) for s, v in views.items()}, now)

    def refresh(self, db: Database) -> None:
        now = datetime.now(UTC)
        self.evaluate_due(db, now)
        if time.monotonic() - self._gauges_at >= GAUGES_EVERY:
            self._gauges_at = time.monotonic()
            gauges.publish(db, now, self.rules)
        if time.monotonic() - self._pruned_at >= PRUNE_EVERY:
            self._pruned_at = time.monotonic()
            self.prune(db, now)

    def evaluate_due(self, db: Database, now: datetime) -> int:
        """Evaluate the stores whose flags time alone may have changed by ``now``, a few
        hundred at a time; returns how many stores."""
        done = 0
        for _ in range(MAX_LOTS):  # each evaluation is due later than now: bounded anyway
            with db.transaction():
                due = [
                    str(s)
                    for (s,) in db.fetchall(
                        "SELECT store_id FROM fleet_due WHERE due_at <= ? ORDER BY due_at "
                        f"LIMIT {DUE_PER_REFRESH}",
                        (stamp(now),),
                    )
                ]
                self.evaluate(db, due, now)
            done += len(due)
            if len(due) < DUE_PER_REFRESH:
                break
        return done

    def prune(self, db: Database, now: datetime) -> None:
        """Forget reports and resolved flags older than ``TILLSTREAM_FLEET_HISTORY_DAYS``."""
        before = stamp(now - timedelta(days=self.settings.fleet_history_days))
        with db.transaction():
            db.execute("DELETE FROM fleet_history WHERE appended_at < ?", (before,))
            db.execute("DELETE FROM fleet_flags WHERE is_open = 0 AND resolved_at < ?", (before,))

    def routes(self, query: Query) -> list[BaseRoute]:
        return [
            *page_routes(query, self.settings, self.rules, lambda: self.codec),
            *api_routes(query, self.settings, self.rules, lambda: self.codec),
        ]
