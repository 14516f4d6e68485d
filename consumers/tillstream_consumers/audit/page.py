"""The auditor's page, served by the audit service at ``/`` of its listener: the store-days
of a day across the chain, and one store-day in detail with its flags, the events behind
them, tills and over/short, where an auditor acknowledges a flag (and a lead reopens one).
Plain server-side HTML (Jinja2, autoescaped), no script, its style sheet its own
(``/static/audit.css``, so the Content-Security-Policy allows no inline style), readable on a
tablet; behind the service's door (``runtime/guard.py``: sign-in, roles, CSRF)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from tillstream.core.days import DAY_FORM, day_or_none
from tillstream.core.settings import Settings
from tillstream_consumers.audit import queries
from tillstream_consumers.audit.acknowledging import MAX_BODY, NoteError, note_of
from tillstream_consumers.audit.at_stake import describe
from tillstream_consumers.audit.drawers import ATTRIBUTIONS
from tillstream_consumers.runtime.access import ACK, READ, REOPEN, Principal
from tillstream_consumers.runtime.api import Query
from tillstream_consumers.runtime.bodies import bounded_form
from tillstream_consumers.runtime.db import Database
from tillstream_consumers.runtime.guard import principal_of, refused, refused_change
from tillstream_consumers.runtime.pages import render, templates
from tillstream_consumers.runtime.signin import CSRF

_TEMPLATES = templates("tillstream_consumers.audit")
_CSS = (files("tillstream_consumers.audit") / "templates" / "audit.css").read_bytes()


def page_routes(query: Query, settings: Settings) -> list[BaseRoute]:
    async def chain_day(request: Request) -> Response:
        if denied := refused(request, READ):
            return denied
        given = request.query_params.get("day") or None
        parsed = None if given is None else day_or_none(given)
        if given is not None and parsed is None:
            error = f"Not a business day: write it {DAY_FORM}."
            return _render(
                request, "chain_day.html", 400, day=None, days=[], counts={}, error=error
            )
        wanted = None if parsed is None else parsed.isoformat()

        def read(db: Database) -> tuple[str | None, list[dict[str, Any]]]:
            day = wanted or queries.latest_day(db)
            return day, [s.as_json() for s in queries.store_days(db, day)] if day else []

        day, days = await query(read)
        counts = Counter(d["status"] for d in days)
        return _render(request, "chain_day.html", 200, day=day, days=days, counts=counts)

    async def store_day(request: Request, error: str | None = None, status: int = 200) -> Response:
        if denied := refused(request, READ):
            return denied
        store = request.path_params["store"]
        day = day_or_none(request.path_params["day"])
        if day is None:
            return _render(request, "not_found.html", 400, what=f"not a business day ({DAY_FORM})")
        now = datetime.now(UTC)

        def read(db: Database) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
            found = queries.store_day(db, store, day, now, settings)
            if found is None:
                return None, []
            ids = sorted({e for f in found["flags"] for e in f["events"]})
            return found, queries.events(db, ids, found["currency"])

        found, behind = await query(read)
        if found is None:  # the store comes from the address: escaped by the template
            return _render(
                request, "not_found.html", 404, what=f"no audit of store {store} on {day}"
            )
        return _render(
            request,
            "store_day.html",
            status,
            d=found,
            attribution_words=ATTRIBUTIONS.get(found["drawer_attribution"], ""),
            events=behind,
            by_id={e["event_id"]: e for e in behind},
            offset=_offset(found),
            error=error,
        )

    async def acknowledge(request: Request) -> Response:
        return await _change(request, ACK, queries.acknowledge)

    async def reopen(request: Request) -> Response:
        return await _change(request, REOPEN, queries.reopen)

    async def _change(
        request: Request,
        permission: str,
        write: Callable[[Database, str, str, Principal, datetime], object],
    ) -> Response:
        """A form's acknowledgement or reopening: allowed, from this site, sized, its note
        by the one rule (``acknowledging.py``)."""
        if denied := refused(request, permission):
            return denied
        form = await bounded_form(request, MAX_BODY)
        if form is None:
            return HTMLResponse(f"The form must be at most {MAX_BODY} bytes.", status_code=413)
        if denied := refused_change(request, form.pop(CSRF, None)):
            return denied
        flag = form.pop("flag", "")
        try:
            note = note_of(form)
        except NoteError as exc:
            return await store_day(request, error=str(exc), status=400)
        principal = principal_of(request)
        assert principal is not None  # refused() let it through
        now = datetime.now(UTC)
        try:
            await query(lambda db: write(db, flag, note, principal, now))
        except queries.UnknownFlag:
            return await store_day(request, error="No such flag.", status=400)
        store, day = request.path_params["store"], request.path_params["day"]
        target = f"/audit/{quote(store, safe='')}/{day}#flag-{quote(flag, safe='')}"
        return RedirectResponse(target, status_code=303)

    async def stylesheet(_: Request) -> Response:
        return Response(_CSS, media_type="text/css", headers={"Cache-Control": "max-age=3600"})

    return [
        Route("/", chain_day, methods=["GET"]),
        Route("/static/audit.css", stylesheet, methods=["GET"]),
        Route("/audit/{store}/{day}", store_day, methods=["GET"]),
        Route("/audit/{store}/{day}/ack", acknowledge, methods=["POST"]),
        Route("/audit/{store}/{day}/reopen", reopen, methods=["POST"]),
    ]


def _clock(local: str | None, day: str) -> str:
    """A store-local ISO time as an auditor reads it: ``21:30`` on the business day itself,
    ``2026-03-03 00:30`` on another (a till closed after midnight)."""
    if not local:
        return ""
    at = datetime.fromisoformat(local)
    shown = at.strftime("%H:%M:%S" if at.second else "%H:%M")
    return shown if at.date().isoformat() == day else f"{at.date().isoformat()} {shown}"


def _money(amount: str | None, currency: str | None) -> str:
    """An amount beside its currency (``-20.00 EUR``); empty for none."""
    if amount is None or amount == "":
        return ""
    return f"{amount} {currency}" if currency else str(amount)


def _offset(found: dict[str, Any]) -> str | None:
    """The store's UTC offset as shown (``UTC+01:00``), once: every time on the page is in
    it (a silent day has no time to show)."""
    minutes = found.get("utc_offset_minutes")
    if minutes is None or not found["events"]:
        return None
    sign = "-" if minutes < 0 else "+"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


_TEMPLATES.filters["clock"] = _clock
_TEMPLATES.filters["money"] = _money
_TEMPLATES.filters["at_stake"] = describe


def _render(request: Request, template: str, status: int, **context: Any) -> HTMLResponse:
    return render(_TEMPLATES, request, template, status, **context)
