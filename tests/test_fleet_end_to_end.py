"""The store estate end to end on the real broker: real edge processes report, the fleet
service (``tillstream consume fleet``'s consumer, on SQLite) keeps head office's view, and
head office decides with the real command line (``tillstream fleet set|rotate-token``, as an
operator runs it). Everything is checked through head office's view: the service's read
functions (what ``GET /v1/fleet/stores/{store}`` answers) and ``tillstream fleet --store S
--json``, never the reports themselves.

Issue 24's "Done when": an edge killed shows as silent within 90 s and back when restarted;
a scanner unplugged and plugged back shows down then up; a till suspended at head office is
refused at its edge within 5 s, desired and applied agreeing; a device setting with a port
that does not exist shows as not applied, with the reason; a rotated token works, the old
one stops at its stated time.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.consumer_support import running
from tests.device_support import FakePort
from tests.edge_support import EdgeProcess, dumps, sale_json
from tests.estate_support import HEARTBEAT, sha256_hex
from tillstream.core.settings import Settings
from tillstream.dev.processes import run_tillstream
from tillstream_consumers.fleet import FleetService, queries
from tillstream_consumers.fleet.flags import Rules
from tillstream_consumers.fleet.times import parse
from tillstream_consumers.runtime.db import Database

pytestmark = pytest.mark.usefixtures("kafka_topics")

T = TypeVar("T")
SILENT_HEARTBEATS = 3
"""The fleet service's TILLSTREAM_FLEET_SILENT_HEARTBEATS here: silent after 3 x 2 s."""
TOKEN_T01 = "till-T01-fleet-e2e-secret-5c1d0a"
TOKEN_T02 = "till-T02-fleet-e2e-secret-93be27"
OVERLAP = 8
"""Seconds the rotated till's old token is still taken (``rotate-token --overlap``)."""


def store_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6].upper()}"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


class Estate:
    """The fleet service's view of one store, read as its API reads it."""

    def __init__(self, settings: Settings, db_url: str, store: str) -> None:
        self.settings, self.db_url, self.store = settings, db_url, store
        self.rules = Rules.of(settings)

    def view(self) -> dict[str, Any] | None:
        db = Database(self.db_url)
        try:
            return queries.store(db, self.store, datetime.now(UTC), self.rules)
        except Exception as exc:  # the service has not made its tables yet
            if "no such table" in str(exc):
                return None
            raise
        finally:
            db.close()

    async def until(
        self, what: str, timeout: float, found: Callable[[dict[str, Any]], T | None]
    ) -> tuple[float, T]:
        """(seconds, what ``found`` returned) once it returns something truthy from the view."""
        started = time.monotonic()
        last: dict[str, Any] | None = None
        while time.monotonic() - started < timeout:
            last = self.view()
            if last is not None and (value := found(last)):
                return time.monotonic() - started, value
            await asyncio.sleep(0.2)
        raise AssertionError(f"{what}: not within {timeout} s; the view: {json.dumps(last)}")

    def cli(self, *args: str, timeout: float = 60) -> str:
        """``tillstream fleet ARGS`` as an operator runs it (a process); its stdout."""
        env = {
            "TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS": self.settings.kafka_bootstrap_servers,
            "TILLSTREAM_DB_URL": self.db_url,
            "TILLSTREAM_FLEET_SILENT_HEARTBEATS": str(SILENT_HEARTBEATS),
        }
        done = run_tillstream("fleet", *args, env=env, timeout=timeout)
        assert done.returncode == 0, f"tillstream fleet {' '.join(args)}:\n{done.stderr}"
        return done.stdout

    async def cli_json(self) -> dict[str, Any]:
        shown: dict[str, Any] = json.loads(
            await asyncio.to_thread(self.cli, "--store", self.store, "--json")
        )
        return shown


def device(view: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((d for d in view["devices"] if d["device_id"] == name), None)


def connected(view: dict[str, Any], name: str) -> bool | None:
    """The device as the view shows it: connected, disconnected, or None (not reported)."""
    found = device(view, name)
    return None if found is None else found["connected"]


def till(view: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((t for t in view["tills"] if t["till_id"] == name), None)


def fleet_settings(settings: Settings) -> Settings:
    """Head office's thresholds, short: silent after 3 heartbeats, a device flagged after a
    second down, the stores always open."""
    return settings.model_copy(
        update={
            "fleet_silent_heartbeats": SILENT_HEARTBEATS,
            "fleet_device_down_after": timedelta(seconds=1),
            "fleet_opening_hours": "00:00-24:00",
        }
    )


def open_flag(view: dict[str, Any], kind: str, subject: str) -> bool:
    return any(f["kind"] == kind and f["subject"] == subject and f["open"] for f in view["flags"])


def fleet_service(settings: Settings) -> FleetService:
    """The fleet service in a group of its own (the session broker holds every test's
    reports: each test's stores are its own)."""
    service = FleetService.in_group(f"fleet-e2e-{uuid.uuid4().hex[:8]}")(settings)
    assert isinstance(service, FleetService)
    return service


async def start_edge(edge_factory: Any, store: str, **options: Any) -> EdgeProcess:
    """An edge process, started off the event loop (the fleet service runs in it)."""
    edge: EdgeProcess = await asyncio.to_thread(lambda: edge_factory(store, **options))
    return edge


async def test_an_edge_and_its_scanner_seen_up_down_silent_and_back_at_head_office(
    edge_factory: Any, settings: Settings, tmp_path: Path
) -> None:
    store = store_id("E2E-UP")
    scanner = FakePort(tmp_path / "scanner")
    devices = tmp_path / "devices.toml"
    devices.write_text(
        f'[devices.dock-scanner]\nprotocol = "scanner"\nport = "{scanner.link}"\n'
        "reconnect_initial = 0.1\nreconnect_max = 0.2\n"
    )
    hq = fleet_settings(settings)
    estate = Estate(hq, f"sqlite:///{tmp_path / 'fleet.db'}", store)
    work = tmp_path / "edge"
    options = {"workdir": work, "args": ["--devices", str(devices)],
               "env": {"TILLSTREAM_EDGE_HEARTBEAT_S": HEARTBEAT}}  # fmt: skip
    figures: dict[str, float] = {}
    async with running(fleet_service(hq), hq, estate.db_url):
        edge = await start_edge(edge_factory, store, **options)
        figures["edge up"], _ = await estate.until(
            "the edge up, its scanner connected",
            60,
            lambda v: v["state"] == "up" and connected(v, "dock-scanner") is True,
        )
        up = await estate.cli_json()
        assert up["state"] == "up" and up["heartbeat_seconds"] == int(HEARTBEAT)
        assert (len(up["devices"]), up["devices_down"]) == (1, 0)
        shown = device(up, "dock-scanner")
        assert shown is not None and (shown["kind"], shown["port"]) == (
            "SCANNER",
            str(scanner.link),
        )

        scanner.unplug()
        figures["scanner down"], _ = await estate.until(
            "the scanner down",
            30,
            lambda v: v["devices_down"] == 1 and connected(v, "dock-scanner") is False,
        )
        figures["scanner flagged"], _ = await estate.until(
            "the scanner flagged down", 30, lambda v: open_flag(v, "device_down", "dock-scanner")
        )
        down = device(await estate.cli_json(), "dock-scanner")
        assert down is not None and down["connected"] is False
        assert down["disconnected_since"] is not None
        FakePort(tmp_path / "scanner")  # plugged back
        figures["scanner back"], _ = await estate.until(
            "the scanner back",
            30,
            lambda v: v["devices_down"] == 0 and connected(v, "dock-scanner") is True,
        )
        await estate.until(
            "the scanner's flag resolved",
            10,
            lambda v: not open_flag(v, "device_down", "dock-scanner"),
        )

        edge.kill()  # SIGKILL: no STOP report, the heartbeats just stop
        figures["silent"], _ = await estate.until(
            "the edge silent", 90, lambda v: v["state"] == "silent"
        )
        assert figures["silent"] >= int(HEARTBEAT)  # not before a heartbeat was missed
        silent = await estate.cli_json()
        assert silent["state"] == "silent"
        figures["silent flagged"], _ = await estate.until(
            "the edge flagged silent", 30, lambda v: open_flag(v, "edge_silent", "edge")
        )
        restarted = time.monotonic()
        await start_edge(edge_factory, store, **options)
        _, back = await estate.until("the edge back", 60, lambda v: v["state"] == "up" and v)
        figures["back after restart"] = time.monotonic() - restarted
        assert back["edge"]["started_at"] != up["edge"]["started_at"]  # a new run of it
        await estate.until(  # its START report may precede the port's opening
            "the restarted edge's scanner connected",
            30,
            lambda v: connected(v, "dock-scanner") is True,
        )
        await estate.until(
            "the silence resolved", 10, lambda v: not open_flag(v, "edge_silent", "edge")
        )
    print("\n" + ", ".join(f"{k}: {v:.1f} s" for k, v in figures.items()))
    assert figures["silent"] < 90


async def test_head_office_suspends_sets_a_device_and_rotates_a_token_with_the_real_cli(
    edge_factory: Any, settings: Settings, tmp_path: Path
) -> None:
    store = store_id("E2E-DO")
    scanner = FakePort(tmp_path / "scanner")
    devices = tmp_path / "devices.toml"
    devices.write_text(f'[devices.dock-scanner]\nprotocol = "scanner"\nport = "{scanner.link}"\n')
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(
        f'[tills]\nT01 = "sha256:{sha256_hex(TOKEN_T01)}"\nT02 = "sha256:{sha256_hex(TOKEN_T02)}"\n'
    )
    hq = fleet_settings(settings)
    estate = Estate(hq, f"sqlite:///{tmp_path / 'fleet.db'}", store)
    figures: dict[str, float] = {}
    options = {"args": ["--devices", str(devices), "--tokens", str(tokens)],
               "env": {"TILLSTREAM_EDGE_HEARTBEAT_S": HEARTBEAT}}  # fmt: skip
    refusals = 0
    """T01's requests refused by its edge, as the test counts them."""

    async def post_sale(edge: EdgeProcess, token: str, terminal: str) -> int:
        nonlocal refusals
        body = dumps(sale_json(store, terminal_id=terminal))
        async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
            answer = await http.post("/v1/events", content=body, headers=bearer(token))
        refusals += terminal == "T01" and answer.status_code == 403
        return answer.status_code

    async def status(edge: EdgeProcess, token: str) -> int:
        async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
            answer = await http.post(
                "/v1/tills/status", json={"conditions": []}, headers=bearer(token)
            )
        return answer.status_code

    async with running(fleet_service(hq), hq, estate.db_url):
        edge = await start_edge(edge_factory, store, **options)
        await estate.until("the edge up", 60, lambda v: v["state"] == "up")
        assert await post_sale(edge, TOKEN_T01, "T01") == 202
        await estate.until("T01 seen", 30, lambda v: till(v, "T01"))

        # -- suspend T01 ----------------------------------------------------------------
        asked = time.monotonic()
        said = await asyncio.to_thread(
            estate.cli, "set", "--store", store, "--till", "T01", "--lifecycle", "suspended"
        )
        returned = time.monotonic()
        assert f"published {store} till/T01: version 1" in said
        while await post_sale(edge, TOKEN_T01, "T01") != 403:
            assert time.monotonic() - returned < 5, "T01 not refused within 5 s of the command"
            await asyncio.sleep(0.05)
        figures["set command ran"] = returned - asked
        figures["command returned to refused"] = time.monotonic() - returned
        assert await post_sale(edge, TOKEN_T02, "T02") == 202  # the other till goes on

        def agreed(v: dict[str, Any]) -> dict[str, Any] | None:
            t = till(v, "T01")
            wanted = (t or {}).get("desired") or {}
            applied = wanted.get("applied") or {}
            ok = t and t["lifecycle"] == "SUSPENDED" and applied.get("applied") is True
            return v if ok and applied["version"] == wanted["version"] else None

        figures["suspension applied in the view"], _ = await estate.until(
            "T01 suspended, desired and applied agreeing", 30, agreed
        )

        # -- a device setting with a port that does not exist --------------------------------
        missing = f"/dev/ttyUSB-nowhere-{os.getpid()}"
        table = {"protocol": "scanner", "port": missing}
        said = await asyncio.to_thread(
            estate.cli, "set", "--store", store, "--device", "dock-scanner",
            "--settings-json", json.dumps(table),
        )  # fmt: skip
        assert f"published {store} device/dock-scanner: version 1" in said

        def refused(v: dict[str, Any]) -> dict[str, Any] | None:
            wanted = (device(v, "dock-scanner") or {}).get("desired") or {}
            applied = wanted.get("applied") or {}
            return applied if applied.get("version") == 1 else None

        figures["device setting refused in the view"], _ = await estate.until(
            "the device setting reported", 30, refused
        )
        view = await estate.cli_json()  # both, as an operator reads them
        t01 = till(view, "T01")
        assert t01 is not None and t01["lifecycle"] == "SUSPENDED"
        assert t01["desired"]["settings"]["lifecycle"] == "SUSPENDED"
        assert t01["desired"]["version"] == 1
        assert t01["desired"]["applied"]["version"] == 1
        assert t01["desired"]["applied"]["applied"] is True
        assert t01["desired"]["applied"]["error"] is None
        assert not open_flag(view, "drift", "till/T01")  # desired and applied agree
        scanner_view = device(view, "dock-scanner")
        assert scanner_view is not None
        applied = scanner_view["desired"]["applied"]
        assert (applied["version"], applied["applied"]) == (1, False)
        assert applied["error"] == f"port {missing} does not exist"
        assert scanner_view["desired"]["settings"] == table
        assert scanner_view["port"] == str(scanner.link)  # the settings it runs with
        assert scanner_view["connected"] is True
        assert view["drift"] == 1  # the device's; the till's agrees
        assert open_flag(view, "drift", "device/dock-scanner")

        # -- rotate T02's token -----------------------------------------------------------
        assert await status(edge, TOKEN_T02) == 200
        token = (
            await asyncio.to_thread(
                estate.cli, "rotate-token", "--store", store, "--till", "T02",
                "--overlap", str(OVERLAP),
            )
        ).strip()  # fmt: skip
        assert len(token) >= 16 and token != TOKEN_T02
        taken_at = time.monotonic()
        while await status(edge, token) != 200:
            assert time.monotonic() - taken_at < 5, "the new token not taken within 5 s"
            await asyncio.sleep(0.05)
        figures["new token taken"] = time.monotonic() - taken_at

        def stated(v: dict[str, Any]) -> datetime | None:
            wanted = (till(v, "T02") or {}).get("desired") or {}
            return parse((wanted.get("settings") or {}).get("previous_token_until"))

        _, until = await estate.until("the rotation's stated time in the view", 30, stated)
        assert datetime.now(UTC) < until
        assert await status(edge, TOKEN_T02) == 200  # the overlap: both taken
        while await status(edge, TOKEN_T02) != 401:
            assert (datetime.now(UTC) - until).total_seconds() < 5, "old token still taken"
            await asyncio.sleep(0.05)
        late = figures["old token refused after its stated time"] = (
            datetime.now(UTC) - until
        ).total_seconds()
        assert late >= 0
        assert await status(edge, token) == 200

        def rotated(v: dict[str, Any]) -> bool:
            wanted = (till(v, "T02") or {}).get("desired") or {}
            return bool((wanted.get("applied") or {}).get("applied"))

        await estate.until("T02's rotation applied", 30, rotated)
        assert token not in edge.log()

        # -- the edge restarts: T01 still refused, and no refusal counted twice -------------
        def posting(v: dict[str, Any]) -> str | None:
            t = till(v, "T01") or {}
            flag = next((f for f in v["flags"] if f["kind"] == "suspended_posting" and f["open"]
                         and f["subject"] == "T01"), None)  # fmt: skip
            counted = t.get("refused_while_suspended") == refusals
            return str(flag["message"]) if flag is not None and counted else None

        _, before = await estate.until("T01's refusals counted and flagged", 30, posting)
        started = (estate.view() or {})["edge"]["started_at"]
        await asyncio.to_thread(edge.stop)  # the store's server restarted
        edge = await start_edge(edge_factory, store, workdir=edge.workdir, **options)
        _, after = await estate.until(
            "the restarted edge's report",
            30,
            lambda v: v["edge"]["started_at"] != started and posting(v),
        )
        assert after == before  # the same refusals, not a new attempt to post
        assert await post_sale(edge, TOKEN_T01, "T01") == 403
        _, again = await estate.until("T01's new refusal counted", 30, posting)
        assert again != before
    print("\n" + ", ".join(f"{k}: {v:.2f} s" for k, v in figures.items()))
