"""Serial devices: the devices file, scanner frames, and the pty helpers the device tests share.

The device side runs on real pseudo-terminals: the service opens the slave path (through a
symlink, so a test can unplug and replug), the test plays the device on the master end.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from tests.device_support import FakePort, metric, name, next_event, running, wait_for
from tillstream_edge.devices import DeviceConfigError, load_devices
from tillstream_edge.devices.config import MtSicsConfig, ScannerConfig, Toledo8217Config
from tillstream_edge.devices.link import Framer
from tillstream_edge.devices.scanner import ControlScan, Rejected, Scan, Scanner, decode_scan
from tillstream_edge.tomlfile import read_toml

DATA = Path(__file__).parent / "data"


# --- the devices file -------------------------------------------------------------------


def test_example_file_loads_with_protocol_defaults() -> None:
    config = load_devices(DATA / "devices.toml")
    scanner = config.devices["goods-in-scanner"]
    assert isinstance(scanner, ScannerConfig)
    assert (scanner.terminator_bytes, scanner.scale, scanner.end_code) == (
        b"\r\n",
        "goods-in-scale",
        "RECEIVE-END",
    )
    shelf = config.devices["shelf-scanner"]
    assert isinstance(shelf, ScannerConfig) and shelf.end_code == "COUNT-END"
    mt = config.devices["goods-in-scale"]
    assert isinstance(mt, MtSicsConfig)
    assert (mt.baudrate, mt.bytesize, mt.parity, mt.stopbits) == (9600, 8, "N", 1)
    toledo = config.devices["deli-scale"]
    assert isinstance(toledo, Toledo8217Config)
    assert (toledo.baudrate, toledo.bytesize, toledo.parity, toledo.stopbits) == (9600, 7, "E", 1)
    assert config.items["4006381333931"] == "SKU-MILK-1L"


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (
            '[devices.s1]\nprotocol = "mt-sics"\nport = "/dev/x"\nparity = "X"',
            "device 's1': field 'parity'",
        ),
        ('[devices.s1]\nprotocol = "nci"\nport = "/dev/x"', "device 's1': field 'protocol'"),
        ('[devices.s1]\nport = "/dev/x"', "device 's1': field 'protocol'"),
        (
            '[devices.s1]\nprotocol = "scanner"\nport = "/dev/x"\nterminator = "ETX"',
            "device 's1': field 'terminator'",
        ),
        (
            '[devices.s1]\nprotocol = "scanner"\nport = "/dev/x"\nbaud = 9600',
            "device 's1': field 'baud': Extra inputs are not permitted",
        ),
        (
            '[devices.s1]\nprotocol = "scanner"\nport = "/dev/x"\nscale = "nope"',
            "device 's1': field 'scale': 'nope' is not a scale device",
        ),
        (
            '[devices.a]\nprotocol = "scanner"\nport = "/dev/x"\n'
            '[devices.b]\nprotocol = "mt-sics"\nport = "/dev/x"',
            "device 'b': port /dev/x is already used by 'a'",
        ),
        (
            '[devices.s1]\nprotocol = "mt-sics"\nport = "/dev/x"\nstopbits = 3',
            "device 's1': field 'stopbits': stop bits must be 1, 1.5 or 2",
        ),
        ('[items]\n"4006381333932" = "SKU-X"', "items: item '4006381333932'"),
    ],
)
def test_config_errors_name_device_and_field(tmp_path: Path, toml: str, expected: str) -> None:
    path = tmp_path / "devices.toml"
    path.write_text(toml)
    with pytest.raises(DeviceConfigError) as err:
        load_devices(path)
    assert expected in str(err.value)
    assert str(err.value).startswith(str(path))


def test_config_file_missing_or_not_toml(tmp_path: Path) -> None:
    with pytest.raises(DeviceConfigError, match="cannot read devices file"):
        load_devices(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[devices\n")
    with pytest.raises(DeviceConfigError, match="not valid TOML"):
        load_devices(bad)


def test_the_edge_reads_its_toml_files_one_way(tmp_path: Path) -> None:
    # Devices and till tokens files: the same reader, the caller's error, the file named.
    class FileError(ValueError):
        pass

    with pytest.raises(FileError, match=r"absent\.toml: cannot read the file: "):
        read_toml(tmp_path / "absent.toml", "the file", FileError)
    bad = tmp_path / "bad.toml"
    bad.write_text('[items]\n"x" = \n')
    with pytest.raises(FileError, match=r"bad\.toml: not valid TOML: "):
        read_toml(bad, "the file", FileError)
    good = tmp_path / "good.toml"
    good.write_text('[items]\n"4006381333931" = "SKU-1"\n')
    assert read_toml(good, "the file", FileError) == {"items": {"4006381333931": "SKU-1"}}


# --- scanner frames ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "symbology", "gtin"),
    [
        (b"4006381333931", None, "4006381333931"),
        (b"]E04006381333931", "]E0", "4006381333931"),
        (b"]E496385074", "]E4", "96385074"),
        (b"]E0036000291452", "]E0", "036000291452"),
        (b"]I110012345678902", "]I1", "10012345678902"),
        (b"]d201040063813339311719123110ABC", "]d2", "4006381333931"),
    ],
)
def test_decode_scan_with_and_without_aim_ids(
    frame: bytes, symbology: str | None, gtin: str
) -> None:
    scan = decode_scan(frame)
    assert isinstance(scan, Scan)
    assert (scan.symbology, scan.gtin) == (symbology, gtin)


def test_decode_gs1_128_keeps_group_separators() -> None:
    scan = decode_scan(b"]C1010400638133393110LOT7\x1d21SER9\x1d3103000750")
    assert isinstance(scan, Scan) and scan.gs1 is not None
    assert scan.data == "010400638133393110LOT7\x1d21SER9\x1d3103000750"
    fields = {e.ai.ai: e.value for e in scan.gs1.element_strings}
    assert fields == {"01": "04006381333931", "10": "LOT7", "21": "SER9", "3103": "000750"}


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"4006381333932", "bad_check_digit"),
        (b"]C10104006381333932", "bad_check_digit"),
        (b"\x00\xff\xfe\x13", "noise"),
        (b"40063\x0781333931", "noise"),
        (b"HELLO WORLD", "not_gtin"),
        (b"]E012345", "not_gtin"),
    ],
)
def test_decode_rejects_with_reason(frame: bytes, reason: str) -> None:
    with pytest.raises(Rejected) as err:
        decode_scan(frame)
    assert err.value.reason == reason
    assert "4006" not in err.value.detail  # details never carry the scanned content


def test_decode_prefix_and_control_codes() -> None:
    scan = decode_scan(b"#]C0COUNT-END", prefix="#", controls=frozenset({"COUNT-END"}))
    assert isinstance(scan, ControlScan) and scan.code == "COUNT-END"
    with pytest.raises(Rejected, match="prefix"):
        decode_scan(b"4006381333931", prefix="#")


def test_framer_bounds_overlong_lines_and_joins_split_terminators() -> None:
    framer = Framer(b"\r\n", max_len=16)
    assert framer.feed(b"123\r") == ([], 0)
    assert framer.feed(b"\n456") == ([b"123"], 0)
    frames, overlong = framer.feed(b"x" * 100)
    assert (frames, overlong) == ([], 1)
    assert framer.feed(b"y" * 100 + b"\r\nok\r\n") == ([b"ok"], 0)
    assert framer.feed(b"z" * 17 + b"\r\n") == ([], 1)


@pytest.mark.parametrize("terminator", ["CR", "LF", "CRLF"])
async def test_scanner_over_pty_each_terminator(tmp_path: Path, terminator: str) -> None:
    """Real frames, AIM ids and GS1-128 over a pty reach the handler intact."""
    end = {"CR": b"\r", "LF": b"\n", "CRLF": b"\r\n"}[terminator]
    port = FakePort(tmp_path / "scanner")
    scans: list[Scan | ControlScan] = []

    async def on_scan(scan: Scan | ControlScan) -> None:
        scans.append(scan)

    dev = name("scan")
    cfg = ScannerConfig(protocol="scanner", port=str(port.link), terminator=terminator)
    scanner = Scanner(dev, cfg, on_scan)
    task = asyncio.create_task(scanner.run())
    try:
        await wait_for(lambda: scanner.status().up)
        port.send(b"]E04006381333931" + end + b"]E496385074" + end)
        port.send(b"]C1010400638133393110LOT7\x1d21SER9" + end)
        port.send(b"RECEIVE-END" + end)
        await wait_for(lambda: len(scans) == 4)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        port.unplug()
    assert [s.gtin for s in scans[:3] if isinstance(s, Scan)] == [
        "4006381333931",
        "96385074",
        "4006381333931",
    ]
    gs1 = scans[2]
    assert isinstance(gs1, Scan) and gs1.data.endswith("10LOT7\x1d21SER9")
    assert isinstance(scans[3], ControlScan)
    assert metric("tillstream_edge_device_frames_total", device=dev) == 4


async def test_scanner_survives_noise_bad_check_digits_and_overlong_lines(tmp_path: Path) -> None:
    port = FakePort(tmp_path / "scanner")
    dev = name("noisy")
    devices = {dev: {"protocol": "scanner", "port": str(port.link), "max_frame": 64}}
    async with running(devices, items={"4006381333931": "SKU-MILK-1L"}) as (service, events):
        await wait_for(lambda: service.status()[dev].up)
        port.send(bytes(range(256)) * 4)  # binary noise, terminators included
        port.send(b"\r4006381333932\r")  # bad check digit
        port.send(b"9" * 5000 + b"\r")  # overlong: dropped, buffer stays bounded
        port.send(b"]E04006381333931\r")
        event = await next_event(events)
        assert (event["sku"], event["gtin"], event["quantity"]) == (
            "SKU-MILK-1L",
            "4006381333931",
            1,
        )
        assert service.status()[dev].up
    rejected = "tillstream_edge_device_rejected_total"
    assert metric(rejected, device=dev, reason="bad_check_digit") == 1
    assert metric(rejected, device=dev, reason="overlong") >= 1  # the 5000 bytes, and noise
    assert metric(rejected, device=dev, reason="noise") >= 1
    assert events.empty()
    port.unplug()
