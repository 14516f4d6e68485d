"""Mettler Toledo MT-SICS (level 0) scales: ``S``/``SI`` commands and their replies.

Commands and replies end CR LF. ``S S <value> <unit>`` is a stable weight, ``S D`` a dynamic
one, ``S I`` means not executable right now (busy), ``S +``/``S -`` over- and underload;
``ES``/``ET``/``EL`` are the scale's syntax, transmission and logic errors. ``SI`` (the
default) answers at once, so waiting for stability is bounded by us, not by the scale.
"""

from __future__ import annotations

from tillstream_edge.devices.config import MtSicsConfig
from tillstream_edge.devices.link import Framer
from tillstream_edge.devices.scale import BadReply, Reading, Reply, Scale, to_kg

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


class MtSicsScale(Scale):
    """A scale on MT-SICS; one ``S``/``SI`` per weight request."""

    def __init__(self, name: str, config: MtSicsConfig) -> None:
        super().__init__(name, config)
        self._command = config.command.encode("ascii") + b"\r\n"

    def framer(self) -> Framer:
        return Framer(b"\r\n", self.config.max_frame)

    def command(self) -> bytes:
        return self._command

    def parse(self, frame: bytes) -> Reply:
        return parse_reply(frame)
