"""PNG of an exported page: Debian's chromium, headless, driven by Playwright, with the network off.

No browser is downloaded: Playwright launches the system chromium (``/usr/bin/chromium``
or ``WORKBENCH_CHROMIUM``). Every request that is not for the page's own file is
aborted, so a screenshot is also a proof that the page renders offline.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from workbench.reports.errors import ExportError

__all__ = ["CHROMIUM_ARGS", "chromium_path", "screenshot"]

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Bokeh has drawn when every document is idle (all views rendered); the page may hold none.
_RENDERED = """() => {
  if (document.readyState !== 'complete') return false;
  if (!window.Bokeh) return true;
  return Bokeh.documents.length > 0 && Bokeh.documents.every(d => d.is_idle !== false);
}"""


# Where the drawn content ends (a short view is not padded to the viewport's height).
_CONTENT_BOTTOM = """() => {
  // Panel adds fixed, full-height overlays (notifications): measure the drawn Bokeh roots instead
  let bottoms = [];
  if (window.Bokeh) {
    const idx = Bokeh.index, views = idx instanceof Map ? [...idx.values()] : Object.values(idx);
    bottoms = views.filter(v => v && v.el).map(v => v.el.getBoundingClientRect().bottom + window.scrollY);
  }
  const bottom = Math.max(0, ...bottoms);
  return Math.ceil(bottom > 50 ? bottom : document.documentElement.scrollHeight) + 8;
}"""


def chromium_path() -> str:
    """The system chromium (``WORKBENCH_CHROMIUM`` overrides)."""
    path = os.environ.get("WORKBENCH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        raise ExportError(f"png export: no chromium at {path!r}; install Debian's (apt-get install chromium)")
    return path


def screenshot(
    page_path: str | Path, out: str | Path, *, width: int = 1280, height: int = 800, timeout: float = 60.0
) -> Path:
    """Render the HTML file ``page_path`` offline and save a full-page PNG to ``out``.

    Parameters
    ----------
    page_path
        An exported, self-contained HTML file.
    out
        PNG file to write.
    width, height
        Viewport size in CSS pixels (the PNG covers the whole page height).
    timeout
        Seconds to wait for Bokeh to finish drawing.
    """
    from playwright.sync_api import Error, sync_playwright

    page_path, out = Path(page_path).resolve(), Path(out)
    url = page_path.as_uri()
    blocked: list[str] = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            try:
                context = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=1)

                def route(r: object) -> None:
                    req = r.request  # type: ignore[attr-defined]
                    if req.url.startswith(("file:", "data:", "blob:", "about:")):
                        r.continue_()  # type: ignore[attr-defined]
                    else:
                        blocked.append(req.url)
                        r.abort()  # type: ignore[attr-defined]

                context.route("**/*", route)
                page = context.new_page()
                page.goto(url, wait_until="load", timeout=timeout * 1000)
                page.wait_for_function(_RENDERED, timeout=timeout * 1000, polling=100)
                page.wait_for_timeout(300)  # the last canvas paint after the document went idle
                out.parent.mkdir(parents=True, exist_ok=True)
                bottom = page.evaluate(_CONTENT_BOTTOM)
                page.screenshot(path=str(out), full_page=True, clip={"x": 0, "y": 0, "width": width, "height": bottom})
            finally:
                browser.close()
    except Error as exc:
        raise ExportError(f"png export of {str(page_path)!r}: chromium failed: {exc}") from exc
    if blocked:
        raise ExportError(f"png export of {str(page_path)!r}: the page asked the network for {blocked[:5]}")
    return out
