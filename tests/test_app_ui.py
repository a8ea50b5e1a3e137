"""The served monitor, driven in Debian's chromium with Playwright: live, interactive, self-contained."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest

from browser import ARTIFACTS, PLOT_STATE, kpi, launch, number, until

pytestmark = [pytest.mark.ui, pytest.mark.slow]


def _wait(page, predicate, timeout: float):
    """``until`` that keeps the page's events flowing while it waits."""
    return until(predicate, timeout, pause=lambda: page.wait_for_timeout(500))


def _lines(page) -> list[list[str]]:
    """Entity lines of each time-series figure in the page (legend minus the band and the marks)."""
    band = {"fleet p5–p95", "fleet median"}
    return [
        [x for x in legend if x not in band and not x.startswith("|fleet z|")]
        for legend in page.evaluate(PLOT_STATE)["legends"]
    ]


def _caption(page) -> list[str]:
    """Entities named by the caption under the series ("Lines: … — a, b, c. Band: …")."""
    text = page.locator("text=Lines:").first.inner_text()
    return text.split(" — ", 1)[1].split(". Band")[0].split(", ")


def test_monitor_page_is_live_interactive_and_self_contained(served_monitor):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        errors, hosts = [], set()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: hosts.add(urlparse(r.url).hostname) if r.url.startswith("http") else None)
        page.goto(served_monitor)

        # the KPI cards fill in
        page.locator(".wb-kpi-card", has_text="events / s").first.wait_for(timeout=30_000)
        assert _wait(page, lambda: number(kpi(page, "events / s")) > 0, 30), kpi(page, "events / s")
        assert kpi(page, "lag").endswith("s")

        # the time series gains points as windows close (5 s windows, 2 s lateness)
        first = _wait(page, lambda: page.evaluate(PLOT_STATE)["band_points"], 40)
        assert first > 0
        later = _wait(page, lambda: page.evaluate(PLOT_STATE)["band_points"] > first, 30)
        assert later, "the time series got no new points"
        top = _caption(page)
        assert len(top) == 5, top  # the top 5 entities by default …
        assert top in _lines(page), _lines(page)  # … are the lines drawn

        # choosing an entity replaces the top-N lines by that entity's line
        entity = "web-us-east-1-001" if "web-us-east-1-001" not in top else "web-us-east-1-002"
        box = page.get_by_placeholder("top N when empty")
        box.click()
        box.fill(entity)
        page.get_by_role("option", name=entity).first.click()
        page.keyboard.press("Escape")
        assert _wait(page, lambda: _caption(page) == [entity], 15), _caption(page)
        assert _wait(page, lambda: [entity] in _lines(page), 15), _lines(page)
        page.screenshot(path=str(ARTIFACTS / "monitor.png"))

        # the dead-letter view lists records with their reasons and raw bytes
        page.locator(".bk-tab", has_text="Dead letters").click()
        rows = page.locator(".tabulator-row", has_text="event_id")
        rows.first.wait_for(timeout=30_000)
        assert rows.count() > 0
        assert page.locator(".tabulator-cell", has_text="field").count() > 0  # reasons name the field
        page.screenshot(path=str(ARTIFACTS / "monitor-dead-letters.png"))

        # dark theme renders too
        page.goto(served_monitor + "?theme=dark")
        page.locator(".wb-kpi-card").first.wait_for(timeout=30_000)
        _wait(page, lambda: page.evaluate(PLOT_STATE)["band_points"] > 0, 30)
        page.screenshot(path=str(ARTIFACTS / "monitor-dark.png"))
        browser.close()
    assert not errors, errors
    assert hosts <= {"localhost", "127.0.0.1"}, hosts  # nothing fetched from outside (closed networks)
