"""``workbench bench export``: the size of each static export, and how often the bundles appear in it.

Every page is measured against a baseline written in the same run: the smallest
export (the KPI cards over 1,000 events), which holds BokehJS and Panel's bundle
once. ``ratio`` is a page's size over the baseline's; ``bokehjs`` and ``panel``
count the copies of ``bokeh.min.js`` and ``panel.min.js`` in the file (one each is
right: a second copy is dead weight that every reader downloads).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

__all__ = ["BUNDLES", "bench_export", "measure"]

#: marker → what it counts (the comment Bokeh writes before each inlined bundle)
BUNDLES = {"bokehjs": "/* BEGIN bokeh.min.js */", "panel": "/* BEGIN panel.min.js */"}


def measure(path: Path) -> dict[str, Any]:
    """Size (bytes, MB) and bundle counts of one exported file (``iframe srcdoc`` pages included)."""
    import html

    from workbench.reports.offline import unpack_scripts

    text = path.read_text(encoding="utf-8")
    inner = html.unescape(text)  # a report's frozen views are pages escaped into srcdoc attributes
    inner = unpack_scripts(inner)  # the bundles are counted inside their compressed copies
    counts = {name: inner.count(marker) for name, marker in BUNDLES.items()}
    return {"bytes": path.stat().st_size, "mb": round(path.stat().st_size / 1e6, 2), **counts}


def bench_export(*, events: int = 20_000, hosts: int = 20, seed: int = 0, report: Path | None = None) -> dict[str, Any]:
    """Export the views, the dashboard and the monitor page (and the daily ``report`` notebook) and measure them."""
    from workbench.reports.export import export_views
    from workbench.reports.frozen import simulated_feed

    out: dict[str, Any] = {"events": events, "hosts": hosts, "pages": {}}
    with tempfile.TemporaryDirectory(prefix="wb-bench-export-") as tmp:
        folder = Path(tmp)
        tiny = simulated_feed(events=1_000, hosts=2, seed=seed)
        baseline = export_views(["kpis"], tiny, folder / "baseline.html")
        out["baseline"] = measure(baseline)
        for name in ("kpis", "series", "heatmap", "dashboard", "monitor"):
            feed = simulated_feed(events=events, hosts=hosts, seed=seed)
            page = measure(export_views([name], feed, folder / f"{name}.html"))
            page["ratio"] = round(page["bytes"] / out["baseline"]["bytes"], 2)
            out["pages"][name] = page
        if report is not None:
            from workbench.reports.notebook import run_report

            params = {"source": "simulate", "lake_path": str(folder / "lake"), "events": events, "hosts": hosts}
            html_path = Path(run_report(report, folder / "daily.html", params)["html"])
            page = measure(html_path)
            page["ratio"] = round(page["bytes"] / out["baseline"]["bytes"], 2)
            out["pages"]["daily-report"] = page
    out["targets"] = {
        "dashboard_mb_max": 2.0,
        "dashboard_met": out["pages"]["dashboard"]["mb"] <= 2.0,
        "bundles_once": all(p["bokehjs"] <= 1 and p["panel"] <= 1 for p in out["pages"].values()),
    }
    return out
