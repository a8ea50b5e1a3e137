"""Playwright helpers for the served app (Debian chromium; Playwright never downloads a browser)."""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]

# Reads the Bokeh documents of the page: the legend labels of each time-series figure, and
# the fleet-median point count.
PLOT_STATE = """() => {
  const out = {legends: [], band_points: 0};
  const get = (d, k) => (d instanceof Map ? d.get(k) : d[k]);
  for (const doc of Bokeh.documents) for (const m of doc.all_models) {
    const kind = m.constructor.__name__;
    if (m.name === 'wb-series') {
      const panels = [...m.center, ...m.right, ...m.left, ...m.above, ...m.below];
      const legends = panels.filter(r => r.constructor.__name__ === 'Legend');
      out.legends.push(legends.flatMap(l => l.items.map(i => i.label && (i.label.value ?? i.label))));
    }
    if (kind === 'ColumnDataSource') {
      const col = get(m.data, 'median');  // the fleet-median line of the time series
      if (col !== undefined) out.band_points = Math.max(out.band_points, col.length);
    }
  }
  return out;
}"""


def launch(playwright):
    """Debian's chromium, headless."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is missing: `make test` installs it (apt-get install chromium)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)


def health(base: str, *, gc: bool = False) -> dict:
    """The server's /workbench/health JSON (any status).

    ``gc``: first wait for the server's housekeeping (every 10 s) to trim the heap; the
    endpoint itself only reads (no ``?gc=1`` any more: a probe must not force a collection).
    """
    if gc:
        time.sleep(11)
    url = f"{base}/workbench/health"
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:  # 503 still carries the JSON body
        return json.loads(e.read())


def until(predicate, timeout: float, pause=lambda: time.sleep(0.5)):
    """Call ``predicate`` until it is truthy or ``timeout`` s have passed; returns its last value."""
    deadline = time.time() + timeout
    value = predicate()
    while not value and time.time() < deadline:
        pause()
        value = predicate()
    return value


def kpi(page, title: str) -> str:
    """Text of a KPI card's value."""
    return page.locator(".wb-kpi-card", has_text=title).locator(".wb-kpi-value").first.inner_text()


def number(text: str) -> float:
    """A KPI value as a number ("1,234" → 1234.0, "–" → 0)."""
    cleaned = text.replace(",", "").replace("%", "").replace("s", "").strip()
    try:
        return float(cleaned)
    except ValueError:
        return 0.0
