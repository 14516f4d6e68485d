"""Who is posting, and whether head office lets them: the tokens in force and each till's
lifecycle, for every route of the edge's API.

The tokens in force are the tokens file's (``auth.py``) with head office's rotations in
their place (``estate_desired.till.token_sha256``): a rotated till's new token is taken, and
the token before it (``previous_token_sha256``, else the file's) until
``previous_token_until``, then no more. A till the file does not name may be given a token
this way (a till's role). Presented tokens are hashed and compared with every digest in
force by ``hmac.compare_digest``, as ``auth.py`` does, so the answer time tells nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tillstream_edge.auth import TillTokens
from tillstream_edge.estate.tills import Refusal, Tills
from tillstream_edge.roles import TILL, Role, names_a_till

_HEX = re.compile(r"^[0-9a-fA-F]{64}\Z")


@dataclass(frozen=True, slots=True)
class Rotation:
    """A till's token as head office set it."""

    token: bytes
    previous: bytes | None
    previous_until: float | None
    """Unix time; None: the previous token is not taken at all."""


class TillAccess:
    """The tokens in force and the tills' lifecycles (module docstring)."""

    def __init__(
        self, tokens: TillTokens | None, tills: Tills, clock: Callable[[], float] = time.time
    ) -> None:
        self._file = tokens
        self.tills = tills
        self._clock = clock
        self._rotations: dict[str, Rotation] = {}

    @property
    def tokens_required(self) -> bool:
        """Whether the edge has a tokens file (then every posting request needs a token)."""
        return self._file is not None

    def till_of(self, token: str) -> str | None:
        """The till (or client) the token belongs to now, or None for an unknown token."""
        presented = hashlib.sha256(token.encode("utf-8")).digest()
        now = self._clock()
        owner = None
        for client, digests in self._in_force(now):  # no early exit: same time for all
            for digest in digests:
                if hmac.compare_digest(presented, digest):
                    owner = client
        return owner

    def role_of(self, client: str) -> Role:
        # A client the file does not name was given its token by head office: a till.
        return self._file.role_of(client) if self._file is not None else TILL

    def refusal(self, till: str) -> Refusal | None:
        """Why this till may not be served (head office suspended it), counted; None: it may."""
        return self.tills.refusal(till)

    # -- head office's rotations -----------------------------------------------------------

    def rotate(
        self,
        till: str,
        token_sha256: str,
        previous_sha256: str | None,
        previous_until: float | None,
    ) -> None:
        """Put head office's token of ``till`` in force; raises ValueError (naming the field,
        never a digest) and then changes nothing."""
        if self._file is None:
            raise ValueError(
                "token_sha256: this edge takes no tokens (no TILLSTREAM_EDGE_TOKENS), so a "
                "till's token cannot be set"
            )
        new = _digest(token_sha256, "token_sha256")
        if previous_sha256 is not None:
            previous: bytes | None = _digest(previous_sha256, "previous_token_sha256")
        else:
            previous = self._file.digests.get(till)
        if self._file.roles.get(till, TILL) != TILL:
            raise ValueError(f"{till} is not a till in the tokens file (its role is not tills)")
        for other, digests in self._in_force(self._clock()):
            if other != till and new in digests:
                raise ValueError("token_sha256 is another till's or client's token")
        self._rotations[till] = Rotation(new, previous, previous_until)

    def unrotate(self, till: str) -> None:
        """The tokens file decides again (head office's token of the till withdrawn)."""
        self._rotations.pop(till, None)

    def _in_force(self, now: float) -> list[tuple[str, tuple[bytes, ...]]]:
        clients: dict[str, tuple[bytes, ...]] = (
            {c: (d,) for c, d in self._file.digests.items()} if self._file is not None else {}
        )
        for till, rotation in self._rotations.items():
            taken = [rotation.token]
            until = rotation.previous_until
            if rotation.previous is not None and until is not None and now < until:
                taken.append(rotation.previous)  # the rotation's overlap
            clients[till] = tuple(taken)
        return list(clients.items())


def _digest(text: str, field: str) -> bytes:
    if not _HEX.match(text):
        raise ValueError(f"{field}: not a SHA-256 (64 hex digits)")
    return bytes.fromhex(text)


@dataclass(frozen=True, slots=True)
class Posted:
    """An event as the tills' book and the roles see it."""

    event_type: str
    kind: str | None
    """A till event's kind (a store-day's open and close are the store's, not a till's)."""
    terminal: str | None
    """The till it names (``terminal_id``; None: a stock movement)."""
    receipt: str | None
    """Its sequence number as the till wrote it (a sale's receipt, a till event's number)."""

    @classmethod
    def of(cls, event_type: str, record: Mapping[str, Any]) -> Posted:
        receipt = record.get("receipt_number") or record.get("sequence_number")
        return cls(event_type, record.get("kind"), record.get("terminal_id"), receipt)

    @property
    def till(self) -> str | None:
        """The till whose act it is, if any."""
        return self.terminal if names_a_till(self.event_type, self.kind) else None


def refused_tills(
    access: TillAccess, posted: Sequence[Posted], paths: Sequence[str]
) -> tuple[str, list[tuple[str, str]]] | None:
    """Without tokens, a request is its events' tills': the reason and the fields (each
    event's ``terminal_id``) when head office refuses one of them; None: none is refused."""
    if not access.tills.any_refused:
        return None
    refusals: dict[str, Refusal | None] = {}
    problems: list[tuple[str, str]] = []
    for path, event in zip(paths, posted, strict=True):
        till = event.till
        if till is None:
            continue
        if till not in refusals:  # counted once per request and till
            refusals[till] = access.refusal(till)
        if (why := refusals[till]) is not None:
            problems.append((f"{path}terminal_id", why.message))
    reasons = [why.reason for why in refusals.values() if why is not None]
    return (reasons[0], problems) if reasons else None


def record_posted(
    access: TillAccess, client: str | None, posted: Sequence[Posted], software: str | None
) -> None:
    """A request was taken: its till was seen, with its last receipt and software. With
    tokens, the token's till; without, each till its events name (the software only when
    they name one: a back office forwarding for several tills is none of them)."""
    last: dict[str, str | None] = {}
    for event in posted:
        if event.till is not None and (client is None or event.till == client):
            last[event.till] = event.receipt or last.get(event.till)
    if client is not None:
        if access.role_of(client) == TILL:
            access.tills.seen(client, receipt=last.get(client), software=software)
        return
    for till, receipt in last.items():
        access.tills.seen(till, receipt=receipt, software=software if len(last) == 1 else None)
