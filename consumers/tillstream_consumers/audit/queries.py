"""Reading the audit (``tillstream audit``, ``GET /v1/audit/...``) and acknowledging flags.

A store-day's status:

- ``silent``: a store expected to trade sent nothing for the day;
- ``open``: trading, no till settled yet;
- ``closing``: some till settled, the store-day not closed yet;
- ``closed-balanced``: the store-day closed and every open flag is acknowledged (or none);
- ``closed-unbalanced``: the store-day closed with open flags no auditor acknowledged.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from tillstream.core.settings import Settings
from tillstream_consumers.audit.checks import audit_day
from tillstream_consumers.audit.facts import local_iso, money, parse_ts, ts
from tillstream_consumers.audit.flags import KINDS
from tillstream_consumers.audit.loading import load_store_day
from tillstream_consumers.audit.voids import post_void_view
from tillstream_consumers.runtime.access import Principal
from tillstream_consumers.runtime.db import Database

STATUSES = ("silent", "open", "closing", "closed-balanced", "closed-unbalanced")


class UnknownFlag(LookupError):
    """No flag has this id."""


@dataclass(frozen=True, slots=True)
class DaySummary:
    store_id: str
    business_day: str
    status: str
    events: int
    tills: int
    tills_closed: int
    closed_at: str | None
    """Store-local, with its offset."""
    open_flags: dict[str, int]
    """Open flags by kind."""
    unacknowledged: int

    def as_json(self) -> dict[str, Any]:
        return {
            "store_id": self.store_id,
            "business_day": self.business_day,
            "status": self.status,
            "events": self.events,
            "tills_traded": self.tills,
            "tills_settled": self.tills_closed,
            "closed_at": self.closed_at,
            "open_flags": self.open_flags,
            "unacknowledged": self.unacknowledged,
        }


def status_of(events: int, tills_closed: int, closed: bool, unacknowledged: int) -> str:
    if events == 0:
        return "silent"
    if closed:
        return "closed-unbalanced" if unacknowledged else "closed-balanced"
    return "closing" if tills_closed else "open"


def latest_day(db: Database) -> str | None:
    row = db.fetchone("SELECT MAX(business_day) FROM audit_days")
    return None if row is None or row[0] is None else str(row[0])


def store_days(
    db: Database, day: str | None = None, store: str | None = None, *, since: str | None = None
) -> list[DaySummary]:
    """Store-days with their status and open flags (of ``day``, of ``store``, from ``since``
    on, or any of them together)."""
    where, params = [], []
    if since is not None:
        where.append("d.business_day >= ?")
        params.append(since)
    if day is not None:
        where.append("d.business_day = ?")
        params.append(day)
    if store is not None:
        where.append("d.store_id = ?")
        params.append(store)
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    counts: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    unacked: dict[tuple[str, str], int] = defaultdict(int)
    flag_where = " AND ".join(["f.is_open = 1", *(w.replace("d.", "f.") for w in where)])
    for store_id, business_day, kind, n, acked in db.fetchall(
        "SELECT f.store_id, f.business_day, f.kind, COUNT(*), "
        "SUM(CASE WHEN EXISTS (SELECT 1 FROM audit_acks a WHERE a.flag_id = f.flag_id "
        "AND a.reopened_at IS NULL) "
        f"THEN 1 ELSE 0 END) FROM audit_flags f WHERE {flag_where} "
        "GROUP BY f.store_id, f.business_day, f.kind",
        params,
    ):
        key = (str(store_id), str(business_day))
        counts[key][str(kind)] = int(n)
        unacked[key] += int(n) - int(acked or 0)
    out = []
    for store_id, business_day, events, tills, closed, closed_at, offset in db.fetchall(
        "SELECT d.store_id, d.business_day, d.events, d.tills, d.tills_closed, d.closed_at, "
        "d.utc_offset_minutes "
        f"FROM audit_days d{clause} ORDER BY d.business_day DESC, d.store_id",
        params,
    ):
        key = (str(store_id), str(business_day))
        kinds = counts.get(key, {})
        out.append(
            DaySummary(
                key[0],
                key[1],
                status_of(int(events), int(closed), closed_at is not None, unacked[key]),
                int(events),
                int(tills),
                int(closed),
                None if closed_at is None else local_iso(parse_ts(closed_at), int(offset)),
                {k: kinds[k] for k in KINDS if k in kinds},
                unacked[key],
            )
        )
    return out


def flags(
    db: Database, store: str, day: str, *, include_resolved: bool = True
) -> list[dict[str, Any]]:
    """The store-day's flags (open first), each with its acknowledgements."""
    acks: dict[str, list[dict[str, str | None]]] = defaultdict(list)
    for fid, note, by, kind, at, reopened_at, reopened_by, reopen_note in db.fetchall(
        "SELECT a.flag_id, a.note, a.acked_by, a.acked_by_kind, a.acked_at, a.reopened_at, "
        "a.reopened_by, a.reopen_note FROM audit_acks a "
        "JOIN audit_flags f ON f.flag_id = a.flag_id "
        "WHERE f.store_id = ? AND f.business_day = ? ORDER BY a.acked_at, a.ack_id",
        (store, day),
    ):
        acks[str(fid)].append(
            {
                "note": note,
                "by": by,
                "by_kind": kind or "typed",  # before sign-in: a name typed into the form
                "at": at,
                "reopened_at": reopened_at,
                "reopened_by": reopened_by,
                "reopen_note": reopen_note,
            }
        )
    order = {kind: i for i, kind in enumerate(KINDS)}
    out = []
    for row in db.fetchall(
        "SELECT flag_id, kind, terminal_id, subject, message, amount, operator_id, events, "
        "is_open, first_seen_at, resolved_at FROM audit_flags "
        "WHERE store_id = ? AND business_day = ?",
        (store, day),
    ):
        fid, kind, terminal, subject, message, amount, operator, events, is_open, first, res = row
        if not is_open and not include_resolved:
            continue
        out.append(
            {
                "flag_id": fid,
                "kind": kind,
                "terminal_id": terminal,
                "subject": subject,
                "message": message,
                "amount": None if amount is None else str(money(int(amount))),
                "operator_id": operator,
                "events": json.loads(events),
                "open": bool(is_open),
                "first_seen_at": first,
                "resolved_at": res,
                "acknowledgements": acks.get(str(fid), []),
            }
        )
    out.sort(key=lambda f: (not f["open"], order.get(f["kind"], 99), f["subject"]))
    return out


def store_day(
    db: Database, store: str, day: date, now: datetime, settings: Settings
) -> dict[str, Any] | None:
    """One store-day in detail: status, tills, over/short by tender and by cashier, flags,
    post-voids (each, and per till and cashier)."""
    summaries = store_days(db, day.isoformat(), store)
    if not summaries:
        return None
    facts = load_store_day(db, store, day)
    audit = audit_day(facts, now, settings)
    offset = facts.utc_offset_minutes
    by_cashier: dict[str, Decimal] = defaultdict(Decimal)
    for b in audit.balances:
        by_cashier[b.operator_id or "?"] += b.over_short
    return {
        **summaries[0].as_json(),
        "tills": [
            {
                "terminal_id": t.terminal_id,
                "operators": list(t.operators),
                "transactions": t.transactions,
                "settled_at": None if t.closed_at is None else local_iso(t.closed_at, offset),
            }
            for t in audit.tills
        ],
        "balances": [
            {
                "terminal_id": b.terminal_id,
                "operator_id": b.operator_id,
                "tender": b.tender,
                "expected": str(b.expected),
                "declared": str(b.declared),
                "over_short": str(b.over_short),
            }
            for b in audit.balances
        ],
        "over_short_by_cashier": {k: str(v) for k, v in sorted(by_cashier.items())},
        "pending_payments": list(audit.pending),
        **post_void_view(facts.voids, facts.controls, offset).as_json(),
        "flags": flags(db, store, day.isoformat()),
    }


def acknowledge(db: Database, flag: str, note: str, by: Principal, now: datetime) -> dict[str, str]:
    """Record ``by``'s acknowledgement of ``flag`` (kept with every earlier one)."""
    with db.transaction():
        _known(db, flag)
        ack = {
            "ack_id": str(uuid.uuid4()),
            "flag_id": flag,
            "note": note,
            "by": by.name,
            "by_kind": by.kind,
            "at": ts(now),
        }
        db.execute(
            "INSERT INTO audit_acks (ack_id, flag_id, note, acked_by, acked_by_kind, "
            "acked_by_subject, acked_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (ack["ack_id"], flag, note, by.name, by.kind, by.subject, ack["at"]),
        )
    return ack


def reopen(db: Database, flag: str, note: str, by: Principal, now: datetime) -> int:
    """A lead takes the acknowledgements of ``flag`` back (kept, marked reopened): the flag
    counts as unacknowledged again. Returns how many were reopened."""
    with db.transaction():
        _known(db, flag)
        open_acks = db.fetchall(
            "SELECT ack_id FROM audit_acks WHERE flag_id = ? AND reopened_at IS NULL", (flag,)
        )
        db.execute(
            "UPDATE audit_acks SET reopened_at = ?, reopened_by = ?, reopen_note = ? "
            "WHERE flag_id = ? AND reopened_at IS NULL",
            (ts(now), by.trail, note, flag),
        )
    return len(open_acks)


def _known(db: Database, flag: str) -> None:
    if db.fetchone("SELECT 1 FROM audit_flags WHERE flag_id = ?", (flag,)) is None:
        raise UnknownFlag("no such flag")


def events(db: Database, ids: list[str]) -> list[dict[str, Any]]:
    """The facts behind flags (sales, payments, till events, post-voids), by event id, in
    time order."""
    found: list[tuple[str, dict[str, Any]]] = []
    for chunk in [ids[i : i + 500] for i in range(0, len(ids), 500)]:
        marks = ", ".join("?" * len(chunk))
        for event_id, terminal, number, at, offset, net in db.fetchall(
            "SELECT event_id, terminal_id, number, occurred_at, utc_offset_minutes, net_amount "
            f"FROM audit_transactions WHERE event_id IN ({marks})",
            chunk,
        ):
            found.append(
                (at, _event(event_id, "sale", terminal, f"receipt {number}", at, offset, net))
            )
        for event_id, terminal, kind, number, at, offset in db.fetchall(
            "SELECT event_id, terminal_id, kind, number, occurred_at, utc_offset_minutes "
            f"FROM audit_controls WHERE event_id IN ({marks})",
            chunk,
        ):
            what = f"{kind} {number}" if number else str(kind)
            found.append((at, _event(event_id, "till event", terminal, what, at, offset, None)))
        for event_id, terminal, number, voided, at, offset, amount in db.fetchall(
            "SELECT v.event_id, v.terminal_id, v.number, v.voided_number, v.occurred_at, "
            "v.utc_offset_minutes, COALESCE(t.net_amount, v.amount) FROM audit_voids v "
            "LEFT JOIN audit_transactions t ON t.event_id = v.voided_event_id "
            f"AND t.store_id = v.store_id WHERE v.event_id IN ({marks})",
            chunk,
        ):
            what = f"post-void {number or ''} of receipt {voided or '?'}".replace("  ", " ")
            found.append((at, _event(event_id, "post-void", terminal, what, at, offset, amount)))
        # A payment is shown in its sale's local time; without its sale, in the store's
        # latest offset (the payment carries none).
        for event_id, terminal, method, status, amount, at, number, offset in db.fetchall(
            "SELECT p.event_id, p.terminal_id, p.method, p.status, p.amount, p.occurred_at, "
            "t.number, COALESCE(t.utc_offset_minutes, (SELECT d.utc_offset_minutes "
            "FROM audit_days d WHERE d.store_id = p.store_id ORDER BY d.business_day DESC "
            "LIMIT 1), 0) FROM audit_payments p "
            "LEFT JOIN audit_transactions t ON t.event_id = p.sale_event_id "
            f"WHERE p.event_id IN ({marks})",
            chunk,
        ):
            sale = "a sale never received" if number is None else f"receipt {number}"
            what = f"{method} {status} for {sale}"
            found.append((at, _event(event_id, "payment", terminal, what, at, offset, amount)))
    return [e for _, e in sorted(found, key=lambda x: (x[0], x[1]["event_id"]))]


def _event(
    event_id: str, kind: str, terminal: str, what: str, at: str, offset: int, amount: int | None
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": kind,
        "terminal_id": terminal,
        "what": what,
        "at": local_iso(parse_ts(at), int(offset)),
        "amount": None if amount is None else str(money(int(amount))),
    }
