"""A consumer service's HTTP server: health, readiness and metrics for probes and Prometheus,
and the consumer's own read APIs (every store's stock at ``/v1/stock``, a customer's
profile...).

With ``TILLSTREAM_CONSUMER_API_TOKEN`` set, the read APIs need ``Authorization: Bearer
<token>`` (401 without it); ``/healthz``, ``/readyz`` and ``/metrics`` stay open, as probes
and scrapers send no token. Unset, the read APIs are open: bind ``--listen`` to a private
address then (see docs/security.md).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence

from starlette.applications import Starlette
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tillstream.core.http import metrics_response
from tillstream_consumers.runtime import metrics
from tillstream_consumers.runtime.guard import (
    OPEN_PATHS,
    Access,
    AllowedHosts,
    Guard,
    allowed_hosts,
)

REALM = 'Bearer realm="tillstream-consumer"'


def service_app(
    name: str,
    status: Callable[[], tuple[bool, int]],
    routes: Sequence[BaseRoute],
    token: str | None,
    access: Access | None = None,
) -> Starlette:
    """The app of consumer ``name``; ``status()`` gives (ready, records applied). With
    ``access`` (a service people sign in to), its door (``guard.py``) instead of the token."""

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok", "consumer": name})

    async def readyz(_: Request) -> Response:
        ready, applied = status()
        body = {"ready": ready, "consumer": name, "applied": applied}
        return JSONResponse(body, status_code=200 if ready else 503)

    async def prometheus(_: Request) -> Response:
        return metrics_response()

    signin = access.signin if access is not None else None
    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", prometheus),
            *(signin.routes() if signin is not None else ()),
            *routes,
        ]
    )
    if access is not None:
        _guarded(app, access)
    elif token:
        app.add_middleware(BearerToken, consumer=name, token=token)
    return app


def _guarded(app: Starlette, access: Access) -> None:
    """The door, outermost first: the host allow-list, the session, who it is."""
    settings = access.settings
    app.state.signs_in = access.signin is not None
    app.state.public_url = settings.public_url
    app.add_middleware(Guard, access=access)
    if settings.session_secret is not None:
        app.add_middleware(
            SessionMiddleware,
            secret_key=settings.session_secret.get_secret_value(),
            session_cookie="tillstream_session",
            max_age=int(settings.session_max_age.total_seconds()),
            same_site="lax",
            https_only=(settings.public_url or "").startswith("https://"),
        )
    app.add_middleware(AllowedHosts, hosts=allowed_hosts(settings))


class BearerToken:
    """Asks every request outside :data:`OPEN_PATHS` for the token (compared in constant
    time, as digests, so neither its length nor a near miss shows in the answer time)."""

    def __init__(self, app: ASGIApp, consumer: str, token: str) -> None:
        self.app = app
        self.consumer = consumer
        self._digest = _digest(token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        metrics.API_REJECTED.labels(self.consumer).inc()
        response = JSONResponse(
            {"error": "a bearer token is required (Authorization: Bearer <token>)"},
            status_code=401,
            headers={"WWW-Authenticate": REALM},
        )
        await response(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(_digest(presented.strip()), self._digest)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
