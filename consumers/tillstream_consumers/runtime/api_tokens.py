"""Named API tokens for scripts (a nightly report, an integration that acknowledges flags).

A token is made once (``tillstream audit token create NAME --scope read,ack``), shown once,
and kept only as its SHA-256: the database never holds a usable token. Each has a name (what
the audit trail records for what it did), scopes (``read``, ``ack``, ``reopen``) and may be
revoked at any time, after which it is refused. Kept in the service's own database, beside
its tables (``runtime_api_tokens``).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from tillstream_consumers.runtime.access import PERMISSIONS, TOKEN, Principal
from tillstream_consumers.runtime.db import Database

PREFIX = "tst_"
"""Every token starts so: a secret scanner (or a person) knows one when they see one."""
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")

MIGRATION = """
CREATE TABLE runtime_api_tokens (
    name        TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    scopes      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
)
"""


class TokenError(ValueError):
    """A token cannot be made or revoked as asked; the message says why."""


@dataclass(frozen=True, slots=True)
class ApiToken:
    name: str
    scopes: tuple[str, ...]
    created_at: str
    revoked_at: str | None

    def principal(self) -> Principal:
        return Principal(self.name, TOKEN, self.name, frozenset(self.scopes))


def create(db: Database, name: str, scopes: list[str], now: datetime) -> str:
    """A new token named ``name`` with ``scopes``; returns it (the only time it is seen)."""
    if not _NAME.fullmatch(name):
        raise TokenError(
            "a token name is 1-63 lower-case letters, digits, '.', '_' or '-' (it is shown "
            "in the audit trail)"
        )
    unknown = sorted(set(scopes) - set(PERMISSIONS))
    if unknown or not scopes:
        raise TokenError(f"scopes are some of {', '.join(PERMISSIONS)}")
    if db.fetchone("SELECT 1 FROM runtime_api_tokens WHERE name = ?", (name,)):
        raise TokenError(f"a token named {name} exists (revoke it, or choose another name)")
    token = PREFIX + secrets.token_urlsafe(32)
    ordered = [p for p in PERMISSIONS if p in scopes]
    db.execute(
        "INSERT INTO runtime_api_tokens (name, token_hash, scopes, created_at) VALUES (?, ?, ?, ?)",
        (name, _hash(token), ",".join(ordered), now.isoformat()),
    )
    return token


def revoke(db: Database, name: str, now: datetime) -> None:
    row = db.fetchone("SELECT revoked_at FROM runtime_api_tokens WHERE name = ?", (name,))
    if row is None:
        raise TokenError(f"no token named {name}")
    if row[0] is None:
        db.execute(
            "UPDATE runtime_api_tokens SET revoked_at = ? WHERE name = ?", (now.isoformat(), name)
        )


def listed(db: Database) -> list[ApiToken]:
    return [
        _token(row)
        for row in db.fetchall(
            "SELECT name, scopes, created_at, revoked_at FROM runtime_api_tokens ORDER BY name"
        )
    ]


def active(db: Database) -> int:
    """How many tokens may be used now."""
    row = db.fetchone("SELECT COUNT(*) FROM runtime_api_tokens WHERE revoked_at IS NULL")
    return int(row[0]) if row else 0


def verify(db: Database, presented: str) -> ApiToken | None:
    """The token ``presented`` is, if it is one and not revoked."""
    if not presented.startswith(PREFIX) or len(presented) > 200:
        return None
    row = db.fetchone(
        "SELECT name, scopes, created_at, revoked_at FROM runtime_api_tokens "
        "WHERE token_hash = ? AND revoked_at IS NULL",
        (_hash(presented),),
    )
    return None if row is None else _token(row)


def _token(row: tuple[object, ...]) -> ApiToken:
    name, scopes, created, revoked = row
    return ApiToken(
        str(name),
        tuple(s for s in str(scopes).split(",") if s),
        str(created),
        None if revoked is None else str(revoked),
    )


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
