"""Make a saved Bokeh/Panel page self-contained: nothing it needs comes from the network.

``panel.save(..., resources="inline")`` inlines the JavaScript, but the document
still imports Panel's stylesheets (and Tabulator's theme, Font Awesome, the
favicon) from Panel's CDN. :func:`make_offline` replaces every such import with the
same file read from the installed Panel (``panel/dist``), fonts and images inlined
as ``data:`` URIs, and :func:`network_references` lists whatever would still be
fetched, so an export can refuse to write a page that would break offline.

Nothing here imports Panel or Bokeh at module level.

Examples
--------
>>> page = '<html><head><script src="https://cdn.example.org/x.js"></script></head></html>'
>>> network_references(page)
['script src https://cdn.example.org/x.js']
>>> network_references('<html><head><script>var a = "https://x.org";</script></head></html>')
[]
"""

from __future__ import annotations

import base64
import contextlib
import html as htmllib
import json
import mimetypes
import re
from functools import cache
from pathlib import Path
from typing import Any

from workbench.reports.errors import ExportError

__all__ = ["PACKED", "loader_urls", "make_offline", "network_references", "pack_scripts", "unpack_scripts"]

_DOC_JSON = re.compile(r'(<script type="application/json" id="[^"]+">)(.*?)(</script>)', re.S)
_TAG = re.compile(r"<(script|link|img|iframe)\b[^>]*>", re.I)
_ATTR = re.compile(r"""\b(src|href)\s*=\s*["']([^"']*)["']""", re.I)
_CSS_URL = re.compile(r"""url\(\s*(['"]?)([^'")]+)\1\s*\)""")
_CSS_IMPORT_ANY = re.compile(r"""@import\s+(?:url\()?\s*['"]?([^'")\s;]+)""", re.I)
_CSS_IMPORT = re.compile(r"""@import\s+(?:url\()?\s*['"]?(https?://[^'")\s;]+)""", re.I)
# legacy font formats listed beside a woff2 in @font-face: every browser we target takes the woff2
_LEGACY_FONTS = {".eot", ".ttf", ".woff"}
_STYLE = re.compile(r"(<style\b[^>]*>)(.*?)(</style>)", re.S | re.I)
_REMOTE = re.compile(r"^(https?:)?//", re.I)


@cache
def _panel_dist() -> tuple[str, Path]:
    from panel.io.resources import CDN_DIST, DIST_DIR

    return CDN_DIST, Path(DIST_DIR)


def _local_file(url: str) -> Path | None:
    """The installed copy of a file on Panel's CDN (``None`` for any other URL)."""
    cdn, dist = _panel_dist()
    if not url.startswith(cdn):
        return None
    path = dist / url[len(cdn) :].split("?", 1)[0].split("#", 1)[0]
    return path if path.is_file() else None


def _data_uri(path: Path) -> str:
    kind = mimetypes.guess_type(path.name)[0] or (
        "font/woff2" if path.suffix == ".woff2" else "application/octet-stream"
    )
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode()}"


def _inline_css(path: Path) -> str:
    """The CSS at ``path`` with its relative ``url(...)`` references inlined."""
    css = path.read_text(encoding="utf-8")

    def replace(m: re.Match[str]) -> str:
        ref = m.group(2).strip()
        if ref.startswith("data:") or ref.startswith("#") or _REMOTE.match(ref):
            return m.group(0)
        target = (path.parent / ref.split("?", 1)[0].split("#", 1)[0]).resolve()
        if target.suffix in _LEGACY_FONTS or (target.suffix == ".svg" and "#" in ref):
            return "url(data:,)"
        if not target.is_file():
            return "url(data:,)"
        return f'url("{_data_uri(target)}")'

    return _CSS_URL.sub(replace, css)


def _inline_sheets(node: Any) -> Any:
    """Replace every ``ImportedStyleSheet`` of Panel's CDN in a Bokeh document JSON tree."""
    if isinstance(node, list):
        return [_inline_sheets(n) for n in node]
    if not isinstance(node, dict):
        return node
    if node.get("name") == "ImportedStyleSheet" and "url" in node.get("attributes", {}):
        url = node["attributes"]["url"]
        local = _local_file(url)
        if local is None:
            raise ExportError(f"export: stylesheet {url!r} is not a file of the installed Panel; cannot inline it")
        return {
            "type": "object",
            "name": "InlineStyleSheet",
            "id": node["id"],
            "attributes": {"css": _inline_css(local)},
        }
    return {k: _inline_sheets(v) for k, v in node.items()}


def _inline_docs(page: str) -> str:
    def replace(m: re.Match[str]) -> str:
        # bokeh writes the documents as HTML-escaped JSON (quote=False); keep that convention
        docs = json.loads(htmllib.unescape(m.group(2)))
        text = htmllib.escape(json.dumps(_inline_sheets(docs), separators=(",", ":")), quote=False)
        return m.group(1) + text + m.group(3)

    return _DOC_JSON.sub(replace, page)


def _inline_links(page: str) -> str:
    """Favicons and stylesheet links of the page head: inlined from Panel's files, or dropped."""

    def replace(m: re.Match[str]) -> str:
        tag = m.group(0)
        if m.group(1).lower() == "script":
            return _inline_script(tag)
        if m.group(1).lower() != "link":
            return tag
        href = _ATTR.search(tag)
        if href is not None and "icon" in tag and _fetched(href.group(2)) and not _REMOTE.match(href.group(2)):
            return ""  # a favicon beside the page (./favicon.ico): a file on its own has none
        if href is None or not _REMOTE.match(href.group(2)):
            return tag if href is None or href.group(2) else ""  # <link href=""> fetches the page itself
        local = _local_file(href.group(2))
        if local is None:
            return tag  # reported by network_references
        if 'rel="stylesheet"' in tag:
            return f"<style>{_inline_css(local)}</style>"
        if "apple-touch-icon" in tag:
            return ""  # for home screens, not for a report
        return tag.replace(href.group(2), _data_uri(local))

    return _TAG.sub(replace, page)


def _inline_script(tag: str) -> str:
    """``<script src=…>`` of Panel's CDN → the same ``<script>`` with the installed file inline.

    The closing tag that follows stays as it is; ``</script`` inside the code is
    escaped (``<\\/script`` means the same in a JavaScript string or regular expression).
    """
    src = _ATTR.search(tag)
    if src is None or src.group(1).lower() != "src" or not _REMOTE.match(src.group(2)):
        return tag
    local = _local_file(src.group(2))
    if local is None:
        return tag  # reported by network_references
    code = local.read_text(encoding="utf-8").replace("</script", "<\\/script")
    return tag[: src.start()].rstrip() + tag[src.end() :] + code


@cache
def _dist_file(name: str) -> Path | None:
    """A file of the installed Panel's ``dist`` by its name (``fa-solid-900.woff2``), if exactly one has it."""
    found = list(_panel_dist()[1].rglob(name))
    return found[0] if len(found) == 1 else None


def _inline_styles(page: str) -> str:
    """Relative ``url(…)`` in the page's own ``<style>`` blocks (Font Awesome's fonts) → data URIs."""

    def url(m: re.Match[str]) -> str:
        ref = m.group(2).strip()
        if not _fetched(ref) or _REMOTE.match(ref):
            return m.group(0)
        name = Path(ref.split("?", 1)[0].split("#", 1)[0]).name
        if Path(name).suffix in _LEGACY_FONTS or (name.endswith(".svg") and "#" in ref):
            return "url(data:,)"
        local = _dist_file(name)
        return f'url("{_data_uri(local)}")' if local is not None else m.group(0)

    def style(m: re.Match[str]) -> str:
        return m.group(1) + _CSS_URL.sub(url, m.group(2)) + m.group(3)

    return _STYLE.sub(style, page)


_MATHJAX = re.compile(r"<script\b[^>]*>\s*/\* BEGIN bokeh-mathjax\.min\.js \*/.*?</script>", re.S)
_TEX = re.compile(r"\$\$|\\\\[(\[]")  # $$…$$, \\( … \\) or \\[ … \\] in the documents' JSON


def _drop_unused_mathjax(page: str) -> str:
    """Leave out BokehJS' MathJax bundle (1.8 MB) when no text of the page has TeX in it.

    Panel asks for it as soon as a page holds an HTML pane, which every view does; it
    typesets only ``$$…$$``, ``\\(…\\)`` and ``\\[…\\]``.
    """
    docs = "".join(htmllib.unescape(m.group(2)) for m in _DOC_JSON.finditer(page))
    return page if _TEX.search(docs) else _MATHJAX.sub("", page, count=1)


def _dedupe_styles(page: str) -> str:
    """Keep the first of identical ``<style>`` blocks (Font Awesome came twice: 280 kB each)."""
    seen: set[str] = set()

    def once(m: re.Match[str]) -> str:
        key = m.group(2).strip()
        if len(key) < 1000:
            return m.group(0)
        if key in seen:
            return ""
        seen.add(key)
        return m.group(0)

    return _STYLE.sub(once, page)


# -- module imports: resolved inside the page ---------------------------------------------------
_MODULE = re.compile(r'<script type="module">(.*?)</script>', re.S)
_IMPORT = re.compile(r"""(?:\bimport\s*(?:[\w*{}\s,$]+?\s*from\s*)?|\bimport\s*\(\s*)(['"])([^'"]+)\1""")
_IMPORTMAP = re.compile(r'<script type="importmap">(.*?)</script>', re.S)


def _module_imports(page: str) -> str:
    """Module scripts' imports of Panel's files (FAST, in the monitor's template) → an import map of data URLs.

    Panel's Fast template imports ``../../@microsoft/fast-components@…/fast-components.js``
    from an inline module: a path beside the served page, which a file opened from disk
    does not have (chromium refuses it; the template's design provider is then missing).
    The installed file is mapped to a ``data:`` URL in an import map, and the inline copy
    of the same file that ``<script type="module" src>`` became is dropped: it would
    define its web components a second time.
    """
    modules = [m.group(1) for m in _MODULE.finditer(page)]
    wanted: dict[str, Path] = {}
    for code in modules:
        for m in _IMPORT.finditer(code):
            spec = m.group(2)
            if spec.startswith(("data:", "blob:")) or spec in wanted:
                continue
            path = spec.split("?", 1)[0]
            local = _dist_file(Path(path).name) if "/" in path else None
            # the same file: the specifier ends with its path under Panel's dist (its folder and version)
            if (
                local is not None
                and local.suffix in (".js", ".mjs")
                and path.endswith(local.parent.name + "/" + local.name)
            ):
                wanted[spec] = local
    if not wanted:
        return page
    heads = {local.read_text(encoding="utf-8").lstrip()[:300] for local in wanted.values()}

    def copy_dropped(m: re.Match[str]) -> str:  # the inline copy of a mapped file: it would run twice
        return "" if any(m.group(1).lstrip().startswith(h) for h in heads) else m.group(0)

    page = _MODULE.sub(copy_dropped, page)
    entries = {
        spec: "data:text/javascript;base64," + base64.b64encode(local.read_bytes()).decode()
        for spec, local in wanted.items()
    }
    imap = '<script type="importmap">' + json.dumps({"imports": entries}) + "</script>"
    first = page.find('<script type="module">')
    return page[:first] + imap + page[first:] if first >= 0 else page


def _module_references(page: str) -> list[str]:
    """Imports of inline module scripts that the browser would fetch (an import map's data URLs excepted)."""
    mapped: set[str] = set()
    for m in _IMPORTMAP.finditer(page):
        with contextlib.suppress(ValueError):
            imports = json.loads(m.group(1)).get("imports", {})
            mapped |= {k for k, v in imports.items() if str(v).startswith("data:")}
    found = []
    for m in _MODULE.finditer(page):
        for imp in _IMPORT.finditer(m.group(1)):
            spec = imp.group(2)
            if not spec.startswith(("data:", "blob:")) and spec not in mapped:
                found.append(f"module import {spec}")
    return found


# -- packing: the bundles gzip-compressed, unpacked by the page itself ---------------------------
#: ``type`` of a packed script: not one a browser runs; the loader runs it, in document order
PACKED = "text/x-workbench-packed"
_PACK_MIN = 16_000  # characters: a smaller script or document is kept as it is (only deferred)
_SCRIPT = re.compile(r"<script\b([^>]*)>(.*?)</script>", re.S | re.I)
_TYPE = re.compile(r"""\btype\s*=\s*["']([^"']*)["']""", re.I)
_ID = re.compile(r"""\bid\s*=\s*["']([^"']*)["']""", re.I)
_PACKED = re.compile(
    r'<script type="' + re.escape(PACKED) + r'" data-wb="(js|js-gz|json-gz)"(?: id="([^"]*)")?>(.*?)</script>', re.S
)
_JS_TYPES = {"", "text/javascript", "application/javascript"}
# Runs the packed scripts in document order once the page is parsed: each is inflated with
# the browser's own DecompressionStream (no code of ours to decompress) and run as an inline
# script; a document's JSON is put back in place first, where Bokeh's embed code reads it.
_LOADER = """<script type="text/javascript">
(async () => {
  const inflate = async (text) => {
    const bytes = Uint8Array.from(atob(text.trim()), (c) => c.charCodeAt(0));
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return await new Response(stream).text();
  };
  // the scripts run after the page is parsed: what they would run "when the page is ready"
  // (DOMContentLoaded; load, once it has fired) is held and run after the last of them
  const ready = [], on = [document, window].map((target) => [target, target.addEventListener]);
  for (const [target, add] of on) {
    target.addEventListener = function (type, fn, options) {
      const missed = type === "DOMContentLoaded" || (type === "load" && document.readyState === "complete");
      if (missed && fn) ready.push([this, type, fn]);
      else add.call(this, type, fn, options);
    };
  }
  try {
    for (const el of document.querySelectorAll('script[type="PACKED_TYPE"]')) {
      const kind = el.dataset.wb;
      const text = kind.endsWith("-gz") ? await inflate(el.textContent) : el.textContent;
      if (kind.startsWith("json")) {
        el.type = "application/json";
        el.textContent = text;
        continue;
      }
      const run = document.createElement("script");
      run.text = text;
      el.replaceWith(run);
    }
  } catch (err) {
    document.body.insertAdjacentHTML("afterbegin",
      "<p style='font:16px sans-serif;color:#b00'>This page unpacks its scripts with DecompressionStream " +
      "(Chrome 80, Firefox 113, Safari 16.4 or newer): " + String(err).replace(/</g, "&lt;") + "</p>");
    throw err;
  } finally {
    for (const [target, add] of on) target.addEventListener = add;
  }
  for (const [target, type, fn] of ready) {
    try {
      const event = new Event(type);
      typeof fn === "function" ? fn.call(target, event) : fn.handleEvent(event);
    } catch (err) {
      console.error(err);
    }
  }
})();
</script>""".replace("PACKED_TYPE", PACKED)


def _gzip_b64(text: str) -> str:
    import gzip

    return base64.b64encode(gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)).decode("ascii")


def pack_scripts(page: str) -> str:
    """Gzip the page's large scripts and documents; a small loader unpacks and runs them in order.

    BokehJS, Panel's bundle and their widgets are about 3.5 MB of JavaScript in every
    export, 1.1 MB compressed. Executable scripts become :data:`PACKED` scripts (large
    ones gzip-compressed and base64-encoded), so none runs before the loader: it runs
    them all, in document order, after the page is parsed. A page without a large
    script is returned as it is.

    >>> small = '<html><body><script>var a = 1;</script></body></html>'
    >>> pack_scripts(small) == small
    True
    >>> big = '<html><body><script>' + 'var a = 1;' * 5000 + '</script></body></html>'
    >>> packed = pack_scripts(big)
    >>> len(packed) < len(big) // 4, 'data-wb="js-gz"' in packed, unpack_scripts(packed) == big
    (True, True, True)
    """
    if not any(len(m.group(2)) >= _PACK_MIN for m in _SCRIPT.finditer(re.sub(r'srcdoc="[^"]*"', "", page))):
        return page

    def pack(m: re.Match[str]) -> str:
        attrs, body = m.group(1), m.group(2)
        typed = _TYPE.search(attrs)
        kind = typed.group(1).strip().lower() if typed is not None else ""
        if re.search(r"\bsrc\s*=", attrs, re.I):
            return m.group(0)
        if kind in _JS_TYPES:
            if len(body) >= _PACK_MIN:
                return f'<script type="{PACKED}" data-wb="js-gz">{_gzip_b64(body)}</script>'
            return f'<script type="{PACKED}" data-wb="js">{body}</script>'
        ident = _ID.search(attrs)
        if kind == "application/json" and ident is not None and len(body) >= _PACK_MIN:
            # as written: a script's text is not entity-decoded, and Bokeh unescapes it itself
            return f'<script type="{PACKED}" data-wb="json-gz" id="{ident.group(1)}">{_gzip_b64(body)}</script>'
        return m.group(0)

    out = _SCRIPT.sub(pack, page)
    at = out.lower().rfind("</body>")
    return out[:at] + _LOADER + out[at:] if at >= 0 else out + _LOADER


def unpack_scripts(page: str) -> str:
    """The page as it was before :func:`pack_scripts` (to inspect what it runs; not to serve)."""
    import gzip

    if PACKED not in page:
        return page
    page = page.replace(_LOADER, "")

    def unpack(m: re.Match[str]) -> str:
        kind, ident, body = m.group(1), m.group(2), m.group(3)
        text = gzip.decompress(base64.b64decode(body)).decode("utf-8") if kind.endswith("-gz") else body
        if kind == "json-gz":
            return f'<script type="application/json" id="{ident}">{text}</script>'
        return f"<script>{text}</script>"

    return _PACKED.sub(unpack, page)


def make_offline(page: str) -> str:
    """Inline every resource that ``page`` would load from Panel's CDN.

    Parameters
    ----------
    page
        HTML written by ``panel.io.save.save(..., resources="inline")``.

    Returns
    -------
    str
        The page with stylesheets, fonts and icons inlined.

    Raises
    ------
    ExportError
        When something would still be loaded from the network (named in the message).
    """
    out = _module_imports(_dedupe_styles(_drop_unused_mathjax(_inline_styles(_inline_links(_inline_docs(page))))))
    remaining = network_references(out)
    if remaining:
        raise ExportError(f"export: the page would still load {len(remaining)} resource(s): {remaining[:5]}")
    return pack_scripts(out)


def _fetched(url: str) -> bool:
    """Whether a browser would fetch ``url`` (anything but inline data: absolute, protocol-relative or relative)."""
    url = url.strip()
    return bool(url) and not url.lower().startswith(("data:", "#", "about:blank", "javascript:"))


def network_references(page: str) -> list[str]:
    """Resources that opening ``page`` would fetch — from the network or from beside the file.

    Script, link, image and frame tags with a source that is not inline data —
    ``https://…``, ``//host/…`` or a relative path such as ``../../@microsoft/x.js``
    (a file opened from disk or mailed has nothing beside it) — CSS ``@import`` and
    ``url(…)`` of anything but data, and stylesheets imported by a Bokeh document
    (``ImportedStyleSheet``), which is how Panel loads its CSS. URLs inside scripts and
    data are not fetched and not listed.

    >>> network_references('<script type="module" src="../../@microsoft/fast.js"></script>')
    ['script src ../../@microsoft/fast.js']
    >>> network_references('<img src="data:image/png;base64,AAAA"><style>a{background:url(img/x.png)}</style>')
    ['css url img/x.png']
    """
    found = []
    page = unpack_scripts(page)
    outer = re.sub(r'srcdoc="[^"]*"', "", page)  # an iframe's own page is checked on its own
    markup = re.sub(r"(<script\b[^>]*>).*?(</script>)", r"\1\2", outer, flags=re.S | re.I)  # code is not markup
    for m in _TAG.finditer(markup):
        for attr in _ATTR.finditer(m.group(0)):
            if _fetched(attr.group(2)):
                found.append(f"{m.group(1).lower()} {attr.group(1).lower()} {attr.group(2)}")
    for style in re.findall(r"<style[^>]*>(.*?)</style>", markup, re.S | re.I):
        imports = _CSS_IMPORT_ANY.findall(style)
        found += [f"css @import {u}" for u in imports]
        found += [f"css url {u}" for m in _CSS_URL.finditer(style) if _fetched(u := m.group(2)) and u not in imports]
    for m in _DOC_JSON.finditer(outer):
        text = htmllib.unescape(m.group(2))
        found += [
            f"ImportedStyleSheet {u}"
            for u in re.findall(r'"name":\s*"ImportedStyleSheet"[^}]*?"url":\s*"([^"]+)"', text)
            if _fetched(u)
        ]
    found += _module_references(outer)
    for frame in re.findall(r'srcdoc="([^"]*)"', page):
        found += [f"iframe srcdoc: {r}" for r in network_references(htmllib.unescape(frame))]
    return found


def loader_urls(page: str) -> list[str]:
    """Script or stylesheet URLs named by the inline scripts of ``page`` (``iframe srcdoc`` pages left out).

    A loader script (such as Panel's notebook loader) fetches these when it runs; a
    report page whose own scripts name none loads nothing that way.

    >>> loader_urls('<script>load(["https://cdn.example.org/panel.min.js"])</script>')
    ['https://cdn.example.org/panel.min.js']
    >>> loader_urls('<iframe srcdoc="&lt;script&gt;load(&quot;https://x.org/a.js&quot;)&lt;/script&gt;"></iframe>')
    []
    """
    outer = re.sub(r'srcdoc="[^"]*"', "", unpack_scripts(page))
    found: list[str] = []
    for code in re.findall(r"<script\b[^>]*>(.*?)</script>", outer, re.S | re.I):
        found += re.findall(r"""https?://[^\s'"`]+?\.(?:m?js|css)\b""", code)
    return found
