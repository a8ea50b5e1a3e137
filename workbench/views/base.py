"""``LiveView``: the base of every live view — subscribe, refresh at most 4 Hz, release.

A view reads a shared :class:`~workbench.feeds.feed.Feed` and never computes on
behalf of other sessions. Displayed on its own (a notebook cell, or ``.servable()``)
it refreshes itself from a periodic callback on its own document; inside a
:class:`~workbench.views.dashboard.Dashboard` the dashboard drives one callback for
all its views. Its subscription is released when the browser session ends, or by
``close()``.
"""

from __future__ import annotations

import abc
import time
import weakref
from typing import Any, ClassVar

import holoviews as hv
import holoviews.plotting.bokeh  # noqa: F401 - registers the Bokeh backend for every view
import panel as pn
import param
from param.parameterized import ParameterizedMetaclass

from workbench.feeds.feed import Feed, Subscription
from workbench.views.notebook import in_kernel, offline_in_kernel

offline_in_kernel()  # a notebook loads BokehJS and Panel from the installed packages, never a CDN

__all__ = ["LiveView"]


class _ViewMeta(ParameterizedMetaclass, abc.ABCMeta):
    """param's metaclass and ABCMeta together: a view must implement the abstract hooks."""


class LiveView(pn.viewable.Viewer, metaclass=_ViewMeta):
    """Base class: a live view over a feed, refreshed at most ``refresh_hz`` times a second."""

    refresh_hz = param.Number(default=2.0, bounds=(0.2, 4.0), doc="Updates per second (at most 4, latest wins).")

    _alive: ClassVar[weakref.WeakSet[LiveView]] = weakref.WeakSet()

    def __init__(self, feed: Feed, **params: Any) -> None:
        super().__init__(**params)
        if hv.Store.current_backend != "bokeh" or not hasattr(hv.opts, "Overlay"):
            hv.Store.set_current_backend("bokeh")  # makes the option builders (hv.opts.Curve, …) available
        self.feed = feed
        LiveView._alive.add(self)
        self.managed = False  # True when a dashboard refreshes this view
        self.subscription: Subscription | None = None
        self._callback: Any = None
        self._layout: Any = None
        self._drawn_version = -1  # windows version last drawn (views redrawn per closed window)
        self._drawn_at = 0.0

    @classmethod
    def alive(cls) -> int:
        """Live view objects in this process (they must not pile up as sessions come and go)."""
        return len(cls._alive)

    def _choices(self, name: str, options: list[str], value: str | None = None) -> None:
        """Offer ``options`` for the Selector ``name`` (this view only), keeping or setting its value."""
        options = list(options)
        current = value if value is not None else getattr(self, name)
        if value is None and options and current not in options:
            current = options[0]  # the default is not among this feed's metrics (another schema)
        if current not in options:
            options.append(current)  # a metric the feed has not shown yet stays selectable
        if list(self.param[name].objects) != options:
            self.param[name].objects = options
        if getattr(self, name) != current:
            setattr(self, name, current)

    def _window_due(self, every: float) -> int | None:
        """The windows version to draw now: a window closed since the last draw, ``every`` s ago or more."""
        version = self.feed.windows.version
        if version == self._drawn_version or time.monotonic() - self._drawn_at < every:
            return None
        self._drawn_version, self._drawn_at = version, time.monotonic()
        return version

    def _redraw_now(self) -> None:
        """Forget the last draw and draw (after a parameter changed)."""
        self._drawn_version, self._drawn_at = -1, 0.0
        self.refresh()

    # -- to implement ---------------------------------------------------------------
    @abc.abstractmethod
    def _build(self) -> Any:
        """Create the panes once; return the layout."""

    @abc.abstractmethod
    def refresh(self) -> None:
        """Pull what is new from the feed into the panes (cheap when nothing is)."""

    # -- lifecycle ------------------------------------------------------------------
    def attach(self) -> None:
        """Subscribe to the feed and, unless managed, start refreshing on this document."""
        if self.subscription is None or self.subscription.closed:
            self.subscription = self.feed.subscribe(type(self).__name__)
            if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
                pn.state.on_session_destroyed(lambda _ctx: self.close())
        if not self.managed and self._callback is None:
            self._callback = pn.state.add_periodic_callback(self._tick, period=int(1000 / self.refresh_hz))

    def _tick(self) -> None:
        if self.subscription is not None and not self.subscription.closed:
            self.refresh()
            if self._layout is not None and in_kernel():
                # a notebook output: Bokeh models changed directly (a heatmap's data, a figure's
                # range) reach the page only when their document is pushed over its comm
                pn.io.push_notebook(self._layout)

    @param.depends("refresh_hz", watch=True)
    def _retime(self) -> None:
        if self._callback is not None:
            self._callback.period = int(1000 / self.refresh_hz)

    def close(self) -> None:
        """Stop refreshing and release the subscription (idempotent)."""
        if self._callback is not None:
            self._callback.stop()
            self._callback = None
        if self.subscription is not None:
            self.subscription.close()

    def __panel__(self) -> Any:
        """The layout (built once), attached to the feed."""
        if self._layout is None:
            self._layout = self._build()
            self.refresh()
        self.attach()
        return self._layout
