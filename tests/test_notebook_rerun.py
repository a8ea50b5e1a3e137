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
