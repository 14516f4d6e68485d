"""Bringing a store-day's conclusions up to date: ``audit_days`` and ``audit_flags`` from its
facts, after every batch that touched it (and, for days that never closed, as time passes).

A flag keeps its id, its first sighting and its acknowledgements while the fault lasts;
when the facts no longer show it (the missing receipt was backfilled) it is resolved, not
deleted, so the trail of what an auditor saw stays.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from tillstream.core.settings import Settings
from tillstream_consumers.audit.checks import DayAudit, audit_day, day_end
from tillstream_consumers.audit.facts import parse_ts, ts
from tillstream_consumers.audit.flags import SILENT_STORE, Flag, flag_id, flag_key
from tillstream_consumers.audit.loading import load_store_day
from tillstream_consumers.audit.pacing import Pacing, StoreDay
from tillstream_consumers.audit.reading import HOLD_SECONDS
from tillstream_consumers.runtime.api import MONEY_SCALE, to_units
from tillstream_consumers.runtime.db import Database

_STORE_DAY_LOCK = 0x7111_A0D1
_CHAIN_DAY_LOCK = 0x7111_A0D2


def lock(db: Database, space: int, key: str) -> None:
    """Serialize the audits of one store-day (or one chain day) across instances.

    Scaled out on PostgreSQL, two instances may apply events of one store-day at once (a
    store's sales and till events are on different topics, whose partitions the group may
    give to different instances). Each audits after storing its facts, under this lock held
    to its commit, so the later one reads the earlier one's facts too: the last audit of a
    store-day always sees all of them. Locks are taken in sorted order (store-days, then
    days), so two batches never wait on each other in a circle. SQLite has one writer at a
    time anyway."""
    db.advisory_lock(space, key)


def recompute(
    db: Database, store_id: str, day: date, now: datetime, settings: Settings
) -> DayAudit:
    """Audit one store-day from its facts and store the result."""
    lock(db, _STORE_DAY_LOCK, f"{store_id}\x1f{day.isoformat()}")
    facts = load_store_day(db, store_id, day)
    row = db.fetchone(
        "SELECT waiting_since FROM audit_days WHERE store_id = ? AND business_day = ?",
        (store_id, day.isoformat()),
    )
    since = None if row is None or row[0] is None else parse_ts(str(row[0]))
    hold = since is None or now - since < timedelta(seconds=HOLD_SECONDS)
    audit = audit_day(facts, now, settings, hold=hold)
    waiting_since = (since or now) if audit.waiting else None
    db.execute(
        "INSERT INTO audit_days (store_id, business_day, utc_offset_minutes, events, facts, "
        "tills, tills_closed, closed_at, first_at, last_at, updated_at, waiting_since, "
        "currency) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (store_id, business_day) DO UPDATE SET "
        "utc_offset_minutes = excluded.utc_offset_minutes, events = excluded.events, "
        "currency = excluded.currency, "
        "facts = excluded.facts, waiting_since = excluded.waiting_since, "
        "tills = excluded.tills, tills_closed = excluded.tills_closed, "
        "closed_at = excluded.closed_at, first_at = excluded.first_at, "
        "last_at = excluded.last_at, updated_at = excluded.updated_at",
        (
            store_id,
            day.isoformat(),
            facts.utc_offset_minutes,
            facts.events,
            facts.size,
            len(audit.tills),
            sum(1 for t in audit.tills if t.closed_at is not None),
            None if audit.closed_at is None else ts(audit.closed_at),
            *((None, None) if facts.window is None else map(ts, facts.window)),
            ts(now),
            None if waiting_since is None else ts(waiting_since),
            facts.currency,
        ),
    )
    _write_flags(
        db, store_id, day, audit.flags, now, kinds_other_than=SILENT_STORE, kept_if_open=audit.held
    )
    if audit.waiting:  # audited again on a refresh, once what it waits for may have come
        mark_dirty(db, {(store_id, day): 0})
    return audit


def silence_due(db: Database, day: date, now: datetime, settings: Settings) -> bool:
    """Whether ``day`` is over across the chain (its last store's local midnight plus the
    close grace has passed), so a store without events for it was silent all day."""
    row = db.fetchone(
        "SELECT MIN(utc_offset_minutes) FROM audit_days WHERE business_day = ? AND events > 0",
        (day.isoformat(),),
    )
    if row is None or row[0] is None:
        return False  # nobody traded: not a trading day
    grace = timedelta(hours=settings.audit_close_grace_hours)
    return now >= day_end(day, int(row[0])) + grace


def recompute_silent(db: Database, day: date, now: datetime, settings: Settings) -> None:
    """Flag the stores that traded in the ``audit_silent_days`` before ``day`` and sent
    nothing for it, once the day is over (:func:`silence_due`). Only for a day some store
    traded on: the chain's calendar is what its stores do, so a day nobody traded (a
    holiday) flags nobody."""
    key = day.isoformat()
    lock(db, _CHAIN_DAY_LOCK, key)
    if silence_due(db, day, now, settings):
        since = (day - timedelta(days=settings.audit_silent_days)).isoformat()
        expected = {
            str(s)
            for (s,) in db.fetchall(
                "SELECT DISTINCT store_id FROM audit_days WHERE events > 0 "
                "AND business_day >= ? AND business_day < ?",
                (since, key),
            )
        }
        traded = {
            str(s)
            for (s,) in db.fetchall(
                "SELECT store_id FROM audit_days WHERE business_day = ? AND events > 0", (key,)
            )
        }
    else:
        expected = traded = set()
    silent = expected - traded
    for store in sorted(silent):
        db.execute(
            "INSERT INTO audit_days (store_id, business_day, utc_offset_minutes, events, tills, "
            "tills_closed, closed_at, updated_at) VALUES (?, ?, 0, 0, 0, 0, NULL, ?) "
            "ON CONFLICT (store_id, business_day) DO NOTHING",
            (store, key, ts(now)),
        )
    flagged = {
        str(s)
        for (s,) in db.fetchall(
            "SELECT store_id FROM audit_flags WHERE business_day = ? AND kind = ? AND is_open = 1",
            (key, SILENT_STORE),
        )
    }
    for store in flagged | silent:
        flags = []
        if store in silent:
            flags.append(
                Flag(
                    SILENT_STORE,
                    None,
                    store,
                    f"store {store} traded in the {settings.audit_silent_days} days before "
                    f"{key} and sent nothing for it",
                )
            )
        _write_flags(db, store, day, flags, now, only_kind=SILENT_STORE)
    gone = flagged - silent
    for store in sorted(gone):  # it traded after all, or is no longer expected
        db.execute(
            "DELETE FROM audit_days WHERE store_id = ? AND business_day = ? AND events = 0",
            (store, key),
        )


def days_to_check_for_silence(db: Database, days: Iterable[date], settings: Settings) -> set[date]:
    """The days whose silent stores may change when ``days`` get events: themselves, and
    the known days up to ``audit_silent_days`` after them (a store trading on a day is
    expected on the days that follow)."""
    out: set[date] = set()
    for day in set(days):
        out.add(day)
        last = day + timedelta(days=settings.audit_silent_days)
        out |= {
            date.fromisoformat(str(d))
            for (d,) in db.fetchall(
                "SELECT DISTINCT business_day FROM audit_days WHERE business_day > ? "
                "AND business_day <= ? AND events > 0",
                (day.isoformat(), last.isoformat()),
            )
        }
    return out


def _write_flags(
    db: Database,
    store_id: str,
    day: date,
    flags: Iterable[Flag],
    now: datetime,
    *,
    kinds_other_than: str | None = None,
    only_kind: str | None = None,
    kept_if_open: Iterable[Flag] = (),
) -> None:
    """Make the store-day's open flags (of the kinds given) exactly ``flags``, and those of
    ``kept_if_open`` (findings held back for now) that are open already."""
    where = "store_id = ? AND business_day = ?"
    params: list[str] = [store_id, day.isoformat()]
    if kinds_other_than is not None:
        where += " AND kind <> ?"
        params.append(kinds_other_than)
    if only_kind is not None:
        where += " AND kind = ?"
        params.append(only_kind)
    existing = {
        str(fid): (str(kind), subject, message, amount, operator, events, int(is_open), missing)
        for fid, kind, subject, message, amount, operator, events, is_open, missing in (
            db.fetchall(
                "SELECT flag_id, kind, subject, message, amount, operator_id, events, is_open, "
                f"missing FROM audit_flags WHERE {where}",
                params,
            )
        )
    }
    wanted = {}
    key = flag_key(db)
    for f in flags:
        amount = None if f.amount is None else to_units(f.amount, MONEY_SCALE)
        events = json.dumps(f.events)
        row = (f.kind, f.subject, f.message, amount, f.operator_id, events, 1, f.missing)
        wanted[flag_id(key, store_id, day, f.kind, f.subject)] = (f.terminal_id, row)
    for f in kept_if_open:
        fid = flag_id(key, store_id, day, f.kind, f.subject)
        if fid in existing and existing[fid][6]:
            wanted[fid] = (f.terminal_id, existing[fid])
    stamp = ts(now)
    db.executemany(
        "UPDATE audit_flags SET is_open = 0, resolved_at = ?, updated_at = ? WHERE flag_id = ?",
        [(stamp, stamp, fid) for fid, row in existing.items() if fid not in wanted and row[6]],
    )
    db.executemany(
        "INSERT INTO audit_flags (flag_id, store_id, business_day, kind, terminal_id, subject, "
        "message, amount, operator_id, events, missing, is_open, first_seen_at, updated_at, "
        "resolved_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, NULL) "
        "ON CONFLICT (flag_id) DO UPDATE SET "
        "message = excluded.message, amount = excluded.amount, "
        "operator_id = excluded.operator_id, events = excluded.events, "
        "missing = excluded.missing, is_open = 1, "
        "updated_at = excluded.updated_at, resolved_at = NULL",
        [
            (fid, store_id, day.isoformat(), row[0], terminal, *row[1:6], row[7], stamp, stamp)
            for fid, (terminal, row) in wanted.items()
            if existing.get(fid) != row
        ],
    )


def mark_dirty(db: Database, new_events: Mapping[StoreDay, int]) -> None:
    """Leave store-days to :func:`settle`, with how many receipts and till events each got.
    Each mark gets a new token, so a settle that read the facts before this batch's commit
    does not clear it (it clears only the token it saw)."""
    token = uuid.uuid4().hex
    db.insert_many(
        "audit_dirty",
        ("store_id", "business_day", "token", "new_events"),
        [(store, day.isoformat(), token, n) for (store, day), n in sorted(new_events.items())],
        "ON CONFLICT (store_id, business_day) DO UPDATE SET token = excluded.token, "
        "new_events = audit_dirty.new_events + excluded.new_events",
    )


@dataclass(frozen=True, slots=True)
class Standing:
    """Where a store-day stands: the facts its last audit read (None: never audited, or
    before they were counted), and, if it is dirty, its mark."""

    audited_facts: int | None = None
    token: str | None = None


def standing(db: Database, store_days: Iterable[StoreDay]) -> dict[StoreDay, Standing]:
    """The :class:`Standing` of each of ``store_days``."""
    wanted = set(store_days)
    out = dict.fromkeys(wanted, Standing())
    stores = sorted({store for store, _ in wanted})
    for start in range(0, len(stores), 500):
        chunk = stores[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        audited = {
            (str(s), date.fromisoformat(str(d))): None if n is None else int(n)
            for s, d, n in db.fetchall(
                f"SELECT store_id, business_day, facts FROM audit_days WHERE store_id IN ({marks})",
                chunk,
            )
        }
        dirty = {
            (str(s), date.fromisoformat(str(d))): str(t)
            for s, d, t in db.fetchall(
                "SELECT store_id, business_day, token FROM audit_dirty "
                f"WHERE store_id IN ({marks})",
                chunk,
            )
        }
        for key in wanted & (audited.keys() | dirty.keys()):
            out[key] = Standing(audited.get(key), dirty.get(key))
    return out


def clear_dirty(db: Database, marks: Iterable[tuple[StoreDay, str]]) -> None:
    """Clear the dirty marks of store-days just audited, each only if it is still the
    mark that was read before the audit (a newer one is another batch's, maybe unseen)."""
    db.executemany(
        "DELETE FROM audit_dirty WHERE store_id = ? AND business_day = ? AND token = ?",
        [(store, day.isoformat(), token) for (store, day), token in marks],
    )


def settle(
    db: Database,
    now: datetime,
    settings: Settings,
    limit: int,
    pacing: Pacing | None = None,
    done: set[StoreDay] | None = None,
) -> int:
    """Audit again up to ``limit`` store-days left dirty (oldest days first; with ``pacing``,
    only those it finds due; none of ``done``, to which they are added), then the silent
    stores of their days; returns how many."""
    rows = [
        (str(store), date.fromisoformat(str(day)), str(token))
        for store, day, token in db.fetchall(
            "SELECT store_id, business_day, token FROM audit_dirty ORDER BY business_day, store_id"
        )
    ]
    if pacing is not None:
        rows = [row for row in rows if pacing.due(row[:2])]
    if done is not None:
        rows = [row for row in rows if row[:2] not in done]
        done.update(row[:2] for row in rows[:limit])
    rows = rows[:limit]
    days = set()
    for store, day, _ in rows:
        days.add(day)
        if pacing is None:
            recompute(db, store, day, now, settings)
        else:
            with pacing.timing((store, day)):
                recompute(db, store, day, now, settings)
    clear_dirty(db, [((s, d), t) for s, d, t in rows])
    for day in sorted(days_to_check_for_silence(db, days, settings)):
        recompute_silent(db, day, now, settings)
    return len(rows)
