"""Many browser sessions share one pipeline, and leave nothing behind when they end."""

from __future__ import annotations

import os
import time

import pytest

from browser import PLOT_STATE, health, kpi, launch, number, until
from conftest import serving

pytestmark = [pytest.mark.ui, pytest.mark.slow]

#: ``make soak`` sets ``WORKBENCH_SOAK_MINUTES=30``: sessions keep coming and going that long
SOAK_MINUTES = float(os.environ.get("WORKBENCH_SOAK_MINUTES", "0"))


@pytest.fixture(scope="module")
def quiet_monitor():
    """A server of its own on a quiet stream (12 hosts, 60 events/s); the soak serves the default app.

    What is measured is what the sessions leave behind; the default stream keeps filling
    the feed's (bounded, 6 h) history during the minutes this takes, and every later page
    loads a longer history. The soak runs on the default app all the same: over 30
    minutes that history is a few MB.
    """
    if SOAK_MINUTES:
        with serving("serve-soak.log") as url:
            yield url
        return
    with serving("serve-sessions.log", WORKBENCH_HOSTS="12", WORKBENCH_RATE="60") as url:
        yield url


def _open(browser, url: str):
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    page.goto(url)
    return page


def _live(page) -> bool:
    """The page shows the pipeline's data: events/s and the series."""
    page.locator(".wb-kpi-card", has_text="events / s").first.wait_for(timeout=60_000)
    deadline = time.time() + 60
    while time.time() < deadline:
        if number(kpi(page, "events / s")) > 0 and page.evaluate(PLOT_STATE)["band_points"] > 0:
            return True
        page.wait_for_timeout(500)
    return False


def _close(page) -> None:
    page.context.close()


def _idle(base: str) -> bool:
    """No session, no subscription, and every view object of the ended sessions collected."""
    h = health(base, gc=True)
    return h["sessions"] == 0 and h["subscriptions"] == 0 and h["views_alive"] == 0


def test_sessions_share_one_pipeline_and_release_everything(quiet_monitor):
    from playwright.sync_api import sync_playwright

    base = quiet_monitor.rsplit("/", 1)[0]
    with sync_playwright() as p:
        browser = launch(p)
        # one session: its views hold one subscription each
        page = _open(browser, quiet_monitor)
        assert _live(page)
        one = health(base)
        _close(page)
        per_session = one["subscriptions"]
        assert per_session > 0 and one["sessions"] == 1, one

        # 10 concurrent sessions: one pipeline, one subscription set per session
        pages = [_open(browser, quiet_monitor) for _ in range(10)]
        assert all(_live(page) for page in pages)
        h = health(base)
        assert h["pipelines_in_process"] == 1, h
        assert h["sessions"] == 10, h
        assert h["subscriptions"] == 10 * per_session, h
        for page in pages:
            _close(page)
        # the warm baseline: after a first burst, so the allocator's high-water mark of
        # ten concurrent sessions is in it; what follows must not add to it
        assert until(lambda: _idle(base), 60), health(base)
        baseline = health(base, gc=True)["process"]["rss_mb"]

        # 30 more sessions: ten at once, then five at a time
        pages = [_open(browser, quiet_monitor) for _ in range(10)]
        assert all(_live(page) for page in pages)
        for page in pages:
            _close(page)

        # 20 more sessions, five at a time: 30 opened and closed in all; the soak
        # (`make soak`) goes on five at a time, with pauses, for SOAK_MINUTES
        started, opened, samples = time.monotonic(), 10, [(0.0, baseline)]
        while opened < 30 or time.monotonic() - started < SOAK_MINUTES * 60:
            batch = [_open(browser, quiet_monitor) for _ in range(5)]
            assert all(_live(page) for page in batch)
            for page in batch:
                _close(page)
            opened += 5
            if SOAK_MINUTES:
                idle = until(lambda: _idle(base), 60)
                samples.append((time.monotonic() - started, health(base, gc=True)["process"]["rss_mb"]))
                print(f"soak {samples[-1][0] / 60:5.1f} min: {opened} sessions, RSS {samples[-1][1]:.0f} MB")
                assert idle, health(base)
                time.sleep(20)  # nobody connected for a while, as between a team's visits
        browser.close()

    assert until(lambda: _idle(base), 60), health(base)
    after = health(base, gc=True)
    assert after["pipelines_in_process"] == 1, after
    assert after["subscriptions"] == 0, after
    grown = after["process"]["rss_mb"] - baseline
    print(
        f"RSS baseline {baseline:.0f} MB, after {opened} sessions in {(time.monotonic() - started) / 60:.1f} min "
        f"{after['process']['rss_mb']:.0f} MB (+{grown:.1f}; highest {max(r for _, r in samples):.0f} MB)"
    )
    assert grown <= 50, (baseline, after["process"])
