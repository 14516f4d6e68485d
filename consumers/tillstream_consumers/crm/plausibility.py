"""Customers no person could be: one id seen on too many visits, or in too many stores, in a
business day.

A till that fills the customer field with a loyalty programme's name, a shared staff card,
or a test card turns thousands of shoppers into one "customer". The CRM still counts each
sale (nothing is dropped or guessed), but flags the id for a day it shows more than
``TILLSTREAM_CRM_MAX_VISITS_PER_DAY`` visits or visits to more than
``TILLSTREAM_CRM_MAX_STORES_PER_DAY`` stores, so head office sees the chain's members being
merged instead of a champion customer (``tillstream crm implausible``,
``tillstream_crm_implausible_customers``). Kept per customer, day and store in ``crm_days``
(erased with the customer); a post-void takes its visit back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from prometheus_client import Gauge

from tillstream.core.settings import Settings
from tillstream_consumers.runtime.db import Database

IMPLAUSIBLE = Gauge(
    "tillstream_crm_implausible_customers",
    "Customer ids flagged as no one person (too many visits or stores in a business day).",
)


@dataclass(frozen=True, slots=True)
class Implausible:
    customer_id: str
    business_day: str
    visits: int
    stores: int
    flagged_at: str

    def as_json(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "business_day": self.business_day,
            "visits": self.visits,
            "stores": self.stores,
            "flagged_at": self.flagged_at,
        }


def count_visit(
    db: Database, settings: Settings, customer: str, store: str, day: date, at: str
) -> None:
    """One more visit of ``customer`` to ``store`` on ``day``; flags the id once the day is
    beyond what one person does."""
    db.execute(
        "INSERT INTO crm_days (customer_id, business_day, store_id, visits) VALUES (?, ?, ?, 1) "
        "ON CONFLICT (customer_id, business_day, store_id) DO UPDATE SET "
        "visits = crm_days.visits + 1",
        (customer, day.isoformat(), store),
    )
    row = db.fetchone(
        "SELECT SUM(visits), COUNT(*) FROM crm_days WHERE customer_id = ? AND business_day = ?",
        (customer, day.isoformat()),
    )
    visits, stores = (int(row[0]), int(row[1])) if row else (0, 0)
    if visits > settings.crm_max_visits_per_day or stores > settings.crm_max_stores_per_day:
        db.execute(
            "INSERT INTO crm_implausible (customer_id, business_day, visits, stores, flagged_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (customer_id, business_day) DO UPDATE SET "
            "visits = excluded.visits, stores = excluded.stores",
            (customer, day.isoformat(), visits, stores, at),
        )


def take_back_visit(db: Database, customer: str, store: str, day: date) -> None:
    """A post-voided sale's visit, taken back (a flag raised stays: it was seen)."""
    db.execute(
        "UPDATE crm_days SET visits = visits - 1 "
        "WHERE customer_id = ? AND business_day = ? AND store_id = ?",
        (customer, day.isoformat(), store),
    )
    db.execute("DELETE FROM crm_days WHERE customer_id = ? AND visits <= 0", (customer,))


def implausible(db: Database, day: str | None = None) -> list[Implausible]:
    """Flagged ids, newest day first (``day``: that business day only)."""
    where, params = (" WHERE business_day = ?", (day,)) if day else ("", ())
    rows = db.fetchall(
        "SELECT customer_id, business_day, visits, stores, flagged_at FROM crm_implausible"
        f"{where} ORDER BY business_day DESC, visits DESC, customer_id",
        params,
    )
    return [Implausible(str(r[0]), str(r[1]), int(r[2]), int(r[3]), str(r[4])) for r in rows]


def refresh_gauge(db: Database) -> None:
    row = db.fetchone("SELECT COUNT(DISTINCT customer_id) FROM crm_implausible")
    IMPLAUSIBLE.set(int(row[0]) if row else 0)
