"""The fleet page, served by the fleet service at ``/`` of its listener: the estate by store,
one store's edge, tills and devices (head office's desired state beside what the edge
reports), and a till's suspension (or reactivation) asked for, confirmed on a page of its
own, and published in the signed-in person's name. Plain server-side HTML (Jinja2,
autoescaped), no script, its own style sheet (``/static/fleet.css``: the
Content-Security-Policy allows no inline style); behind the service's door
(``runtime/guard.py``: sign-in, roles, CSRF), as the auditor's page."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any
from urllib.parse import quote, urlencode

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from tillstream.core.codec import AvroCodec
from tillstream.core.settings import Settings
from tillstream.fleet.desired import DesiredError
from tillstream_consumers.fleet import queries
from tillstream_consumers.fleet.deciding import ACTIONS, set_lifecycle
from tillstream_consumers.fleet.flags import Rules
from tillstream_consumers.fleet.times import span
from tillstream_consumers.runtime.access import MANAGE, READ
from tillstream_consumers.runtime.api import Query
from tillstream_consumers.runtime.bodies import bounded_form
from tillstream_consumers.runtime.guard import principal_of, refused, refused_change
from tillstream_consumers.runtime.pages import render, templates
from tillstream_consumers.runtime.signin import CSRF

MAX_FORM = 4 * 1024

_TEMPLATES = templates("tillstream_consumers.fleet")
_CSS = (files("tillstream_consumers.fleet") / "templates" / "fleet.css").read_bytes()


def page_routes(
    query: Query, settings: Settings, rules: Rules, codec: Callable[[], AvroCodec]
) -> list[BaseRoute]:
    async def estate(request: Request) -> Response:
        if denied := refused(request, READ):
            return denied
        now = datetime.now(UTC)
        stores = await query(lambda db: queries.estate(db, now, rules))
        states = Counter(s["state"] for s in stores)
        flags = sum(sum(s["open_flags"].values()) for s in stores)
        return _render(request, "estate.html", 200, stores=stores, states=states, flags=flags)

    async def one_store(request: Request) -> Response:
        if denied := refused(request, READ):
            return denied
        store = request.path_params["store"]
        now = datetime.now(UTC)
        found = await query(lambda db: queries.store(db, store, now, rules))
        if found is None:  # the store comes from the address: escaped by the template
            return _render(request, "not_found.html", 404, what=f"no store {store} in the estate")
        published = request.query_params.get("published")
        targets = {f"till/{t['till_id']}" for t in found["tills"]}
        return _render(
            request,
            "store.html",
            200,
            s=found,
            published=published if published in targets else None,
            actions=ACTIONS,
        )

    async def confirm(request: Request) -> Response:
        """The confirmation a suspension (or reactivation) asks for, before anything is
        published: what will happen, and in whose name."""
        action = request.path_params["action"]
        if action not in ACTIONS:
            return _render(request, "not_found.html", 404, what="no such action")
        if denied := refused(request, MANAGE):
            return denied
        store = request.query_params.get("store", "")
        till = request.query_params.get("till", "")
        return _render(request, "confirm.html", 200, action=action, store=store, till=till)

    async def decide(request: Request) -> Response:
        action = request.path_params["action"]
        if action not in ACTIONS:
            return _render(request, "not_found.html", 404, what="no such action")
        if denied := refused(request, MANAGE):
            return denied
        form = await bounded_form(request, MAX_FORM)
        if form is None:
            return HTMLResponse(f"The form must be at most {MAX_FORM} bytes.", status_code=413)
        if denied := refused_change(request, form.pop(CSRF, None)):
            return denied
        store, till = form.get("store", ""), form.get("till", "")
        principal = principal_of(request)
        assert principal is not None  # refused() let it through
        try:
            await set_lifecycle(settings, codec(), store, till, ACTIONS[action], principal)
        except DesiredError as exc:
            return _render(
                request, "confirm.html", 400, action=action, store=store, till=till,
                error="; ".join(exc.problems),
            )  # fmt: skip
        target = urlencode({"published": f"till/{till}"})
        return RedirectResponse(f"/stores/{quote(store, safe='')}?{target}", status_code=303)

    async def stylesheet(_: Request) -> Response:
        return Response(_CSS, media_type="text/css", headers={"Cache-Control": "max-age=3600"})

    return [
        Route("/", estate, methods=["GET"]),
        Route("/static/fleet.css", stylesheet, methods=["GET"]),
        Route("/stores/{store:path}", one_store, methods=["GET"]),
        Route("/tills/{action}", confirm, methods=["GET"]),
        Route("/tills/{action}", decide, methods=["POST"]),
    ]


def _seconds(value: float | None) -> str:
    return "" if value is None else span(value)


def _listing(kinds: dict[str, int]) -> Markup:
    """Open flags by kind, each kept on one line."""
    if not kinds:
        return Markup("none")
    return Markup(", ").join(
        Markup('<span class="kind">{} {}</span>').format(kind.replace("_", " "), n)
        for kind, n in kinds.items()
    )


def _query(**values: str) -> str:
    return urlencode(values)


_TEMPLATES.filters["span"] = _seconds
_TEMPLATES.filters["kinds"] = _listing
_TEMPLATES.globals["query"] = _query
_TEMPLATES.globals["quote"] = lambda text: quote(str(text), safe="")


def _render(request: Request, template: str, status: int, **context: Any) -> HTMLResponse:
    return render(_TEMPLATES, request, template, status, **context)
