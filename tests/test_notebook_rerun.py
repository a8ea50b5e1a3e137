"""A cell run again releases what its last run displayed (a real IPython kernel, no browser).

JupyterLab sends each execution with its cell's id; a cell run again replaces its
outputs. Panel keeps every notebook output registered until the page closes its comm,
which JupyterLab does not do on a re-run, and IPython's output history keeps the view a
cell ended with: each "Run All" used to keep the previous run's views and plots alive.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SETUP = """
import gc, weakref
import panel as pn
import pyviz_comms
import workbench as wb
from workbench.views import KpiCards, Feed
from workbench.views.base import LiveView
wb.notebook()
pipe = wb.Pipeline(wb.Simulator("server_metrics", hosts=3, rate=50, seed=0), name="rerun")
pipe.standard("server_metrics", wb.Tumbling("1s"))
feed = Feed(pipe)
pipe.start()
"""
SHOW = "kpis = KpiCards(feed)\nkpis"
WAIT = "import asyncio\nawait asyncio.sleep(1.5)"  # the view refreshes and pushes its changes
STATE = (
    "gc.collect()\n"
    "_state = repr((len(pn.state._views), sum(1 for v in list(LiveView._alive) if v._callback is not None),"
    " sum(1 for v in Out.values() if isinstance(v, LiveView)), feed.subscriptions,"
    " len(pyviz_comms.CommManager._comms),"
    " sum(1 for o in gc.get_objects() if type(o).__name__ == 'Document')))"
)

UNGUARDED = (
    "import sys, panel.io.notebook as _nb\n"
    "_unguarded = repr(sorted(n for n, m in list(sys.modules.items())"
    " if getattr(m, 'push', None) is _nb.push._workbench_original))"
)


def _run(kc, code: str, cell: str | None = None, expr: str | None = None):
    content = {
        "code": code, "silent": False, "store_history": True,
        "user_expressions": {"x": expr} if expr else {}, "allow_stdin": False, "stop_on_error": True,
    }  # fmt: skip
    msg = kc.session.msg("execute_request", content, metadata={"cellId": cell} if cell else {})
    kc.shell_channel.send(msg)
    while True:
        reply = kc.get_shell_msg(timeout=120)
        if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            break
    assert reply["content"]["status"] == "ok", reply["content"]
    if expr:
        return ast.literal_eval(ast.literal_eval(reply["content"]["user_expressions"]["x"]["data"]["text/plain"]))
    return None


@pytest.mark.slow
def test_a_cell_run_again_releases_its_previous_outputs():
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", cwd=str(ROOT), env={**os.environ})
    try:
        _run(kc, SETUP, "setup")
        base, *_, comms, docs = _run(kc, STATE, "state", "_state")  # what the extension itself registers
        # every module that bound Panel's notebook push at import (HoloViews' plots, Panel's panes) uses the guard
        assert _run(kc, UNGUARDED, "unguarded", "_unguarded") == []
        _run(kc, SHOW, "show")
        _run(kc, WAIT)
        # one output registered, one view refreshing, one in Out, one subscription to the feed,
        # its two comms (the kernel's and the page's) and its document
        assert _run(kc, STATE, "state", "_state") == (base + 1, 1, 1, 1, comms + 2, docs + 1)
        for _ in range(5):
            _run(kc, SHOW, "show")  # the same cell again: its output is replaced, the old view closed
            _run(kc, WAIT)  # its updates go to a comm no page opened (no page here): they must stop
        assert _run(kc, STATE, "state", "_state") == (base + 1, 1, 1, 1, comms + 2, docs + 1)
        _run(kc, SHOW, "another")  # another cell: its own output; the first one stays
        assert _run(kc, STATE, "state", "_state") == (base + 2, 2, 2, 2, comms + 4, docs + 2)
        # (IPython's ``_``, ``__`` and ``___`` keep the last three results a while: bounded)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_held_changes_of_a_replaced_plot_are_not_sent():
    """A change held for a figure that has since been replaced would name a model the page dropped."""
    from bokeh.document import Document
    from bokeh.models import Column
    from bokeh.plotting import figure
    from panel.io.notebook import diff

    from workbench.views.notebook import _drop_detached

    doc, old, new = Document(), figure(), figure()
    root = Column(children=[old])
    doc.add_root(root)
    doc.hold("combine")
    old.title.text = "a change made just before the redraw"
    root.children = [new]  # the live plot redrawn: a new figure
    new.title.text = "the new figure's title"
    _drop_detached(doc)
    msg = diff(doc)
    sent = msg.content["events"]
    assert all(e.get("model", {}).get("id") != old.id for e in sent)
    assert old.title.id not in str(sent) and new.id in str(sent)


class _Page:
    """The page's end of an output's comm: opened late, and as strict as BokehJS about references."""

    def __init__(self, doc):
        self.id, self._comm = "0" * 32, None
        self.known = {m.id for m in doc.models}  # what the output's first rendering gave the page
        self.messages, self.refused = 0, []

    def send(self, data=None, metadata=None, buffers=()):
        import json

        content = json.loads(data) if isinstance(data, str) else None
        if not isinstance(content, dict) or "events" not in content:
            return
        self.messages += 1
        defined: set[str] = set()

        def walk(value):
            if isinstance(value, dict):
                if value.get("type") == "object" and "id" in value:
                    defined.add(value["id"])
                elif value.get("type") == "ref" and value.get("id") not in self.known | defined:
                    self.refused.append(value["id"])
                for item in value.values():
                    walk(item)
            elif isinstance(value, list):
                for item in value:
                    walk(item)

        for event in content["events"]:
            if event.get("model", {}).get("id") not in self.known | defined:
                self.refused.append(event["model"]["id"])  # BokehJS: "reference … isn't known"
            walk({k: v for k, v in event.items() if k != "model"})
        self.known |= defined


def _late_page(push) -> _Page:
    """Two updates while the page is still rendering the output, the second naming what the first brings."""
    import asyncio

    import panel as pn
    from bokeh.document import Document
    from bokeh.models import Column
    from bokeh.plotting import figure
    from tornado.ioloop import IOLoop

    async def scenario() -> _Page:
        doc, redrawn = Document(), figure()
        root = Column(children=[figure()])
        doc.add_root(root)
        doc.to_json()  # the output's first rendering, in its cell's result
        doc.hold("combine")
        page = _Page(doc)
        pn.state._comm_manager._comms[page.id] = page
        try:
            guarded = push(IOLoop.current())
            root.children = [redrawn]  # a live plot redrawn: the message brings a new figure
            guarded(doc, page)
            await asyncio.sleep(0.05)
            redrawn.title.text = "a change to the new figure"  # names the new figure's title
            guarded(doc, page)
            await asyncio.sleep(0.07)
            page._comm = True  # the page opens the output's comm
            await asyncio.sleep(0.4)
        finally:
            pn.state._comm_manager._comms.pop(page.id, None)
        return page

    return asyncio.run(scenario())


def test_updates_made_before_the_page_opens_an_output_reach_it_in_order():
    from panel.io import notebook as nb

    from workbench.views.notebook import _pushing

    original = getattr(nb.push, "_workbench_original", nb.push)
    # Panel alone: each message retried on its own 0.1 s timer; the second goes first
    assert _late_page(lambda loop: original).refused
    page = _late_page(lambda loop: _pushing(original, loop))
    assert not page.refused and page.messages == 1


def test_what_an_unopened_output_holds_stays_bounded():
    """A live source streamed to for as long as no page opens its output holds one replacement, not every batch."""
    from bokeh.core.serialization import Serializer
    from bokeh.document import Document
    from bokeh.document.events import ColumnDataChangedEvent
    from bokeh.models import ColumnDataSource

    from workbench.views.notebook import _compact_held

    doc, source = Document(), ColumnDataSource({"x": [0], "y": [0.0]})
    doc.add_root(source)
    doc.hold("combine")
    for i in range(1, 500):
        source.stream({"x": [i], "y": [i / 2]}, rollover=100)
        source.tags = [i]  # a property set each time: one change, combined by Bokeh
        _compact_held(doc)
    held = doc.callbacks._held_events
    assert len(held) == 2
    [data] = [e for e in held if isinstance(e, ColumnDataChangedEvent)]
    assert dict(data.to_serializable(Serializer(deferred=False))["data"]["entries"])["x"] == list(range(400, 500))
