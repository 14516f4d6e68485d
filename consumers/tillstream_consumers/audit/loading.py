"""Reading the audit's facts back: a store-day's facts (with what post-voids take out of its
money), and which store-days a batch's events touch (``touched.py``)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from tillstream_consumers.audit.facts import (
    Control,
    PostVoid,
    StoreDayFacts,
    Tender,
    Transaction,
    money,
    parse_ts,
    ts,
)
from tillstream_consumers.audit.reading import read_marks
from tillstream_consumers.runtime.db import Database, chunks, marks


def days_of_sales(db: Database, sale_ids: Iterable[str]) -> dict[str, tuple[str, date]]:
    """The store-day of each sale with one of these event ids (of those the audit has)."""
    found: dict[str, tuple[str, date]] = {}
    for chunk in chunks(sorted(set(sale_ids))):
        found |= {
            str(event_id): (str(store), date.fromisoformat(str(day)))
            for event_id, store, day in db.fetchall(
                "SELECT event_id, store_id, business_day FROM audit_transactions "
                f"WHERE event_id IN ({marks(chunk)})",
                chunk,
            )
        }
    return found


def payments_of_sales(db: Database, sale_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
    """The payments the audit has of these sales: event id -> (store, time as :func:`ts`)."""
    found: dict[str, tuple[str, str]] = {}
    for chunk in chunks(sorted(set(sale_ids))):
        found |= {
            str(event_id): (str(store), str(at))
            for event_id, store, at in db.fetchall(
                "SELECT event_id, store_id, occurred_at FROM audit_payments "
                f"WHERE sale_event_id IN ({marks(chunk)})",
                chunk,
            )
        }
    return found


# -- reading ---------------------------------------------------------------------------


def load_store_day(db: Database, store_id: str, day: date) -> StoreDayFacts:
    """The facts of one store-day, in a stable order (time, then event id)."""
    key = (store_id, day.isoformat())
    transactions = [
        Transaction(
            str(event_id),
            str(terminal),
            str(number),
            cashier,
            parse_ts(at),
            int(offset),
            money(int(net)),
            str(content),
            tuple(json.loads(problems)) if problems else (),
            published,
        )
        for (
            event_id,
            terminal,
            number,
            cashier,
            at,
            offset,
            net,
            content,
            problems,
            published,
        ) in db.fetchall(
            "SELECT event_id, terminal_id, number, cashier_id, occurred_at, utc_offset_minutes, "
            "net_amount, content, problems, published_ms FROM audit_transactions "
            "WHERE store_id = ? AND business_day = ? ORDER BY occurred_at, event_id",
            key,
        )
    ]
    amounts: dict[str, list[tuple[str, Decimal]]] = {}
    for event_id, tender, amount in db.fetchall(
        "SELECT a.event_id, a.tender, a.amount FROM audit_control_amounts a "
        "JOIN audit_controls c ON c.event_id = a.event_id "
        "WHERE c.store_id = ? AND c.business_day = ? ORDER BY a.event_id, a.tender",
        key,
    ):
        amounts.setdefault(str(event_id), []).append((str(tender), money(int(amount))))
    controls = [
        Control(
            str(event_id),
            str(terminal),
            str(kind),
            number,
            operator,
            parse_ts(at),
            int(offset),
            str(content),
            tuple(amounts.get(str(event_id), ())),
            published,
        )
        for event_id, terminal, kind, number, operator, at, offset, content, published in (
            db.fetchall(
                "SELECT event_id, terminal_id, kind, number, operator_id, occurred_at, "
                "utc_offset_minutes, content, published_ms FROM audit_controls "
                "WHERE store_id = ? AND business_day = ? ORDER BY occurred_at, event_id",
                key,
            )
        )
    ]
    voids = _voids(db, key)
    voided = frozenset(
        str(sale_id)
        for (sale_id,) in db.fetchall(
            "SELECT DISTINCT v.voided_event_id FROM audit_voids v JOIN audit_transactions t "
            "ON t.event_id = v.voided_event_id AND t.store_id = v.store_id "
            "WHERE t.store_id = ? AND t.business_day = ?",
            key,
        )
    )
    payments = [  # a voided sale's payments are out of the day's money with it
        p
        for p in _tenders(
            db,
            "JOIN audit_transactions t ON t.event_id = p.sale_event_id "
            "WHERE t.store_id = ? AND t.business_day = ?",
            key,
        )
        if p.sale_event_id not in voided
    ]
    currency = _currency(db, key)
    facts = StoreDayFacts(
        store_id,
        day,
        transactions,
        controls,
        payments,
        voids=voids,
        voided=voided,
        currency=currency,
    )
    if facts.window is None:
        return facts
    first, last = facts.window
    orphans = _tenders(
        db,
        "WHERE p.store_id = ? AND p.occurred_at >= ? AND p.occurred_at <= ? AND NOT EXISTS "
        "(SELECT 1 FROM audit_transactions t WHERE t.event_id = p.sale_event_id)",
        (store_id, ts(first), ts(last)),
    )
    if orphans:  # payments of a sale voided before it came: out of the money too
        gone = voided_sales(db, store_id, {p.sale_event_id for p in orphans})
        orphans = [p for p in orphans if p.sale_event_id not in gone]
    read = read_marks(db, store_id)
    return StoreDayFacts(
        store_id, day, transactions, controls, payments, orphans, read, voids, voided, currency
    )


def _currency(db: Database, key: tuple[str, str]) -> str | None:
    """The store-day's currency: its sales', else its till events' or post-voids' (a day of
    till events alone has one only if some event carries amounts)."""
    for table in ("audit_transactions", "audit_controls", "audit_voids"):
        row = db.fetchone(
            f"SELECT currency FROM {table} WHERE store_id = ? AND business_day = ? "
            "AND currency IS NOT NULL LIMIT 1",
            key,
        )
        if row is not None:
            return str(row[0])
    return None


def _voids(db: Database, key: tuple[str, str]) -> list[PostVoid]:
    """The store-day's post-voids, each with its sale's day and net total if the audit has
    the sale, and whether it is the first post-void of the sale."""
    rows = db.fetchall(
        "SELECT v.event_id, v.voided_event_id, v.terminal_id, v.number, v.voided_terminal_id, "
        "v.voided_number, v.cashier_id, v.occurred_at, v.utc_offset_minutes, v.amount, "
        "v.reason, v.content, v.published_ms, t.business_day, t.net_amount, "
        "CASE WHEN EXISTS (SELECT 1 FROM audit_voids w WHERE w.store_id = v.store_id "
        "AND w.voided_event_id = v.voided_event_id AND (w.occurred_at < v.occurred_at OR "
        "(w.occurred_at = v.occurred_at AND w.event_id < v.event_id))) THEN 0 ELSE 1 END "
        "FROM audit_voids v LEFT JOIN audit_transactions t "
        "ON t.event_id = v.voided_event_id AND t.store_id = v.store_id "
        "WHERE v.store_id = ? AND v.business_day = ? ORDER BY v.occurred_at, v.event_id",
        key,
    )
    return [
        PostVoid(
            str(event_id),
            str(sale_id),
            str(terminal),
            number,
            str(voided_terminal),
            voided_number,
            cashier,
            parse_ts(at),
            int(offset),
            None if stated is None else money(int(stated)),
            reason,
            str(content),
            None if day is None else (date.fromisoformat(str(day)), money(int(net))),
            bool(first),
            None if published is None else int(published),
        )
        for (
            event_id, sale_id, terminal, number, voided_terminal, voided_number, cashier, at,
            offset, stated, reason, content, published, day, net, first,
        ) in rows
    ]  # fmt: skip


def voided_sales(db: Database, store_id: str, sale_ids: Iterable[str]) -> set[str]:
    """Which of these sales of the store are post-voided (the audit may not have them)."""
    found: set[str] = set()
    for chunk in chunks(sorted(set(sale_ids))):
        found |= {
            str(sale_id)
            for (sale_id,) in db.fetchall(
                "SELECT voided_event_id FROM audit_voids "
                f"WHERE store_id = ? AND voided_event_id IN ({marks(chunk)})",
                (store_id, *chunk),
            )
        }
    return found


def days_of_voids(db: Database, sale_ids: Iterable[str]) -> set[tuple[str, date]]:
    """The store-days of the post-voids of these sales: their view and numbering change
    when the sale comes (the voided amount, the voided number now the sale's)."""
    found: set[tuple[str, date]] = set()
    for chunk in chunks(sorted(set(sale_ids))):
        found |= {
            (str(store), date.fromisoformat(str(day)))
            for store, day in db.fetchall(
                "SELECT DISTINCT store_id, business_day FROM audit_voids "
                f"WHERE voided_event_id IN ({marks(chunk)})",
                chunk,
            )
        }
    return found


def _tenders(db: Database, where: str, params: Sequence[Any]) -> list[Tender]:
    return [
        Tender(
            str(event_id),
            str(sale_id),
            str(terminal),
            str(method),
            str(status),
            money(int(amount)),
            parse_ts(at),
            None if published is None else int(published),
        )
        for event_id, sale_id, terminal, method, status, amount, at, published in db.fetchall(
            "SELECT p.event_id, p.sale_event_id, p.terminal_id, p.method, p.status, p.amount, "
            f"p.occurred_at, p.published_ms FROM audit_payments p {where} "
            "ORDER BY p.occurred_at, p.event_id",
            params,
        )
    ]


def days_around(db: Database, moments: Iterable[tuple[str, str]]) -> set[tuple[str, date]]:
    """The store-days whose window (first to last event) holds one of these (store, time as
    :func:`ts`): where a payment made then without its sale is counted (and must be counted
    no more once its sale came). One look at the windows of the stores concerned."""
    wanted: dict[str, list[str]] = {}
    for store, at in moments:
        wanted.setdefault(store, []).append(at)
    if not wanted:
        return set()
    stores = sorted(wanted)
    times = [at for ats in wanted.values() for at in ats]
    found: set[tuple[str, date]] = set()
    for chunk in chunks(stores):
        for store, day, first, last in db.fetchall(
            "SELECT store_id, business_day, first_at, last_at FROM audit_days "
            f"WHERE store_id IN ({marks(chunk)}) AND first_at <= ? AND last_at >= ?",
            (*chunk, max(times), min(times)),
        ):
            if any(first <= at <= last for at in wanted[str(store)]):
                found.add((str(store), date.fromisoformat(str(day))))
    return found
