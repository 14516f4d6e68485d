"""The CRM profiles consumer: loyalty customers' visits, spend, points and favourite store."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

from tillstream.core import rules
from tillstream.core.events import CustomerRequest, Sale
from tillstream.core.settings import Settings
from tillstream.core.topics import CUSTOMER_REQUESTS, SALE_VOIDS, SALES
from tillstream_consumers.crm import erasure
from tillstream_consumers.crm.plausibility import count_visit, refresh_gauge
from tillstream_consumers.crm.post_voids import (
    SaleEffect,
    apply_void,
    remember,
    voided_among,
)
from tillstream_consumers.crm.tables import MIGRATIONS, ts
from tillstream_consumers.runtime.api import (
    MONEY_SCALE,
    Consumer,
    Context,
    PermanentError,
    Record,
    to_units,
)
from tillstream_consumers.runtime.db import Database


def points_for(net_amount: Decimal, per_unit: Decimal) -> int:
    """Points a sale earns: whole points of ``net * per_unit``, rounded towards zero, so a
    return takes back exactly what the same purchase earned (negative for a refund)."""
    return int((net_amount * per_unit).to_integral_value(rounding=ROUND_DOWN))


class CrmProfiles(Consumer):
    name = "crm-profiles"
    topics = (SALES.name, CUSTOMER_REQUESTS.name, SALE_VOIDS.name)
    migrations = MIGRATIONS

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__(settings)
        # Scrub once at start too: an erasure may have committed just before a crash.
        self._scrub_pending = True

    def apply(self, ctx: Context, records: list[Record]) -> None:
        erasure.protect(ctx.db)
        # The batch's sales voided by an earlier batch; its own post-voids join as they come.
        voided = voided_among(
            ctx.db, [(r.value["store_id"], str(r.event_id)) for r in records if r.event == "sale"]
        )
        # In record order: an erasure in the middle of a batch covers the sales before it
        # (deleted) and after it (ignored); a post-void, the sale before it (taken back) and
        # after it (not applied).
        for record in records:
            if record.event == "sale":
                if (record.value["store_id"], str(record.event_id)) not in voided:
                    self._sale(ctx.db, record.sale())
            elif record.event == "sale_void":
                apply_void(ctx.db, record.sale_void(), voided)
            elif record.event == "customer_request":
                self._request(ctx.db, record.customer_request())
            else:
                raise PermanentError(f"crm-profiles does not read {record.event} events")

    def refresh(self, db: Database) -> None:
        # Between batches (the runtime calls this every few seconds): VACUUM and log
        # checkpoints cannot run inside the batch's transaction.
        if self._scrub_pending:
            self._scrub_pending = not erasure.scrub(db)
        refresh_gauge(db)

    def _request(self, db: Database, value: CustomerRequest) -> None:
        if value["action"] == "ERASE":
            erasure.erase(db, value["customer_id"], value["requested_at"])
            self._scrub_pending = True
        elif value["action"] == "REENROL":
            erasure.reenrol(db, value["customer_id"], value["requested_at"])
        else:
            raise PermanentError(f"unknown customer request action {value['action']!r}")

    def _sale(self, db: Database, sale: Sale) -> None:
        customer = sale["customer_id"]
        if not customer:
            return  # anonymous sale: nothing to profile
        at = ts(sale["occurred_at"])
        if erasure.suppressed(db, customer, sale["occurred_at"]):
            return
        net = rules.sale_revenue(sale)  # the analytics' net sales too: deposits included
        points = points_for(net, self.settings.crm_points_per_unit)
        net_units = to_units(net, MONEY_SCALE)
        db.execute(
            "INSERT INTO crm_profiles (customer_id, first_visit, last_visit, visits, points) "
            "VALUES (?, ?, ?, 1, ?) ON CONFLICT (customer_id) DO UPDATE SET "
            # Sales can arrive out of time order (store topics are read in parallel).
            "first_visit = CASE WHEN excluded.first_visit < crm_profiles.first_visit "
            "THEN excluded.first_visit ELSE crm_profiles.first_visit END, "
            "last_visit = CASE WHEN excluded.last_visit > crm_profiles.last_visit "
            "THEN excluded.last_visit ELSE crm_profiles.last_visit END, "
            "visits = crm_profiles.visits + 1, "
            # Points never go below zero: a return cannot create a debt.
            "points = CASE WHEN crm_profiles.points + ? < 0 THEN 0 "
            "ELSE crm_profiles.points + ? END",
            (customer, at, at, max(points, 0), points, points),
        )
        db.execute(
            "INSERT INTO crm_spend (customer_id, currency, visits, net_units) VALUES (?, ?, 1, ?) "
            "ON CONFLICT (customer_id, currency) DO UPDATE SET visits = crm_spend.visits + 1, "
            "net_units = crm_spend.net_units + excluded.net_units",
            (customer, sale["currency"], net_units),
        )
        day = sale["business_day"]
        remember(
            db,
            SaleEffect(
                str(sale["event_id"]), customer, sale["store_id"], sale["currency"], at,
                net_units, points, day.isoformat(),
            ),
        )  # fmt: skip
        count_visit(db, self.settings, customer, sale["store_id"], day, at)
        db.execute(
            "INSERT INTO crm_store_visits (customer_id, store_id, visits, last_visit) "
            "VALUES (?, ?, 1, ?) ON CONFLICT (customer_id, store_id) DO UPDATE SET "
            "visits = crm_store_visits.visits + 1, "
            "last_visit = CASE WHEN excluded.last_visit > crm_store_visits.last_visit "
            "THEN excluded.last_visit ELSE crm_store_visits.last_visit END",
            (customer, sale["store_id"], at),
        )
