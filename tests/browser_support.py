"""A real headless browser for the tests: Debian's ``chromium``, driven by its own
``chromedriver`` through Selenium. Both paths are set, and Selenium Manager is told to stay
offline, so nothing is ever downloaded; the browser only visits loopback."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PACKAGES = ("chromium", "chromium-driver")
TABLET = (768, 1024)


def ensure_chromium() -> None:
    """Chromium and its driver, installed from Debian if missing and we may (root with
    apt-get, as ``make test-deps`` does); skip if they cannot be, unless in CI, which installs
    them (``.ci/run``), where their absence fails."""
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", *PACKAGES],
            check=True,
            env=env,
            timeout=900,
            stdout=subprocess.DEVNULL,
        )
        return
    reason = (
        f"the auditor's page is tested in Debian's chromium: {CHROMIUM} or {CHROMEDRIVER} is "
        "missing and cannot be installed here (not root): "
        f"sudo apt-get install {' '.join(PACKAGES)}"
    )
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@contextlib.contextmanager
def chromium(workdir: Path) -> Iterator[webdriver.Chrome]:
    """A headless Chromium at a desktop size; quit (browser and driver) on leaving."""
    ensure_chromium()
    options = Options()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in a container has no user namespace for the sandbox
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={workdir / 'profile'}",
        "--window-size=1280,900",
    ):
        options.add_argument(arg)
    service = Service(
        executable_path=str(CHROMEDRIVER), log_output=str(workdir / "chromedriver.log")
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SE_OFFLINE", "true")  # Selenium Manager: never fetch a browser or driver
        driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        driver.quit()  # ends the browser and the chromedriver it started


def viewport(driver: webdriver.Chrome, width: int, height: int) -> None:
    """The page's viewport exactly ``width`` x ``height`` CSS pixels (a tablet's)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": True},
    )


def desktop(driver: webdriver.Chrome) -> None:
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def rows(driver: webdriver.Chrome, table_id: str) -> list[dict[str, str]]:
    """The rows of table ``table_id`` as shown: each a dict of header -> cell text."""
    element = driver.find_element(By.ID, table_id)
    headers = [th.text for th in element.find_elements(By.CSS_SELECTOR, "tr th")]
    return [
        dict(zip(headers, [td.text for td in tr.find_elements(By.TAG_NAME, "td")], strict=True))
        for tr in element.find_elements(By.TAG_NAME, "tr")
        if tr.find_elements(By.TAG_NAME, "td")
    ]


def scrolls_sideways(driver: webdriver.Chrome, table: WebElement | None = None) -> bool:
    """Whether the page scrolls sideways (wider than the viewport), or ``table`` does: wider
    than the box it sits in, or than the viewport."""
    if table is None:
        script = "return document.documentElement.scrollWidth > window.innerWidth"
        return bool(driver.execute_script(script))
    script = (
        "const t = arguments[0], box = t.parentElement;"
        "return box.scrollWidth > box.clientWidth || t.scrollWidth > t.clientWidth"
        " || t.getBoundingClientRect().right > window.innerWidth"
    )
    return bool(driver.execute_script(script, table))


def full_page_screenshot(driver: webdriver.Chrome, path: Path) -> None:
    """A PNG of the whole page at the current viewport width."""
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics["cssContentSize"]
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
        },
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))
