"""Post-voids in the CRM: a voided sale's visit, spend and points as if it had never
happened, whichever of the two the CRM reads first (docs/crm.md, "Post-voids").

Each sale of a loyalty customer leaves a row in ``crm_sales`` (what it added), so a
post-void read after it takes exactly that back: a visit (of the profile, the currency, the
store), the net spend, and the points, the balance worked out again from the customer's
other sales in event time (the balance never goes below zero, so taking one sale's points
off is not always the same). First and last visits come from the other sales too. A
post-void read first waits in ``crm_voids`` and the sale, when it comes, is not applied.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date

from tillstream.core.events import SaleVoid
from tillstream_consumers.crm.plausibility import take_back_visit
from tillstream_consumers.runtime.db import Database, chunks, marks

Voided = tuple[str, str]
"""(store id, the voided sale's event id)."""


@dataclass(frozen=True, slots=True)
class SaleEffect:
    """What one sale added to a customer: a ``crm_sales`` row."""

    event_id: str
    customer_id: str
    store_id: str
    currency: str
    occurred_at: str
    net_units: int
    points: int
    business_day: str | None = None
    """None for a sale remembered before the CRM kept it."""


def voided_among(db: Database, sales: Iterable[Voided]) -> set[Voided]:
    """Which of these sales (store, event id) were voided before."""
    by_store: dict[str, list[str]] = {}
    for store, sale_id in sales:
        by_store.setdefault(store, []).append(sale_id)
    found: set[Voided] = set()
    for store, ids in sorted(by_store.items()):
        for chunk in chunks(sorted(set(ids))):
            found |= {
                (store, str(i))
                for (i,) in db.fetchall(
                    "SELECT voided_event_id FROM crm_voids "
                    f"WHERE store_id = ? AND voided_event_id IN ({marks(chunk)})",
                    (store, *chunk),
                )
            }
    return found


def remember(db: Database, effect: SaleEffect) -> None:
    db.execute(
        "INSERT INTO crm_sales (event_id, customer_id, store_id, currency, occurred_at, "
        "net_units, points, business_day) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            effect.event_id,
            effect.customer_id,
            effect.store_id,
            effect.currency,
            effect.occurred_at,
            effect.net_units,
            effect.points,
            effect.business_day,
        ),
    )


def apply_void(db: Database, void: SaleVoid, voided: set[Voided]) -> None:
    """Remember ``void`` (unless its sale was voided already: then nothing) and take back
    its sale if the CRM applied it. ``voided``: the sales known voided, kept up to date."""
    key = (void["store_id"], str(void["voided_event_id"]))
    if key in voided or voided_among(db, [key]):
        voided.add(key)
        return  # a sale is voided once
    voided.add(key)
    db.execute(
        "INSERT INTO crm_voids (store_id, voided_event_id, event_id) VALUES (?, ?, ?)",
        (*key, void["event_id"]),
    )
    row = db.fetchone(
        "SELECT event_id, customer_id, store_id, currency, occurred_at, net_units, points, "
        "business_day FROM crm_sales WHERE event_id = ? AND store_id = ?",
        (key[1], key[0]),
    )
    if row is not None:  # applied (and not erased since)
        e, c, s, cur, at, net, points, day = row
        effect = SaleEffect(str(e), str(c), str(s), str(cur), str(at), int(net), int(points))
        undo(db, replace(effect, business_day=None if day is None else str(day)))


def undo(db: Database, sale: SaleEffect) -> None:
    """Take ``sale`` back from its customer's profile, spend and store visits."""
    db.execute("DELETE FROM crm_sales WHERE event_id = ?", (sale.event_id,))
    if sale.business_day is not None:
        take_back_visit(db, sale.customer_id, sale.store_id, date.fromisoformat(sale.business_day))
    customer = sale.customer_id
    profile = db.fetchone(
        "SELECT visits, points FROM crm_profiles WHERE customer_id = ?", (customer,)
    )
    if profile is None:
        return
    visits, points = int(profile[0]) - 1, int(profile[1])
    others = db.fetchall(
        "SELECT occurred_at, points, store_id FROM crm_sales WHERE customer_id = ? "
        "ORDER BY occurred_at, event_id",
        (customer,),
    )
    # Every other visit has its row, unless some came before rows were kept (an upgrade):
    # then the balance loses this sale's points and the visit times stay.
    whole = len(others) == visits
    if visits <= 0:
        db.execute("DELETE FROM crm_profiles WHERE customer_id = ?", (customer,))
    elif whole:
        db.execute(
            "UPDATE crm_profiles SET visits = ?, points = ?, first_visit = ?, last_visit = ? "
            "WHERE customer_id = ?",
            (visits, _balance(int(p) for _, p, _ in others), others[0][0], others[-1][0], customer),
        )
    else:
        db.execute(
            "UPDATE crm_profiles SET visits = ?, points = ? WHERE customer_id = ?",
            (visits, max(0, points - sale.points), customer),
        )
    db.execute(
        "UPDATE crm_spend SET visits = visits - 1, net_units = net_units - ? "
        "WHERE customer_id = ? AND currency = ?",
        (sale.net_units, customer, sale.currency),
    )
    db.execute("DELETE FROM crm_spend WHERE customer_id = ? AND visits <= 0", (customer,))
    last = max((str(at) for at, _, store in others if store == sale.store_id), default=None)
    where = (customer, sale.store_id)
    if whole and last is not None:
        db.execute(
            "UPDATE crm_store_visits SET visits = visits - 1, last_visit = ? "
            "WHERE customer_id = ? AND store_id = ?",
            (last, *where),
        )
    else:
        db.execute(
            "UPDATE crm_store_visits SET visits = visits - 1 "
            "WHERE customer_id = ? AND store_id = ?",
            where,
        )
    db.execute("DELETE FROM crm_store_visits WHERE customer_id = ? AND visits <= 0", (customer,))


def _balance(points: Iterable[int]) -> int:
    """The points balance of these sales in order, as they earn it: never below zero."""
    balance = 0
    for p in points:
        balance = max(0, balance + p)
    return balance
