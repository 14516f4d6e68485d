"""The audit of record (issue 22): each attack a tester made on the auditor's page and API,
made again, and the sign-in through a real OpenID provider (Keycloak, ``oidc_provider``).

Attacks, each of which worked before: a script in the store of a 404's address; a cross-site
``text/plain`` POST acknowledging a flag; a form posted without the session's CSRF token; a
foreign host name (DNS rebinding); a 5 MB note, a typed name, a card number in a note; flag
ids worked out from the store, day and kind; a service with neither sign-in nor tokens
serving acknowledgements to the network. And sign-in: login, roles (a viewer cannot
acknowledge, a lead reopens), logout, an expired session, API tokens with and without the
``ack`` scope, revoked.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from tests.audit_support import DAY, ChainDay, audit_service_http
from tests.oidc_support import Provider, realm_settings, sign_in
from tillstream.cli import main
from tillstream.core.settings import Settings
from tillstream.dev.ports import free_port
from tillstream.dev.processes import Service
from tillstream_consumers.audit import SalesAudit, queries
from tillstream_consumers.runtime.db import Database
from tillstream_consumers.runtime.testing import ConsumerHarness

XSS = "<img src=x onerror=window.__xss=1>"


SIGNED_IN = "audit-signed-in.png"
DOCS = Path(__file__).resolve().parent.parent / "docs"


def audited(path: Path) -> tuple[str, ChainDay]:
    """A database with a chain day audited (planted flags in store 3)."""
    url = f"sqlite:///{path / 'audit.db'}"
    chain = ChainDay("Z")
    harness = ConsumerHarness(SalesAudit(Settings()), url)
    harness.apply_events(*chain.events())
    harness.db.close()
    return url, chain


def open_flags(url: str, store: str) -> list[dict[str, Any]]:
    db = Database(url)
    try:
        return [f for f in queries.flags(db, store, DAY.isoformat()) if f["open"]]
    finally:
        db.close()


def live_acks(url: str, flag: str) -> list[dict[str, Any]]:
    db = Database(url)
    try:
        rows = db.fetchall(
            "SELECT acked_by, acked_by_kind, reopened_at FROM audit_acks WHERE flag_id = ?",
            (flag,),
        )
    finally:
        db.close()
    return [{"by": r[0], "kind": r[1], "reopened": r[2]} for r in rows]


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, ChainDay]]:
    """The service with neither sign-in nor tokens (loopback, the machine's user)."""
    url, chain = audited(tmp_path_factory.mktemp("audit-local"))
    with audit_service_http(url) as base:
        yield base, url, chain


@pytest.fixture(scope="module")
def signed(
    oidc_provider: Provider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str, ChainDay]]:
    """The service behind sign-in through the real provider."""
    url, chain = audited(tmp_path_factory.mktemp("audit-signed"))
    settings = Settings(**{k.removeprefix("TILLSTREAM_").lower(): v
                           for k, v in realm_settings(oidc_provider).items()})  # fmt: skip
    with audit_service_http(url, settings) as base:
        yield base, url, chain


@pytest.fixture
async def anna(signed: tuple[str, str, ChainDay]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=60) as client:
        await sign_in(client, f"{signed[0]}/", "anna")
        yield client


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no CSRF token on the page"
    return found.group(1)


# -- the attacks ---------------------------------------------------------------------------


async def test_a_script_in_the_address_of_a_404_is_shown_not_run(
    local: tuple[str, str, ChainDay],
) -> None:
    base, _, _ = local
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{base}/audit/{XSS}/{DAY.isoformat()}")
    assert answer.status_code == 404
    assert XSS not in answer.text and "&lt;img src=x onerror=window.__xss=1&gt;" in answer.text
    policy = answer.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["x-content-type-options"] == "nosniff"


def test_in_a_browser_the_404_runs_no_script(
    local: tuple[str, str, ChainDay], tmp_path: Path
) -> None:
    from tests.browser_support import chromium

    base, _, _ = local
    with chromium(tmp_path) as driver:
        driver.get(f"{base}/audit/{XSS}/{DAY.isoformat()}")
        assert driver.execute_script("return window.__xss === undefined")
        assert XSS in driver.find_element("tag name", "body").text  # shown as text


async def test_another_site_cannot_acknowledge_by_a_text_plain_post(
    signed: tuple[str, str, ChainDay], anna: httpx.AsyncClient
) -> None:
    base, url, chain = signed
    flag = open_flags(url, chain.stores[2])[0]["flag_id"]
    ack = f"{base}/v1/audit/flags/{flag}/ack"
    body = '{"note": "looks fine"}'
    evil = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
    assert (await anna.post(ack, content=body, headers=evil)).status_code == 403
    plain = {"Origin": base, "Content-Type": "text/plain"}
    assert (await anna.post(ack, content=body, headers=plain)).status_code == 403  # no token
    page = await anna.get(f"{base}/audit/{chain.stores[2]}/{DAY.isoformat()}")
    token = {"Origin": base, "X-CSRF-Token": csrf_of(page.text)}
    wrong_type = await anna.post(ack, content=body, headers={**token, "Content-Type": "text/plain"})
    assert wrong_type.status_code == 415
    assert live_acks(url, flag) == []
    json_ok = await anna.post(
        ack, content=body, headers={**token, "Content-Type": "application/json"}
    )
    assert json_ok.status_code == 201, json_ok.text
    assert live_acks(url, flag) == [{"by": "anna@example.org", "kind": "sign-in", "reopened": None}]


async def test_a_form_needs_the_sessions_csrf_token(
    signed: tuple[str, str, ChainDay], anna: httpx.AsyncClient
) -> None:
    base, url, chain = signed
    store = chain.stores[2]
    flag = open_flags(url, store)[-1]["flag_id"]
    form_url = f"{base}/audit/{store}/{DAY.isoformat()}/ack"
    without = await anna.post(form_url, data={"flag": flag, "note": "ok"}, headers={"Origin": base})
    assert without.status_code == 403
    forged = {"flag": flag, "note": "ok", "csrf": "guessed"}
    assert (await anna.post(form_url, data=forged, headers={"Origin": base})).status_code == 403
    page = await anna.get(f"{base}/audit/{store}/{DAY.isoformat()}")
    good = {"flag": flag, "note": "ok", "csrf": csrf_of(page.text)}
    elsewhere = await anna.post(form_url, data=good, headers={"Origin": "http://evil.example"})
    assert elsewhere.status_code == 403
    assert live_acks(url, flag) == []
    done = await anna.post(form_url, data=good, headers={"Origin": base})
    assert done.status_code == 303


async def test_a_foreign_host_name_is_refused_dns_rebinding(
    local: tuple[str, str, ChainDay],
) -> None:
    base, url, chain = local
    flag = open_flags(url, chain.stores[2])[0]["flag_id"]
    rebound = {"Host": "attacker.example"}
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{base}/v1/audit/days", headers=rebound)).status_code == 400
        posted = await client.post(
            f"{base}/v1/audit/flags/{flag}/ack", json={"note": "x"}, headers=rebound
        )
        assert posted.status_code == 400
        assert (await client.get(f"{base}/v1/audit/days")).status_code == 200  # its own name
        # Probes and scrapes name the pod's IP or the service's name: still answered.
        for open_path in ("/healthz", "/metrics"):
            probe = await client.get(f"{base}{open_path}", headers={"Host": "10.1.2.3:9400"})
            assert probe.status_code == 200, open_path
    assert live_acks(url, flag) == []


def make_token(url: str, name: str, scopes: str) -> str:
    made = CliRunner().invoke(
        main, ["audit", "token", "create", name, "--scope", scopes, "--db", url]
    )
    assert made.exit_code == 0, made.output
    return made.stdout.strip().splitlines()[0]


async def test_every_field_is_bounded_no_name_is_typed_no_card_number_kept(
    tmp_path: Path,
) -> None:
    url, chain = audited(tmp_path)
    token = make_token(url, "integration", "read,ack")
    flag = open_flags(url, chain.stores[2])[0]["flag_id"]
    with audit_service_http(url) as base:
        headers = {"Authorization": f"Bearer {token}"}
        ack = f"{base}/v1/audit/flags/{flag}/ack"
        async with httpx.AsyncClient(headers=headers) as client:
            long_note = await client.post(ack, json={"note": "x" * 2001})
            assert long_note.status_code == 422 and "2000" in long_note.text
            huge = await client.post(ack, json={"note": "x" * 5_000_000})
            assert huge.status_code == 413
            typed = await client.post(ack, json={"note": "ok", "by": "mallory"})
            assert typed.status_code == 422 and typed.json()["problems"][0]["field"] == "by"
            card = await client.post(ack, json={"note": "paid with 4111 1111 1111 1111"})
            assert card.status_code == 422 and card.json()["error"] == "card_number"
            assert "4111" not in card.text
            assert live_acks(url, flag) == []
            done = await client.post(ack, json={"note": "checked with the store manager"})
            assert done.status_code == 201
            assert (done.json()["by"], done.json()["by_kind"]) == ("integration", "token")


def test_flag_ids_cannot_be_worked_out_from_store_day_and_kind(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    first, chain = audited(tmp_path / "a")
    second, _ = audited(tmp_path / "b")
    store = chain.stores[2]
    ours = {(f["kind"], f["subject"]): f["flag_id"] for f in open_flags(first, store)}
    theirs = {(f["kind"], f["subject"]): f["flag_id"] for f in open_flags(second, store)}
    assert ours.keys() == theirs.keys() and ours
    for (kind, subject), fid in ours.items():
        guess = "\x1f".join((store, DAY.isoformat(), kind, subject))
        assert fid != hashlib.sha256(guess.encode()).hexdigest()[:12]  # the old scheme
        assert len(fid) == 24 and theirs[(kind, subject)] != fid  # a key per database


async def test_tokens_have_scopes_and_are_revoked(tmp_path: Path) -> None:
    url, chain = audited(tmp_path)
    reader = make_token(url, "nightly-report", "read")
    flag = open_flags(url, chain.stores[2])[0]["flag_id"]
    with audit_service_http(url) as base:
        async with httpx.AsyncClient() as client:
            read = {"Authorization": f"Bearer {reader}"}
            assert (await client.get(f"{base}/v1/audit/days", headers=read)).status_code == 200
            assert (await client.get(f"{base}/v1/audit/days")).status_code == 401
            no_ack = await client.post(
                f"{base}/v1/audit/flags/{flag}/ack", json={"note": "x"}, headers=read
            )
            assert no_ack.status_code == 403 and "may not ack" in no_ack.text
            listed = CliRunner().invoke(main, ["audit", "token", "list", "--db", url])
            assert "nightly-report  read" in listed.output and reader not in listed.output
            revoked = CliRunner().invoke(
                main, ["audit", "token", "revoke", "nightly-report", "--db", url]
            )
            assert revoked.exit_code == 0
            assert (await client.get(f"{base}/v1/audit/days", headers=read)).status_code == 401
    db = Database(url)
    try:  # only its hash is kept
        (stored,) = db.fetchone("SELECT token_hash FROM runtime_api_tokens") or ("",)
    finally:
        db.close()
    assert stored == hashlib.sha256(reader.encode()).hexdigest() and reader not in stored


def listening(port: int) -> list[str]:
    """The addresses a TCP port listens on (ss)."""
    out = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True).stdout
    return [line.split()[3].rsplit(":", 1)[0] for line in out.splitlines()
            if line.split()[3].endswith(f":{port}")]  # fmt: skip


@pytest.mark.usefixtures("kafka_topics")
def test_without_sign_in_or_tokens_the_service_listens_on_loopback_only_and_says_where(
    settings: Settings, tmp_path: Path
) -> None:
    """Its start-up line names where people open its pages, as it listens (not /metrics)."""
    for insecure, wanted in ((False, ["127.0.0.1"]), (True, ["0.0.0.0"])):
        port = free_port()
        env = {
            "TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "TILLSTREAM_CONSUMER_LISTEN": f"0.0.0.0:{port}",
            "TILLSTREAM_DB_URL": f"sqlite:///{tmp_path / f'audit-{insecure}.db'}",
        }
        if insecure:
            env["TILLSTREAM_INSECURE_DEV"] = "1"
        service = Service(
            f"audit-{insecure}", ["consume", "audit"], port, tmp_path / f"audit-{insecure}.log",
            env=env, ready_path="/healthz",
        ).start()  # fmt: skip
        try:
            service.wait_ready(60)
            assert listening(port) == wanted
            said = (tmp_path / f"audit-{insecure}.log").read_text()
            assert ("listening on 127.0.0.1" in said) is (not insecure), said[-2000:]
            assert f"pages on http://{wanted[0]}:{port}/\n" in said, said[:2000]
            assert "/metrics" not in said.split("\n", 1)[0], said[:2000]
        finally:
            service.stop(30)


# -- sign-in ------------------------------------------------------------------------------


async def test_sign_in_roles_reopen_and_logout(signed: tuple[str, str, ChainDay]) -> None:
    base, url, chain = signed
    store = chain.stores[2]
    day_page = f"{base}/audit/{store}/{DAY.isoformat()}"
    flag = next(f["flag_id"] for f in open_flags(url, store) if not live_acks(url, f["flag_id"]))
    async with httpx.AsyncClient(timeout=60) as nobody:
        first = await nobody.get(day_page)
        assert first.status_code == 303 and first.headers["location"].startswith("/auth/login")
        assert (await nobody.get(f"{base}/v1/audit/days")).status_code == 401
    async with httpx.AsyncClient(timeout=60) as vera:  # a viewer reads, cannot acknowledge
        landed = await sign_in(vera, day_page, "vera")
        assert landed.status_code == 200 and "vera@example.org" in landed.text
        assert 'action="/audit/' not in landed.text  # no acknowledgement form
        tried = await vera.post(
            f"{base}/audit/{store}/{DAY.isoformat()}/ack",
            data={"flag": flag, "note": "fine", "csrf": csrf_of(landed.text)},
            headers={"Origin": base},
        )
        assert tried.status_code == 403
    async with httpx.AsyncClient(timeout=60) as anna:  # an auditor acknowledges, by name
        page = await sign_in(anna, day_page, "anna")
        assert "/reopen" not in page.text
        done = await anna.post(
            f"{base}/audit/{store}/{DAY.isoformat()}/ack",
            data={"flag": flag, "note": "counted again", "csrf": csrf_of(page.text)},
            headers={"Origin": base},
            follow_redirects=True,
        )
        assert "acknowledged by anna@example.org (sign-in)" in done.text
        out = await anna.post(
            f"{base}/auth/logout", data={"csrf": csrf_of(done.text)}, headers={"Origin": base}
        )
        assert out.status_code == 303 and "logout" in out.headers["location"]
        after = await anna.get(day_page)
        assert after.status_code == 303 and after.headers["location"].startswith("/auth/login")
    async with httpx.AsyncClient(timeout=60) as lena:  # a lead reopens
        page = await sign_in(lena, day_page, "lena")
        reopened = await lena.post(
            f"{base}/audit/{store}/{DAY.isoformat()}/reopen",
            data={"flag": flag, "note": "the count was wrong", "csrf": csrf_of(page.text)},
            headers={"Origin": base},
        )
        assert reopened.status_code == 303
    [ack] = live_acks(url, flag)
    assert ack["by"] == "anna@example.org" and ack["reopened"] is not None


async def test_an_expired_session_signs_in_again(oidc_provider: Provider, tmp_path: Path) -> None:
    url, _ = audited(tmp_path)
    values = {k.removeprefix("TILLSTREAM_").lower(): v
              for k, v in realm_settings(oidc_provider).items()}  # fmt: skip
    settings = Settings(**values, session_max_age=2)
    with audit_service_http(url, settings) as base:
        async with httpx.AsyncClient(timeout=60) as anna:
            landed = await sign_in(anna, f"{base}/", "anna")
            assert "anna@example.org" in landed.text
            await asyncio.sleep(3)
            again = await anna.get(f"{base}/")
            assert again.status_code == 303 and again.headers["location"].startswith("/auth/login")


def test_in_a_browser_an_auditor_signs_in_and_acknowledges(
    signed: tuple[str, str, ChainDay], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    from tests.browser_support import chromium, full_page_screenshot, viewport

    base, url, chain = signed
    store, flag = next(
        (store, f["flag_id"])
        for store in chain.stores
        for f in open_flags(url, store)
        if not live_acks(url, f["flag_id"])
    )
    with chromium(tmp_path) as driver:
        driver.get(f"{base}/audit/{store}/{DAY.isoformat()}")
        driver.find_element(By.ID, "username").send_keys("anna")
        driver.find_element(By.ID, "password").send_keys("anna-password")
        driver.find_element(By.ID, "kc-login").click()
        deadline = time.monotonic() + 30
        while "anna@example.org" not in driver.page_source:
            assert time.monotonic() < deadline, driver.page_source[:500]
            time.sleep(0.2)
        row = driver.find_element(By.ID, f"flag-{flag}")
        row.find_element(By.NAME, "note").send_keys("receipt found in the till's journal")
        row.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        deadline = time.monotonic() + 30
        while "acknowledged by anna@example.org (sign-in)" not in driver.page_source:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert driver.find_element(By.CSS_SELECTOR, "nav .who").text == "anna@example.org"
        # The page after sign-in, as docs/audit.md shows it (TILLSTREAM_SCREENSHOTS=docs/images).
        viewport(driver, 768, 1024)
        shot = Path(os.environ.get("TILLSTREAM_SCREENSHOTS") or tmp_path) / SIGNED_IN
        full_page_screenshot(driver, shot)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"](images/{SIGNED_IN})" in (DOCS / "audit.md").read_text()
    assert live_acks(url, flag)[0]["by"] == "anna@example.org"
