"""Who is posting: per-till bearer tokens for the edge HTTP API, and the role of each.

The tokens file (``TILLSTREAM_EDGE_TOKENS``, TOML) names each till by the id its events
carry (``terminal_id`` in sales and payments, ``WorkstationID`` in POSLog) and gives its
token, either as the token itself or, better, as ``sha256:`` and the token's hex SHA-256,
so the file holds nothing a till could post with::

    [tills]
    T01 = "sha256:f7102cece84ee3fafeaeda9b0b158f18113f1b70167f1622e396e133beb65331"
    T02 = "a-long-random-token-of-till-02"

    [store]                     # the store manager / back office: opens and closes the day
    BACKOFFICE = "sha256:..."

    [stock_only]                # not tills: may post stock movements only
    STOCKCOUNT = "sha256:..."

Each table is a role (``roles.py`` says what each may post).

A presented token is hashed and compared with every entry by ``hmac.compare_digest``, so
neither a near miss nor the position of a till in the file shows in the answer time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tillstream_edge.roles import ROLES, STOCK_ONLY, STORE, TILL, Role
from tillstream_edge.tomlfile import read_toml

MIN_TOKEN_CHARS = 16
_HASHED = re.compile(r"^sha256:([0-9a-fA-F]{64})\Z")
# As the events' terminal_id: 1-200 characters; here also no control characters and no
# spaces around, which would only be typing mistakes in a hand-written file.
_TILL_ID = re.compile(r"^(?! )[^\x00-\x1f\x7f]{1,200}(?<! )\Z")


class TokenFileError(ValueError):
    """The tokens file is unreadable or malformed; the message never quotes a token."""


@dataclass(frozen=True)
class TillTokens:
    """Till (or client) id -> SHA-256 digest of its token, and the role of each."""

    digests: dict[str, bytes]
    roles: dict[str, Role] = field(default_factory=dict)
    """The table each id is in (an id missing here is a till's)."""

    def till_of(self, token: str) -> str | None:
        """The till (or client) the token belongs to, or None for an unknown token."""
        presented = _digest(token)
        owner = None
        for till, digest in self.digests.items():  # no early exit: same time for every token
            if hmac.compare_digest(presented, digest):
                owner = till
        return owner

    def role_of(self, client: str) -> Role:
        return self.roles.get(client, TILL)


def foreign_tills(till: str, named: Iterable[str | None]) -> list[int]:
    """Positions of the events that name a till other than ``till``.

    Events that name no till (stock movements) may be posted by any authenticated client.
    """
    return [i for i, terminal in enumerate(named) if terminal is not None and terminal != till]


def load_tokens(path: Path) -> TillTokens:
    """Read a tokens file; raises :class:`TokenFileError` naming the file and the till."""
    raw = read_toml(path, "tokens file", TokenFileError)
    tables = {name: raw.get(name, {}) for name in ROLES}
    if (
        not set(raw) <= set(ROLES)
        or not all(isinstance(t, dict) for t in tables.values())
        or not any(tables.values())
    ):
        raise TokenFileError(
            f"{path}: expected one [tills] table of till id = token lines (and optionally "
            f"[{STORE}] for the store's own clients, which open and close the store-day, and "
            f"[{STOCK_ONLY}] for clients that post stock movements only)"
        )
    digests: dict[str, bytes] = {}
    roles: dict[str, Role] = {}
    for table, entries in tables.items():
        for till, value in entries.items():
            if not _TILL_ID.match(till):
                raise TokenFileError(f"{path}: till {till!r}: not a till id")
            if till in digests:
                raise TokenFileError(f"{path}: {till!r} is in both [{roles[till]}] and [{table}]")
            if table == TILL and till.upper().replace("-", "").replace("_", "") == "BACKOFFICE":
                # Earlier docs put the back office in [tills]: that would let it post sales.
                raise TokenFileError(
                    f"{path}: till {till!r}: a back-office token belongs in [{STORE}] (the "
                    f"store-day's open and close, stock movements) or [{STOCK_ONLY}] (stock "
                    "movements only), not in [tills]"
                )
            digests[till] = _stored_digest(path, till, value)
            roles[till] = table
    if len(set(digests.values())) != len(digests):
        raise TokenFileError(f"{path}: two tills share a token; give each till its own")
    return TillTokens(digests, roles)


def _stored_digest(path: Path, till: str, value: object) -> bytes:
    if not isinstance(value, str):
        raise TokenFileError(f"{path}: till {till!r}: the token must be a string")
    hashed = _HASHED.match(value)
    if hashed:
        return bytes.fromhex(hashed.group(1))
    if value.startswith("sha256:"):
        raise TokenFileError(f"{path}: till {till!r}: sha256: must be followed by 64 hex digits")
    if len(value) < MIN_TOKEN_CHARS:
        raise TokenFileError(
            f"{path}: till {till!r}: a token needs at least {MIN_TOKEN_CHARS} characters"
        )
    return _digest(value)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()
