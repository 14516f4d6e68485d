"""POSLog through the edge: HTTP, the drop folder and the backfill import, on a real broker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from producers.poslog import parse_poslog
from tests.edge_support import live_poslog
from tillstream.codec import AvroCodec
from tillstream.kafka import make_consumer
from tillstream.settings import Settings
from tillstream.topics import PAYMENTS, SALES, TILL_EVENTS

pytestmark = pytest.mark.usefixtures("kafka_topics")
DATA = Path(__file__).parent / "data" / "poslog"
BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<POSLog><Transaction><RetailStoreID>&lol3;</RetailStoreID></Transaction></POSLog>"""


async def events_of(
    settings: Settings, codec: AvroCodec, store: str, want: set[str], timeout: float = 60
) -> tuple[Counter[str], list[bytes]]:
    """Event ids (with counts) and raw values of ``store`` on sales, payments, till events."""
    consumer = make_consumer(
        settings, SALES.name, PAYMENTS.name, TILL_EVENTS.name, group_id=f"poslog-{time.time_ns()}"
    )
    await consumer.start()
    counts: Counter[str] = Counter()
    raw: list[bytes] = []
    try:
        async with asyncio.timeout(timeout):
            while not want <= set(counts):
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    for m in batch:
                        if m.key == store.encode():
                            counts[str(codec.decode(m.value).record["event_id"])] += 1
                            raw.append(m.value)
        for batch in (await consumer.getmany(timeout_ms=2000)).values():
            for m in batch:
                if m.key == store.encode():
                    counts[str(codec.decode(m.value).record["event_id"])] += 1
    finally:
        await consumer.stop()
    return counts, raw


def expected_ids(source: Path | bytes) -> set[str]:
    data = source.read_bytes() if isinstance(source, Path) else source
    return {str(r["event_id"]) for _, r in parse_poslog(data).events}


def live(name: str) -> bytes:
    """A sample as a live till sends it (see ``live_poslog``)."""
    return live_poslog((DATA / name).read_text()).encode()


async def test_poslog_over_http_is_converted_masked_and_idempotent(
    edge_factory: Any, settings: Settings, codec: AvroCodec
) -> None:
    file = live("v6_customer_card.xml")
    edge = edge_factory("100")
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
        first = await http.post(
            "/v1/poslog", content=file, headers={"content-type": "application/xml"}
        )
        again = await http.post("/v1/poslog", content=file)
        assert first.status_code == 202, first.text
        assert again.json() == first.json()  # a file sent twice: same answer
        bad = await http.post("/v1/poslog", content=b"<POSLog><Transaction>")
        assert bad.status_code == 422 and "poslog" in bad.text
        bomb = await http.post("/v1/poslog", content=BOMB)
        assert bomb.status_code == 422
    want = expected_ids(file)
    counts, raw = await events_of(settings, codec, "100", want)
    assert set(counts) == want and max(counts.values()) == 1
    blob = b"".join(raw)
    assert b"4111111111111111" not in blob and b"4111 1111 1111 1111" not in blob
    assert edge.metric("tillstream_edge_poslog_files_total", 'outcome="failed"') == 2


async def test_drop_folder_sets_bad_files_aside_and_goes_on(
    edge_factory: Any, settings: Settings, codec: AvroCodec, tmp_path: Path
) -> None:
    folder = tmp_path / "drop"
    folder.mkdir()
    edge = edge_factory("9", args=["--poslog-dir", str(folder)])
    (folder / "a-bomb.xml").write_bytes(BOMB)
    (folder / "b-broken.xml").write_bytes(b"<POSLog><Transaction><RetailStoreID>9</Retail")
    (folder / "c-good.xml").write_bytes(live("ncr_2x.xml"))
    old = time.time() - 10
    for p in folder.iterdir():
        os.utime(p, (old, old))
    want = expected_ids(live("ncr_2x.xml"))
    counts, _ = await events_of(settings, codec, "9", want)
    assert set(counts) == want
    async with asyncio.timeout(20):
        while not (folder / "processed" / "c-good.xml").exists():
            await asyncio.sleep(0.2)
    for name in ("a-bomb.xml", "b-broken.xml"):
        assert (folder / "rejected" / name).exists()
        reason = (folder / "rejected" / f"{name}.reason.txt").read_text()
        assert reason.strip()
    assert "DTD" in (folder / "rejected" / "a-bomb.xml.reason.txt").read_text()
    assert edge.metric("tillstream_edge_poslog_files_total", 'outcome="failed"') == 2
    # Its sign-on, sign-off and settlement are kept as till events, not skipped.
    assert edge.metric("tillstream_edge_events_accepted_total", 'event_type="till_event"') == 3


def test_import_is_resumable_and_publishes_nothing_twice(
    settings: Settings, codec: AvroCodec, tmp_path: Path
) -> None:
    archive = tmp_path / "archive"
    (archive / "2024" / "09").mkdir(parents=True)
    source = (DATA / "return_negative_qty.xml").read_bytes()
    (archive / "2024" / "09" / "day1.xml").write_bytes(source)
    (archive / "2024" / "09" / "copy-of-day1.xml").write_bytes(source + b"\n")  # same transactions
    env = {k: v for k, v in os.environ.items() if not k.startswith("TILLSTREAM_")}
    env["TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS"] = settings.kafka_bootstrap_servers
    command = [
        sys.executable,
        "-m",
        "tillstream",
        "edge",
        "import",
        str(archive),
        "--store",
        "300",
        "--outbox",
        str(tmp_path / "import.db"),
    ]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "2 file(s) imported" in first.stdout
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert "0 file(s) imported" in second.stdout and "2 already done" in second.stdout
    want = expected_ids(DATA / "return_negative_qty.xml")
    counts, _ = asyncio.run(events_of(settings, codec, "300", want))
    assert set(counts) == want
    assert max(counts.values()) == 1
