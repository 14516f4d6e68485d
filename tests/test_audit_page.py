"""The auditor's page in a real headless browser (Debian's chromium): the chain day with its
planted faults audited by the real applier into a database, the audit service's own HTTP app
serving it on loopback, and an auditor who reads the store-days, follows a store to its
detail and a flag to the events behind it, acknowledges flags through the page's form, and
reads it all on a tablet.

``TILLSTREAM_SCREENSHOTS=docs/images`` also writes the screenshot docs/audit.md shows there."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from tests.audit_support import DAY, ChainDay, audit_service_http
from tests.browser_support import (
    TABLET,
    chromium,
    desktop,
    full_page_screenshot,
    rows,
    scrolls_sideways,
    viewport,
)
from tillstream.core.settings import Settings
from tillstream_consumers.audit import SalesAudit
from tillstream_consumers.runtime.testing import ConsumerHarness

SETTINGS = Settings()
SCREENSHOT = "audit-store-day.png"
DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture(scope="module")
def chain() -> ChainDay:
    return ChainDay("S")


@pytest.fixture(scope="module")
def page(chain: ChainDay, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of the audit service's page over the audited chain day."""
    url = f"sqlite:///{tmp_path_factory.mktemp('audit-page') / 'audit.db'}"
    harness = ConsumerHarness(SalesAudit(SETTINGS), url)
    harness.apply_events(*chain.events())
    harness.db.close()
    with audit_service_http(url) as base:
        yield base


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    with chromium(tmp_path_factory.mktemp("chromium")) as driver:
        yield driver


@pytest.fixture
def at_desktop(browser: webdriver.Chrome) -> webdriver.Chrome:
    desktop(browser)
    return browser


def store_day_url(base: str, store: str) -> str:
    return f"{base}/audit/{store}/{DAY.isoformat()}"


def acknowledge(driver: webdriver.Chrome, flag_id: str, note: str) -> None:
    """Type a note into a flag's form, submit, and wait for the page it returns to (who
    acknowledges is who is signed in: no name is typed)."""
    row = driver.find_element(By.ID, f"flag-{flag_id}")
    form = row.find_element(By.CSS_SELECTOR, "form.ack")
    assert form.find_elements(By.NAME, "by") == []
    form.find_element(By.NAME, "note").send_keys(note)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(driver, 30).until(expected_conditions.staleness_of(row))
    WebDriverWait(driver, 30).until(
        expected_conditions.presence_of_element_located((By.ID, f"flag-{flag_id}"))
    )


def flag_rows(driver: webdriver.Chrome) -> dict[str, Any]:
    """Each flag row by kind (the last one of a kind)."""
    return {
        row.get_attribute("data-kind"): row
        for row in driver.find_elements(By.CSS_SELECTOR, "#flags tr[data-kind]")
    }


def test_the_chain_day_lists_every_store_day_with_its_status_and_flags(
    page: str, chain: ChainDay, at_desktop: webdriver.Chrome
) -> None:
    driver = at_desktop
    driver.get(page + "/")
    assert driver.title.startswith(f"Sales audit {DAY.isoformat()}")
    days = {r["Store"]: r for r in rows(driver, "store-days")}
    s1, s2, s3, s4 = chain.stores
    assert set(days) == set(chain.stores)
    assert days[s1]["Status"] == "closed-balanced" and days[s1]["Open flags"] == "none"
    assert days[s2]["Status"] == "closed-unbalanced"
    assert days[s2]["Open flags"] == "receipt gap 1, duplicate number 1"
    assert days[s3]["Status"] == "closed-unbalanced"
    assert set(days[s3]["Open flags"].split(", ")) == {
        "over short 1",
        "till not closed 1",
        "late event 1",
    }
    assert days[s3]["Not acknowledged"] == "3"
    assert days[s3]["At stake"] == "short 20.00 EUR" and days[s1]["At stake"] == "nothing"
    assert days[s2]["At stake"] == "1 receipt missing"
    assert days[s4]["Status"] == "silent" and days[s4]["Open flags"] == "silent store 1"
    summary = driver.find_element(By.CSS_SELECTOR, "p.muted").text
    assert "4 stores; 1 closed balanced, 0 closed reviewed" in summary
    assert "2 closed unbalanced, 1 silent" in summary

    driver.find_element(By.LINK_TEXT, s3).click()
    WebDriverWait(driver, 30).until(expected_conditions.url_to_be(store_day_url(page, s3)))
    heading = driver.find_element(By.TAG_NAME, "h1").text
    assert heading.startswith(f"{s3}, {DAY.isoformat()}") and "closed-unbalanced" in heading
    driver.find_element(By.PARTIAL_LINK_TEXT, "All stores").click()
    assert {r["Store"] for r in rows(driver, "store-days")} == set(chain.stores)


def test_a_store_day_shows_its_flags_and_the_events_behind_them(
    page: str, chain: ChainDay, at_desktop: webdriver.Chrome
) -> None:
    driver = at_desktop
    s2, s3 = chain.stores[1], chain.stores[2]
    missing = chain.missing[0][1]["receipt_number"]

    driver.get(store_day_url(page, s2))
    gap = flag_rows(driver)["receipt_gap"]
    assert f"number {missing} never reached head office" in gap.text
    links = gap.find_elements(By.CSS_SELECTOR, "td.events a")
    assert len(links) == 2  # the receipts either side of the gap
    before, after = int(missing) - 1, int(missing) + 1
    assert [a.text for a in links] == [
        f"T01 receipt {before:06d} at 09:00",
        f"T01 receipt {after:06d} at 11:00",
    ]
    links[1].click()
    target = driver.find_element(By.CSS_SELECTOR, "#events tr:target")
    assert f"receipt {after:06d}" in target.text and target.is_displayed()
    duplicate = flag_rows(driver)["duplicate_number"]
    assert chain.duplicated in duplicate.text
    assert len(duplicate.find_elements(By.CSS_SELECTOR, "td.events a")) == 2

    driver.get(store_day_url(page, s3))
    short = flag_rows(driver)["over_short"]
    assert "short by 20.00" in short.text and "-20.00" in short.text
    (declaration,) = short.find_elements(By.CSS_SELECTOR, "td.events a")
    declaration.click()
    target = driver.find_element(By.CSS_SELECTOR, "#events tr:target")
    assert "tender declaration" in target.text and "20:00" in target.text
    balances = rows(driver, "balances")
    cash = next(b for b in balances if b["Till"] == "T01" and b["Tender"] == "CASH")
    assert cash["Cashier"] == "op-31" and cash["Over/short"] == "-20.00 EUR"
    by_cashier = driver.find_element(By.ID, "by-cashier").text
    assert "op-31 -20.00" in by_cashier
    late = flag_rows(driver)["late_event"]
    assert f"receipt {chain.late}" in late.text
    assert "never" in {t["Till"]: t for t in rows(driver, "tills")}["T02"]["Settled at"]
    # What to do next, beside each open flag; who worked each drawer.
    assert "Next: Have the store recount the drawer" in short.text
    worked = {(r["Till"], r["Cashier"]): r for r in rows(driver, "cashiers")}
    assert worked[("T01", "op-31")]["Signed on"] == "08:00–20:00"
    assert worked[("T01", "op-31")]["Over/short"] == "-20.00 EUR"
    assert worked[("T02", "op-32")]["Signed on"] == "08:00–not signed off"


def test_an_acknowledgement_made_on_the_page_is_kept_and_balances_the_day(
    page: str, chain: ChainDay, at_desktop: webdriver.Chrome
) -> None:
    driver = at_desktop
    s2 = chain.stores[1]
    driver.get(store_day_url(page, s2))
    gap, duplicate = (flag_rows(driver)[k] for k in ("receipt_gap", "duplicate_number"))
    gap_id = gap.get_attribute("id").removeprefix("flag-")
    duplicate_id = duplicate.get_attribute("id").removeprefix("flag-")

    acknowledge(driver, gap_id, "receipt voided on paper, see <store log>")
    assert driver.current_url.endswith(f"#flag-{gap_id}")
    row = driver.find_element(By.ID, f"flag-{gap_id}")
    assert row.find_element(By.CLASS_NAME, "state").text == "open, acknowledged"
    assert "acknowledged by local user (local)" in row.text
    assert "receipt voided on paper, see <store log>" in row.text  # shown as typed, escaped
    assert not row.find_element(By.CSS_SELECTOR, "form.ack").is_displayed()  # folded away
    assert "not acknowledged" in flag_rows(driver)["duplicate_number"].text
    assert driver.find_element(By.ID, "status").text == "closed-unbalanced"
    driver.get(page + f"/?day={DAY.isoformat()}")
    assert {r["Store"]: r for r in rows(driver, "store-days")}[s2]["Not acknowledged"] == "1"

    driver.get(store_day_url(page, s2))
    acknowledge(driver, duplicate_id, "same sale rung twice, refunded")
    # Acknowledged is not balanced: reviewed, its missing receipt still at stake.
    assert driver.find_element(By.ID, "status").text == "closed-reviewed"
    assert "1 receipt missing" in driver.find_element(By.ID, "at-stake").text
    driver.get(page + "/")
    row_of_s2 = {r["Store"]: r for r in rows(driver, "store-days")}[s2]
    assert row_of_s2["Status"] == "closed-reviewed" and row_of_s2["Not acknowledged"] == "0"
    assert row_of_s2["At stake"] == "1 receipt missing"

    # A note of blanks passes the form's own check; the service refuses it, on the page.
    silent = chain.stores[3]
    driver.get(store_day_url(page, silent))
    row = flag_rows(driver)["silent_store"]
    form = row.find_element(By.CSS_SELECTOR, "form.ack")
    form.find_element(By.NAME, "note").send_keys("   ")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    error = WebDriverWait(driver, 30).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "p.error"))
    )
    assert "note: required" in error.text
    assert "not acknowledged" in flag_rows(driver)["silent_store"].text

    # A flag can be acknowledged again; an empty note is refused by the form itself.
    driver.get(store_day_url(page, s2))
    row = driver.find_element(By.ID, f"flag-{gap_id}")
    row.find_element(By.TAG_NAME, "summary").click()
    form = row.find_element(By.CSS_SELECTOR, "form.ack")
    assert form.is_displayed()
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    assert driver.current_url == store_day_url(page, s2)
    note = form.find_element(By.NAME, "note")
    assert driver.execute_script("return arguments[0].validity.valueMissing", note)


def test_the_pages_read_on_a_tablet_without_scrolling_sideways(
    page: str, chain: ChainDay, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    driver = browser
    s3 = chain.stores[2]
    viewport(driver, *TABLET)
    try:
        driver.get(page + "/")
        assert driver.execute_script("return window.innerWidth") == TABLET[0]
        assert not scrolls_sideways(driver)
        assert not scrolls_sideways(driver, driver.find_element(By.ID, "store-days"))

        driver.get(store_day_url(page, s3))
        late = flag_rows(driver)["late_event"]
        acknowledge(
            driver,
            late.get_attribute("id").removeprefix("flag-"),
            "sold after close to a customer waiting at the door",
        )
        assert not scrolls_sideways(driver)
        for main in ("flags", "balances", "events"):
            element = driver.find_element(By.ID, main)
            assert not scrolls_sideways(driver, element), f"the {main} table scrolls sideways"
        for row in flag_rows(driver).values():
            if "not acknowledged" in row.text:
                form = row.find_element(By.CSS_SELECTOR, "form.ack")
                assert form.is_displayed() and form.size["width"] > 0
        shot = Path(os.environ.get("TILLSTREAM_SCREENSHOTS") or tmp_path) / SCREENSHOT
        full_page_screenshot(driver, shot)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert shot.stat().st_size > 20_000
        assert f"](images/{SCREENSHOT})" in (DOCS / "audit.md").read_text()
        assert (DOCS / "images" / SCREENSHOT).exists()
    finally:
        desktop(driver)
