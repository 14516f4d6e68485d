"""Who may do what on a head-office service's pages and APIs (the auditor's page, the fleet's).

A request is made by a :class:`Principal`: a person signed in through the chain's single
sign-on (``signin.py``: the provider's roles give the permissions), a script with a named API
token (``api_tokens.py``: the token's scopes), the consumer API token of
``TILLSTREAM_CONSUMER_API_TOKEN`` (read only), or, where a service has neither sign-in nor
tokens and so serves loopback only, whoever is on the machine. Every acknowledgement records
the principal, never a name typed into a form.

Permissions: ``read`` (the pages and read APIs), ``ack`` (acknowledge a flag), ``reopen``
(take an acknowledgement back), ``manage`` (publish head office's desired state of the store
estate: suspend a till). Roles: viewer reads; auditor also acknowledges; lead also reopens;
fleet manages the estate (given beside viewer, which reads it; ``TILLSTREAM_OIDC_*_ROLE``
name them as the provider does). A service asks only for the permissions its routes need:
the audit never asks for ``manage``, the fleet service never for ``ack``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tillstream.core.settings import Settings

READ = "read"
ACK = "ack"
REOPEN = "reopen"
MANAGE = "manage"
PERMISSIONS: tuple[str, ...] = (READ, ACK, REOPEN, MANAGE)
"""Every permission, least first: each role and scope is a set of these."""

SIGN_IN = "sign-in"
TOKEN = "token"
LOCAL = "local"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who makes a request, as the audit trail shows them."""

    name: str
    """What people read: the signed-in user's e-mail or name, a token's name."""
    kind: str
    """:data:`SIGN_IN`, :data:`TOKEN` or :data:`LOCAL`."""
    subject: str
    """The provider's subject (``sub``), the token's name, or ``loopback``."""
    permissions: frozenset[str]

    def may(self, permission: str) -> bool:
        return permission in self.permissions

    @property
    def trail(self) -> str:
        """How an acknowledgement records its author: ``anna@example.org (sign-in)``."""
        return f"{self.name} ({self.kind})"


def role_permissions(roles: Iterable[str], settings: Settings) -> frozenset[str]:
    """What a signed-in user's roles (as the provider names them) allow."""
    held = set(roles)
    granted: set[str] = set()
    if held & {settings.oidc_viewer_role, settings.oidc_auditor_role, settings.oidc_lead_role}:
        granted.add(READ)
    if held & {settings.oidc_auditor_role, settings.oidc_lead_role}:
        granted.add(ACK)
    if settings.oidc_lead_role in held:
        granted.add(REOPEN)
    if settings.oidc_fleet_role in held:
        granted.add(MANAGE)
    return frozenset(granted)


def roles_from_claims(claims: Mapping[str, Any], path: str) -> list[str]:
    """The roles at ``path`` of the ID token's or userinfo's claims (a dotted path reaches
    into objects, as Keycloak's ``realm_access.roles``); none where there are none."""
    found: Any = claims
    for step in path.split("."):
        found = found.get(step) if isinstance(found, Mapping) else None
    if isinstance(found, str):
        return [found]
    if isinstance(found, list):
        return [r for r in found if isinstance(r, str)]
    return []


def local_principal() -> Principal:
    """Whoever is on the machine of a service that serves loopback only (no sign-in, no
    tokens): what they do is recorded as done locally, unauthenticated."""
    return Principal("local user", LOCAL, "loopback", frozenset(PERMISSIONS))
