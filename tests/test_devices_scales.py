"""Scales over real ptys: MT-SICS and Toledo 8217 replies, line settings, Decimal kilograms."""

from __future__ import annotations

import asyncio
import contextlib
import os
import termios
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.device_support import (
    FakePort,
    Responder,
    metric,
    mtsics_answers,
    name,
    wait_for,
    weight_commands,
)
from tillstream_edge.devices.config import MtSicsConfig, Toledo8217Config
from tillstream_edge.devices.mtsics import MtSicsScale, NotAnInquiryReply, parse_inquiry
from tillstream_edge.devices.mtsics import parse_reply as parse_mtsics
from tillstream_edge.devices.scale import BadReply, Reading, Scale, ScaleError
from tillstream_edge.devices.toledo import Toledo8217Scale
from tillstream_edge.devices.toledo import parse_reply as parse_toledo


def scripted(*replies: bytes) -> Callable[[bytes], bytes]:
    """Answers commands with ``replies`` in order, repeating the last one."""
    queue = list(replies)

    def answer(_command: bytes) -> bytes:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return answer


@contextlib.asynccontextmanager
async def scale_on_pty(scale: Scale) -> AsyncIterator[Scale]:
    task = asyncio.create_task(scale.run())
    try:
        await wait_for(lambda: scale.status().up)
        yield scale
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def mtsics(port: FakePort, **options: object) -> MtSicsScale:
    cfg = MtSicsConfig.model_validate(
        {"protocol": "mt-sics", "port": str(port.link), "stable_timeout": 2.0, **options}
    )
    return MtSicsScale(name("mt"), cfg)


def toledo(port: FakePort, **options: object) -> Toledo8217Scale:
    cfg = Toledo8217Config.model_validate(
        {"protocol": "toledo-8217", "port": str(port.link), "stable_timeout": 2.0, **options}
    )
    return Toledo8217Scale(name("toledo"), cfg)


# --- reply parsing ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "reading", "kg"),
    [
        (b"S S      1.250 kg", Reading.STABLE, Decimal("1.250")),
        (b"S S     734.0 g", Reading.STABLE, Decimal("0.734")),
        (b"S S     0.5 g", Reading.STABLE, Decimal("0.000")),
        (b"S D      0.980 kg", Reading.DYNAMIC, Decimal("0.980")),
        (b"S I", Reading.NOT_EXECUTABLE, None),
        (b"S +", Reading.OVERLOAD, None),
        (b"S -", Reading.UNDERLOAD, None),
    ],
)
def test_mtsics_replies(line: bytes, reading: Reading, kg: Decimal | None) -> None:
    reply = parse_mtsics(line)
    assert (reply.reading, reply.kg) == (reading, kg)
    assert reply.kg is None or isinstance(reply.kg, Decimal)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"ES", "scale_error"),
        (b"S S 1.0 lb", "unit"),
        (b"S S x kg", "bad_reply"),
        (b"\xff", "noise"),
    ],
)
def test_mtsics_bad_replies(line: bytes, reason: str) -> None:
    with pytest.raises(BadReply) as err:
        parse_mtsics(line)
    assert err.value.reason == reason


@pytest.mark.parametrize(
    ("frame", "reading", "kg"),
    [
        (b"\x0201.234", Reading.STABLE, Decimal("1.234")),
        (b"\x02  0.500N", Reading.STABLE, Decimal("0.500")),
        (b"\x02?A", Reading.DYNAMIC, None),
        (b"\x02?B", Reading.OVERLOAD, None),
        (b"\x02?D", Reading.UNDERLOAD, None),
        (b"\x02?P", Reading.STATUS, None),
        (b"\x00\x02" + bytes([ord("1") | 0x80]) + b".5", Reading.STABLE, Decimal("1.500")),
    ],
)
def test_toledo_replies(frame: bytes, reading: Reading, kg: Decimal | None) -> None:
    reply = parse_toledo(frame)
    assert (reply.reading, reply.kg) == (reading, kg)


def test_toledo_grams_and_garbage() -> None:
    assert parse_toledo(b"\x02734", unit="g").kg == Decimal("0.734")
    for frame in (b"1.234", b"\x02?", b"\x02abc"):
        with pytest.raises(BadReply):
            parse_toledo(frame)


def even_parity(data: bytes) -> bytes:
    return bytes(b | (0x80 if bin(b).count("1") % 2 else 0) for b in data)


# --- over a pty -------------------------------------------------------------------------


async def test_mtsics_waits_for_stable_weight_at_8n1(tmp_path: Path) -> None:
    port = FakePort(tmp_path / "scale")
    replies = scripted(b"S D      0.731 kg\r\n", b"S I\r\n", b"S S      0.734 kg\r\n")
    responder = Responder(port, b"\r\n", mtsics_answers(replies))
    async with scale_on_pty(mtsics(port)) as scale:
        attrs = termios.tcgetattr(port.slave)
        assert attrs[2] & termios.CSIZE == termios.CS8 and not attrs[2] & termios.PARENB
        assert attrs[4] == attrs[5] == termios.B9600
        assert scale.status().line == "9600 8N1"
        async with asyncio.timeout(5):
            assert await scale.weigh() == Decimal("0.734")
    await responder.stop()
    assert weight_commands(responder.commands)[:3] == [b"SI\r\n"] * 3
    assert metric("tillstream_edge_device_frames_total", device=scale.name) == 3
    port.unplug()


@pytest.mark.parametrize(("reply", "reason"), [(b"S +\r\n", "overload"), (b"S -\r\n", "underload")])
async def test_mtsics_overload_and_underload_fail_fast(
    tmp_path: Path, reply: bytes, reason: str
) -> None:
    port = FakePort(tmp_path / "scale")
    responder = Responder(port, b"\r\n", mtsics_answers(scripted(reply)))
    async with scale_on_pty(mtsics(port, command="S")) as scale:
        with pytest.raises(ScaleError) as err:
            async with asyncio.timeout(1):
                await scale.weigh()
        assert err.value.reason == reason
    await responder.stop()
    assert weight_commands(responder.commands) == [b"S\r\n"]
    port.unplug()


async def test_mtsics_never_stable_and_garbled_replies(tmp_path: Path) -> None:
    port = FakePort(tmp_path / "scale")
    responder = Responder(port, b"\r\n", mtsics_answers(scripted(b"\x00\xfe junk\r\n", b"S I\r\n")))
    async with scale_on_pty(mtsics(port, stable_timeout=0.8)) as scale:
        with pytest.raises(ScaleError) as err:
            await scale.weigh()
        assert err.value.reason == "no_stable_weight"
        assert scale.status().up  # busy is not gone
    await responder.stop()
    assert metric("tillstream_edge_device_rejected_total", device=scale.name, reason="noise") == 1
    port.unplug()


async def test_silent_scale_is_reconnected(tmp_path: Path) -> None:
    """A scale that stops answering is closed and reopened, and reported down meanwhile."""
    port = FakePort(tmp_path / "scale")
    scale = mtsics(port, reply_timeout=0.2, reconnect_initial=0.3)
    async with scale_on_pty(scale):
        with pytest.raises(ScaleError) as err:
            await scale.weigh()
        assert err.value.reason == "scale_unavailable"
        await wait_for(lambda: not scale.status().up)
        assert scale.status().last_error == "no reply from scale"
        responder = Responder(port, b"\r\n", mtsics_answers(scripted(b"S S 2.5 kg\r\n")))
        await wait_for(lambda: scale.status().up)
        assert await scale.weigh() == Decimal("2.500")
        assert scale.status().reconnects == 1
    await responder.stop()
    port.unplug()


@pytest.fixture
def line_requests(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[Any]]]:
    """Line settings asked of the kernel, per tty; lets ptys stand in for 7-bit UARTs.

    Linux ptys force CS8 and drop parity, and this kernel answers EINVAL when re-applying
    settings it could not keep; a UART keeps them. So the request is recorded, and a pty's
    refusal of only CSIZE/PARENB is treated as the UART would: accepted.
    """
    requests: list[tuple[str, list[Any]]] = []
    real = termios.tcsetattr

    def tcsetattr(fd: int, when: int, attrs: list[Any]) -> None:
        requests.append((os.ttyname(fd), list(attrs)))
        try:
            real(fd, when, attrs)
        except termios.error:
            pty = list(attrs)
            pty[2] = (pty[2] & ~(termios.CSIZE | termios.PARENB | termios.PARODD)) | termios.CS8
            if pty[2] != termios.tcgetattr(fd)[2]:
                raise

    monkeypatch.setattr(termios, "tcsetattr", tcsetattr)
    return requests


async def test_toledo_8217_weight_and_status_at_7e1(
    tmp_path: Path, line_requests: list[tuple[str, list[Any]]]
) -> None:
    port = FakePort(tmp_path / "scale")
    weight = even_parity(b"\x02001.234\r")  # as an 8-bit reader sees a 7E1 frame
    replies = scripted(b"\x02?A\r", b"\x02?P\r", weight, b"\x02?B\r", b"\x02?D\r")
    responder = Responder(port, b"W", replies)
    async with scale_on_pty(toledo(port)) as scale:
        assert scale.status().line == "9600 7E1"
        asked = [attrs for tty_path, attrs in line_requests if tty_path == os.ttyname(port.slave)]
        cflag = asked[-1][2]
        assert cflag & termios.CSIZE == termios.CS7 and cflag & termios.PARENB
        assert not cflag & (termios.PARODD | termios.CSTOPB)
        assert asked[-1][4] == termios.B9600
        assert await scale.weigh() == Decimal("1.234")
        for reason in ("overload", "underload"):
            with pytest.raises(ScaleError) as err:
                await scale.weigh()
            assert err.value.reason == reason
    await responder.stop()
    assert responder.commands == [b"W"] * 5
    port.unplug()


@pytest.mark.usefixtures("line_requests")
async def test_scale_polls_when_idle(tmp_path: Path) -> None:
    port = FakePort(tmp_path / "scale")
    responder = Responder(port, b"W", scripted(b"\x02000.000\r"))
    async with scale_on_pty(toledo(port, poll_interval=0.1)) as scale:
        await wait_for(lambda: len(responder.commands) >= 3)
        assert scale.status().last_frame_at is not None
    await responder.stop()
    port.unplug()


def test_a_toledo_byte_with_the_eighth_bit_set_reads_as_the_framer_reads_it() -> None:
    # Found by the 5000-example fuzz run: the framer masks 0x82 to STX, the parser did not,
    # so noise the parser called "no STX" was a weight on the line.
    assert parse_toledo(b"\x820").kg == Decimal("0.000")
    assert parse_toledo(b"\x82001.250").kg == Decimal("1.250")


# --- what a scale says of itself (the estate report) ------------------------------------


@pytest.mark.parametrize(
    ("command", "frame", "text"),
    [
        ("I2", b'I2 A "WMS404C-L/01 410.0 g"', "WMS404C-L/01 410.0 g"),
        ("I2", b'I2 A "ICS469" "60.18 kg"', "ICS469 60.18 kg"),  # parts quoted apart
        ("I3", b'I3 A "2.10 10.28.0.493.142"', "2.10 10.28.0.493.142"),
        ("I4", b'I4 A "B443456789"', "B443456789"),
        ("I4", b"I4 I", None),  # not executable now
        ("I4", b'I4 A "4111 1111 1111 1111"', "************1111"),  # published: masked
        ("I2", b'I2 A "' + b"X" * 80 + b'"', "X" * 64),
    ],
)
def test_mtsics_inquiry_replies(command: str, frame: bytes, text: str | None) -> None:
    assert parse_inquiry(command, frame) == text


@pytest.mark.parametrize("frame", [b"ES", b"S S 1.0 kg", b'I3 A "x"', b"\xff\xfe", b"I2 A"])
def test_mtsics_inquiry_answered_otherwise(frame: bytes) -> None:
    with pytest.raises(NotAnInquiryReply):
        parse_inquiry("I2", frame)


async def test_mtsics_scale_says_what_it_is_at_connection_and_its_state_never_its_weight(
    tmp_path: Path,
) -> None:
    port = FakePort(tmp_path / "scale")
    responder = Responder(
        port, b"\r\n", mtsics_answers(scripted(b"S S      0.000 kg\r\n", b"S +\r\n"))
    )
    async with scale_on_pty(mtsics(port)) as scale:
        await wait_for(lambda: scale.status().identity is not None)
        assert scale.status().identity == {
            "model": "WMS404C-L/01 410.0 g",
            "firmware": "2.10 10.28.0.493.142",
            "serial_number": "B443456789",
        }
        assert responder.commands[:3] == [b"I2\r\n", b"I3\r\n", b"I4\r\n"]
        assert await scale.weigh() == Decimal(0)
        status = scale.status()
        assert (status.reading, status.zero, status.stable) == ("ok", True, True)
        with pytest.raises(ScaleError):
            await scale.weigh()
        status = scale.status()
        assert (status.reading, status.zero, status.stable) == ("overload", None, False)
        assert status.frames == 2  # readings; the inquiries' answers are not counted
    await responder.stop()
    port.unplug()


@pytest.mark.parametrize("answer", [b"ES\r\n", b""])  # a scale without inquiries; a silent one
async def test_mtsics_scale_without_inquiries_is_weighed_all_the_same(
    tmp_path: Path, answer: bytes
) -> None:
    port = FakePort(tmp_path / "scale")

    def reply(command: bytes) -> bytes:
        return answer if command.startswith(b"I") else b"S S 1.5 kg\r\n"

    responder = Responder(port, b"\r\n", reply)
    async with scale_on_pty(mtsics(port, reply_timeout=0.5)) as scale:
        async with asyncio.timeout(3):
            assert await scale.weigh() == Decimal("1.500")
        assert scale.status().identity == {} and scale.status().up
    await responder.stop()
    assert [c for c in responder.commands if c.startswith(b"I")] == [b"I2\r\n"]  # asked once
    port.unplug()
