"""Static exports: one self-contained HTML file that renders offline, and a PNG of it."""

from __future__ import annotations

import html as htmllib
import json
import re

import pytest

from workbench import Lake
from workbench.cli import main
from workbench.reports.errors import ExportError
from workbench.reports.export import export, export_views
from workbench.reports.frozen import lake_feed, simulated_feed
from workbench.reports.offline import PACKED, make_offline, network_references, pack_scripts, unpack_scripts

from browser import ARTIFACTS, launch

# (id, start, end) of every numeric range of the page's Bokeh documents
RANGES = """() => { const out = []; for (const d of Bokeh.documents) for (const m of d.all_models)
  if (m.constructor.__name__.endsWith('Range1d') && typeof m.start === 'number') out.push([m.id, m.start, m.end]);
  return out; }"""


def _doc_page(*sheets: str) -> str:
    docs = {
        "d": {
            "roots": [
                {
                    "type": "object",
                    "name": "Column",
                    "id": "p1",
                    "attributes": {
                        "stylesheets": [
                            {"type": "object", "name": "ImportedStyleSheet", "id": f"s{i}", "attributes": {"url": u}}
                            for i, u in enumerate(sheets)
                        ]
                    },
                }
            ]
        }
    }
    body = htmllib.escape(json.dumps(docs), quote=False)
    return f'<html><head></head><body><script type="application/json" id="x">{body}</script></body></html>'


def _docs(page: str) -> dict:
    page = unpack_scripts(page)
    m = re.search(r'<script type="application/json" id="[^"]+">(.*?)</script>', page, re.S)
    assert m, "no Bokeh document in the page"
    return json.loads(htmllib.unescape(m.group(1)))


@pytest.fixture(scope="module")
def feed():
    return simulated_feed(events=6_000, hosts=8, seed=3)


def test_panel_stylesheets_are_inlined_from_the_installed_panel():
    from panel.io.resources import CDN_DIST

    page = _doc_page(f"{CDN_DIST}css/alerts.css", f"{CDN_DIST}bundled/font-awesome/css/all.min.css")
    assert len(network_references(page)) == 2
    out = make_offline(page)
    assert network_references(out) == []
    sheets = _docs(out)["d"]["roots"][0]["attributes"]["stylesheets"]
    assert [s["name"] for s in sheets] == ["InlineStyleSheet", "InlineStyleSheet"]
    assert ".bk-panel-models-layout-Card" in sheets[0]["attributes"]["css"] or "alert" in sheets[0]["attributes"]["css"]
    fonts = sheets[1]["attributes"]["css"]
    assert "data:font/woff2;base64," in fonts and "../webfonts/" not in fonts


def test_a_stylesheet_from_anywhere_else_is_refused():
    with pytest.raises(ExportError, match=r"https://fonts.example.org/x.css"):
        make_offline(_doc_page("https://fonts.example.org/x.css"))


def test_network_references_finds_what_a_browser_would_fetch():
    page = (
        '<link rel="stylesheet" href="https://a.org/s.css"><script src="//b.org/x.js"></script>'
        '<style>@import url("https://c.org/i.css");</style><script>fetch("https://not-a-source.org")</script>'
        '<img src="data:image/png;base64,AAAA">'
    )
    assert network_references(page) == [
        "link href https://a.org/s.css",
        "script src //b.org/x.js",
        "css @import https://c.org/i.css",
    ]


def test_the_guard_refuses_a_relative_script_path():
    """A page that loads a script from beside the file (how the monitor export once broke) is refused."""
    page = (
        '<html><head><script type="module" src="../../@microsoft/fast-components.js"></script>'
        '<link rel="stylesheet" href="static/extensions/panel/css/x.css"></head><body>'
        '<img src="images/logo.png"></body></html>'
    )
    assert network_references(page) == [
        "script src ../../@microsoft/fast-components.js",
        "link href static/extensions/panel/css/x.css",
        "img src images/logo.png",
    ]
    with pytest.raises(ExportError, match=r"\.\./\.\./@microsoft/fast-components\.js"):
        make_offline(page)
    inline = '<html><head><script>var src = "../../x.js";</script><style>a{b:url(data:,)}</style></head></html>'
    assert network_references(inline) == [] and make_offline(inline) == inline


def test_large_scripts_are_packed_and_the_guard_still_reads_inside_them():
    bundle = "/* BEGIN bokeh.min.js */ " + "var Bokeh = {embed: function () {}};" * 2000
    page = (
        f'<html><head><script type="text/javascript">{bundle}</script></head><body>'
        '<script type="text/javascript">Bokeh.embed();</script></body></html>'
    )
    packed = pack_scripts(page)
    assert len(packed) < len(page) / 10
    assert packed.count(f'<script type="{PACKED}" data-wb=') == 2  # the small one waits its turn: order kept
    assert "Bokeh.embed();" in packed and 'data-wb="js-gz"' in packed
    assert unpack_scripts(packed).replace('<script type="text/javascript">', "<script>") == page.replace(
        '<script type="text/javascript">', "<script>"
    )
    remote = _doc_page("https://fonts.example.org/x.css").replace('"d"', '"d", "pad": "' + "x" * 20_000 + '"')
    hidden = pack_scripts(remote)
    assert "fonts.example.org" not in hidden  # compressed …
    assert network_references(hidden) == ["ImportedStyleSheet https://fonts.example.org/x.css"]  # … and still seen


def test_mathjax_is_left_out_unless_a_text_has_tex():
    mathjax = '<script type="text/javascript">\n/* BEGIN bokeh-mathjax.min.js */ var mj = 1;\n</script>'
    plain = _doc_page().replace("<head></head>", f"<head>{mathjax}</head>")
    assert "bokeh-mathjax" not in make_offline(plain)
    tex = plain.replace('"Column"', '"Column", "text": "$$x^2$$"')
    assert "bokeh-mathjax" in make_offline(tex)


def test_identical_style_blocks_are_kept_once():
    css = "a{color:red}" * 200
    page = f"<html><head><style>{css}</style><style>\n  {css}\n</style><style>b{{}}</style></head></html>"
    out = make_offline(page)
    assert out.count(css) == 1 and "<style>b{}</style>" in out


def test_exported_views_are_one_self_contained_file(feed, tmp_path):
    path = export_views(["series", "heatmap", "latest"], feed, tmp_path / "views.html", params={"metric": "cpu_max"})
    page = path.read_text()
    assert network_references(page) == []
    assert not re.search(r"<(script|link)[^>]+(src|href)=\"https?:", page)
    assert page.count('data-wb="js-gz"') >= 5  # the bundles, compressed (BokehJS, its widgets, Panel …)
    assert path.stat().st_size < 2_000_000
    code = unpack_scripts(page)
    assert code.count("/* BEGIN bokeh.min.js */") == 1 and code.count("/* BEGIN panel.min.js */") == 1
    docs = json.dumps(_docs(page))
    for host in sorted(feed.entities())[:3]:
        assert host in docs  # the data is embedded
    for tool in ("HoverTool", "WheelZoomTool", "BoxZoomTool", "PanTool"):
        assert tool in docs  # zoom and hover run in BokehJS, offline
    assert "cpu_max" in docs


def test_unknown_view_parameters_are_an_error(feed, tmp_path):
    from workbench.errors import ConfigError

    with pytest.raises(ConfigError, match=r"no chosen view \(kpis\) has the parameter\(s\) \['metric'\]"):
        export_views(["kpis"], feed, tmp_path / "k.html", params={"metric": "cpu_max"})
    with pytest.raises(ExportError, match=r"must end in .html or .png, not '.pdf'"):
        export(object(), tmp_path / "k.pdf")


@pytest.mark.slow
def test_cli_exports_the_monitor_page_from_a_replayed_lake(tmp_path, capsys):
    from workbench.sources.simulator import write_simulation

    write_simulation(tmp_path / "sim.jsonl", events=5_000, seed=4, hosts=6, rate=50.0)
    assert main(["replay", str(tmp_path / "sim.jsonl"), "--out", str(tmp_path / "lake"), "--window", "10s"]) == 0
    out = tmp_path / "monitor.html"
    code = main(["export", "--view", "monitor", "--lake", str(tmp_path / "lake"), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    page = out.read_text()
    assert network_references(page) == []
    assert "Workbench · live monitor" in page
    assert lake_feed(tmp_path / "lake").windows.rows == Lake(tmp_path / "lake").read("windows").height


def _painted(page, canvas) -> int:
    """Non-background pixels of one canvas (sampled)."""
    return canvas.evaluate(
        """c => { const ctx = c.getContext('2d'); if (!ctx || !c.width || !c.height) return 0;
                  const d = ctx.getImageData(0, 0, c.width, c.height).data; let n = 0;
                  for (let i = 0; i < d.length; i += 16) {
                    if (d[i + 3] > 0 && !(d[i] > 245 && d[i + 1] > 245 && d[i + 2] > 245)) n++; }
                  return n; }"""
    )


@pytest.mark.ui
def test_exported_page_renders_offline_in_chromium(feed, tmp_path):
    from playwright.sync_api import sync_playwright

    path = export_views(["series", "heatmap"], feed, tmp_path / "views.html")
    asked: list[str] = []
    with sync_playwright() as pw:
        browser = launch(pw)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_offline(True)

        def route(r):
            if r.request.url.startswith(("file:", "data:", "blob:")):
                r.continue_()
            else:
                asked.append(r.request.url)
                r.abort()

        context.route("**/*", route)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(path.as_uri())
        page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0 && Bokeh.documents[0].is_idle")
        page.wait_for_timeout(500)
        canvases = page.locator("canvas").all()
        painted = [_painted(page, c) for c in canvases]
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "export-offline.png"), full_page=True)
        # drag the time series: BokehJS pans it, no server involved
        before = page.evaluate(RANGES)
        box = canvases[0].bounding_box()
        x, y = box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.5
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x + 200, y, steps=10)
        page.mouse.up()
        page.wait_for_timeout(300)
        after = page.evaluate(RANGES)
        browser.close()
    assert asked == [] and errors == []
    assert after[0][0] == before[0][0] and after[0][1] < before[0][1]  # the x range moved left (panned)
    assert len(canvases) >= 2
    assert sum(1 for n in painted if n > 500) >= 2, painted


@pytest.mark.ui
def test_png_export_is_a_nonblank_image(feed, tmp_path):
    from PIL import Image

    path = export_views(["series"], feed, tmp_path / "series.png")
    image = Image.open(path).convert("RGB")
    assert image.width == 1280 and image.height > 300
    colours = image.resize((160, 60)).getcolors(maxcolors=100_000)
    assert colours is not None and len(colours) > 50  # lines, band, axes: not a blank page
    image.save(ARTIFACTS / "export-series.png")


def test_exporting_a_view_on_screen_leaves_it_live(feed, tmp_path):
    from workbench.views import KpiCards, MetricSeries

    series = MetricSeries(feed)
    series.__panel__()  # shown in a notebook or a session: subscribed to the feed
    export(series, tmp_path / "series.html")
    assert not series.subscription.closed
    series.close()
    kpis = KpiCards(feed)  # drawn only for the file
    export(kpis, tmp_path / "kpis.html")
    assert kpis.subscription.closed


def test_a_static_dashboard_says_snapshot_and_offers_no_live_controls(feed):
    """A page without a server cannot follow live or change its range: it says what range it shows."""
    from workbench.views import Dashboard

    dash = Dashboard(feed)
    assert feed.snapshot_at is not None
    bar = dash.time_bar()
    assert list(bar.objects) == [dash.range_text]
    dash._show_range()
    assert dash.range_text.object.endswith(" UTC · snapshot**"), dash.range_text.object


def test_module_imports_of_panels_files_resolve_inside_the_page():
    """The monitor's template imports FAST from beside the served page: in a file it comes from an import map."""
    spec = "../../@microsoft/fast-components@2.30.6/dist/fast-components.js"
    user = f"<script type=\"module\">import {{ fillColor }} from '{spec}'\nfillColor.x = 1</script>"
    assert network_references(f"<html><body>{user}</body></html>") == [f"module import {spec}"]
    from panel.io.resources import CDN_DIST

    page = (
        f'<html><head><script type="module" src="{CDN_DIST}bundled/@microsoft/fast-components@2.30.6/dist/'
        f'fast-components.js"></script></head><body>{user}</body></html>'
    )
    out = unpack_scripts(make_offline(page))
    assert network_references(out) == []
    assert out.count('<script type="module">') == 1  # the inline copy is gone: the import map's runs once
    imports = json.loads(re.search(r'<script type="importmap">(.*?)</script>', out, re.S).group(1))["imports"]
    assert list(imports) == [spec] and imports[spec].startswith("data:text/javascript;base64,")
    assert out.index('type="importmap"') < out.index('<script type="module">')
    with pytest.raises(ExportError, match=r"module import \./elsewhere\.js"):
        make_offline("<html><body><script type=\"module\">import './elsewhere.js'</script></body></html>")


@pytest.mark.ui
def test_the_monitor_export_has_the_served_theme_in_chromium(feed, tmp_path):
    """The template's design (accent, light body) is applied in the file as on the served page.

    Its packed scripts run after the page is parsed; the template colours the page "when the
    page is ready" (DOMContentLoaded), which had fired already: the cards were FAST's dark
    defaults on a light page, with FAST's pink accent.
    """
    from playwright.sync_api import sync_playwright

    path = export_views(["monitor"], feed, tmp_path / "monitor.html")
    with sync_playwright() as pw:
        browser = launch(pw)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_offline(True)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(path.as_uri())
        page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0 && Bokeh.documents[0].is_idle")
        page.wait_for_timeout(500)
        colours = page.evaluate(
            """() => {
              const rgb = (el) => getComputedStyle(el).backgroundColor.match(/[\\d.]+/g).slice(0, 3).map(Number);
              const find = (sel) => { const q = [document];  // into shadow roots, where Panel renders
                while (q.length) { const n = q.shift(); const hit = n.querySelector && n.querySelector(sel);
                  if (hit) return hit; for (const c of (n.querySelectorAll ? n.querySelectorAll('*') : []))
                    if (c.shadowRoot) q.push(c.shadowRoot); } return null; };
              const provider = document.querySelector('#body-design-provider');
              return {card: rgb(find('.card') || find('.wb-kpi-card')),
                      accent: provider && getComputedStyle(provider).getPropertyValue('--accent-fill-rest').trim()};
            }"""
        )
        page.screenshot(path=str(ARTIFACTS / "export-monitor.png"))
        browser.close()
    assert errors == []
    assert min(colours["card"]) > 200, colours  # a light card on the light page (was about 68, 68, 68)
    red, _, blue = (int(colours["accent"].lstrip("#")[i : i + 2], 16) for i in (0, 2, 4))
    assert blue > red + 40, colours  # from the template's accent (#1f4e79), not FAST's default pink
