"""The delta feeds' tokens: ``<epoch>-<change number>``, written by one copy and read back.

The epoch is new with every copy of the store's master data, so a token of a copy since
thrown away is recognised: 4 hex digits of the store id, then 8 random ones (copies made
before the store's tag have the 8 random ones only). A till must send back exactly what it
was given; anything else (mistyped, cut short, forged, another store's edge's) is no token,
and the till keeps its copy. Only a token of an earlier copy of this store's is ``gone``: the
till syncs again from the start.
"""

from __future__ import annotations

import hashlib
import re
import secrets

TOKEN_MAX_LENGTH = 31
"""No token is longer (12 + 1 + 18): anything longer is not read at all."""
# Exactly what write() writes: no sign, no leading zero, no other digits than ASCII ones.
_TOKEN = re.compile(r"(?P<epoch>[0-9a-f]{8}(?:[0-9a-f]{4})?)-(?P<seq>0|[1-9][0-9]{0,17})")


class TokenError(ValueError):
    """A delta-feed token this copy cannot continue from; ``gone``: it was valid once (a
    copy since rebuilt from nothing, or deletions since pruned): sync again from the start."""

    def __init__(self, message: str, *, gone: bool = False) -> None:
        super().__init__(message)
        self.gone = gone


def new_epoch(store_id: str) -> str:
    return _store_tag(store_id) + secrets.token_hex(4)


def write(epoch: str, seq: int) -> str:
    return f"{epoch}-{seq}"


def read(token: str, epoch: str, store_id: str) -> int:
    """The change number of a token the copy of ``epoch`` gave out; :class:`TokenError`
    otherwise."""
    # Bounded before it is read: a till (or anyone) may send megabytes.
    found = _TOKEN.fullmatch(token) if len(token) <= TOKEN_MAX_LENGTH else None
    if found is None:
        raise TokenError("not a token of this API (use the 'next' of an earlier answer)")
    if found["epoch"] != epoch:
        if len(found["epoch"]) > 8 and found["epoch"][:4] != _store_tag(store_id):
            raise TokenError("a token of another store's edge: not one this edge gave out")
        raise TokenError(
            "this token is of an earlier copy of the store's master data: sync again "
            "from the start (no since)",
            gone=True,
        )
    return int(found["seq"])


def _store_tag(store_id: str) -> str:
    """Four hex digits of the store id that start its copies' epochs."""
    return hashlib.sha256(store_id.encode()).hexdigest()[:4]
