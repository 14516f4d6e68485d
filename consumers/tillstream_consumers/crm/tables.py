"""The CRM's tables, and reading a profile back out of them.

Every table that identifies a person has a ``customer_id`` column, and :data:`PERSONAL_TABLES`
lists them all, so erasure cannot miss one. Times are fixed-width UTC text
(``2026-03-01T09:30:00.000000Z``): they sort as text and read the same on every database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from tillstream_consumers.runtime.api import MONEY_SCALE, from_units
from tillstream_consumers.runtime.db import Database

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE crm_profiles (
        customer_id TEXT PRIMARY KEY,
        first_visit TEXT NOT NULL,
        last_visit  TEXT NOT NULL,
        visits      BIGINT NOT NULL,
        points      BIGINT NOT NULL
    );
    CREATE TABLE crm_spend (
        customer_id TEXT NOT NULL,
        currency    TEXT NOT NULL,
        visits      BIGINT NOT NULL,
        net_units   BIGINT NOT NULL,
        PRIMARY KEY (customer_id, currency)
    );
    CREATE TABLE crm_store_visits (
        customer_id TEXT NOT NULL,
        store_id    TEXT NOT NULL,
        visits      BIGINT NOT NULL,
        last_visit  TEXT NOT NULL,
        PRIMARY KEY (customer_id, store_id)
    );
    CREATE TABLE crm_erasures (
        customer_hash TEXT PRIMARY KEY,
        erased_at     TEXT NOT NULL,
        reenrolled_at TEXT
    )
    """,
)

# Migration 2: post-voids (docs/crm.md, "Post-voids"). ``crm_sales``: what each sale of a
# customer added, to take it back if the sale is voided; ``crm_voids``: each sale voided
# (no customer id: a void names only the sale), whether the sale came yet or not.
MIGRATIONS += (
    """
    CREATE TABLE crm_sales (
        event_id    TEXT PRIMARY KEY,
        customer_id TEXT NOT NULL,
        store_id    TEXT NOT NULL,
        currency    TEXT NOT NULL,
        occurred_at TEXT NOT NULL,
        net_units   BIGINT NOT NULL,
        points      BIGINT NOT NULL
    );
    CREATE INDEX crm_sales_customer ON crm_sales (customer_id);
    CREATE TABLE crm_voids (
        store_id        TEXT NOT NULL,
        voided_event_id TEXT NOT NULL,
        event_id        TEXT NOT NULL,
        PRIMARY KEY (store_id, voided_event_id)
    )
    """,
)

# Migration 3: customers no person could be (``plausibility.py``): visits per customer,
# business day and store, and the ids flagged; each sale's business day, to take its visit
# back if it is voided.
MIGRATIONS += (
    """
    CREATE TABLE crm_days (
        customer_id  TEXT NOT NULL,
        business_day TEXT NOT NULL,
        store_id     TEXT NOT NULL,
        visits       BIGINT NOT NULL,
        PRIMARY KEY (customer_id, business_day, store_id)
    );
    CREATE TABLE crm_implausible (
        customer_id  TEXT NOT NULL,
        business_day TEXT NOT NULL,
        visits       BIGINT NOT NULL,
        stores       BIGINT NOT NULL,
        flagged_at   TEXT NOT NULL,
        PRIMARY KEY (customer_id, business_day)
    );
    ALTER TABLE crm_sales ADD COLUMN business_day TEXT
    """,
)

PERSONAL_TABLES: tuple[str, ...] = (
    "crm_profiles",
    "crm_spend",
    "crm_store_visits",
    "crm_sales",
    "crm_days",
    "crm_implausible",
)
"""Tables keyed by the customer id in clear: everything erasure deletes from."""


def ts(value: datetime) -> str:
    """A UTC time as fixed-width text that sorts in time order."""
    # isoformat pads the year to four digits; strftime's %Y writes year 1 as '1'.
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_ts(value: str) -> datetime:
    # Rows written before years were padded may hold '1-01-01T...': read those too.
    year, _, rest = value.partition("-")
    return datetime.strptime(f"{year.zfill(4)}-{rest}", "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


@dataclass(frozen=True)
class Spend:
    currency: str
    visits: int
    total: Decimal

    @property
    def average_basket(self) -> Decimal:
        return (self.total / self.visits).quantize(Decimal("0.0001")) if self.visits else Decimal(0)


@dataclass(frozen=True)
class Profile:
    customer_id: str
    first_visit: datetime
    last_visit: datetime
    visits: int
    points: int
    spend: tuple[Spend, ...]
    favourite_store: str | None


def load_profile(db: Database, customer_id: str) -> Profile | None:
    """The profile of ``customer_id``, or None if there is none (never seen, or erased)."""
    row = db.fetchone(
        "SELECT first_visit, last_visit, visits, points FROM crm_profiles WHERE customer_id = ?",
        (customer_id,),
    )
    if row is None:
        return None
    spend = tuple(
        Spend(currency, int(visits), from_units(int(net), MONEY_SCALE))
        for currency, visits, net in db.fetchall(
            "SELECT currency, visits, net_units FROM crm_spend WHERE customer_id = ? "
            "ORDER BY currency",
            (customer_id,),
        )
    )
    favourite = db.fetchone(
        # Most visits wins; a tie goes to the store visited most recently.
        "SELECT store_id FROM crm_store_visits WHERE customer_id = ? "
        "ORDER BY visits DESC, last_visit DESC, store_id LIMIT 1",
        (customer_id,),
    )
    return Profile(
        customer_id=customer_id,
        first_visit=parse_ts(row[0]),
        last_visit=parse_ts(row[1]),
        visits=int(row[2]),
        points=int(row[3]),
        spend=spend,
        favourite_store=None if favourite is None else str(favourite[0]),
    )
