"""A till's bearer token made at head office (``tillstream fleet rotate-token``).

The token is random, shown once to whoever rotates it (to give to the till), and never
travels: the desired state carries its SHA-256 (hex, of its UTF-8 bytes: what an edge's
tokens file takes as ``sha256:...``), and, for an overlap, until when the token before it is
still taken and that token's hash where head office had set it.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any

from tillstream.fleet.desired import Change

TOKEN_BYTES = 32
"""Random bytes of a token (43 URL-safe characters; an edge takes 16 or more)."""


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def rotation(
    store: str,
    till_target: str,
    token: str,
    current: dict[str, Any] | None,
    now: datetime,
    overlap: timedelta,
) -> Change:
    """The till's change: its new token's hash, the one before it (head office's, if it set
    one; else the tokens file's) taken until ``now + overlap`` (not at all without an
    overlap). Its lifecycle stays what head office set (active if nothing)."""
    before = (current or {}).get("till") or {}
    till = {
        "lifecycle": before.get("lifecycle") or "ACTIVE",
        "token_sha256": token_sha256(token),
        "previous_token_sha256": before.get("token_sha256") if overlap else None,
        "previous_token_until": now + overlap if overlap else None,
    }
    return Change(store, till_target, {"till": till})
