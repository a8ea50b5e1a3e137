"""The served monitor, driven in Debian's chromium with Playwright: live, clean, self-contained."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.ui, pytest.mark.slow]


def _kpi(page, label: str) -> int:
    text = page.locator(f"text={label}").first.evaluate("e => e.nextElementSibling.textContent")
    return int(text.replace(",", ""))


def test_monitor_page_is_live_and_self_contained(served_monitor):
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is missing: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        errors, hosts = [], set()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("request", lambda r: hosts.add(urlparse(r.url).hostname) if r.url.startswith("http") else None)
        page.goto(served_monitor)
        page.locator("text=windows").first.wait_for(timeout=30_000)
        deadline = time.time() + 30
        while _kpi(page, "windows") == 0 and time.time() < deadline:
            page.wait_for_timeout(500)
        first = second = _kpi(page, "windows")
        deadline = time.time() + 20  # windows close every 5 s of event time (plus lateness)
        while second <= first and time.time() < deadline:
            page.wait_for_timeout(500)
            second = _kpi(page, "windows")
        page.screenshot(path=str(ARTIFACTS / "monitor.png"))
        browser.close()
    assert first > 0 and second > first, (first, second)  # windows keep arriving: the page is live
    assert not errors, errors
    assert hosts <= {"localhost", "127.0.0.1"}, hosts  # nothing fetched from outside (closed networks)
