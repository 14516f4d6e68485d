"""The store estate's words, decided once: what a desired state is for (its *target*), the
ids of tills and devices in it, and the stores' opening hours.

A target names one thing of a store (``estate_desired.target``, ``estate_report.applied``):
``edge`` (the edge service itself), ``till/<till id>`` or ``device/<device name>``; with the
store it keys the compacted topic ``tillstream.estate-desired``
(:func:`tillstream.core.topics.estate_key`).
"""

from __future__ import annotations

import re
from datetime import time

from tillstream.core.devices import DEVICE_NAME
from tillstream.core.identifiers import text_problem

EDGE = "edge"
TILL = "till"
DEVICE = "device"
KINDS: tuple[str, ...] = (EDGE, TILL, DEVICE)

STORE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
"""A store id, as every service takes it (``TILLSTREAM_STORE_ID``)."""
TILL_ID = re.compile(r"^(?! )[^\x00-\x1f\x7f]{1,200}(?<! )\Z")
"""A till id: the events' ``terminal_id`` (1-200 characters), no control characters, no
spaces around."""

LIFECYCLES: tuple[str, ...] = ("ACTIVE", "SUSPENDED", "DECOMMISSIONED")
"""What head office may decide of a till (the schema's OTHER is what an older reader sees)."""


class TargetError(ValueError):
    """Not a target, store id, till id or device name; the message says why."""


def till_target(till_id: str) -> str:
    return f"{TILL}/{till_id}"


def device_target(name: str) -> str:
    return f"{DEVICE}/{name}"


def parse_target(target: str) -> tuple[str, str | None]:
    """``(kind, name)`` of a target: ``("edge", None)``, ``("till", "T01")``, ``("device",
    "scanner-1")``; :class:`TargetError` if it is none of them."""
    if target == EDGE:
        return EDGE, None
    kind, sep, name = target.partition("/")
    if sep and kind == TILL:
        return TILL, check_till_id(name)
    if sep and kind == DEVICE:
        return DEVICE, check_device_name(name)
    raise TargetError(f"{target!r} is not a target: edge, till/<till id> or device/<name>")


def check_store_id(store_id: str) -> str:
    if not STORE_ID.match(store_id):
        raise TargetError("a store id is 1-64 letters, digits, '_', '.' or '-'")
    if text_problem(store_id) is not None:
        raise TargetError("a store id may not look like a card number")
    return store_id


def check_till_id(till_id: str) -> str:
    if not TILL_ID.match(till_id):
        raise TargetError("a till id is 1-200 characters, no control characters, no spaces around")
    if text_problem(till_id) is not None:
        raise TargetError("a till id may not look like a card number")
    return till_id


def check_device_name(name: str) -> str:
    if not DEVICE_NAME.match(name):
        raise TargetError(f"a device name must match {DEVICE_NAME.pattern}")
    return name


_CLOCK = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")


def opening_hours(text: str) -> tuple[time, time | None]:
    """``HH:MM-HH:MM`` (store-local) as ``(opens, closes)``; ``closes`` None for ``24:00``
    (open until midnight). ValueError saying what is wrong."""
    opens_text, sep, closes_text = text.strip().partition("-")
    opens, closes = _CLOCK.match(opens_text.strip()), _CLOCK.match(closes_text.strip())
    if not sep or opens is None or closes is None:
        raise ValueError("opening hours are HH:MM-HH:MM, store-local (08:00-21:00)")
    start = (int(opens.group(1)), int(opens.group(2)))
    end = (int(closes.group(1)), int(closes.group(2)))
    if start[0] == 24 or (end[0] == 24 and end[1] != 0):
        raise ValueError("opening hours are within 00:00-24:00")
    if end <= start:
        raise ValueError("opening hours close after they open, the same day")
    return time(*start), None if end == (24, 0) else time(*end)
