"""The fleet page against a real OpenID provider (Keycloak, ``oidc_provider``) and a real
broker, in headless Chromium and with plain HTTP clients: head office IT signs in, reads the
estate and a store, suspends a till through a confirmation page, and the desired record read
back from ``tillstream.estate-desired`` names them. A viewer cannot suspend; a post from
another site or without the session's CSRF token is refused; a store id with a script in a
report is shown, never run; a named token with the manage scope suspends through the API.

``TILLSTREAM_SCREENSHOTS=docs/images`` also writes the screenshots docs/fleet.md shows."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from tests.fleet_support import Harnessed, desired_records, fleet_service_http, report
from tests.oidc_support import Provider, realm_settings, sign_in
from tillstream.cli import main
from tillstream.core.codec import AvroCodec
from tillstream.core.settings import Settings

pytestmark = pytest.mark.usefixtures("kafka_topics")

XSS = "<script>window.__xss=1</script>"
DOCS = Path(__file__).resolve().parent.parent / "docs"
ESTATE_SHOT = "fleet-estate.png"
STORE_SHOT = "fleet-store.png"


class Estate:
    """A few stores as their edges reported them: one all well, one with a device down and
    a till not seen today, one whose store id carries a script."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:5].upper()
        self.good, self.busy = f"S{tag}1", f"S{tag}2"
        self.evil = f"E{tag}{XSS}"

    def send(self, fleet: Harnessed) -> None:
        now = datetime.now(UTC)
        fleet.send(report(self.good, now, tills=4, devices=2))
        waiting = {"outbox_depth": 312, "oldest_unsent_at": now - timedelta(minutes=25)}
        busy = report(self.busy, now, tills=3, devices=2, edge=waiting)
        busy["devices"][0].update(
            connected=False, connected_since=None, disconnected_since=now - timedelta(hours=1)
        )
        busy["tills"][2]["last_seen_at"] = now - timedelta(days=1, hours=2)
        busy["tills"][1]["conditions"][0].update(state="WARNING", detail="low")
        fleet.send(busy)
        fleet.send(report(self.evil, now, tills=1, devices=0))


@pytest.fixture(scope="module")
def estate() -> Estate:
    return Estate()


def fleet_settings(settings: Settings, provider: Provider | None = None) -> Settings:
    """The service's settings: the session's broker, sign-in through ``provider`` (if any),
    stores open around the clock (a device down is flagged at any hour of the test)."""
    values = {k.removeprefix("TILLSTREAM_").lower(): v
              for k, v in (realm_settings(provider) if provider else {}).items()}  # fmt: skip
    return Settings(
        kafka_bootstrap_servers=settings.kafka_bootstrap_servers,
        topic_partitions=settings.topic_partitions,
        fleet_opening_hours="00:00-24:00",
        fleet_till_grace=0,
        **values,
    )


@pytest.fixture(scope="module")
def signed(
    oidc_provider: Provider,
    settings: Settings,
    estate: Estate,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, str, Settings]]:
    """The fleet service's app behind sign-in through the real provider, over the estate."""
    url = f"sqlite:///{tmp_path_factory.mktemp('fleet-page') / 'fleet.db'}"
    service_settings = fleet_settings(settings, oidc_provider)
    fleet = Harnessed(url, service_settings)
    estate.send(fleet)
    fleet.db.close()
    with fleet_service_http(url, service_settings) as base:
        yield base, url, service_settings


def records(settings: Settings, codec: AvroCodec, store: str) -> list[tuple[str, Any]]:
    return asyncio.run(desired_records(settings, codec, store))


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no CSRF token on the page"
    return found.group(1)


@pytest.fixture
async def finn(signed: tuple[str, str, Settings]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=60) as client:
        await sign_in(client, f"{signed[0]}/", "finn")
        yield client


def test_in_a_browser_it_signs_in_reads_the_estate_and_suspends_a_till_after_confirming(
    signed: tuple[str, str, Settings], estate: Estate, codec: AvroCodec, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    from tests.browser_support import (
        chromium,
        full_page_screenshot,
        rows,
        scrolls_sideways,
        viewport,
    )

    base, _, settings = signed
    shots = Path(os.environ.get("TILLSTREAM_SCREENSHOTS") or tmp_path)
    with chromium(tmp_path) as driver:
        driver.get(f"{base}/")
        driver.find_element(By.ID, "username").send_keys("finn")
        driver.find_element(By.ID, "password").send_keys("finn-password")
        driver.find_element(By.ID, "kc-login").click()
        _wait(driver, "Store estate")
        assert driver.find_element(By.CSS_SELECTOR, "nav .who").text == "finn@example.org"
        assert driver.execute_script("return window.__xss === undefined")  # shown, not run
        listed = {r["Store"]: r for r in rows(driver, "stores")}
        assert {estate.good, estate.busy, estate.evil} <= set(listed)
        assert listed[estate.good]["Edge"] == "up" and listed[estate.good]["Open flags"] == "none"
        busy = listed[estate.busy]
        assert busy["Devices down"] == "1/2" and busy["Outbox"].split() == [
            "312",
            "oldest",
            "25m",
            "00s",
        ]
        assert set(busy["Open flags"].split(", ")) == {
            "outbox growing 1", "device down 1", "till not seen 1"
        }  # fmt: skip
        viewport(driver, 1024, 768)
        assert not scrolls_sideways(driver, driver.find_element(By.ID, "stores"))
        full_page_screenshot(driver, shots / ESTATE_SHOT)
        driver.find_element(By.LINK_TEXT, estate.busy).click()
        _wait(driver, f"Store {estate.busy}")
        kinds = {
            r.get_attribute("data-kind")
            for r in driver.find_elements(By.CSS_SELECTOR, "#flags tr[data-kind]")
        }
        assert kinds == {"outbox_growing", "device_down", "till_not_seen"}
        tills = {r["Till"]: r for r in rows(driver, "tills")}
        assert tills["T02"]["At the edge"] == "ACTIVE"
        assert "printer_paper warning (low)" in tills["T02"]["Conditions"]
        full_page_screenshot(driver, shots / STORE_SHOT)
        row = driver.find_element(By.CSS_SELECTOR, 'tr[data-till="T02"]')
        row.find_element(By.LINK_TEXT, "Suspend").click()
        _wait(driver, f"Suspend till T02 of store {estate.busy}?")
        said = driver.find_element(By.TAG_NAME, "body").text
        assert "Published as finn@example.org (sign-in)." in said
        assert records(settings, codec, estate.busy) == []  # asked, not yet confirmed
        driver.find_element(By.ID, "confirm").click()
        _wait(driver, "was published")
        assert driver.find_element(By.ID, "published").text.startswith(
            "Head office's desired state for till/T02 was published"
        )
    [(target, record)] = records(settings, codec, estate.busy)
    assert target == "till/T02" and record["version"] == 1
    assert record["till"]["lifecycle"] == "SUSPENDED"
    assert record["published_by"] == "finn@example.org (sign-in)"
    for shot in (ESTATE_SHOT, STORE_SHOT):
        assert (shots / shot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"](images/{shot})" in (DOCS / "fleet.md").read_text()


async def test_a_viewer_reads_but_cannot_suspend(
    signed: tuple[str, str, Settings], estate: Estate, codec: AvroCodec
) -> None:
    base, _, settings = signed
    async with httpx.AsyncClient(timeout=60) as vera:
        page = await sign_in(vera, f"{base}/stores/{estate.good}", "vera")
        assert page.status_code == 200 and "vera@example.org" in page.text
        assert "/tills/suspend" not in page.text  # no action offered
        asked = await vera.get(
            f"{base}/tills/suspend", params={"store": estate.good, "till": "T01"}
        )
        assert asked.status_code == 403
        tried = await vera.post(
            f"{base}/tills/suspend",
            data={"store": estate.good, "till": "T01", "csrf": csrf_of(page.text)},
            headers={"Origin": base},
        )
        assert tried.status_code == 403
        api = await vera.post(
            f"{base}/v1/fleet/tills/lifecycle",
            json={"store": estate.good, "till": "T01", "lifecycle": "suspended"},
            headers={"Origin": base, "X-CSRF-Token": csrf_of(page.text)},
        )
        assert api.status_code == 403 and "may not manage" in api.text
    assert await desired_records(settings, codec, estate.good) == []


async def test_a_foreign_origin_or_a_missing_csrf_token_is_refused(
    signed: tuple[str, str, Settings], estate: Estate, codec: AvroCodec, finn: httpx.AsyncClient
) -> None:
    base, _, settings = signed
    page = await finn.get(f"{base}/stores/{estate.good}")
    form = {"store": estate.good, "till": "T03"}
    without = await finn.post(f"{base}/tills/suspend", data=form, headers={"Origin": base})
    assert without.status_code == 403
    forged = await finn.post(
        f"{base}/tills/suspend", data={**form, "csrf": "guessed"}, headers={"Origin": base}
    )
    assert forged.status_code == 403
    elsewhere = await finn.post(
        f"{base}/tills/suspend",
        data={**form, "csrf": csrf_of(page.text)},
        headers={"Origin": "http://evil.example"},
    )
    assert elsewhere.status_code == 403
    body = json.dumps({"store": estate.good, "till": "T03", "lifecycle": "suspended"})
    cross_site = await finn.post(
        f"{base}/v1/fleet/tills/lifecycle",
        content=body,
        headers={"Origin": "http://evil.example", "Content-Type": "text/plain"},
    )
    assert cross_site.status_code == 403
    no_token = await finn.post(
        f"{base}/v1/fleet/tills/lifecycle",
        content=body,
        headers={"Origin": base, "Content-Type": "application/json"},
    )
    assert no_token.status_code == 403
    assert await desired_records(settings, codec, estate.good) == []


async def test_a_script_in_a_store_id_is_shown_not_run(
    signed: tuple[str, str, Settings], estate: Estate, finn: httpx.AsyncClient
) -> None:
    base, _, _ = signed
    listed = await finn.get(f"{base}/")
    assert XSS not in listed.text and "&lt;script&gt;window.__xss=1&lt;/script&gt;" in listed.text
    assert "script-src" not in listed.headers["content-security-policy"]  # default-src 'none'
    one = await finn.get(f"{base}/stores/{estate.evil}")
    assert one.status_code == 200 and XSS not in one.text
    missing = await finn.get(f"{base}/stores/{XSS}")
    assert missing.status_code == 404 and XSS not in missing.text


async def test_a_named_token_with_the_manage_scope_suspends_through_the_api(
    settings: Settings, codec: AvroCodec, estate: Estate, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    fleet = Harnessed(url, fleet_settings(settings))
    store = f"T{uuid.uuid4().hex[:6].upper()}"
    fleet.send(report(store, tills=2))
    fleet.db.close()
    tokens = {}
    for name, scope in (("night-report", "read"), ("pos-bot", "read,manage")):
        made = CliRunner().invoke(
            main, ["fleet", "token", "create", name, "--scope", scope, "--db", url]
        )
        assert made.exit_code == 0, made.output
        tokens[name] = made.stdout.strip()
    with fleet_service_http(url, fleet_settings(settings)) as base:
        async with httpx.AsyncClient(timeout=60) as client:
            body = {"store": store, "till": "T01", "lifecycle": "suspended"}
            read_only = {"Authorization": f"Bearer {tokens['night-report']}"}
            assert (
                await client.get(f"{base}/v1/fleet/stores", headers=read_only)
            ).status_code == 200
            refused = await client.post(
                f"{base}/v1/fleet/tills/lifecycle", json=body, headers=read_only
            )
            assert refused.status_code == 403
            bot = {"Authorization": f"Bearer {tokens['pos-bot']}"}
            done = await client.post(f"{base}/v1/fleet/tills/lifecycle", json=body, headers=bot)
            assert done.status_code == 201, done.text
            assert done.json() == {
                "published": {"store": store, "target": "till/T01", "version": 1},
                "by": "pos-bot (token)",
            }
            again = await client.post(f"{base}/v1/fleet/tills/lifecycle", json=body, headers=bot)
            assert again.status_code == 200 and again.json()["published"] is None
            bad = await client.post(
                f"{base}/v1/fleet/tills/lifecycle", json={**body, "lifecycle": "gone"}, headers=bot
            )
            assert bad.status_code == 422 and "lifecycle" in bad.text
    [(target, record)] = await desired_records(settings, codec, store)
    assert (target, record["published_by"]) == ("till/T01", "pos-bot (token)")


def _wait(driver: Any, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in driver.page_source:
        assert time.monotonic() < deadline, driver.page_source[:800]
        time.sleep(0.2)


async def test_a_foreign_host_and_an_oversized_body_are_refused(
    signed: tuple[str, str, Settings], estate: Estate, codec: AvroCodec, finn: httpx.AsyncClient
) -> None:
    base, _, settings = signed
    page = await finn.get(f"{base}/stores/{estate.good}")
    csrf = csrf_of(page.text)
    rebound = {"Host": "attacker.example", "Origin": "http://attacker.example"}
    assert (await finn.get(f"{base}/", headers=rebound)).status_code == 400
    posted = await finn.post(
        f"{base}/tills/suspend",
        data={"store": estate.good, "till": "T04", "csrf": csrf},
        headers=rebound,
    )
    assert posted.status_code == 400
    huge = await finn.post(
        f"{base}/v1/fleet/tills/lifecycle",
        json={"store": estate.good, "till": "T04", "lifecycle": "suspended", "x": "x" * 5_000_000},
        headers={"Origin": base, "X-CSRF-Token": csrf},
    )
    assert huge.status_code == 413
    big_form = await finn.post(
        f"{base}/tills/suspend",
        data={"store": estate.good, "till": "T04", "csrf": csrf, "x": "x" * 5_000_000},
        headers={"Origin": base},
    )
    assert big_form.status_code == 413
    assert await desired_records(settings, codec, estate.good) == []
