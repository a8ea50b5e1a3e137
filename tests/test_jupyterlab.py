"""Every notebook in a real JupyterLab, in Debian's chromium, offline: Run All, twice.

The venv's ``jupyter lab`` serves a copy of ``notebooks/`` on loopback (token auth, a
fresh runtime, config and settings directory, no browser of its own). Playwright opens
each notebook, runs all cells from the Run menu and waits for the kernel to be idle,
then checks what a person would see: no error output in any cell, no error in the
browser console, no request to any host but this machine, every plot canvas drawn
(not blank), and the live views changing between two screenshots 10 s apart. Then it
runs all cells again and checks the same, plus: the kernel holds one pipeline per name
and no view subscription is left, the cells have the same outputs as the first time
(nothing doubled), and the kernel's memory is within 30 MB of the first run's.

Screenshots: ``tests/artifacts/jupyterlab-<notebook>-run<N>[-live-a|-live-b].png``.
"""

from __future__ import annotations

import ast
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import psutil
import pytest

from browser import ARTIFACTS, launch, until

pytestmark = [pytest.mark.ui, pytest.mark.slow]

ROOT = Path(__file__).parents[1]
NOTEBOOKS = sorted(p.relative_to(ROOT / "notebooks") for p in (ROOT / "notebooks").rglob("*.ipynb"))
# shorter than a person would choose, long enough for two screenshots 10 s apart during the wait
PARAMETERS = {"events": 20_000, "duration": 15, "source": "simulate", "hosts": 20}
LOCAL = {"127.0.0.1", "localhost", "::1", "[::1]"}
MEMORY_MB = 30

# Every plot of the page and of its same-origin frames (shadow roots included): the
# layers of one Bokeh canvas share a parent; a plot is drawn when one layer holds more
# than one colour.
CANVASES = """() => {
  const out = [], parents = [];
  const walk = (root) => {
    for (const el of root.querySelectorAll('*')) {
      if (el.shadowRoot) walk(el.shadowRoot);
      if (el.tagName !== 'CANVAS' || !el.width || !el.height) continue;
      const rect = el.getBoundingClientRect();
      if (rect.width < 40 || rect.height < 40) continue;  // icons and the like
      let colours = -1;
      try {
        const data = el.getContext('2d').getImageData(0, 0, el.width, el.height).data;
        const seen = new Set();
        for (let i = 0; i < data.length && seen.size < 3; i += 4 * 97) seen.add(
          (data[i] << 24) | (data[i + 1] << 16) | (data[i + 2] << 8) | data[i + 3]);
        colours = seen.size;
      } catch (e) { colours = -2; }
      let p = parents.indexOf(el.parentNode);
      if (p < 0) {
        parents.push(el.parentNode); p = parents.length - 1; out.push({w: el.width, h: el.height, colours});
      }
      else out[p].colours = Math.max(out[p].colours, colours);
    }
  };
  walk(document);
  return out;
}"""

# The notebook's cells as the page's model holds them: outputs by type, and whether it ran.
CELLS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const cells = [];
  for (const cell of panel.content.widgets) {
    const m = cell.model;
    if (m.type !== 'code') continue;
    const outputs = [];
    for (let i = 0; i < m.outputs.length; i++) {
      const o = m.outputs.get(i).toJSON();
      const text = o.output_type === 'error' ? `${o.ename}: ${o.evalue}`
        : o.output_type === 'stream' ? (Array.isArray(o.text) ? o.text.join('') : o.text) : '';
      outputs.push({type: o.output_type, name: o.name || '', text: text.slice(0, 2000),
                    mimes: Object.keys(o.data || {})});
    }
    cells.push({count: m.executionCount, source: m.sharedModel.getSource().slice(0, 80), outputs});
  }
  return cells;
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _copy_notebooks(root: Path) -> None:
    """``notebooks/`` into ``root``, with the test's parameters in each parameters cell."""
    shutil.copytree(ROOT / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints", "data"))
    for path in (root / "notebooks").rglob("*.ipynb"):
        nb = json.loads(path.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] != "code":
                continue
            lines = "".join(cell["source"]).splitlines()
            names = {line.split("=")[0].strip() for line in lines if "=" in line and not line.startswith(" ")}
            extra = [f"{k} = {v!r}" for k, v in PARAMETERS.items() if k in names]
            if extra:
                cell["source"] = "\n".join([*lines, *extra])
                break
        path.write_text(json.dumps(nb, indent=1))


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory):
    """The venv's JupyterLab on loopback: (base URL, token, server process)."""
    root = tmp_path_factory.mktemp("lab")
    _copy_notebooks(root)
    port, token = _free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "JUPYTER_RUNTIME_DIR": str(root / ".runtime"),
        "JUPYTER_CONFIG_DIR": str(root / ".config"),
        "JUPYTERLAB_SETTINGS_DIR": str(root / ".settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(root / ".workspaces"),
        "PYTHONUNBUFFERED": "1",
    }
    settings = root / ".settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)  # no "notified about official Jupyter news?" pop-up over the notebook
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    tracker = root / ".settings" / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)  # every cell in the page (not only those scrolled to), so all views can be checked
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    log = (root / "jupyter.log").open("w")
    cmd = [
        sys.executable, "-m", "jupyterlab",
        "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True",  # the test reads the cells' outputs from the page's model
        "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",  # no look-ups in a package index
        *(["--allow-root"] if os.geteuid() == 0 else []),
    ]  # fmt: skip
    server = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as r:
                return r.status == 200
        except OSError:
            return server.poll() is not None

    try:
        assert until(up, 180), "jupyter lab did not start in 3 minutes:\n" + (root / "jupyter.log").read_text()[-3000:]
        assert server.poll() is None, (root / "jupyter.log").read_text()[-3000:]
        yield base, token, server, root
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _kernels(server: subprocess.Popen) -> list[psutil.Process]:
    return [p for p in psutil.Process(server.pid).children(recursive=True) if "ipykernel" in " ".join(p.cmdline())]


def _live_outputs(page):
    """Outputs of live views: KPI cards, plots, tables (the locator looks into shadow roots)."""
    return page.locator(".jp-OutputArea-output", has=page.locator(".wb-kpi-card, canvas, .tabulator"))


def _shot(page, element, path: str | None = None) -> bytes:
    """A screenshot of ``element``'s box (a live view never holds still, so no wait for it to be stable)."""
    element.scroll_into_view_if_needed()
    box, view = element.bounding_box(), page.viewport_size
    if not box or not view:
        return b""
    top, bottom = max(box["y"], 0), min(box["y"] + box["height"], view["height"])  # the part on screen
    if bottom - top < 10 or box["width"] < 10:
        return element.screenshot(path=path, timeout=20_000)
    clip = {"x": box["x"], "y": top, "width": box["width"], "height": bottom - top}
    return page.screenshot(clip=clip, path=path)


def _watch(page, name: str, run: int) -> list[str]:
    """While the notebook waits in its watch cell: two screenshots of each live view 10 s apart."""

    def watching() -> bool:  # every cell before the watch cell has run (queued cells show [*] too)
        cells = page.evaluate(CELLS)
        at = next(i for i, c in enumerate(cells) if "asyncio.sleep(duration)" in c["source"])
        return all(c["count"] is not None for c in cells[:at]) and cells[at]["count"] is None

    if not until(watching, 240, pause=lambda: page.wait_for_timeout(250)):
        return ["the notebook never reached its watch cell"]
    page.wait_for_timeout(2000)  # the views render
    outputs = _live_outputs(page)
    n = outputs.count()
    before = [_shot(page, outputs.nth(i)) for i in range(n)]
    page.screenshot(path=str(ARTIFACTS / f"jupyterlab-{name}-run{run}-live-a.png"))
    page.wait_for_timeout(10_000)
    after = [_shot(page, outputs.nth(i)) for i in range(n)]
    page.screenshot(path=str(ARTIFACTS / f"jupyterlab-{name}-run{run}-live-b.png"))
    still = [i for i in range(n) if before[i] == after[i]]
    return [f"live view output {i} did not change in 10 s" for i in still] if n else ["no live view output"]


def _with_cell(page, text: str) -> str:
    """A console message with the cell that was running when it came (where it came from)."""
    try:
        running = page.locator(".jp-CodeCell:has(.jp-InputPrompt:text('[*]')) .jp-InputArea-editor").first
        return f"{text.splitlines()[0]} (while running: {running.inner_text(timeout=200)[:60]!r})"
    except Exception:
        return text.splitlines()[0]


def _blank_canvases(page) -> list[str]:
    problems = []
    for frame in page.frames:
        for i, c in enumerate(frame.evaluate(CANVASES)):
            if c["colours"] < 2:
                problems.append(f"plot {i} ({c['w']}x{c['h']}) in {frame.url[:60] or 'an iframe'} is blank")
    return problems


def _kernel_state(page) -> dict:
    """Pipelines, views and subscriptions alive in the kernel (asked through the page's session)."""
    code = (
        "import gc, json, threading\n"
        "from workbench.feeds.feed import Feed\n"
        "from workbench.views.base import LiveView\n"
        "gc.collect()\n"
        "feeds = [o for o in gc.get_objects() if isinstance(o, Feed)]\n"
        "threads = sorted(t.name for t in threading.enumerate() if t.name.startswith('workbench-'))\n"
        "_wb_state = json.dumps({'running': threads,"
        " 'views_refreshing': sum(1 for v in list(LiveView._alive) if v._callback is not None),"
        " 'subscriptions': sum(f.subscriptions for f in feeds)})\n"
        "del feeds\n"
        "import ctypes\n"
        "ctypes.CDLL('libc.so.6').malloc_trim(0)\n"  # freed memory back to the OS before RSS is read
    )
    reply = page.evaluate(
        """async (code) => {
          const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
          const future = kernel.requestExecute({code, silent: true, store_history: false,
                                                user_expressions: {state: '_wb_state'}});
          const reply = await future.done;
          return reply.content;
        }""",
        code,
    )
    assert reply["status"] == "ok", reply
    text = reply["user_expressions"]["state"]["data"]["text/plain"]
    return json.loads(ast.literal_eval(text))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_in_jupyterlab(jupyterlab, notebook):
    from playwright.sync_api import sync_playwright

    base, token, server, root = jupyterlab
    name = notebook.stem
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        console, remote = [], []
        page.on("console", lambda m: console.append(_with_cell(page, m.text)) if m.type == "error" else None)
        page.on("pageerror", lambda e: console.append(str(e)))

        def route(r):
            host = urlparse(r.request.url).hostname
            if r.request.url.startswith(("http:", "https:", "ws:", "wss:")) and host not in LOCAL:
                remote.append(r.request.url)
                return r.abort()
            return r.continue_()

        page.route("**/*", route)
        page.on("websocket", lambda ws: remote.append(ws.url) if urlparse(ws.url).hostname not in LOCAL else None)
        page.goto(f"{base}/lab/tree/notebooks/{notebook.as_posix()}?reset&token={token}")
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
        assert until(
            lambda: (
                page.evaluate("() => window.jupyterapp.shell.currentWidget?.sessionContext?.kernelDisplayStatus")
                == "idle"
            ),
            120,
            pause=lambda: page.wait_for_timeout(500),
        ), "the kernel did not start"

        kernel = None
        runs = []
        for run in (1, 2):
            page.locator(".jp-Notebook").first.click(position={"x": 5, "y": 5})
            console.clear()
            live = []
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            sources = "".join(c["source"] for c in page.evaluate(CELLS))
            if "asyncio.sleep(duration)" in sources:
                live = _watch(page, name, run)

            def done() -> bool:
                busy = page.locator(".jp-Notebook .jp-InputPrompt", has_text="[*]").count()
                status = page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.kernelDisplayStatus")
                return busy == 0 and status == "idle"

            assert until(done, 300, pause=lambda: page.wait_for_timeout(500)), "the notebook did not finish running"
            page.wait_for_timeout(1500)  # the last outputs render
            cells = page.evaluate(CELLS)
            blank = []
            for i in range(page.locator(".jp-OutputArea-output").count()):
                page.locator(".jp-OutputArea-output").nth(i).scroll_into_view_if_needed()
                page.wait_for_timeout(100)
                blank += _blank_canvases(page)
            blank = sorted(set(blank))
            outputs = _live_outputs(page)
            for i in range(outputs.count()):
                _shot(page, outputs.nth(i), str(ARTIFACTS / f"jupyterlab-{name}-run{run}-output{i}.png"))
            kernel = kernel or _kernels(server)[-1]
            state = _kernel_state(page)  # after a gc.collect() and malloc_trim in the kernel
            rss = kernel.memory_info().rss / 2**20
            runs.append({"cells": cells, "rss": rss, "state": state})

            errors = [
                f"cell {i} [{c['source'][:40]!r}]: {o['type']} {o['name']}: {o['text'][:500]}"
                for i, c in enumerate(cells)
                for o in c["outputs"]
                if o["type"] == "error" or o["name"] == "stderr"
            ]
            unrun = [c["source"][:40] for c in cells if c["count"] is None]
            problems = [*errors, *(f"did not run: {u}" for u in unrun), *(f"console: {c}" for c in console[:10])]
            problems += [f"request to another host: {u}" for u in remote[:10]] + blank[:10] + live
            if state["running"]:
                problems.append(f"pipelines still running after the notebook stopped them: {state['running']}")
            if state["views_refreshing"] or state["subscriptions"]:
                problems.append(f"views still refreshing or subscribed: {state}")
            assert not problems, f"run {run} of {notebook}:\n" + "\n".join(problems)

        first, second = runs
        # Panel's loader is published once per kernel, so a second run may show fewer outputs, never more
        doubled = [
            (c["source"][:40], len(c["outputs"]), len(d["outputs"]))
            for c, d in zip(first["cells"], second["cells"], strict=True)
            if len(d["outputs"]) > len(c["outputs"]) or (c["outputs"] and not d["outputs"])
        ]
        assert not doubled, f"cells whose outputs doubled or vanished on the second run: {doubled}"
        print(f"{name}: kernel RSS {first['rss']:.0f} MB after the first Run All, {second['rss']:.0f} MB after the 2nd")
        assert second["rss"] - first["rss"] <= MEMORY_MB, f"kernel RSS {first['rss']:.0f} → {second['rss']:.0f} MB"
        browser.close()
