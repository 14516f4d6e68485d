"""The estate's parts on their own: the report's size and shape, the tokens in force, the
tills' book, the live settings and the desired state's copy (no Kafka, no process)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.estate_support import desired
from tillstream.core.codec import AvroCodec
from tillstream.core.records import utcnow
from tillstream.core.topics import estate_key
from tillstream_edge.auth import TillTokens
from tillstream_edge.devices.link import DeviceStatus
from tillstream_edge.estate.access import TillAccess
from tillstream_edge.estate.db import AppliedRow, EstateDb
from tillstream_edge.estate.desired_copy import DesiredCopy, RawRecord
from tillstream_edge.estate.report import EdgeFacts, build_report, encode_report
from tillstream_edge.estate.tills import MAX_TILLS, Condition, Tills, TillState, software_of
from tillstream_edge.live_settings import LiveSettings, Tunables
from tillstream_edge.outbox import Outbox, OutboxEvent

OWN = Tunables("INFO", timedelta(days=30), timedelta(hours=1))
IDENTITY = {
    "model": "WMS404C-L/01 410.0 g",
    "firmware": "2.10 10.28.0.493.142",
    "serial_number": "B443456789",
}


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def facts(**changes: object) -> EdgeFacts:
    values: dict[str, object] = {
        "version": "0.1.0",
        "timezone": "Europe/Berlin",
        "started_at": 1_790_000_000.0,
        "clock_skew_ms": -12,
        "backlog": None,
        "masterdata_caught_up_at": 1_790_000_100.0,
        "disk_free_bytes": 120 * 1024**3,
        "last_publish_at": 1_790_000_200.0,
        "kafka_connected": True,
        "live": OWN,
        **changes,
    }
    return EdgeFacts(**values)  # type: ignore[arg-type]


def store_of(tills: int, scanners: int, scales: int) -> tuple[dict[str, DeviceStatus], Tills]:
    """A busy store: every till posted and reported two conditions; every device is up, the
    scales said what they are."""
    now = utcnow()
    devices = {}
    for n in range(scanners):
        name = f"scanner-{n + 1}"
        devices[name] = DeviceStatus(
            name, "scanner", f"/dev/serial/by-id/usb-Honeywell_1900-if00-port{n}", up=True,
            connected_since=now, last_frame_at=now, frames=18_000, rejected=3, outages=1,
        )  # fmt: skip
    for n in range(scales):
        name = f"scale-{n + 1}"
        devices[name] = DeviceStatus(
            name, "mt-sics", f"/dev/serial/by-id/usb-METTLER_TOLEDO-if00-port{n}", up=True,
            connected_since=now, last_frame_at=now, frames=52_000, reading="ok", zero=True,
            stable=True, identity=IDENTITY,
        )  # fmt: skip
    book = Tills()
    for n in range(tills):
        till = f"T{n + 1:02d}"
        book.seen(till, receipt=f"{n + 1:04d}-000{n + 4711}", software="PosVendor Till/4.2.1")
        book.status(
            till,
            [
                Condition("printer_paper", "WARNING", "low", 1_790_000_000.0),
                Condition("pin_pad", "OK", None, None),
            ],
        )
    return devices, book


def test_a_heartbeat_of_a_store_with_20_tills_and_6_devices_is_a_few_kilobytes(
    codec: AvroCodec,
) -> None:
    devices, book = store_of(tills=20, scanners=2, scales=4)
    applied = [AppliedRow("till/T03", 4, True, None, 1_790_000_000.0)]
    report = build_report(
        store_id="S042",
        edge_id="5f0e1c3a-7a51-4b8e-9b1e-2f4f2d6c1a90",
        reason="HEARTBEAT",
        heartbeat_s=30,
        sent_at=utcnow(),
        edge=facts(),
        devices=devices,
        tills=book.states(),
        applied=applied,
    )
    size = len(encode_report(codec, report))
    everything = [AppliedRow(f"till/T{n:02d}", 9, True, None, 0.0) for n in range(1, 21)]
    everything += [AppliedRow(f"device/{d}", 9, False, "port /dev/ttyUSB9 does not exist", 0.0)
                   for d in devices]  # fmt: skip
    busiest = len(encode_report(codec, {**report, "applied": build_report(
        store_id="S042", edge_id="x", reason="HEARTBEAT", heartbeat_s=30, sent_at=utcnow(),
        edge=facts(), devices={}, tills=[], applied=everything)["applied"]}))  # fmt: skip
    print(
        f"\nheartbeat of 20 tills and 6 devices: {size} bytes ({busiest} with 26 targets applied)"
    )
    assert size < 4096 and busiest < 6144


def test_a_report_decodes_as_built_with_the_outbox_as_counted(
    codec: AvroCodec, tmp_path: Path
) -> None:
    async def backlog() -> object:
        outbox = Outbox(tmp_path / "outbox.db")
        await outbox.open()
        try:
            await outbox.append(
                [OutboxEvent(f"id-{n}", "sale", "tillstream.sales", b"S1", b"x" * 100, "http")
                 for n in range(3)]
            )  # fmt: skip
            return await outbox.backlog()
        finally:
            await outbox.close()

    counted = asyncio.run(backlog())
    devices, book = store_of(tills=1, scanners=1, scales=1)
    sent_at = datetime(2026, 11, 25, 9, 15, tzinfo=UTC)
    report = build_report(
        store_id="S1", edge_id="e", reason="CHANGE", heartbeat_s=30, sent_at=sent_at,
        edge=facts(backlog=counted, kafka_connected=False), devices=devices,
        tills=book.states(), applied=[],
    )  # fmt: skip
    decoded = codec.decode(encode_report(codec, report))
    assert decoded.event == "estate_report"
    record = decoded.record
    assert record["sent_at"] == sent_at and record["reason"] == "CHANGE"
    edge = record["edge"]
    assert edge["outbox_depth"] == 3 and edge["outbox_unsent_bytes"] > 300
    assert edge["oldest_unsent_at"] is not None and edge["kafka_connected"] is False
    assert edge["clock_skew_ms"] == -12 and edge["max_future_seconds"] == 3600
    scale = next(d for d in record["devices"] if d["kind"] == "SCALE")
    assert (scale["model"], scale["scale_status"], scale["scale_zero"]) == (
        "WMS404C-L/01 410.0 g",
        "ok",
        True,
    )
    scanner = next(d for d in record["devices"] if d["kind"] == "SCANNER")
    assert scanner["communication_errors"] == 4 and scanner["scale_status"] is None
    (till,) = record["tills"]
    assert till["conditions"][0]["since"] == datetime.fromtimestamp(1_790_000_000, UTC)


# -- who may post ---------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_a_rotation_takes_the_new_token_and_the_old_one_until_its_time() -> None:
    clock = Clock()
    file = TillTokens({"T01": digest("old-token-of-T01"), "T02": digest("token-of-T02-xx")})
    access = TillAccess(file, Tills(), clock)
    new = hashlib.sha256(b"new-token-of-T01").hexdigest()
    access.rotate("T01", new, None, previous_until=clock.now + 10)
    assert access.till_of("new-token-of-T01") == "T01"
    assert access.till_of("old-token-of-T01") == "T01"
    clock.now += 10
    assert access.till_of("old-token-of-T01") is None  # its time is over
    assert access.till_of("new-token-of-T01") == "T01"
    assert access.till_of("token-of-T02-xx") == "T02"

    # Head office names the previous token itself; a till the file does not name is a till.
    explicit = hashlib.sha256(b"handed-out-before").hexdigest()
    access.rotate("T09", new.replace(new[0], "f", 1), explicit, previous_until=clock.now + 1)
    assert access.till_of("handed-out-before") == "T09" and access.role_of("T09") == "tills"

    access.unrotate("T01")  # withdrawn: the file decides again
    assert access.till_of("old-token-of-T01") == "T01"
    assert access.till_of("new-token-of-T01") is None


@pytest.mark.parametrize(
    ("tokens", "token", "message"),
    [
        (None, "a" * 64, "this edge takes no tokens"),
        ("file", "not-hex", "token_sha256: not a SHA-256"),
        ("file", hashlib.sha256(b"token-of-T02-xx").hexdigest(), "another till's or client's"),
    ],
)
def test_a_rotation_the_edge_cannot_take_changes_nothing(
    tokens: str | None, token: str, message: str
) -> None:
    file = TillTokens({"T01": digest("old-token-of-T01"), "T02": digest("token-of-T02-xx")})
    access = TillAccess(file if tokens else None, Tills())
    with pytest.raises(ValueError, match=message) as err:
        access.rotate("T01", token, None, None)
    assert "token-of" not in str(err.value) and hashlib.sha256(b"x").hexdigest() not in str(
        err.value
    )
    if tokens:
        assert access.till_of("old-token-of-T01") == "T01"


# -- the tills' book -----------------------------------------------------------------------


def test_the_book_refuses_suspended_tills_counts_and_keeps_it_across_a_restart() -> None:
    changes: list[int] = []
    book = Tills(on_change=lambda: changes.append(1))
    book.seen("T01", receipt="4711", software="Till/1")
    assert book.refusal("T01") is None and not book.any_refused
    book.set_lifecycle("T01", "SUSPENDED")
    refusal = book.refusal("T01")
    assert refusal is not None and refusal.reason == "suspended"
    assert refusal.message == "till T01 is suspended by head office"
    book.refusal("T01")
    kept = book.take_dirty()
    assert book.take_dirty() == {}  # written once
    again = Tills()
    again.load(kept)
    (state,) = again.states()
    assert (state.lifecycle, state.refused, state.last_receipt) == ("SUSPENDED", 2, "4711")
    assert again.any_refused
    again.set_lifecycle("T01", "ACTIVE")
    assert again.refusal("T01") is None and again.states()[0].refused == 0
    assert TillState.from_json(state.to_json()) == state
    assert changes  # a new till, a lifecycle: each a change to report


def test_the_book_keeps_a_bounded_number_of_tills() -> None:
    book = Tills()
    for n in range(MAX_TILLS + 5):
        book.seen(f"T{n}")
    assert len(book.states()) == MAX_TILLS
    book.set_lifecycle("T-stolen", "SUSPENDED")  # head office's are kept all the same
    assert book.refusal("T-stolen") is not None


@pytest.mark.parametrize(
    ("header", "kept"),
    [
        ("PosVendor Till/4.2.1", "PosVendor Till/4.2.1"),
        ("  Kasse\t9.1\r\n(de) ", "Kasse 9.1 (de)"),
        ("x" * 500, "x" * 128),
        ("build 4111 1111 1111 1111", "build ************1111"),
        ("\x00\x01", None),
        (None, None),
    ],
)
def test_the_software_header_is_bounded_and_printable(header: str | None, kept: str | None) -> None:
    assert software_of(header) == kept


# -- the settings head office may change -----------------------------------------------------


def test_live_settings_change_and_a_wrong_value_changes_nothing() -> None:
    live = LiveSettings(Tunables("WARNING", timedelta(days=30), timedelta(hours=1)))
    now = datetime.now(UTC)
    assert live.problem(now + timedelta(minutes=10), now) is None
    live.apply(None, None, 60)
    assert live.in_force.max_future == timedelta(seconds=60)
    assert live.problem(now + timedelta(minutes=10), now) is not None
    for wrong in ({"log_level": "LOUD"}, {"max_event_age_s": 0}, {"max_future_s": -1},
                  {"max_event_age_s": 10**15}):  # fmt: skip
        with pytest.raises(ValueError, match=r"log_level|max_event_age_seconds|max_future"):
            live.apply(**wrong)  # type: ignore[arg-type]
        assert live.in_force.max_future == timedelta(seconds=60)
    live.reset()
    assert live.in_force == live.own


# -- the desired state's copy -----------------------------------------------------------------


async def test_the_copy_keeps_this_stores_records_and_reads_them_back(
    codec: AvroCodec, tmp_path: Path
) -> None:
    db = EstateDb(tmp_path / "outbox.estate.db")
    copy = DesiredCopy(db, "S1", codec)
    copy.load(await db.open())

    def raw(offset: int, store: str, target: str, value: bytes | None) -> RawRecord:
        return RawRecord(0, offset, estate_key(store, target), value)

    suspended = codec.encode(
        "estate_desired", desired("S1", "till/T01", 1, till={"lifecycle": "SUSPENDED"})
    )
    settings = {"settings_json": json.dumps({"protocol": "scanner", "port": "/dev/x"})}
    device = codec.encode("estate_desired", desired("S1", "device/d1", 1, device=settings))
    batch = [
        raw(0, "S1", "till/T01", suspended),
        raw(1, "S2", "till/T01", suspended),  # another store's
        raw(2, "S1", "device/d1", device),
        raw(3, "S1", "till/T02", suspended),  # its content names another target: passed over
        RawRecord(0, 4, b"not json", suspended),
        raw(5, "S1", "edge", codec.encode("estate_desired", desired("S1", "edge", 1, edge={}))),
        raw(6, "S1", "edge", None),  # deleted in the same batch: no change
    ]  # fmt: skip
    assert await copy.apply(batch) == {"till/T01", "device/d1"}
    assert set(copy.records) == {"till/T01", "device/d1"}
    assert await copy.apply([raw(7, "S1", "till/T01", suspended)]) == set()  # the same again
    await db.close()

    reopened = EstateDb(tmp_path / "outbox.estate.db")
    again = DesiredCopy(reopened, "S1", codec)
    again.load(await reopened.open())
    assert set(again.records) == {"till/T01", "device/d1"}
    assert again.records["till/T01"]["till"]["lifecycle"] == "SUSPENDED"
    assert again.positions == {0: 8}

    await again.caught_up(1_000.0)
    await again.start_rebuild()  # read again from the beginning: only T01 is there now
    assert await again.apply([raw(0, "S1", "till/T01", suspended)]) == set()
    assert await again.caught_up(2_000.0) == {"device/d1"}  # deleted while away
    assert set(again.records) == {"till/T01"}
    await reopened.close()
