"""``POST /v1/tills/status``: what a till reports of itself (paper low, drawer open, pin pad
gone), for head office's estate report.

The body is JSON (``Content-Type: application/json``, at most 16 KiB)::

    {"conditions": [{"code": "printer_paper", "state": "WARNING", "detail": "low",
                     "since": "2026-11-25T10:15:00+01:00"}]}

Each post replaces what the till reported before (an empty list: nothing to report). The
till is the token's (with a tokens file), else ``till_id`` in the body. A code is
``[a-z0-9_.-]{1,64}``, a state ``OK``, ``WARNING`` or ``FAULT``, a detail at most 64
characters of text, a time carries its zone; no string may hold a card number. A refusal
names the field (``conditions[1].code``), never its value. The status is kept in memory and
written with the tills' book every few seconds: it is no event of the outbox.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from tillstream.core.identifiers import control_problem, text_problem
from tillstream.core.rules import time_problem
from tillstream_edge.estate.access import TillAccess
from tillstream_edge.estate.tills import SOFTWARE_HEADER, Condition, software_of
from tillstream_edge.http_common import authenticator, problems_of, read_body, reason_of, reject
from tillstream_edge.models import Text, held_to
from tillstream_edge.roles import TILL

CHANNEL = "till_status"
"""What a refused status is counted as (``tillstream_edge_events_rejected_total{channel}``)."""
MAX_STATUS_BODY = 16 * 1024
MAX_CONDITIONS = 16
CODE_PATTERN = r"^[a-z0-9_.-]{1,64}$"


def _in_range(value: datetime) -> datetime:
    if (problem := time_problem(value)) is not None:
        raise ValueError(problem)
    return value


Code = Annotated[str, Field(pattern=CODE_PATTERN), AfterValidator(held_to(text_problem))]
Detail = Annotated[
    str,
    Field(min_length=1, max_length=64),
    AfterValidator(held_to(control_problem)),
    AfterValidator(held_to(text_problem)),
]


class ConditionIn(BaseModel):
    """One thing the till reports of itself."""

    model_config = ConfigDict(extra="forbid")

    code: Code = Field(
        description="What it is about: printer_paper, cash_drawer, pin_pad, printer, scanner, "
        "network, disk or the vendor's own code."
    )
    state: Literal["OK", "WARNING", "FAULT"]
    detail: Detail | None = Field(None, description="A short word: low, open, disconnected.")
    since: Annotated[AwareDatetime, AfterValidator(_in_range)] | None = Field(
        None, description="Since when, by the till's clock, with its zone."
    )


class TillStatusIn(BaseModel):
    """What a till reports of itself now (replacing what it reported before)."""

    model_config = ConfigDict(extra="forbid")

    till_id: Annotated[Text, AfterValidator(held_to(control_problem))] | None = Field(
        None, description="The till, when the edge takes no tokens (else the token's)."
    )
    conditions: list[ConditionIn] = Field(max_length=MAX_CONDITIONS)

    @field_validator("conditions")
    @classmethod
    def _each_code_once(cls, conditions: list[ConditionIn]) -> list[ConditionIn]:
        seen: set[str] = set()
        for i, condition in enumerate(conditions):
            if condition.code in seen:
                raise ValueError(f"conditions[{i}].code is given twice; one condition per code")
            seen.add(condition.code)
        return conditions


def till_status_router(access: TillAccess) -> APIRouter:
    """The route of one edge, writing to its tills' book."""
    router = APIRouter(tags=["tills"])
    client_of = authenticator(access, CHANNEL)

    @router.post(
        "/v1/tills/status",
        summary="What the till reports of itself: paper, drawer, pin pad... (JSON)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _inlined(TillStatusIn)}},
            }
        },
        responses={
            200: {"description": "Recorded; reported to head office within seconds"},
            401: {"description": "Till tokens are required and none known was given"},
            403: {
                "description": "Not a till's token, another till named, or the till is "
                "suspended or decommissioned by head office"
            },
            413: {"description": "Body larger than 16 KiB"},
            415: {"description": "Not application/json"},
            422: {"description": "A field is wrong; each is named"},
        },
    )
    async def post_status(request: Request, client: str | None = Depends(client_of)) -> Response:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json":
            return reject(CHANNEL, 415, "unsupported_media_type", [("content-type", _JSON)])
        body = await read_body(request, CHANNEL, MAX_STATUS_BODY)
        try:
            status = TillStatusIn.model_validate_json(body)
        except ValidationError as exc:
            return reject(CHANNEL, 422, reason_of(exc), problems_of(exc))
        if client is not None:
            if access.role_of(client) != TILL:
                return reject(CHANNEL, 403, "forbidden", [("authorization", _NOT_A_TILL)])
            if status.till_id is not None and status.till_id != client:
                named = f"names another till; this token is till {client}'s"
                return reject(CHANNEL, 403, "forbidden", [("till_id", named)])
            till = client
        elif status.till_id is None:
            return reject(CHANNEL, 422, "invalid", [("till_id", _NAME_YOURSELF)])
        else:
            till = status.till_id
            if (why := access.refusal(till)) is not None:
                return reject(CHANNEL, 403, why.reason, [("till_id", why.message)])
        conditions = [
            Condition(c.code, c.state, c.detail, None if c.since is None else c.since.timestamp())
            for c in status.conditions
        ]
        access.tills.status(till, conditions, software_of(request.headers.get(SOFTWARE_HEADER)))
        return JSONResponse({"till_id": till, "conditions": len(conditions)})

    return router


_JSON = "must be application/json"
_NOT_A_TILL = "a till's status is posted with the till's own token ([tills] in the tokens file)"
_NAME_YOURSELF = "required: this edge takes no tokens, so the till names itself"


def _inlined(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its definitions written in place (the route declares
    its body by hand, so the document has no components of its own for it)."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(definitions[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved
