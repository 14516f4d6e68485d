"""Signing in to a head-office page through the chain's single sign-on (OpenID Connect).

The authorization-code flow is Authlib's Starlette client: it fetches the provider's
metadata (``TILLSTREAM_OIDC_ISSUER``/.well-known/openid-configuration), sends the browser
there with state and nonce, and on its return exchanges the code and validates the ID token
(signature by the provider's published keys, issuer, audience, expiry, nonce). Nothing here
parses a token by hand. The session (Starlette's signed cookie, ``SameSite=Lax``,
``HttpOnly``, ``Secure`` behind HTTPS) then holds who signed in, their roles' permissions,
when it expires (``TILLSTREAM_SESSION_MAX_AGE``, checked on every request) and a CSRF token
for the page's forms.

Routes: ``GET /auth/login`` (to the provider), ``GET /auth/callback`` (back from it),
``POST /auth/logout`` (the session ends here and at the provider).
"""

from __future__ import annotations

import logging
import secrets
import time
import warnings
from typing import Any
from urllib.parse import urlencode

from authlib.deprecate import AuthlibDeprecationWarning
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from tillstream.core.settings import Settings
from tillstream_consumers.runtime.access import (
    SIGN_IN,
    Principal,
    role_permissions,
    roles_from_claims,
)

# Authlib warns, on import, of its httpx integration's future name: not ours to act on, and
# no log line for operators.
warnings.filterwarnings("ignore", category=AuthlibDeprecationWarning)
from authlib.integrations.starlette_client import OAuth, OAuthError  # noqa: E402

log = logging.getLogger(__name__)

_USER = "user"
CSRF = "csrf"
"""The session key, and the form field, of the CSRF token."""


class SignIn:
    """The OpenID Connect client of one service."""

    def __init__(self, settings: Settings) -> None:
        assert settings.oidc_issuer
        assert settings.oidc_client_id
        assert settings.oidc_client_secret
        self.settings = settings
        self._oauth = OAuth()
        self._oauth.register(
            "sso",
            client_id=settings.oidc_client_id,
            client_secret=settings.oidc_client_secret.get_secret_value(),
            server_metadata_url=settings.oidc_issuer.rstrip("/")
            + "/.well-known/openid-configuration",
            client_kwargs={"scope": "openid profile email"},
        )

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/auth/login", self._login, methods=["GET"]),
            Route("/auth/callback", self._callback, methods=["GET"], name="auth_callback"),
            Route("/auth/logout", self._logout, methods=["POST"]),
        ]

    def principal(self, request: Request) -> Principal | None:
        """Who is signed in on ``request``'s session, while it lasts."""
        user = request.session.get(_USER)
        if not isinstance(user, dict) or float(user.get("expires", 0)) <= time.time():
            return None
        return Principal(
            str(user["name"]), SIGN_IN, str(user["sub"]), frozenset(user.get("permissions", ()))
        )

    async def _login(self, request: Request) -> Response:
        wanted = request.query_params.get("next", "/")
        request.session["next"] = wanted if _local_path(wanted) else "/"
        client = self._oauth.create_client("sso")
        redirect: Response = await client.authorize_redirect(request, self._return_url(request))
        return redirect

    async def _callback(self, request: Request) -> Response:
        client = self._oauth.create_client("sso")
        try:
            token = await client.authorize_access_token(request)
        except OAuthError as exc:  # a forged or replayed return, a denied consent
            log.warning("sign-in refused by the provider's answer: %s", exc.error)
            return HTMLResponse("Sign-in failed; try again from the start page.", 401)
        claims: dict[str, Any] = dict(token.get("userinfo") or {})
        roles = roles_from_claims(claims, self.settings.oidc_roles_claim)
        if not roles:  # some providers put roles in userinfo only
            claims |= dict(await client.userinfo(token=token))
            roles = roles_from_claims(claims, self.settings.oidc_roles_claim)
        name = claims.get("email") or claims.get("preferred_username") or claims.get("sub")
        max_age = self.settings.session_max_age.total_seconds()
        back_to = _pop_next(request)
        request.session.clear()  # a new session: nothing of the one before the sign-in
        request.session[_USER] = {
            "sub": str(claims["sub"]),
            "name": str(name),
            "permissions": sorted(role_permissions(roles, self.settings)),
            "expires": time.time() + max_age,
        }
        request.session["id_token"] = token.get("id_token")
        request.session[CSRF] = secrets.token_urlsafe(32)
        log.info("signed in: %s (%s)", name, ", ".join(roles) or "no roles")
        return RedirectResponse(back_to, status_code=303)

    async def _logout(self, request: Request) -> Response:
        id_token = request.session.get("id_token")
        request.session.clear()
        metadata = await self._oauth.create_client("sso").load_server_metadata()
        end = metadata.get("end_session_endpoint")
        if not end:
            return RedirectResponse("/", status_code=303)
        query = {"post_logout_redirect_uri": self._home(request)}
        if id_token:
            query["id_token_hint"] = str(id_token)
        return RedirectResponse(f"{end}?{urlencode(query)}", status_code=303)

    def _return_url(self, request: Request) -> str:
        if self.settings.public_url:
            return self.settings.public_url.rstrip("/") + "/auth/callback"
        return str(request.url_for("auth_callback"))

    def _home(self, request: Request) -> str:
        if self.settings.public_url:
            return self.settings.public_url.rstrip("/") + "/"
        return str(request.base_url)


def csrf_token(request: Request) -> str | None:
    """The session's CSRF token (for a page's forms)."""
    token = request.session.get(CSRF) if "session" in request.scope else None
    return str(token) if token else None


def _pop_next(request: Request) -> str:
    wanted = request.session.pop("next", "/")
    return wanted if isinstance(wanted, str) and _local_path(wanted) else "/"


def _local_path(value: str) -> bool:
    """A path of this site only (never ``//evil.example``, ``https://...``, ``/\\x``)."""
    return value.startswith("/") and not value.startswith(("//", "/\\")) and "\\" not in value
