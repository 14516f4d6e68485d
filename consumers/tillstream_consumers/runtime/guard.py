"""The door of a head-office service that people sign in to (the auditor's page).

Every request except the probes and metrics passes here:

- **Host allow-list** (``TILLSTREAM_ALLOWED_HOSTS``, else loopback names, the listen host
  and the public URL's host): a page reached under another name (DNS rebinding) is refused
  before anything runs (:class:`AllowedHosts`, added in ``web.py``).
- **Who it is** (:mod:`tillstream_consumers.runtime.access`): a bearer token (a named API
  token, or the consumer API token: read only), else the signed-in session, else, on a
  service that serves loopback only for want of sign-in and tokens, the local user.
- **Headers** on every answer: a strict Content-Security-Policy (no script, no frames, forms
  post to the page's own origin), no framing, no type sniffing, no referrer, no caching.

Routes then ask :func:`refused` whether the principal may do what they do, and changes of
state also :func:`refused_change` (the request comes from this site: its Origin, and for a
signed-in browser, the session's CSRF token).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tillstream.core.settings import Settings, split_host_port
from tillstream_consumers.runtime import api_tokens
from tillstream_consumers.runtime.access import READ, Principal, local_principal
from tillstream_consumers.runtime.db import Database
from tillstream_consumers.runtime.signin import CSRF, SignIn

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
"""Probes and Prometheus: open to all, under any host name (a pod's IP, a scrape target's)."""
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Same-origin: no address leaves for another site, and a form's POST keeps its Origin
    # (with no-referrer, browsers send "Origin: null").
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
REALM = 'Bearer realm="tillstream"'

Lookup = Callable[[Callable[[Database], api_tokens.ApiToken | None]], Awaitable[object]]


@dataclass
class Access:
    """How one service lets people and scripts in."""

    settings: Settings
    lookup: Lookup
    """Runs a function on the service's database (``ConsumerService.query``)."""
    signin: SignIn | None
    loopback_only: bool
    """No sign-in and no tokens: the service listens on loopback, and whoever reaches it is
    on the machine (:func:`~tillstream_consumers.runtime.access.local_principal`)."""

    async def principal(self, request: Request) -> Principal | None:
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and presented.strip():
            return await self._token(presented.strip())
        if self.signin is not None and (found := self.signin.principal(request)) is not None:
            return found
        return local_principal() if self.loopback_only else None

    async def _token(self, presented: str) -> Principal | None:
        legacy = self.settings.consumer_api_token
        if legacy is not None and hmac.compare_digest(
            presented.encode(), legacy.get_secret_value().encode()
        ):
            return Principal("consumer API token", "token", "consumer-api-token", frozenset({READ}))
        token = await self.lookup(lambda db: api_tokens.verify(db, presented))
        return token.principal() if isinstance(token, api_tokens.ApiToken) else None


def allowed_hosts(settings: Settings) -> list[str]:
    """The host names the service answers to (see the module)."""
    if settings.allowed_hosts:
        return [h.strip() for h in settings.allowed_hosts.split(",") if h.strip()]
    hosts = ["localhost", "127.0.0.1", "::1", "[::1]"]
    listen = split_host_port(settings.consumer_listen)[0]
    if listen not in ("0.0.0.0", "::", ""):
        hosts.append(listen)
    if settings.public_url:
        hosts.append(urlsplit(settings.public_url).hostname or "")
    return [h for h in hosts if h]


class AllowedHosts:
    """ASGI middleware: Starlette's host allow-list, except for :data:`OPEN_PATHS` (a
    Kubernetes probe or a Prometheus scrape names the pod's IP or the service's name)."""

    def __init__(self, app: ASGIApp, hosts: list[str]) -> None:
        self.app = app
        self.checked = TrustedHostMiddleware(app, allowed_hosts=hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
        else:
            await self.checked(scope, receive, send)


class Guard:
    """ASGI middleware: who it is (``scope["state"]["principal"]``) and the headers."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] not in OPEN_PATHS and not scope["path"].startswith("/auth/"):
            principal = await self.access.principal(Request(scope))
            scope.setdefault("state", {})["principal"] = principal

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, with_headers)


def principal_of(request: Request) -> Principal | None:
    found = request.scope.get("state", {}).get("principal")
    return found if isinstance(found, Principal) else None


def refused(request: Request, permission: str) -> Response | None:
    """Why ``request`` may not do what needs ``permission``, or None."""
    principal = principal_of(request)
    api = request.url.path.startswith("/v1/")
    if principal is None:
        if api:
            return JSONResponse(
                {"error": "sign-in or a bearer token is required"},
                status_code=401,
                headers={"WWW-Authenticate": REALM},
            )
        if _signs_in(request):
            target = quote(request.url.path, safe="/")
            return RedirectResponse(f"/auth/login?next={target}", status_code=303)
        return HTMLResponse("Sign-in required.", status_code=401)
    if principal.may(permission):
        return None
    message = f"{principal.name} may not {permission} (their role or token's scope)"
    if api:
        return JSONResponse({"error": message}, status_code=403)
    return HTMLResponse("Your role does not allow this.", status_code=403)


def refused_change(request: Request, form_token: str | None = None) -> Response | None:
    """Why a change of state in ``request`` does not come from this site, or None: a foreign
    ``Origin``, or a signed-in browser's request without the session's CSRF token."""
    origin = request.headers.get("origin")
    if origin is not None and origin not in _own_origins(request):
        return _forbidden(request, "this change must come from this site")
    principal = principal_of(request)
    if principal is not None and principal.kind == "sign-in":
        expected = request.session.get(CSRF) if "session" in request.scope else None
        presented = form_token or request.headers.get("x-csrf-token") or ""
        if not expected or not hmac.compare_digest(presented.encode(), str(expected).encode()):
            return _forbidden(request, "the form is stale or not this site's: reload the page")
    return None


def _own_origins(request: Request) -> set[str]:
    host = Headers(scope=request.scope).get("host", "")
    origins = {f"http://{host}", f"https://{host}"}
    public = getattr(request.app.state, "public_url", None)
    if public:
        parts = urlsplit(str(public))
        origins.add(f"{parts.scheme}://{parts.netloc}")
    return origins


def _signs_in(request: Request) -> bool:
    return bool(getattr(request.app.state, "signs_in", False))


def _forbidden(request: Request, message: str) -> Response:
    if request.url.path.startswith("/v1/"):
        return JSONResponse({"error": message}, status_code=403)
    return HTMLResponse(message.capitalize() + ".", status_code=403)
