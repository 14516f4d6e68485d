"""What every route of the edge's API shares: who is asking (the till's token, head office's
suspension), bounded bodies, and refusals that name fields, never values.

Refusals are counted once per request (``count_refusal``) and logged on one line naming the
fields; a card number is masked wherever a field name or message could quote one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError
from starlette.requests import ClientDisconnect

from tillstream.core.identifiers import CARD_NUMBER
from tillstream.core.pan import mask_pans
from tillstream_edge.estate.access import TillAccess
from tillstream_edge.ingest import count_refusal
from tillstream_edge.roles import TILL

log = logging.getLogger(__name__)

REALM = 'Bearer realm="tillstream-edge"'
BEARER = HTTPBearer(
    auto_error=False, description="The till's own token, from the edge's tokens file."
)


class BodyTooLarge(Exception):
    """A request body over the channel's limit: answered 413 as soon as the limit is passed."""

    def __init__(self, channel: str, limit: int) -> None:
        super().__init__(f"larger than {limit} bytes")
        self.channel = channel


class Unauthenticated(Exception):
    """No known till token: answered 401 before the request body is read."""

    def __init__(self, channel: str, message: str, challenge: str) -> None:
        super().__init__(message)
        self.channel = channel
        self.message = message
        self.challenge = challenge


class TillRefused(Exception):
    """A till head office suspended or decommissioned: answered 403 before the body is read."""

    def __init__(self, channel: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.channel = channel
        self.reason = reason
        self.message = message


def install_answers(app: FastAPI) -> None:
    """The answers of the exceptions above, and of a till that hung up mid-upload."""
    app.add_exception_handler(ClientDisconnect, _client_gone)

    @app.exception_handler(Unauthenticated)
    async def unauthenticated(_request: Request, exc: Unauthenticated) -> Response:
        return reject(
            exc.channel,
            401,
            "unauthenticated",
            [("authorization", exc.message)],
            headers={"WWW-Authenticate": exc.challenge},
        )

    @app.exception_handler(TillRefused)
    async def refused(_request: Request, exc: TillRefused) -> Response:
        return reject(exc.channel, 403, exc.reason, [("authorization", exc.message)])

    @app.exception_handler(BodyTooLarge)
    async def too_large(_request: Request, exc: BodyTooLarge) -> Response:
        return reject(exc.channel, 413, "too_large", [("body", str(exc))])


def authenticator(access: TillAccess | None, channel: str) -> Callable[..., Awaitable[str | None]]:
    """A dependency giving the client's id from its token (None: tokens are not required);
    a till head office suspended is refused here, before its body is read."""
    if access is None or not access.tokens_required:

        async def open_to_all() -> None:
            return None

        return open_to_all

    async def client_of_token(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    ) -> str:
        # Never log or echo the token: it is the till's password.
        if credentials is None:
            raise Unauthenticated(channel, "a till token is required (Bearer)", REALM)
        client = access.till_of(credentials.credentials)
        if client is None:
            raise Unauthenticated(channel, "unknown token", f'{REALM}, error="invalid_token"')
        if access.role_of(client) == TILL and (why := access.refusal(client)) is not None:
            raise TillRefused(channel, why.reason, why.message)
        return client

    return client_of_token


async def read_body(request: Request, channel: str, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes ``limit``."""
    # A hint only (the streamed size below is the real guard); not every ASGI server checks it,
    # and int() fails on '²' (isdigit) or 4301+ digits, so 12+ digits count as too large.
    declared = request.headers.get("content-length", "").lstrip("0")
    if declared.isascii() and declared.isdigit() and (len(declared) > 12 or int(declared) > limit):
        raise BodyTooLarge(channel, limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(channel, limit)
        chunks.append(chunk)
    return b"".join(chunks)


_EVENT_TAGS = frozenset({"sale", "payment", "stock_movement", "till_event", "sale_void"})
"""The ``type`` values: pydantic puts the discriminator's tag in an error's path."""


def problems_of(exc: ValidationError, first: str = "events") -> list[tuple[str, str]]:
    """(field path, message) for each error; the offending value is never echoed (PANs).
    ``first``: what a leading list index is an index of."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        parts: list[str] = []
        for i, part in enumerate(error["loc"]):
            if isinstance(part, int):
                parts.append(f"[{part}]" if parts or i else f"{first}[{part}]")
            elif part in _EVENT_TAGS and i <= 1:
                continue  # the discriminator tag pydantic adds to the path
            elif "[" in str(part):  # union/list wrappers such as 'list[...]'
                continue
            else:
                parts.append(f".{part}" if parts else str(part))
        field = "".join(parts).lstrip(".") or "body"
        problems.append((field, error["msg"].removeprefix("Value error, ")))
    return problems


def reason_of(exc: ValidationError) -> str:
    """``card_number`` if any field looks like a card number, else ``invalid``."""
    kinds = {error["type"] for error in exc.errors(include_input=False, include_url=False)}
    return CARD_NUMBER if CARD_NUMBER in kinds else "invalid"


def reject(
    channel: str,
    status: int,
    reason: str,
    problems: list[tuple[str, str]],
    *,
    retry_after: int | None = None,
    headers: dict[str, str] | None = None,
    logged: str | None = None,
) -> Response:
    """``logged``: why, as a log line may say it (no value sent); None: the fields say it."""
    count_refusal(channel, reason)
    # One line per refused request: reason and field names, never the messages (a POSLog
    # message may quote what was sent). A field name can be a key the till made up: masked.
    fields = sorted({mask_pans(f)[:80] for f, _ in problems})
    log.warning(
        "%s request refused with %d (%s): %s%s",
        channel,
        status,
        reason,
        ", ".join(fields[:20]) + (f" and {len(fields) - 20} more" if len(fields) > 20 else ""),
        f": {logged}" if logged else "",
    )
    headers = dict(headers or {})
    if retry_after:
        headers["Retry-After"] = str(retry_after)
    # Messages from the POSLog reader may quote what the till sent: never a card number.
    return JSONResponse(
        {
            "error": reason,
            "problems": [{"field": mask_pans(f), "message": mask_pans(m)} for f, m in problems],
        },
        status_code=status,
        headers=headers,
    )


async def _client_gone(_request: Request, _exc: Exception) -> Response:
    # A till that drops mid-upload (flaky Wi-Fi) stored nothing and hears no answer: not an
    # error with a traceback in the log, as an unhandled exception would be.
    return Response(status_code=400)
