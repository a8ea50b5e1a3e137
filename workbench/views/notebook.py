"""``wb.notebook()``: Panel set up for a notebook, every resource from the installed packages.

By default Panel's notebook loader fetches BokehJS, Panel's bundle, the Tabulator
widget and their stylesheets from a CDN: on a machine without internet the views stay
blank. Workbench turns Panel's ``inline`` mode on as soon as its views are imported in
a kernel (:func:`offline_in_kernel`, called by :mod:`workbench.views.base`), and
:func:`notebook` is the one line a notebook's import cell needs — ``pn.extension`` with
the widgets the views use, inline. No environment variable is involved.

Examples
--------
>>> import panel as pn
>>> from workbench.views.notebook import EXTENSIONS
>>> EXTENSIONS
('tabulator',)
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import re
import threading
from collections import OrderedDict
from functools import cache
from pathlib import Path
from typing import Any

import panel as pn

__all__ = ["EXTENSIONS", "in_kernel", "notebook", "offline_in_kernel"]

log = logging.getLogger(__name__)

#: Panel extensions the views need (the dead-letter, pipeline and alert tables)
EXTENSIONS = ("tabulator",)


@cache
def in_kernel() -> bool:
    """Whether this process is an IPython kernel (a notebook), not a server or a script."""
    if not hasattr(builtins, "__IPYTHON__"):
        return False
    from IPython import get_ipython

    return getattr(get_ipython(), "kernel", None) is not None


def offline_in_kernel() -> None:
    """In a kernel, make Panel inline its resources (the default would load them from a CDN)."""
    if not in_kernel():
        return
    if not pn.config.inline:
        setattr(pn.config, "inline", True)  # noqa: B010 - a settable config the stubs call read-only
    import panel.io.notebook as nb

    if not getattr(nb.diff, "_workbench_inline", False):
        nb.diff = _inlining(nb.diff)
    from panel.viewable import Viewable

    _guard_pushes()
    if not getattr(Viewable._on_msg, "_workbench_flush", False):
        Viewable._on_msg = _flushing(Viewable._on_msg)  # type: ignore[method-assign]
    _release_on_rerun()


#: cell id → the Panel outputs (root refs) its last run displayed, and the ``Out`` entry of its
#: result when that is a Panel object or a view; bounded (the oldest cells are dropped)
_CELL_OUTPUTS: OrderedDict[str, tuple[set[str], int | None]] = OrderedDict()
_MAX_CELLS = 10_000
_RUN: dict[str, Any] = {"cell": None, "before": set()}
#: the id of a comm pyviz_comms made for an output (a uuid4's hex)
_OUTPUT_COMM = re.compile(r"[0-9a-f]{32}")


def _release(ref: str) -> None:
    """Forget one Panel output: its document, models and comm (the page no longer shows it)."""
    entry = pn.state._views.pop(ref, None)
    pn.state._handles.pop(ref, None)
    if entry is None:
        return
    viewable, root, doc, comm = entry
    pair = getattr(viewable, "_comms", {}).get(ref) or ()  # read before Panel's cleanup forgets them
    try:
        viewable._cleanup(root)
    except Exception:
        log.debug("cleaning up a replaced output failed", exc_info=True)
    if doc is not None:
        # Panel caches a document's stylesheets in a dict weakly keyed by the document, whose
        # values (the stylesheets, attached to it) hold it: the document of an output that never
        # sent an update stayed alive. Its held changes go nowhere now.
        pn.state._stylesheets.pop(doc, None)
        doc.callbacks._held_events = []
    from workbench.views.base import LiveView  # here: the views import this module

    inside = {id(o) for o in viewable.select()} if hasattr(viewable, "select") else {id(viewable)}
    for view in list(LiveView._alive):
        layout = view._layout
        if layout is not None and not view.managed and id(layout) in inside and not getattr(layout, "_models", None):
            view.close()  # shown nowhere now: stop refreshing it and release its subscription
    for channel in {id(c): c for c in (comm, *pair) if c is not None}.values():
        _WAITING.pop(channel.id, None)
        _forget(channel)


def _forget(channel: Any) -> None:
    """Close one of an output's comms and drop every registration that keeps it.

    An output has two comms: the kernel's and the page's, whose message handler holds the
    viewable and, through its CommManager model, the whole document. pyviz_comms keeps every
    comm in a registry that is a class attribute, and the page's comm is also a target of
    the kernel's comm manager; closing a comm removes neither.
    """
    getattr(pn.state._comm_manager, "_comms", {}).pop(channel.id, None)
    targets = getattr(getattr(channel, "manager", None), "targets", None)
    if isinstance(targets, dict):
        targets.pop(channel.id, None)
    with contextlib.suppress(Exception):  # already closed by the page
        channel.close()


def _prune_comms() -> None:
    """Forget the page-side comms of outputs Panel no longer registers (it forgets an output, not its comms).

    A page's comm names its output: its message handler is Panel's ``_on_msg`` bound to the
    output's root id. Only those whose output is gone are dropped; a comm of an output still
    shown (or being shown) is never touched.
    """
    registry = getattr(pn.state._comm_manager, "_comms", {})
    for cid, channel in list(registry.items()):
        args = getattr(getattr(channel, "_on_msg", None), "args", ())
        ref = args[0] if args and isinstance(args[0], str) else None
        if ref is not None and ref not in pn.state._views and _OUTPUT_COMM.fullmatch(cid):
            _forget(channel)


def _release_on_rerun() -> None:
    """Release a cell's Panel outputs when the cell runs again (the page replaces them).

    Panel registers every notebook output (its document, Bokeh models and comm) until the
    page closes its comm, which JupyterLab does not do when a cell's outputs are cleared
    for a new run: each "Run All" kept the previous run's outputs alive (about 30 MB, 320
    Bokeh models, seven documents per run of ``01-explore-live``). The outputs a cell
    displayed are recorded after it runs, and released before it runs again.
    """
    from IPython import get_ipython

    ip = get_ipython()
    if ip is None or getattr(ip, "_workbench_release", False):
        return

    def before(info: Any) -> None:
        cell = getattr(info, "cell_id", None)
        _RUN["cell"], _RUN["before"] = cell, set(pn.state._views)
        refs, count = _CELL_OUTPUTS.pop(cell, (set(), None)) if cell else (set(), None)
        for ref in refs:
            _release(ref)
        _prune_comms()
        if count is not None:  # IPython's output history would keep the replaced view alive
            replaced = ip.user_ns.get("Out", {}).pop(count, None)
            for names in (ip.user_ns, getattr(ip, "user_ns_hidden", {})):  # ``_7``: IPython puts it in both
                names.pop(f"_{count}", None)
            for name in ("_", "__", "___"):
                if replaced is not None and ip.user_ns.get(name) is replaced:
                    ip.user_ns[name] = ""
                    setattr(ip.displayhook, name, "")

    def after(result: Any) -> None:
        cell = _RUN["cell"]
        shown = set(pn.state._views) - _RUN["before"]
        value = getattr(result, "result", None)
        count = getattr(result, "execution_count", None)
        panel_result = isinstance(value, pn.viewable.Viewable | pn.viewable.Viewer)
        if cell and (shown or panel_result):
            _CELL_OUTPUTS[cell] = (shown, count if panel_result else None)
            while len(_CELL_OUTPUTS) > _MAX_CELLS:
                _CELL_OUTPUTS.popitem(last=False)
        _RUN["cell"], _RUN["before"] = None, set()

    ip.events.register("pre_run_cell", before)
    ip.events.register("post_run_cell", after)
    ip._workbench_release = True


#: outputs whose page has not opened their comm yet: comm id → (document, comm, binary); their
#: changes stay held in the document until it does
_WAITING: dict[str, tuple[Any, Any, bool]] = {}
_POLL_LOCK = threading.Lock()
_POLL = {"on": False}
#: modules that bind Panel's notebook ``push`` under their own name when imported
_PUSHERS = (
    "panel.io.notebook",
    "panel.io",
    "panel.reactive",
    "panel.pane.base",
    "panel.pane.plot",
    "panel.widgets.misc",
    "panel.io.datamodel",
    "holoviews.plotting.plot",
)
#: a waiting output keeps at most this many one-off messages (``MessageSent``: a scroll, a notification)
_MAX_MESSAGES = 1_000


def _guard_pushes() -> None:
    """Route every caller of Panel's notebook ``push`` through :func:`_pushing` (some bind it at import)."""
    import importlib

    import panel.io.notebook as nb

    original = getattr(nb.push, "_workbench_original", nb.push)
    guarded = nb.push if getattr(nb.push, "_workbench_guard", False) else _pushing(original)
    for name in _PUSHERS:
        module = importlib.import_module(name)
        if getattr(module, "push", None) is original:
            setattr(module, "push", guarded)  # noqa: B010 - not every one of them declares it


def _pushing(push: Any, loop: Any = None) -> Any:
    """Panel's notebook ``push``, keeping an output's updates in order until its page opens the comm.

    Panel turns an update into a message at once and, when the page has not opened the
    output's comm yet, sends it by trying again every 0.1 s, each message on its own
    timer. Once the comm opened, whichever timer fired first went first — and an update
    made just after the opening went straight out, ahead of older ones still waiting: a
    message naming a plot that an earlier one (not sent yet) brings reached the page first,
    BokehJS refused it ("reference … isn't known") and that output stopped updating. A live
    view's first seconds, while "Run All" is still rendering the page, were exactly that.

    Here no message is made while the comm is closed: the changes stay held in the output's
    document (a property set twice is one change; a data source's repeated updates become
    one replacement by its current data, so what is held stays bounded), and the whole
    document is sent in one message as soon as the page opens the comm. An output that is
    released (its cell ran again) before its page opened it is dropped.
    """
    from tornado.ioloop import IOLoop

    main = loop or IOLoop.current()

    def registered(comm: Any) -> bool:
        return comm.id in getattr(pn.state._comm_manager, "_comms", {})

    def poll() -> None:
        for cid, (doc, comm, binary) in list(_WAITING.items()):
            if getattr(comm, "_comm", None):
                _WAITING.pop(cid, None)
                push(doc, comm, binary)
            elif not registered(comm):
                _WAITING.pop(cid, None)
        with _POLL_LOCK:
            if _WAITING:
                main.call_later(0.1, poll)
            else:
                _POLL["on"] = False

    def guarded(doc: Any, comm: Any, binary: bool = True, msg: Any = None) -> None:
        if getattr(comm, "_comm", None) or msg is not None:
            if msg is None:
                _WAITING.pop(comm.id, None)
            push(doc, comm, binary, msg=msg)
            return
        if not registered(comm):
            return  # released: no page will show it
        _WAITING[comm.id] = (doc, comm, binary)
        _compact_held(doc)
        with _POLL_LOCK:
            if not _POLL["on"]:
                _POLL["on"] = True
                main.add_callback(poll)  # thread-safe: Panel may push from a worker thread

    guarded._workbench_guard = True  # type: ignore[attr-defined]
    guarded._workbench_original = push  # type: ignore[attr-defined]
    return guarded


def _compact_held(doc: Any) -> None:
    """Keep what a document holds for a page bounded: a source's repeated data updates become one.

    Every stream, patch or replacement of a data source's columns is a change of its own
    (Bokeh combines only property changes); while the page has not opened the output, they
    are replaced by one replacement with the source's current data, where the last of them
    was. One-off messages beyond the newest :data:`_MAX_MESSAGES` are dropped, and counted
    in the log.
    """
    from bokeh.document.events import (
        ColumnDataChangedEvent,
        ColumnsPatchedEvent,
        ColumnsStreamedEvent,
        MessageSentEvent,
    )

    held = doc.callbacks._held_events
    column = (ColumnDataChangedEvent, ColumnsPatchedEvent, ColumnsStreamedEvent)
    last: dict[int, int] = {}
    count: dict[int, int] = {}
    messages = 0
    for i, event in enumerate(held):
        if isinstance(event, column):
            last[id(event.model)] = i
            count[id(event.model)] = count.get(id(event.model), 0) + 1
        messages += isinstance(event, MessageSentEvent)
    if all(n == 1 for n in count.values()) and messages <= _MAX_MESSAGES:
        return
    kept, skip = [], messages - _MAX_MESSAGES
    for i, event in enumerate(held):
        if isinstance(event, column) and count[id(event.model)] > 1:
            if i == last[id(event.model)]:
                kept.append(ColumnDataChangedEvent(doc, event.model, event.attr, setter=event.setter))
        elif isinstance(event, MessageSentEvent) and skip > 0:
            skip -= 1
        else:
            kept.append(event)
    if messages > _MAX_MESSAGES:
        log.warning("an output no page has opened dropped %d one-off messages", messages - _MAX_MESSAGES)
    doc.callbacks._held_events = kept


def _flushing(on_msg: Any) -> Any:
    """Panel's handler of a message from the page, sending the output's pending changes first.

    Panel applies a message from the page (a resize, a table's scroll) inside a document
    hold and then releases it; releasing drops the changes still held for that output —
    made since the last push — instead of sending them. The page and the kernel then
    disagree about which models exist, and the next update names a model the page does not
    hold ("reference … isn't known"), after which that output stops updating.
    """
    from panel.io.notebook import push_on_root
    from tornado.ioloop import IOLoop

    main = IOLoop.current()  # the kernel's loop: cells, the views' refreshes and their pushes run on it

    def handle(self: Any, ref: str, manager: Any, msg: Any) -> None:
        if threading.current_thread() is not threading.main_thread():
            # ipykernel 7 handles the page's comm messages on subshell threads: applied there, a
            # message changed the document while the kernel's loop pushed it, and the pieces of
            # two Bokeh messages interleaved on one comm (the page then read a header as content:
            # "s is not iterable", "Expected text fragment but received binary fragment", and
            # every later update of that output named models it never received)
            main.add_callback(handle, self, ref, manager, msg)
            return
        view = pn.state._views.get(ref)
        doc = view[2] if view is not None else None
        held = doc.callbacks.hold_value if doc is not None else None
        if view is not None:
            push_on_root(ref)
        try:
            on_msg(self, ref, manager, msg)
        except Exception:
            log.warning("a message from the page to %s failed", type(self).__name__, exc_info=True)
        finally:
            # Panel re-holds the document after applying the message only when releasing it
            # raised nothing: a callback failing there left the output's document unheld, and
            # every later change of that output went to no comm (a table that stopped updating)
            if doc is not None and held and doc.callbacks.hold_value is None:
                doc.hold(held)

    handle._workbench_flush = True  # type: ignore[attr-defined]
    return handle


@cache
def _css(url: str) -> str | None:
    """The text of a stylesheet on Panel's CDN, read from the installed Panel (``None``: not one of its files)."""
    from panel.io.resources import CDN_DIST, DIST_DIR

    if not url.startswith(CDN_DIST):
        return None
    path = Path(DIST_DIR) / url[len(CDN_DIST) :].split("?", 1)[0]
    return path.read_text(encoding="utf-8") if path.is_file() else None


def _inline_models(top: Any, *, subtree: bool = True) -> None:
    from bokeh.models import ImportedStyleSheet, InlineStyleSheet
    from bokeh.models.ui import UIElement

    for model in top.select({"type": UIElement}) if subtree else [top]:
        if not isinstance(model, UIElement):
            continue
        sheets = list(model.stylesheets)
        changed = False
        for i, sheet in enumerate(sheets):
            if isinstance(sheet, ImportedStyleSheet) and (css := _css(sheet.url)) is not None:
                sheets[i], changed = InlineStyleSheet(css=css), True
        if changed:
            model.stylesheets = sheets


def _inline_held(doc: Any) -> None:
    """Inline the CDN stylesheets of what the document's held changes send to the page."""
    from bokeh.document.events import ModelChangedEvent
    from bokeh.model import Model

    for event in list(doc.callbacks._held_events):
        if not isinstance(event, ModelChangedEvent):
            continue
        if event.attr == "stylesheets":
            _inline_models(event.model, subtree=False)
            event.new = list(getattr(event.model, "stylesheets", event.new))
            continue
        values = event.new if isinstance(event.new, (list, tuple)) else [event.new]
        for value in values:
            if isinstance(value, Model):
                _inline_models(value)


def _drop_detached(doc: Any) -> None:
    """Drop held changes of models no longer in ``doc`` (a plot replaced since they were made).

    A live plot redrawn with other lines is a new figure; a change to the old one still held
    for the page named a model the page had already dropped with it: BokehJS refused the
    whole update ("reference … isn't known") and the output stopped updating.
    """
    from bokeh.document.events import (
        ColumnDataChangedEvent,
        ColumnsPatchedEvent,
        ColumnsStreamedEvent,
        ModelChangedEvent,
    )

    kinds = (ModelChangedEvent, ColumnDataChangedEvent, ColumnsStreamedEvent, ColumnsPatchedEvent)
    held = doc.callbacks._held_events
    kept = [e for e in held if not isinstance(e, kinds) or e.model.document is doc]
    if len(kept) != len(held):
        doc.callbacks._held_events = kept


def _inlining(diff: Any) -> Any:
    """Panel's notebook ``diff`` (what each update sends over the comm), with stylesheets inlined first.

    Panel inlines the stylesheets of an output when it first renders it in ``inline``
    mode, but an update recomputes a model's stylesheets — and a redrawn plot brings new
    models — naming Panel's CDN again: on a machine without internet a live view lost
    its styles at its first update.
    """

    def inlined(doc: Any, *args: Any, **kwargs: Any) -> Any:
        _drop_detached(doc)
        if pn.config.inline:
            _inline_held(doc)
        return diff(doc, *args, **kwargs)

    inlined._workbench_inline = True  # type: ignore[attr-defined]
    return inlined


def notebook(*extensions: str, **config: Any) -> None:
    """Load Panel and the views' widgets into this notebook, offline.

    Parameters
    ----------
    extensions
        More Panel extensions (``"vega"``, ``"plotly"`` …) besides the views' own.
    config
        Panel settings, as for ``pn.extension`` (``sizing_mode="stretch_width"`` …).
    """
    setattr(pn.config, "inline", True)  # noqa: B010 - a settable config the stubs call read-only
    wanted = list(dict.fromkeys([*EXTENSIONS, *extensions]))
    pn.extension(*wanted, inline=True, **config)
