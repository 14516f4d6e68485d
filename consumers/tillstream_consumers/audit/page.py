"""The auditor's page, served by the audit service at ``/`` of its listener: the store-days
of a day across the chain, and one store-day in detail with its flags, the events behind
them, tills and over/short, where an auditor acknowledges a flag. Plain server-side HTML
(Jinja2, autoescaped), no script, readable on a tablet."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from tillstream.core.days import DAY_FORM, day_or_none
from tillstream.core.settings import Settings
from tillstream_consumers.audit import queries
from tillstream_consumers.runtime.api import Query
from tillstream_consumers.runtime.db import Database

_TEMPLATES = Environment(
    loader=PackageLoader("tillstream_consumers.audit", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
MAX_NOTE = 2000


def page_routes(query: Query, settings: Settings) -> list[BaseRoute]:
    async def chain_day(request: Request) -> Response:
        given = request.query_params.get("day") or None
        parsed = None if given is None else day_or_none(given)
        if given is not None and parsed is None:
            error = f"Not a business day: write it {DAY_FORM}."
            return _render("chain_day.html", 400, day=None, days=[], counts={}, error=error)
        wanted = None if parsed is None else parsed.isoformat()

        def read(db: Database) -> tuple[str | None, list[dict[str, Any]]]:
            day = wanted or queries.latest_day(db)
            return day, [s.as_json() for s in queries.store_days(db, day)] if day else []

        day, days = await query(read)
        counts = Counter(d["status"] for d in days)
        return _render("chain_day.html", 200, day=day, days=days, counts=counts)

    async def store_day(request: Request, error: str | None = None, status: int = 200) -> Response:
        store = request.path_params["store"]
        day = day_or_none(request.path_params["day"])
        if day is None:
            return HTMLResponse(f"not a business day ({DAY_FORM})", status_code=400)
        now = datetime.now(UTC)

        def read(db: Database) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
            found = queries.store_day(db, store, day, now, settings)
            if found is None:
                return None, []
            ids = sorted({e for f in found["flags"] for e in f["events"]})
            return found, queries.events(db, ids)

        found, behind = await query(read)
        if found is None:
            return HTMLResponse(f"no audit of store {store} on {day}", status_code=404)
        return _render(
            "store_day.html",
            status,
            d=found,
            events=behind,
            by_id={e["event_id"]: e for e in behind},
            offset=_offset(found, behind),
            error=error,
        )

    async def acknowledge(request: Request) -> Response:
        if not _same_origin(request):
            return HTMLResponse("acknowledgements come from this page only", status_code=403)
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        flag = (form.get("flag") or [""])[0]
        note = (form.get("note") or [""])[0][:MAX_NOTE]
        by = (form.get("by") or [""])[0][:200]
        now = datetime.now(UTC)
        try:
            await query(lambda db: queries.acknowledge(db, flag, note, by, now))
        except (queries.UnknownFlag, ValueError) as exc:
            return await store_day(request, error=str(exc.args[0]), status=400)
        store, day = request.path_params["store"], request.path_params["day"]
        target = f"/audit/{quote(store, safe='')}/{day}#flag-{flag}"
        return RedirectResponse(target, status_code=303)

    return [
        Route("/", chain_day, methods=["GET"]),
        Route("/audit/{store}/{day}", store_day, methods=["GET"]),
        Route("/audit/{store}/{day}/ack", acknowledge, methods=["POST"]),
    ]


def _clock(local: str | None, day: str) -> str:
    """A store-local ISO time as an auditor reads it: ``21:30`` on the business day itself,
    ``2026-03-03 00:30`` on another (a till closed after midnight)."""
    if not local:
        return ""
    at = datetime.fromisoformat(local)
    shown = at.strftime("%H:%M:%S" if at.second else "%H:%M")
    return shown if at.date().isoformat() == day else f"{at.date().isoformat()} {shown}"


def _utc(stored: str | None) -> str:
    """A stored UTC time (an acknowledgement's, a resolution's) as ``2026-03-03 08:15 UTC``."""
    if not stored:
        return ""
    return datetime.fromisoformat(stored).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _offset(found: dict[str, Any], events: list[dict[str, Any]]) -> str | None:
    """The store's UTC offset as shown (``UTC+01:00``), from any local time the page has."""
    times = [found.get("closed_at"), *(t["settled_at"] for t in found["tills"])]
    times += [e["at"] for e in events]
    for local in times:
        if local:
            offset = datetime.fromisoformat(local).strftime("%z")
            return f"UTC{offset[:3]}:{offset[3:]}"
    return None


_TEMPLATES.filters["clock"] = _clock
_TEMPLATES.filters["utc"] = _utc


def _render(template: str, status: int, **context: Any) -> HTMLResponse:
    html = _TEMPLATES.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status)


def _same_origin(request: Request) -> bool:
    """A form post from this page (a browser sends Origin with every POST); refuses another
    site's page posting into an auditor's session."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", request.url.netloc)
