"""What every signed-in page of a consumer shares (the audit's, the fleet's): its templates,
escaped by default, and rendering with who is signed in, what they may do and the CSRF token."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from tillstream_consumers.runtime.guard import principal_of
from tillstream_consumers.runtime.signin import csrf_token


def templates(package: str) -> Environment:
    """The ``templates`` folder of ``package``, every value escaped in HTML."""
    env = Environment(
        loader=PackageLoader(package, "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["code_spans"] = code_spans
    return env


def code_spans(text: str) -> Markup:
    """Text with its `backquoted` commands set as code, the rest escaped."""
    parts = str(escape(text)).split("`")
    return Markup(
        "".join(f"<code>{part}</code>" if i % 2 else part for i, part in enumerate(parts))
    )


def render(
    env: Environment, request: Request, template: str, status: int, **context: Any
) -> HTMLResponse:
    """A page, with who is signed in and what they may do, and the session's CSRF token."""
    principal = principal_of(request)
    html = env.get_template(template).render(
        me=principal,
        may=principal.permissions if principal is not None else frozenset(),
        csrf=csrf_token(request),
        signs_in=bool(getattr(request.app.state, "signs_in", False)),
        **context,
    )
    return HTMLResponse(html, status_code=status)
