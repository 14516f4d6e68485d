"""The sales audit consumer (``tillstream consume audit``): sales, payments and till events
in; per store, business day and till, what is missing, duplicated, late, unbalanced or
unsettled out (see ``docs/audit.md``).

Each batch stores its events as facts, then re-audits the store-days it touched from their
facts (``store_days.recompute``), so the flags are the same whatever order the events
arrived in, and a receipt backfilled days later closes its gap by itself. A busy day is
re-audited as often as its size allows and settled on the refresh in between
(``pacing.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tillstream.core.days import DAY_FORM, day_or_none
from tillstream.core.events import Payment, Sale, SaleVoid, TillEvent
from tillstream.core.settings import Settings
from tillstream.core.topics import PAYMENTS, SALE_VOIDS, SALES, TILL_EVENTS
from tillstream_consumers.audit import gauges, queries
from tillstream_consumers.audit.acknowledging import MAX_BODY, NoteError, note_of
from tillstream_consumers.audit.checks import day_end
from tillstream_consumers.audit.flags import DAY_NOT_CLOSED, rekey_flags
from tillstream_consumers.audit.pacing import Pacing, StoreDay, audit_now
from tillstream_consumers.audit.page import page_routes
from tillstream_consumers.audit.reading import note_read
from tillstream_consumers.audit.store_days import (
    clear_dirty,
    days_to_check_for_silence,
    mark_dirty,
    recompute,
    recompute_silent,
    settle,
    silence_due,
    standing,
)
from tillstream_consumers.audit.tables import COMPONENT, MIGRATIONS
from tillstream_consumers.audit.touched import touched_store_days
from tillstream_consumers.audit.writing import (
    store_controls,
    store_payments,
    store_sales,
    store_voids,
)
from tillstream_consumers.runtime.access import ACK, READ, REOPEN, Principal
from tillstream_consumers.runtime.api import Consumer, Context, Query, Record
from tillstream_consumers.runtime.bodies import bounded_json
from tillstream_consumers.runtime.db import Database
from tillstream_consumers.runtime.guard import principal_of, refused, refused_change

RECENT_DAYS = 14
"""How far back ``refresh`` looks for days that became overdue without any new event."""


SETTLE_PER_REFRESH = 200
"""Store-days audited per transaction when settling the ones batches left dirty."""


class SalesAudit(Consumer):
    name = COMPONENT
    topics = (SALES.name, PAYMENTS.name, TILL_EVENTS.name, SALE_VOIDS.name)
    migrations = MIGRATIONS
    signs_in = True
    """Auditors act on its page (acknowledge, reopen): served behind sign-in and tokens."""
    deduplicates = False
    """Facts are keyed by event id and written ``ON CONFLICT DO NOTHING``, and a store-day's
    audit is a function of its facts: an event that comes again changes nothing."""
    inline_store_days: ClassVar[int] = 16
    """A batch audits the store-days it touched at once (flags within the batch's commit),
    except a big day that grew too little since its last audit (``pacing.py``), or all of
    them if there are more than this many (catching up, a rebuild): those it marks dirty,
    and the service audits each once on a refresh, a couple of seconds later."""

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__(settings)
        self._silence_checked: set[date] = set()
        self._pacing = Pacing()

    def apply(self, ctx: Context, records: list[Record]) -> None:
        sales: list[tuple[Sale, int]] = []  # each with when it was published
        payments: list[tuple[Payment, int]] = []
        controls: list[tuple[TillEvent, int]] = []
        voids: list[tuple[SaleVoid, int]] = []
        for r in records:
            if r.event == "sale":
                sales.append((r.sale(), r.timestamp_ms))
            elif r.event == "payment":
                payments.append((r.payment(), r.timestamp_ms))
            elif r.event == "till_event":
                controls.append((r.till_event(), r.timestamp_ms))
            elif r.event == "sale_void":
                voids.append((r.sale_void(), r.timestamp_ms))
        store_sales(ctx.db, sales, ctx.now)
        store_controls(ctx.db, controls, ctx.now)
        store_payments(ctx.db, payments, ctx.now)
        store_voids(ctx.db, voids, ctx.now)
        note_read(ctx.db, [(s["store_id"], "sale", ms) for s, ms in sales])
        note_read(ctx.db, [(p["store_id"], "payment", ms) for p, ms in payments])
        note_read(ctx.db, [(c["store_id"], "till_event", ms) for c, ms in controls])
        note_read(ctx.db, [(v["store_id"], "sale_void", ms) for v, ms in voids])
        touched, new = touched_store_days(
            ctx.db,
            [s for s, _ in sales],
            [c for c, _ in controls],
            [p for p, _ in payments],
            [v for v, _ in voids],
        )
        stand = standing(ctx.db, touched)
        now = {key for key in touched if audit_now(stand[key].audited_facts)}
        if len(now) > self.inline_store_days:  # catching up: audit them once, soon
            now = set()
        mark_dirty(ctx.db, {key: new[key] for key in touched - now})
        for store, day in sorted(now):
            with self._pacing.timing((store, day)):
                recompute(ctx.db, store, day, ctx.now, self.settings)
        clear_dirty(ctx.db, [(key, t) for key in now if (t := stand[key].token) is not None])
        days = days_to_check_for_silence(ctx.db, {day for _, day in now}, self.settings)
        for day in sorted(days):
            recompute_silent(ctx.db, day, ctx.now, self.settings)

    def settle(
        self, db: Database, now: datetime, *, lots: int | None = None, paced: bool = False
    ) -> int:
        """Audit the store-days batches left dirty, :data:`SETTLE_PER_REFRESH` at a time,
        each lot in one transaction, up to ``lots`` lots (all, without); ``paced``: only
        those whose :class:`~tillstream_consumers.audit.pacing.Pacing` is due. Returns how
        many."""
        done = 0
        pacing = self._pacing if paced else None
        seen: set[StoreDay] = set()  # once each: a day waiting for its sales is dirty again
        while lots is None or lots > 0:
            with db.transaction():
                n = settle(db, now, self.settings, SETTLE_PER_REFRESH, pacing, seen)
            done += n
            lots = None if lots is None else lots - 1
            if n < SETTLE_PER_REFRESH:
                break
        return done

    def refresh(self, db: Database) -> None:
        """Flag the days (and their tills) that never closed once their grace has passed,
        and bring the gauges up to date."""
        now = datetime.now(UTC)
        self.settle(db, now, lots=1, paced=True)  # one lot: consuming goes on between
        self._pacing.forget_due()
        self.flag_overdue(db, now)
        gauges.publish(db, now.date(), self.settings.audit_silent_days)

    def flag_overdue(self, db: Database, now: datetime) -> int:
        """Re-audit the recent store-days that are not closed and became overdue by ``now``
        without a new event; returns how many."""
        since = (now.date() - timedelta(days=RECENT_DAYS)).isoformat()
        grace = timedelta(hours=self.settings.audit_close_grace_hours)
        due = [
            (str(store), date.fromisoformat(str(day)))
            for store, day, offset in db.fetchall(
                "SELECT d.store_id, d.business_day, d.utc_offset_minutes FROM audit_days d "
                "WHERE d.closed_at IS NULL AND d.events > 0 AND d.business_day >= ? "
                "AND NOT EXISTS (SELECT 1 FROM audit_flags f WHERE f.store_id = d.store_id "
                "AND f.business_day = d.business_day AND f.kind = ? AND f.is_open = 1)",
                (since, DAY_NOT_CLOSED),
            )
            if now >= day_end(date.fromisoformat(str(day)), int(offset)) + grace
        ]
        for store, day in due:
            with db.transaction():
                recompute(db, store, day, now, self.settings)
        # Silent stores show once a day is over: each recent day once it is, per process.
        days = [
            date.fromisoformat(str(d))
            for (d,) in db.fetchall(
                "SELECT DISTINCT business_day FROM audit_days WHERE business_day >= ? "
                "AND events > 0",
                (since,),
            )
        ]
        for day in sorted(set(days) - self._silence_checked):
            if silence_due(db, day, now, self.settings):
                with db.transaction():
                    recompute_silent(db, day, now, self.settings)
                self._silence_checked.add(day)
        return len(due)

    def setup(self, db: Database) -> None:
        with db.transaction():  # flags made before their ids were keyed get keyed ids
            rekey_flags(db)

    def routes(self, query: Query) -> list[BaseRoute]:
        settings = self.settings

        async def days(request: Request) -> Response:
            if denied := refused(request, READ):
                return denied
            given = request.query_params.get("day") or None
            store = request.query_params.get("store") or None
            day = None if given is None else day_or_none(given)
            if given is not None and day is None:
                return _error(400, f"day must be a date: {DAY_FORM}")

            def read(db: Database) -> list[dict[str, Any]]:
                wanted = day.isoformat() if day is not None else None
                if wanted is None and store is None:
                    wanted = queries.latest_day(db)
                return [s.as_json() for s in queries.store_days(db, wanted, store)]

            return JSONResponse(await query(read))

        async def store_day(request: Request) -> Response:
            if denied := refused(request, READ):
                return denied
            store = request.path_params["store"]
            day = day_or_none(request.path_params["day"])
            if day is None:
                return _error(400, f"day must be a date: {DAY_FORM}")
            now = datetime.now(UTC)
            found = await query(lambda db: queries.store_day(db, store, day, now, settings))
            if found is None:
                return _error(404, "no audit of this store on this day")
            return JSONResponse(found)

        async def acknowledge(request: Request) -> Response:
            return await _change(request, ACK, queries.acknowledge, 201)

        async def reopen(request: Request) -> Response:
            return await _change(request, REOPEN, queries.reopen, 200)

        async def _change(
            request: Request,
            permission: str,
            write: Callable[[Database, str, str, Principal, datetime], Any],
            status: int,
        ) -> Response:
            """An acknowledgement or a reopening: allowed, from this site, JSON, sized."""
            if denied := refused(request, permission) or refused_change(request):
                return denied
            body = await bounded_json(request, MAX_BODY, '{"note": "..."}')
            if isinstance(body, Response):
                return body
            try:
                note = note_of(body)
            except NoteError as exc:
                return JSONResponse(
                    {"error": exc.kind, "problems": [{"field": exc.field, "message": str(exc)}]},
                    status_code=422,
                )
            principal = principal_of(request)
            assert principal is not None  # refused() let it through
            flag, now = request.path_params["flag"], datetime.now(UTC)
            try:
                result = await query(lambda db: write(db, flag, note, principal, now))
            except queries.UnknownFlag:
                return _error(404, "no such flag")
            if isinstance(result, int):
                return JSONResponse({"reopened": result, "by": principal.trail}, status_code=status)
            return JSONResponse(result, status_code=status)

        return [
            *page_routes(query, settings),
            Route("/v1/audit/days", days, methods=["GET"]),
            Route("/v1/audit/days/{store}/{day}", store_day, methods=["GET"]),
            Route("/v1/audit/flags/{flag}/ack", acknowledge, methods=["POST"]),
            Route("/v1/audit/flags/{flag}/reopen", reopen, methods=["POST"]),
        ]


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)
