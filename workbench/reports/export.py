"""Static exports: any view or app to one self-contained HTML file (or a PNG of it).

The HTML works offline: Bokeh's and Panel's JavaScript and CSS are inlined, the
data is embedded in the document, and client-side interaction (zoom, pan, hover,
table sorting) keeps working because it runs in BokehJS. The bundles and the
documents are written gzip-compressed and unpacked by the page itself
(:func:`~workbench.reports.offline.pack_scripts`; ``unpack_scripts`` gives the page
as it was, to search it). Python callbacks do not run in a static file: widgets
show the values they had when exported. A PNG is the exported page rendered by
headless chromium (:mod:`workbench.reports.screenshot`).

Examples
--------
>>> import tempfile, pathlib
>>> from workbench.reports.frozen import simulated_feed
>>> from workbench.reports.offline import unpack_scripts
>>> from workbench.views import KpiCards
>>> path = export(KpiCards(simulated_feed(events=2_000, hosts=4)), pathlib.Path(tempfile.mkdtemp()) / "kpis.html")
>>> page = unpack_scripts(path.read_text())
>>> "snapshot at" in page, "events / s" in page, network_references(page)
(True, False, [])
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import panel as pn

from workbench.feeds.feed import Feed
from workbench.reports import VIEWS
from workbench.reports.errors import ExportError
from workbench.reports.offline import make_offline, network_references
from workbench.reports.screenshot import screenshot
from workbench.storage.atomic import atomic_write

__all__ = ["VIEWS", "build_view", "embed", "export", "export_html", "export_views", "network_references"]


def _views() -> dict[str, Callable[..., Any]]:
    from workbench.views import (
        Dashboard,
        DeadLetters,
        EntityHeatmap,
        KpiCards,
        LatestWindows,
        MetricSeries,
        PipelineView,
    )

    def monitor(feed: Feed, **params: Any) -> Any:
        from workbench.apps.monitor import create_app
        from workbench.errors import ConfigError

        if params:
            raise ConfigError(f"export: the monitor page takes no view parameters, not {sorted(params)}")
        return create_app(feed)

    return {
        "dashboard": Dashboard,
        "series": MetricSeries,
        "heatmap": EntityHeatmap,
        "kpis": KpiCards,
        "latest": LatestWindows,
        "dead-letters": DeadLetters,
        "pipeline": PipelineView,
        "monitor": monitor,  # the served app's page, as a file
    }


def build_view(name: str, feed: Feed, **params: Any) -> Any:
    """The view (or app page) called ``name`` over ``feed``, with its parameters set.

    >>> from workbench.reports.frozen import simulated_feed
    >>> build_view("series", simulated_feed(events=2_000, hosts=4), metric="cpu_max").metric
    'cpu_max'
    >>> build_view("chart", None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    workbench.errors.ConfigError: export: unknown view 'chart'; choose one of dashboard, series, heatmap, ..., monitor
    """
    from workbench.errors import ConfigError

    views = _views()
    if name not in views:
        raise ConfigError(f"export: unknown view {name!r}; choose one of {', '.join(VIEWS)}")
    return views[name](feed, **params)


def _write(f: BinaryIO, text: str) -> None:
    f.write(text.encode("utf-8"))


def _layout(view: Any) -> Any:
    if isinstance(view, pn.template.base.BaseTemplate):
        return view
    return pn.panel(view)


@contextlib.contextmanager
def _no_notebook_output() -> Iterator[None]:
    """Keep Panel's notebook loaders out of a notebook's outputs while exporting.

    In a kernel, ``pn.extension`` and rendering display scripts that load Bokeh and
    Panel from their CDN; in a report those outputs would make the page fetch them.
    The exported page carries its own copy, so they are captured and dropped.
    """
    try:
        from IPython import get_ipython
        from IPython.utils.capture import capture_output
    except ImportError:
        yield
        return
    if get_ipython() is None:
        yield
        return
    with capture_output(stdout=False, stderr=False, display=True):
        yield


def export_html(view: Any, *, title: str | None = None) -> str:
    """The self-contained HTML page of ``view`` (a view, any Panel object or a template)."""
    buffer = io.StringIO()
    title = title or getattr(view, "title", None) or type(view).__name__
    subscription = getattr(view, "subscription", None)
    shown = subscription is not None and not subscription.closed  # a live view on screen stays live
    with _no_notebook_output():
        pn.extension("tabulator")
        try:
            _layout(view).save(buffer, resources="inline", title=str(title))
        finally:
            close = getattr(view, "close", None)
            if callable(close) and not shown:
                close()  # drawn only for the file: it needs no subscription now
    return make_offline(buffer.getvalue())


def export(view: Any, path: str | Path, *, title: str | None = None, width: int = 1280, height: int = 800) -> Path:
    """Save ``view`` to ``path``: a self-contained ``.html`` page or a ``.png`` image of it.

    Parameters
    ----------
    view
        A Workbench view, a Panel object, or a Panel template (an app page).
    path
        ``*.html`` or ``*.png``.
    title
        Page title (default: the view's class name).
    width, height
        Browser viewport for a PNG (the image covers the whole page height).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ExportError
        When the page would load anything from the network, or chromium cannot render it.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".html", ".png"):
        raise ExportError(f"export {str(path)!r}: the file must end in .html or .png, not {path.suffix!r}")
    page = export_html(view, title=title)
    if suffix == ".html":
        atomic_write(path, lambda f: _write(f, page))
        return path
    with tempfile.TemporaryDirectory(prefix="wb-export-") as tmp:
        html = Path(tmp) / "page.html"
        html.write_text(page, encoding="utf-8")
        return screenshot(html, path, width=width, height=height)


def export_views(
    names: list[str], feed: Feed, path: str | Path, *, params: dict[str, Any] | None = None, title: str | None = None
) -> Path:
    """Export the views called ``names`` over ``feed``, one under the other, to ``path``.

    ``params`` set the parameters each view has (``metric``, ``top_n`` …); one that no
    chosen view has is an error, not silently ignored.
    """
    from workbench.errors import ConfigError

    params = dict(params or {})
    if not names:
        raise ConfigError(f"export: choose at least one view of {', '.join(VIEWS)}")
    if "monitor" in names and len(names) > 1:
        raise ConfigError("export: the monitor app is a whole page; export it on its own")
    metric = params.get("metric")
    known = list(getattr(feed, "metrics", None) or [])
    if metric is not None and known and metric not in known:  # a frozen feed holds all its metrics
        raise ConfigError(f"export: -p metric {metric!r} is not a metric of these windows; metrics: {', '.join(known)}")
    factories = _views()
    views, used = [], set()
    for name in names:
        accepts = getattr(factories.get(name), "param", ())  # a view class; the monitor page takes none
        mine = {k: v for k, v in params.items() if k in accepts and k != "name"}
        used |= set(mine)
        views.append(build_view(name, feed, **mine))
    unknown = sorted(set(params) - used)
    if unknown:
        raise ConfigError(f"export: no chosen view ({', '.join(names)}) has the parameter(s) {unknown}")
    if len(views) == 1:
        return export(views[0], path, title=title or names[0])
    layout = pn.Column(*views, sizing_mode="stretch_width")
    try:
        return export(layout, path, title=title or " + ".join(names))
    finally:
        for view in views:
            view.close()


def embed(view: Any, *, height: int = 520, title: str | None = None) -> Any:
    """``view`` frozen now, as a notebook output: its exported page in an ``<iframe srcdoc>``.

    The page is self-contained, so the output survives ``nbconvert`` to HTML and
    opens offline; the iframe keeps its scripts apart from the notebook's.
    """
    import html

    from IPython.display import HTML

    page = export_html(view, title=title)
    return HTML(
        f'<div class="wb-frozen"><iframe class="wb-frozen-view" title="{html.escape(title or type(view).__name__)}" '
        f'style="width:100%;height:{int(height)}px;border:0" srcdoc="{html.escape(page, quote=True)}"></iframe></div>'
    )
