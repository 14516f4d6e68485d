"""What head office may decide for one thing of a store, checked before anything travels.

A :class:`Change` is one target's new desired state: a till's lifecycle (and its token's
hash, from a rotation only), a device's whole table, some of the edge's settings, or a
tombstone (``clear``: back to the store's own configuration). The checks here are the one
place these rules live, for the command line (``tillstream fleet set|apply|rotate-token``)
and the fleet page alike; each problem names the store, the target and the field, never a
value that looks like a card number.

A change is *merged* onto what the topic holds for its target (:func:`merged`): a till keeps
the token a rotation gave it when its lifecycle changes, and ``set --edge`` changes only the
settings it names. The values are as the schema ``estate_desired`` holds them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pydantic import TypeAdapter, ValidationError

from tillstream.core.devices import device_problems
from tillstream.core.estate import (
    EDGE,
    LIFECYCLES,
    TargetError,
    check_device_name,
    check_store_id,
    check_till_id,
    device_target,
    till_target,
)
from tillstream.core.identifiers import text_problem
from tillstream.core.settings import LOG_LEVELS, MAX_WINDOW

Payload = dict[str, Any]
"""The ``till``, ``device`` and ``edge`` fields of an ``estate_desired`` record."""

TILL_FIELDS = frozenset({"lifecycle"})
EDGE_FIELDS = {
    "log_level": "log_level",
    "max_event_age": "max_event_age_seconds",
    "max_future": "max_future_seconds",
}
"""An edge table's fields (as the settings TILLSTREAM_EDGE_* name them) -> the record's."""
_DURATION: TypeAdapter[timedelta] = TypeAdapter(timedelta)


class DesiredError(ValueError):
    """One or more problems with what was asked; nothing is published."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Change:
    """One target's new desired state (``payload``), or its tombstone (``clear``)."""

    store_id: str
    target: str
    payload: Payload | None = None
    """Only the fields asked for; :func:`merged` completes it from the current record."""
    clear: bool = False
    replace: bool = False
    """The payload is the target's whole configuration (a file's table): fields it does not
    name go back to the edge's own; otherwise (``set``) they keep their current value."""

    @property
    def key(self) -> tuple[str, str]:
        return self.store_id, self.target


@dataclass
class Problems:
    """Problems found so far, each naming store, target and field."""

    found: list[str] = field(default_factory=list)

    def add(self, store: str, target: str | None, what: str, message: str = "") -> None:
        where = f"store {store}" + (f", {target}" if target else "")
        self.found.append(f"{where}: {what}" + (f": {message}" if message else ""))

    def raise_any(self) -> None:
        if self.found:
            raise DesiredError(self.found)


def till_change(
    store: str, till: str, fields: Mapping[str, Any], problems: Problems, *, replace: bool
) -> Change | None:
    """A till's lifecycle (``active``, ``suspended``, ``decommissioned``)."""
    target = _target(store, till, till_target, check_till_id, problems, "till")
    if target is None:
        return None
    unknown = sorted(set(fields) - TILL_FIELDS)
    for name in unknown:
        why = (
            "a till's token is never written down: `tillstream fleet rotate-token` makes one"
            if "token" in name
            else "not a till setting (lifecycle)"
        )
        problems.add(store, target, name, why)
    lifecycle = fields.get("lifecycle")
    if not isinstance(lifecycle, str) or lifecycle.upper() not in LIFECYCLES:
        words = ", ".join(w.lower() for w in LIFECYCLES)
        problems.add(store, target, "lifecycle", f"required, one of {words}")
        return None
    if unknown:
        return None
    return Change(store, target, {"till": {"lifecycle": lifecycle.upper()}}, replace=replace)


def device_change(
    store: str, name: str, table: Any, problems: Problems, *, replace: bool = True
) -> Change | None:
    """A device's whole table, checked by the models the edge reads its devices file with
    (``tillstream.core.devices``)."""
    target = _target(store, name, device_target, check_device_name, problems, "device")
    if target is None:
        return None
    found = device_problems(name, table)
    for problem in found:
        problems.add(store, target, problem.removeprefix(f"device {name!r}: "))
    if isinstance(table, Mapping):
        for key, value in table.items():
            if isinstance(value, str) and text_problem(value) is not None:
                problems.add(store, target, f"field {key!r}", "looks like a card number")
                found.append(key)
    if found:
        return None
    settings_json = json.dumps(table, sort_keys=True, separators=(",", ":"))
    return Change(store, target, {"device": {"settings_json": settings_json}}, replace=replace)


def edge_change(
    store: str, fields: Mapping[str, Any], problems: Problems, *, replace: bool
) -> Change | None:
    """Settings of the edge safe to change remotely: ``log_level``, ``max_event_age`` and
    ``max_future`` (seconds or ISO 8601 durations, within the edge's own limits)."""
    try:
        check_store_id(store)
    except TargetError as exc:
        problems.add(store, None, "store id", str(exc))
        return None
    edge: dict[str, Any] = {}
    before = len(problems.found)
    for name in sorted(set(fields) - set(EDGE_FIELDS)):
        problems.add(store, EDGE, name, f"not an edge setting ({', '.join(EDGE_FIELDS)})")
    level = fields.get("log_level")
    if level is not None:
        if not isinstance(level, str) or level.upper() not in LOG_LEVELS:
            problems.add(store, EDGE, "log_level", f"one of {', '.join(LOG_LEVELS)}")
        else:
            edge["log_level"] = level.upper()
    for name, lowest in (("max_event_age", timedelta(seconds=1)), ("max_future", timedelta(0))):
        if fields.get(name) is None:
            continue
        span = _duration(fields[name])
        if span is None or not lowest <= span <= MAX_WINDOW:
            problems.add(
                store,
                EDGE,
                name,
                f"seconds or an ISO 8601 duration (P7D), from {int(lowest.total_seconds())} s "
                f"to {MAX_WINDOW.days} days",
            )
        else:
            edge[EDGE_FIELDS[name]] = int(span.total_seconds())
    if len(problems.found) > before:
        return None
    if not edge and not replace:
        problems.add(store, EDGE, "nothing to set", "name log_level, max_event_age or max_future")
        return None
    return Change(store, EDGE, {"edge": edge}, replace=replace)


def clear_change(store: str, target: str, problems: Problems) -> Change | None:
    """A tombstone: the target goes back to the store's own configuration."""
    try:
        check_store_id(store)
    except TargetError as exc:
        problems.add(store, target, "store id", str(exc))
        return None
    return Change(store, target, clear=True)


def merged(change: Change, current: Payload | None) -> Payload | None:
    """The record's ``till``/``device``/``edge`` fields after ``change`` on ``current`` (the
    target's record on the topic, None if none); None for a tombstone."""
    if change.clear or change.payload is None:
        return None
    now = current or {}
    if "till" in change.payload:
        before = now.get("till") or {}
        till = {
            "lifecycle": "ACTIVE",
            "token_sha256": before.get("token_sha256"),
            "previous_token_until": before.get("previous_token_until"),
            "previous_token_sha256": before.get("previous_token_sha256"),
        }
        till.update(change.payload["till"])
        return {"till": till, "device": None, "edge": None}
    if "edge" in change.payload:
        edge: dict[str, Any] = dict.fromkeys(EDGE_FIELDS.values())
        if not change.replace:
            edge.update(now.get("edge") or {})
        edge.update(change.payload["edge"])
        return {"till": None, "device": None, "edge": edge}
    return {"till": None, "device": dict(change.payload["device"]), "edge": None}


def same(a: Payload | None, b: Payload | None) -> bool:
    """Whether two records' payloads say the same (a device's table compared as JSON)."""
    if a is None or b is None:
        return a is b
    return _comparable(a) == _comparable(b)


def _comparable(payload: Payload) -> Payload:
    device = payload.get("device")
    if device is None:
        return {k: payload.get(k) for k in ("till", "device", "edge")}
    return {**payload, "device": json.loads(device["settings_json"])}


def _target(
    store: str,
    name: str,
    make: Any,
    check: Any,
    problems: Problems,
    what: str,
) -> str | None:
    try:
        check_store_id(store)
    except TargetError as exc:
        problems.add(store, None, "store id", str(exc))
        return None
    try:
        check(name)
    except TargetError as exc:
        problems.add(store, f"{what} {name!r}", f"{what} id", str(exc))
        return None
    target: str = make(name)
    return target


def _duration(value: Any) -> timedelta | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return timedelta(seconds=value)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return timedelta(seconds=int(value.strip()))
    try:
        return _DURATION.validate_python(value)
    except ValidationError:
        return None
