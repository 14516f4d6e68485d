"""Fuzzing the serial devices: framing, scanner frames, MT-SICS and Toledo 8217 replies.

The parsers are fuzzed directly (many examples); then binary noise goes down real
pseudo-terminals, the test playing the device as tests/device_support.py does, and the valid
frames around the noise must still come through with the device staying up. A frame that
is not a scan or reading is counted and dropped; nothing a device sends may stop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import termios
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from stdnum import ean

from tests.device_support import FakePort, Responder, mtsics_answers, name, running, wait_for
from tests.fuzz_support import FUZZ, TIMEOUT, Loop, ascii_card_numbers, fuzz
from tillstream_edge.devices.config import MtSicsConfig, Toledo8217Config
from tillstream_edge.devices.link import Framer
from tillstream_edge.devices.mtsics import MtSicsScale
from tillstream_edge.devices.mtsics import parse_reply as parse_mtsics
from tillstream_edge.devices.scale import BadReply, Reading, Reply, Scale
from tillstream_edge.devices.scanner import ControlScan, Rejected, Scan, decode_scan
from tillstream_edge.devices.toledo import Toledo8217Scale
from tillstream_edge.devices.toledo import parse_reply as parse_toledo

pytestmark = pytest.mark.timeout(TIMEOUT)

# --- parsers, directly ----------------------------------------------------------------------

terminators = st.sampled_from([b"\r", b"\n", b"\r\n"])


@FUZZ
@given(
    term=terminators,
    max_len=st.integers(16, 64),
    noise=st.lists(st.binary(max_size=200), max_size=5),
    valid=st.binary(min_size=1, max_size=16).filter(lambda b: b"\r" not in b and b"\n" not in b),
)
def test_framer_bounds_every_frame_and_recovers_after_noise(
    term: bytes, max_len: int, noise: list[bytes], valid: bytes
) -> None:
    framer = Framer(term, max_len)
    frames: list[bytes] = []
    for chunk in [*noise, term + valid + term]:
        got, overlong = framer.feed(chunk)
        assert overlong >= 0
        frames += got
    assert all(len(f) <= max_len and term not in f for f in frames)
    assert frames and frames[-1] == valid, "the valid frame after noise was lost"


scanner_text = st.text(
    st.sampled_from("0123456789]EeCdIQ()ABC-./ \x1d"), max_size=60
) | st.sampled_from([" ]", "]", "]E", "]C1", "]d2\x1d", "]E0" + "9" * 60, "\x1d" * 5])


@FUZZ
@given(frame=st.binary(max_size=300) | scanner_text.map(str.encode))
def test_any_scanner_frame_is_a_scan_or_rejected_with_a_reason(frame: bytes) -> None:
    try:
        scan: Scan | ControlScan | Rejected = decode_scan(
            frame, prefix="", controls=frozenset({"RECEIVE-END"})
        )
    except Rejected as rejected:
        scan = rejected
    if isinstance(scan, Rejected):
        assert scan.reason in {"noise", "not_gtin", "bad_check_digit", "bad_prefix", "card_number"}
        text = frame.decode("latin-1").strip("\r\n")
        if len(text) >= 6:
            assert text not in scan.detail  # logs never carry what was scanned
    elif isinstance(scan, Scan):
        assert ean.is_valid(scan.gtin) and len(scan.gtin) in (8, 12, 13, 14)
    else:
        assert scan.code == "RECEIVE-END"


@FUZZ
@given(card=ascii_card_numbers, aim=st.sampled_from(["", "]E0", "]C1", "]I1", "]d2", "]Q3"]))
def test_a_card_number_on_the_scanner_line_is_refused_as_one(
    card: tuple[str, str], aim: str
) -> None:
    digits, written = card
    with pytest.raises(Rejected) as refused:
        decode_scan(f"{aim}{written}".encode())
    assert refused.value.reason == "card_number", refused.value.detail
    assert digits not in refused.value.detail and written not in refused.value.detail


def check_reply(parse: Any, frame: bytes) -> Reply | None:
    """The reply, or None for a BadReply; any other exception fails the test."""
    try:
        reply: Reply | BadReply = parse(frame)
    except BadReply as bad:
        reply = bad
    if isinstance(reply, BadReply):
        assert reply.reason and reply.detail
        return None
    assert isinstance(reply.reading, Reading)
    if reply.kg is not None:
        assert isinstance(reply.kg, Decimal) and reply.kg.as_tuple().exponent == -3
        assert abs(reply.kg) < 10**12  # fits the stock schema's decimal(15, 3)
    return reply


numbers = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.text("0123456789.-+eE_", max_size=40),
    st.sampled_from(["1E+30", "9" * 40, "1e999999999", "-0", "0E+100", "1_0", "sNaN"]),
)


@FUZZ
@given(
    frame=st.binary(max_size=100)
    | st.builds(
        lambda s, n, u: f"{s} {n} {u}".encode(),
        st.sampled_from(["S S", "S D", "SI S", "S", "ES", "S I"]),
        numbers,
        st.sampled_from(["kg", "g", "mg", "lb", "KG", ""]),
    )
)
def test_any_mtsics_reply_is_a_reading_or_a_bad_reply(frame: bytes) -> None:
    check_reply(parse_mtsics, frame)


@FUZZ
@given(
    frame=st.binary(max_size=100)
    | st.builds(lambda n: b"\x02" + n.encode(), numbers)
    | st.builds(lambda b: b"\x02?" + b, st.binary(max_size=3)),
    unit=st.sampled_from(["kg", "g"]),
)
def test_any_toledo_reply_is_a_reading_or_a_bad_reply(frame: bytes, unit: str) -> None:
    check_reply(lambda f: parse_toledo(f, unit), frame)


# --- over real pseudo-terminals -------------------------------------------------------------

_counter = itertools.count(1)


def new_gtin() -> str:
    body = f"20{next(_counter):010d}"  # GTIN-13, restricted-circulation prefix: never in noise
    return body + ean.calc_check_digit(body)


@dataclass
class ScannerRig:
    loop: Loop
    port: FakePort
    device: str
    service: Any
    events: asyncio.Queue[dict[str, Any]]


@pytest.fixture(scope="module")
def scanner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScannerRig]:
    loop = Loop()
    port = FakePort(tmp_path_factory.mktemp("scanner") / "tty")
    device = name("fuzz-scan")
    devices = {device: {"protocol": "scanner", "port": str(port.link), "max_frame": 128}}
    context = running(devices)
    service, events = loop.run(context.__aenter__())
    loop.run(wait_for(lambda: service.status()[device].up))
    yield ScannerRig(loop, port, device, service, events)
    loop.run(context.__aexit__(None, None, None))
    port.unplug()
    loop.close()


@fuzz(40)
@given(noise=st.binary(max_size=400))
def test_scanner_noise_between_valid_scans_never_loses_them(
    scanner: ScannerRig, noise: bytes
) -> None:
    gtins = [new_gtin(), new_gtin()]
    before = scanner.service.status()[scanner.device]
    scanner.port.send(b"\r" + gtins[0].encode() + b"\r" + noise + b"\r" + gtins[1].encode() + b"\r")

    async def arrivals() -> list[str]:
        seen: list[str] = []
        while gtins[1] not in seen:
            seen.append((await scanner.events.get())["gtin"])
        return seen

    seen = scanner.loop.run(arrivals(), timeout=10)
    assert [g for g in seen if g in gtins] == gtins
    for other in (g for g in seen if g not in gtins):  # the noise held a real barcode
        assert other.encode() in noise
    status = scanner.service.status()[scanner.device]
    assert status.up and status.reconnects == before.reconnects
    assert status.frames >= before.frames + 2


@dataclass
class ScaleRig:
    loop: Loop
    scale: Scale
    task: asyncio.Task[Any]
    script: list[bytes]


@contextlib.contextmanager
def scale_rig(tmp: Path, protocol: str) -> Iterator[ScaleRig]:
    loop = Loop()
    port = FakePort(tmp / "tty")
    options = {"port": str(port.link), "poll_interval": 0, "reply_timeout": 1.0}
    scale: Scale
    if protocol == "mt-sics":
        scale = MtSicsScale(name("fuzz-mt"), MtSicsConfig(protocol="mt-sics", **options))
        end = b"\r\n"
    else:
        scale = Toledo8217Scale(
            name("fuzz-toledo"), Toledo8217Config(protocol="toledo-8217", **options)
        )
        end = b"W"
    script: list[bytes] = [b""]

    def answer(_command: bytes) -> bytes:
        return script.pop(0) if len(script) > 1 else script[0]

    async def start() -> tuple[asyncio.Task[Any], Responder]:
        task = asyncio.create_task(scale.run())
        responder = Responder(port, end, mtsics_answers(answer) if end == b"\r\n" else answer)
        await wait_for(lambda: scale.status().up)
        return task, responder

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(termios, "tcsetattr", _pty_tcsetattr)
        task, responder = loop.run(start())
        try:
            yield ScaleRig(loop, scale, task, script)
        finally:
            task.cancel()
            loop.run(responder.stop())
            with contextlib.suppress(asyncio.CancelledError):
                loop.run(task)
            port.unplug()
            loop.close()


_real_tcsetattr = termios.tcsetattr


def _pty_tcsetattr(fd: int, when: int, attrs: list[Any]) -> None:
    """Linux ptys cannot keep 7E1 (Toledo's line) and refuse it; a UART would accept it."""
    try:
        _real_tcsetattr(fd, when, attrs)
    except termios.error:
        pty = list(attrs)
        pty[2] = (pty[2] & ~(termios.CSIZE | termios.PARENB | termios.PARODD)) | termios.CS8
        _real_tcsetattr(fd, when, pty)


@pytest.fixture(scope="module")
def mtsics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScaleRig]:
    with scale_rig(tmp_path_factory.mktemp("mt"), "mt-sics") as rig:
        yield rig


@pytest.fixture(scope="module")
def toledo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScaleRig]:
    with scale_rig(tmp_path_factory.mktemp("toledo"), "toledo-8217") as rig:
        yield rig


weights = st.decimals(min_value=Decimal("0.001"), max_value=Decimal(999), places=3)
# Noise frames without the line's terminator bytes; Toledo masks bytes to seven bits.
mt_noise = st.binary(max_size=100).filter(lambda b: b"\r" not in b and b"\n" not in b)
toledo_noise = st.binary(max_size=100).filter(lambda b: not any(x & 0x7F == 0x0D for x in b))


def weigh_through_noise(rig: ScaleRig, noise: list[bytes], valid: bytes, end: bytes) -> Any:
    rig.script[:] = [b"".join(frame + end for frame in noise), valid]
    kg = rig.loop.run(rig.scale.weigh(), timeout=10)
    assert not rig.task.done(), "the scale's task died"
    assert rig.scale.status().up
    return kg


@fuzz(15)
@given(noise=st.lists(mt_noise, min_size=1, max_size=3), weight=weights)
def test_mtsics_noise_before_a_reply_is_dropped_and_the_weight_read(
    mtsics: ScaleRig, noise: list[bytes], weight: Decimal
) -> None:
    assume(all(check_reply(parse_mtsics, frame) is None for frame in noise))
    valid = f"S S {weight:>10} kg\r\n".encode()
    rejected = mtsics.scale.status().rejected
    assert weigh_through_noise(mtsics, noise, valid, b"\r\n") == weight
    assert mtsics.scale.status().rejected > rejected


@fuzz(15)
@given(noise=st.lists(toledo_noise, min_size=1, max_size=3), weight=weights)
def test_toledo_noise_before_a_reply_is_dropped_and_the_weight_read(
    toledo: ScaleRig, noise: list[bytes], weight: Decimal
) -> None:
    assume(all(check_reply(parse_toledo, frame) is None for frame in noise))
    valid = b"\x02" + f"{weight:07.3f}".encode() + b"\r"
    rejected = toledo.scale.status().rejected
    assert weigh_through_noise(toledo, noise, valid, b"\r") == weight
    assert toledo.scale.status().rejected > rejected


@pytest.mark.parametrize(
    ("protocol", "garbage"),
    [("mt-sics", b"S S 1E+30 kg\r\n"), ("toledo-8217", b"\x02" + b"9" * 40 + b"\r")],
)
def test_absurd_weights_are_rejected_not_fatal(
    tmp_path: Path, protocol: str, garbage: bytes
) -> None:
    """These crashed the scale's task (decimal.InvalidOperation) and with it every device."""
    valid = b"S S 1.500 kg\r\n" if protocol == "mt-sics" else b"\x02001.500\r"
    with scale_rig(tmp_path, protocol) as rig:
        rig.script[:] = [garbage, valid]
        assert rig.loop.run(rig.scale.weigh(), timeout=10) == Decimal("1.500")
        assert not rig.task.done() and rig.scale.status().up
        assert rig.scale.status().rejected == 1
