"""Toledo 8217 (weight only) scales, as Odoo's serial scale driver speaks the protocol.

The line runs 9600 baud 7E1. We send ``W``; the scale answers ``STX <weight> CR`` when the
weight is stable, otherwise ``STX ? <status> CR`` whose low six bits say why: 1 in motion,
2 over capacity, 4 under zero, 8 outside zero capture range, 16 centre of zero, 32 net.
Bytes are masked to seven bits (framing included) in case the port is set to 8 bits.
"""

from __future__ import annotations

import re

from tillstream_edge.devices.config import Toledo8217Config
from tillstream_edge.devices.link import Framer
from tillstream_edge.devices.scale import BadReply, Reading, Reply, Scale, to_kg

STX = 0x02
_WEIGHT = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)N?\s*$")
_MOTION, _OVER, _UNDER = 0x01, 0x02, 0x04


def parse_reply(frame: bytes, unit: str = "kg") -> Reply:
    """Interpret one reply (CR removed); text before the last STX is ignored."""
    frame = bytes(b & 0x7F for b in frame)  # as the framer reads it: 0x82 is an STX too
    start = frame.rfind(bytes([STX]))
    if start < 0:
        raise BadReply("bad_reply", f"{len(frame)} bytes without STX")
    body = frame[start + 1 :].decode("ascii")
    if body.startswith("?"):
        if len(body) != 2:
            raise BadReply("bad_reply", "status reply without exactly one status byte")
        flags = ord(body[1]) & 0x3F
        if flags & _OVER:
            return Reply(Reading.OVERLOAD)
        if flags & _UNDER:
            return Reply(Reading.UNDERLOAD)
        if flags & _MOTION:
            return Reply(Reading.DYNAMIC)
        return Reply(Reading.STATUS)
    match = _WEIGHT.match(body)
    if match is None:
        raise BadReply("bad_reply", f"{len(body)} characters, not a weight")
    return Reply(Reading.STABLE, to_kg(match.group(1), unit))


class Toledo8217Scale(Scale):
    """A scale on the Toledo 8217 protocol; ``W`` per weight request."""

    def __init__(self, name: str, config: Toledo8217Config) -> None:
        super().__init__(name, config)
        self._unit = config.unit

    def framer(self) -> Framer:
        return Framer(b"\r", self.config.max_frame, seven_bit=True)

    def command(self) -> bytes:
        return b"W"

    def parse(self, frame: bytes) -> Reply:
        return parse_reply(frame, self._unit)
