"""``tillstream fleet`` on a real broker: an estate file refused whole (nothing published)
naming each problem by store, target and field; only what changes published, each target's
version the one before plus one; ``set --clear`` a tombstone (and the next version one
more); ``rotate-token`` printing the token once and publishing only its hash; the estate
read from the service's database and through its API, plain lines when piped."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from tests.fleet_support import Harnessed, desired_records, fleet_service_http, report
from tillstream.cli import main
from tillstream.core.codec import AvroCodec
from tillstream.core.settings import Settings

pytestmark = pytest.mark.usefixtures("kafka_topics")


def cli(settings: Settings, *args: str) -> Result:
    env = {"TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers}
    return CliRunner().invoke(main, ["fleet", *args], env=env)


def records(settings: Settings, codec: AvroCodec, store: str) -> list[tuple[str, Any]]:
    return asyncio.run(desired_records(settings, codec, store))


def store_id() -> str:
    return f"F{uuid.uuid4().hex[:8].upper()}"


def test_a_bad_estate_file_is_refused_whole_naming_each_problem(
    settings: Settings, codec: AvroCodec, tmp_path: Path
) -> None:
    store = store_id()
    file = tmp_path / "estate.toml"
    file.write_text(
        f"""
[stores.{store}.tills.T01]
lifecycle = "suspended"

[stores.{store}.tills.T02]
lifecycle = "paused"

[stores.{store}.tills.T03]
lifecycle = "active"
token = "a-secret-in-a-file"

[stores.{store}.devices.scanner-1]
protocol = "scanner"

[stores.{store}.devices.scale-1]
protocol = "mt-sics"
port = "/dev/ttyUSB0"
baudrate = -1

[stores.{store}.devices.scale-2]
protocol = "mt-sics"
port = "/dev/ttyUSB5"

[stores.{store}.devices.scanner-2]
protocol = "scanner"
port = "/dev/ttyUSB5"
prefix = "4111 1111 1111 1111"

[stores.{store}.edge]
log_level = "LOUD"
max_event_age = "P99999D"

[stores.{store}.registers]
x = 1

[stores."bad store".edge]
log_level = "INFO"
"""
    )
    done = cli(settings, "apply", str(file))
    assert done.exit_code == 1, done.output
    out = done.output
    assert "nothing published; 10 problem(s)" in out, out
    for expected in (
        f"store {store}, till/T02: lifecycle: required, one of active, suspended, decommissioned",
        f"store {store}, till/T03: token: a till's token is never written down",
        f"store {store}, device/scanner-1: field 'port': Field required",
        f"store {store}, device/scale-1: field 'baudrate': Input should be greater than 0",
        f"store {store}, device/scanner-2: field 'prefix': looks like a card number",
        f"store {store}, device/scanner-2: port: already used by device scale-2",
        f"store {store}, edge: log_level: one of DEBUG, INFO, WARNING, ERROR",
        f"store {store}, edge: max_event_age: seconds or an ISO 8601 duration",
        f"store {store}: registers: not a table of a store",
        "store bad store: store id: a store id is 1-64 letters",
    ):
        assert expected in out, f"{expected!r} not in:\n{out}"
    assert "4111" not in out and "a-secret-in-a-file" not in out
    assert records(settings, codec, store) == []  # the good T01 neither: refused whole


def test_only_what_changes_is_published_each_version_one_more(
    settings: Settings, codec: AvroCodec, tmp_path: Path
) -> None:
    store = store_id()
    file = tmp_path / "estate.toml"
    estate = f"""
[stores.{store}.edge]
log_level = "warning"
max_event_age = "P7D"

[stores.{store}.tills.T01]
lifecycle = "active"

[stores.{store}.tills.T02]
lifecycle = "suspended"

[stores.{store}.devices.scanner-1]
protocol = "scanner"
port = "/dev/ttyUSB0"
prefix = "]E0"
"""
    file.write_text(estate)
    first = cli(settings, "apply", str(file))
    assert first.exit_code == 0, first.output
    assert sorted(first.output.splitlines()) == [
        f"published {store} device/scanner-1: version 1",
        f"published {store} edge: version 1",
        f"published {store} till/T01: version 1",
        f"published {store} till/T02: version 1",
    ]
    again = cli(settings, "apply", str(file))
    assert again.output.strip() == (
        "nothing to publish: head office's desired state already says this"
    )
    file.write_text(estate.replace('lifecycle = "suspended"', 'lifecycle = "active"'))
    dry = cli(settings, "apply", "--dry-run", str(file))
    assert dry.output.strip() == f"would publish {store} till/T02: version 2"
    changed = cli(settings, "apply", str(file))
    assert changed.output.strip() == f"published {store} till/T02: version 2"
    found = records(settings, codec, store)
    assert sorted((t, r["version"]) for t, r in found if r) == [
        ("device/scanner-1", 1), ("edge", 1), ("till/T01", 1), ("till/T02", 1), ("till/T02", 2),
    ]  # fmt: skip
    assert (found[-1][0], found[-1][1]["till"]["lifecycle"]) == ("till/T02", "ACTIVE")
    edge = next(r for t, r in found if t == "edge")
    assert edge["edge"] == {
        "log_level": "WARNING",
        "max_event_age_seconds": 7 * 86400,
        "max_future_seconds": None,
    }
    scanner = next(r for t, r in found if t == "device/scanner-1")
    assert json.loads(scanner["device"]["settings_json"]) == {
        "protocol": "scanner", "port": "/dev/ttyUSB0", "prefix": "]E0"
    }  # fmt: skip
    assert all(r["published_by"].endswith("(local)") for _, r in found if r)
    assert len({r["change_id"] for _, r in found if r}) == len(found)  # a unique id each


def test_set_changes_one_setting_and_clear_tombstones(settings: Settings, codec: AvroCodec) -> None:
    store = store_id()
    done = cli(settings, "set", "--store", store, "--edge", "--log-level", "WARNING")
    assert done.output.strip() == f"published {store} edge: version 1", done.output
    done = cli(settings, "set", "--store", store, "--edge", "--max-event-age", "P2D")
    assert done.output.strip() == f"published {store} edge: version 2"
    table = '{"protocol": "mt-sics", "port": "/dev/ttyUSB1"}'
    cli(settings, "set", "--store", store, "--device", "scale-1", "--settings-json", table)
    moved = cli(settings, "set", "--store", store, "--device", "scale-1", "--port", "/dev/ttyS0")
    assert moved.output.strip() == f"published {store} device/scale-1: version 2", moved.output
    cleared = cli(settings, "set", "--store", store, "--edge", "--clear")
    assert cleared.output.strip() == f"published {store} edge: cleared"
    twice = cli(settings, "set", "--store", store, "--edge", "--clear")
    assert twice.output.strip().startswith("nothing to publish")
    again = cli(settings, "set", "--store", store, "--edge", "--log-level", "ERROR")
    assert again.output.strip() == f"published {store} edge: version 3"  # after the tombstone
    found = records(settings, codec, store)
    edge = [(r["version"], r["edge"]) if r else None for t, r in found if t == "edge"]
    assert edge == [
        (1, {"log_level": "WARNING", "max_event_age_seconds": None, "max_future_seconds": None}),
        (2, {"log_level": "WARNING", "max_event_age_seconds": 172800, "max_future_seconds": None}),
        None,  # the tombstone: back to the store's own
        (3, {"log_level": "ERROR", "max_event_age_seconds": None, "max_future_seconds": None}),
    ]
    scale = [json.loads(r["device"]["settings_json"]) for t, r in found if t == "device/scale-1"]
    assert scale[-1] == {"protocol": "mt-sics", "port": "/dev/ttyS0"}
    wrong = cli(settings, "set", "--store", store, "--till", "T1", "--lifecycle", "lost")
    assert wrong.exit_code == 2 and "'lost' is not one of" in wrong.output


def test_rotate_token_prints_it_once_and_publishes_only_its_hash(
    settings: Settings, codec: AvroCodec
) -> None:
    store = store_id()
    cli(settings, "set", "--store", store, "--till", "T07", "--lifecycle", "suspended")
    first = cli(settings, "rotate-token", "--store", store, "--till", "T07")
    assert first.exit_code == 0, first.output
    token = first.stdout.strip()
    assert len(token) >= 40 and token not in first.stderr
    assert "shown once" in first.stderr
    second = cli(settings, "rotate-token", "--store", store, "--till", "T07", "--overlap", "PT1H")
    new = second.stdout.strip()
    assert new != token
    found = [r for t, r in records(settings, codec, store) if t == "till/T07"]
    assert [r["version"] for r in found] == [1, 2, 3]
    one, two = found[1]["till"], found[2]["till"]
    assert one["token_sha256"] == hashlib.sha256(token.encode()).hexdigest()
    assert one["lifecycle"] == "SUSPENDED"  # kept: a rotation changes only the token
    assert one["previous_token_until"] is None  # no overlap: the token before is refused
    assert two["token_sha256"] == hashlib.sha256(new.encode()).hexdigest()
    assert two["previous_token_sha256"] == one["token_sha256"]
    assert two["previous_token_until"] is not None
    raw = json.dumps(found, default=str)
    assert token not in raw and new not in raw  # the token itself never travels


def test_the_estate_from_the_database_and_through_the_api(
    settings: Settings, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    fleet = Harnessed(url)
    fleet.send(report("S-VIEW-1"), report("S-VIEW-2", edge={"outbox_depth": 42}))
    fleet.db.close()
    listed = cli(settings, "--db", url)
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0] == "Store estate: 2 stores"
    assert lines[1].split() == ["Store", "Edge", "Last", "report", "Outbox", "Skew", "Devices",
                                "down", "Tills", "Drift", "Open", "flags"]  # fmt: skip
    assert "─" not in listed.output  # plain lines when piped
    row = next(line.split() for line in lines if line.startswith("S-VIEW-2"))
    assert row[1] == "up" and "42" in row
    detail = cli(settings, "--db", url, "--store", "S-VIEW-2", "--json")
    found = json.loads(detail.output)
    assert found["outbox_depth"] == 42 and [t["till_id"] for t in found["tills"]] == [
        "T01", "T02", "T03"
    ]  # fmt: skip
    with fleet_service_http(url, Settings()) as base:
        remote = cli(settings, "--api", base, "--store", "S-VIEW-2", "--json")
        assert json.loads(remote.output)["store_id"] == "S-VIEW-2"
        table = cli(settings, "--api", base, "--store", "S-VIEW-1")
        till = next(line.split() for line in table.output.splitlines() if line.startswith("T01"))
        assert till[:2] == ["T01", "ACTIVE"] and "the store's own" in " ".join(till)
    unknown = cli(settings, "--db", url, "--store", "NOPE")
    assert unknown.exit_code == 1 and "knows no store NOPE" in unknown.output
