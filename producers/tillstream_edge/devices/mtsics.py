"""Mettler Toledo MT-SICS (level 0) scales: ``S``/``SI`` commands and their replies.

Commands and replies end CR LF. ``S S <value> <unit>`` is a stable weight, ``S D`` a dynamic
one, ``S I`` means not executable right now (busy), ``S +``/``S -`` over- and underload;
``ES``/``ET``/``EL`` are the scale's syntax, transmission and logic errors. ``SI`` (the
default) answers at once, so waiting for stability is bounded by us, not by the scale.

At each connection the scale is asked what it is, with level 0's inquiries: ``I2`` (balance
data: type and capacity, ``I2 A "WMS404C-L 410.0 g"``), ``I3`` (software version and type
definition number, ``I3 A "2.10 10.28.0.493.142"``) and ``I4`` (serial number,
``I4 A "B443456789"``). ``I2 I`` (not executable now) leaves that one unknown; an ``ES``
(a scale that does not know the command), another reply or none in time ends the asking:
what it says of itself is reported, it is never needed to weigh.
"""

from __future__ import annotations

import asyncio
import re

from tillstream.core.pan import mask_pans
from tillstream_edge.devices.config import MtSicsConfig
from tillstream_edge.devices.link import Connection, Framer
from tillstream_edge.devices.scale import BadReply, Reading, Reply, Scale, to_kg

IDENTITY = (("I2", "model"), ("I3", "firmware"), ("I4", "serial_number"))
"""The level-0 inquiries asked at connection, and what each answer is in the report."""
IDENTITY_TIMEOUT = 1.0
"""Seconds to wait for an inquiry's answer, at most (a scale that does not answer one is
still weighed)."""
MAX_IDENTITY = 64
_QUOTED = re.compile(r'"([^"]*)"')
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")

_STATUS = {
    "I": Reading.NOT_EXECUTABLE,
    "+": Reading.OVERLOAD,
    "-": Reading.UNDERLOAD,
}


def parse_reply(frame: bytes) -> Reply:
    """Interpret one MT-SICS reply line (CR LF removed)."""
    try:
        tokens = frame.decode("ascii").split()
    except UnicodeDecodeError:
        raise BadReply("noise", f"{len(frame)} bytes, not ASCII") from None
    if tokens and tokens[0] in ("ES", "ET", "EL"):
        raise BadReply("scale_error", f"scale answered {tokens[0]}")
    if len(tokens) < 2 or tokens[0] not in ("S", "SI"):
        raise BadReply("bad_reply", f"{len(frame)} bytes, not an S reply")
    status = tokens[1]
    if status in _STATUS and len(tokens) == 2:
        return Reply(_STATUS[status])
    if status in ("S", "D") and len(tokens) == 4:
        kg = to_kg(tokens[2], tokens[3])
        return Reply(Reading.STABLE if status == "S" else Reading.DYNAMIC, kg)
    raise BadReply("bad_reply", f"{len(frame)} bytes, unknown S reply")


class NotAnInquiryReply(Exception):
    """The scale answered an inquiry with something else (``ES``, a weight, noise)."""


def parse_inquiry(command: str, frame: bytes) -> str | None:
    """The text of an inquiry's answer (``I2 A "..."``; several quoted parts joined by a
    space), printable ASCII, at most 64 characters, a card number masked (it is published);
    None when the scale cannot answer it now (``I2 I``). Raises NotAnInquiryReply for
    anything else."""
    try:
        text = frame.decode("ascii")
    except UnicodeDecodeError:
        raise NotAnInquiryReply(f"{len(frame)} bytes, not ASCII") from None
    tokens = text.split(None, 2)
    if tokens[:2] == [command, "I"] and len(tokens) == 2:
        return None
    if tokens[:2] != [command, "A"] or len(tokens) != 3:
        raise NotAnInquiryReply(f"{len(frame)} bytes, not an {command} reply")
    parts = [part.strip() for part in _QUOTED.findall(tokens[2])]
    value = " ".join(part for part in parts if part)
    return mask_pans(_UNPRINTABLE.sub("", value))[:MAX_IDENTITY] or None


class MtSicsScale(Scale):
    """A scale on MT-SICS; one ``S``/``SI`` per weight request, its inquiries at connection."""

    def __init__(self, name: str, config: MtSicsConfig) -> None:
        super().__init__(name, config)
        self._command = config.command.encode("ascii") + b"\r\n"

    def framer(self) -> Framer:
        return Framer(b"\r\n", self.config.max_frame)

    def command(self) -> bytes:
        return self._command

    def parse(self, frame: bytes) -> Reply:
        return parse_reply(frame)

    async def identify(self, conn: Connection) -> None:
        found: dict[str, str] = {}
        timeout = min(self.scale_config.reply_timeout, IDENTITY_TIMEOUT)
        for command, field in IDENTITY:
            conn.drain()
            conn.write(command.encode("ascii") + b"\r\n")
            try:
                async with asyncio.timeout(timeout):
                    frame = await conn.frame()
                value = parse_inquiry(command, frame)
            except (TimeoutError, NotAnInquiryReply):
                break  # no inquiries on this scale (or not now): it is weighed all the same
            if value is not None:
                found[field] = value
        self._status.identity = found
        if found:
            self.changed()
