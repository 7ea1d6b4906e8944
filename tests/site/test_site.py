"""The built site as a reader sees it: every page of ``_build/html`` in headless Chromium.

Run by ``make site-test`` after the book is built. Chromium is Debian's (``/usr/bin/chromium``, or
``$CHROMIUM``), driven by Playwright's Python package, which never downloads a browser here. Pages are
served from a local HTTP server; the site needs no network (MathJax is served by the site itself).
Screenshots land in ``_build/screenshots/`` (one per page) for a person to look at.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PAGES = sorted(str(path.relative_to(SITE)) for path in SITE.rglob("*.html")
               if not path.relative_to(SITE).parts[0].startswith("_")) if SITE.is_dir() else []


def _notebook_chapters() -> list[str]:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "toc_notebooks.py")], capture_output=True,
                         text=True, check=True, cwd=ROOT).stdout.split()
    return [Path(path).with_suffix("").as_posix() for path in out]


class _Anchors(HTMLParser):
    """Every id in a page (targets of #fragments)."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.ids.update(value for key, value in attrs if key == "id" and value)


@functools.lru_cache(maxsize=None)
def _ids(page: Path) -> frozenset[str]:
    parser = _Anchors()
    parser.feed(page.read_text(encoding="utf-8"))
    return frozenset(parser.ids)


@pytest.fixture(scope="module")
def server():
    if not (SITE / "index.html").is_file():
        pytest.fail(f"no built site in {SITE}: run `make book` first.")
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(SITE))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    executable = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(executable).exists():
        pytest.fail("Chromium not found: `make site-test` installs Debian's package (apt-get install chromium), "
                    "or set CHROMIUM to a browser binary.")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=executable, headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 1280, "height": 900})
        yield context
        context.close()


def _open(browser, url: str):
    """A page at ``url`` with everything it logged: console errors, uncaught errors, failed requests."""
    page = browser.new_page()
    problems: list[str] = []
    page.on("console", lambda message: problems.append(f"console {message.type}: {message.text}")
            if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    page.on("requestfailed", lambda request: problems.append(f"failed request: {request.url}"))
    page.on("response", lambda response: problems.append(f"HTTP {response.status}: {response.url}")
            if response.status >= 400 else None)
    page.goto(url, wait_until="load")
    return page, problems


# What a reader must never see as text: the Markdown of a table that was not rendered (MyST-NB's CommonMark
# turns its `---` into an em dash), TeX that MathJax did not typeset, a figure's repr instead of the figure,
# an error's traceback.
RAW_TABLE = re.compile(r"\|\s*(:?-{3,}:?|—)\s*\|")
RAW_TEX = re.compile(r"\$[^$\n]{1,80}\$|\\(frac|mathrm|mathbb|mathbf|text|tilde|odot|cdot|times|sum|top|alpha|lambda|"
                     r"omega|varphi|phi|delta|sigma|left|right|begin|end|operatorname|leftarrow|ge|le|texttt|textbf|textit|emph)\b")
FIGURE_REPR = re.compile(r"<(Figure|matplotlib\.[\w.]+|Axes)[ :(][^>]*>")
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\w+Error: ", re.M)

# The page's content as a reader sees it: no code cells' sources, no typeset maths, no page chrome, no
# Python code blocks (the API pages' examples: code shown as code, where `"|---|"` or `Error: ` is what the
# code says). Cell outputs stay. `with_code=False` also drops every code block and inline code (TeX in a
# docstring's code sample is fine).
_READER_TEXT = """(withCode) => {
  const root = document.querySelector('article') || document.querySelector('main') || document.body;
  const copy = root.cloneNode(true);
  const drop = ['script', 'style', 'mjx-container', '.math', '.cell_input', '.headerlink', 'a.reference.download',
                'div.highlight-python'];
  if (!withCode) drop.push('pre', 'code', 'div.highlight');
  copy.querySelectorAll(drop.join(',')).forEach(e => e.remove());
  copy.querySelectorAll('p, div, li, tr, br, h1, h2, h3, h4, pre, td, th').forEach(e => e.append('\\n'));
  return copy.textContent;
}"""


def _reader_problems(page) -> list[str]:
    """Raw Markdown tables, untypeset TeX, figure reprs and tracebacks in what the page shows."""
    problems = []
    shown = page.evaluate(_READER_TEXT, True)
    prose = page.evaluate(_READER_TEXT, False)
    for what, pattern, text in (("raw Markdown table", RAW_TABLE, shown), ("a figure's repr", FIGURE_REPR, shown),
                                ("a Python traceback", TRACEBACK, shown), ("raw TeX outside maths", RAW_TEX, prose)):
        for match in list(pattern.finditer(text))[:3]:
            line = text[max(0, match.start() - 60):match.end() + 60].replace("\n", " ")
            problems.append(f"{what}: ...{line}...")
    if page.locator(".cell_output .output.error, .cell_output .traceback").count():
        problems.append("an error output in a cell")
    return problems


@pytest.mark.parametrize("name", PAGES)
def test_page(browser, server, name):
    page, problems = _open(browser, urljoin(server, name))
    try:
        if page.locator(".math").count():
            page.wait_for_selector("mjx-container", timeout=20_000)  # MathJax typeset the page's maths
            assert page.locator("mjx-container").count() >= page.locator(".math").count(), "math left untypeset"
            assert not page.locator("mjx-merror").count(), "MathJax reported a TeX error"
        page.wait_for_load_state("networkidle")
        broken = page.evaluate("Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)"
                               ".map(i => i.src)")
        assert not broken, f"images that do not load: {broken}"
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page scrolls sideways by {overflow} px (a wide table or figure?)"
        page.screenshot(path=str(SHOTS / (name.replace("/", "__").removesuffix(".html") + ".png")), full_page=True)
        assert not problems, "\n".join(problems)
        raw = _reader_problems(page)
        assert not raw, f"{name} shows a reader raw text:\n" + "\n".join(raw)
        here = SITE / unquote(urlparse(page.url).path).lstrip("/")  # index.html redirects to the intro
        for href in page.evaluate("Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'))"):
            parsed = urlparse(href)
            if parsed.scheme or href.startswith(("mailto:", "javascript:")):
                continue
            target = here if not parsed.path else (here.parent / unquote(parsed.path)).resolve()
            assert target.exists(), f"{name}: link {href!r} points at a missing file"
            if parsed.fragment and target.suffix == ".html":
                assert unquote(parsed.fragment) in _ids(target), f"{name}: link {href!r}: no such anchor"
    finally:
        page.close()


@pytest.mark.parametrize("chapter", _notebook_chapters() if SITE.is_dir() else [])
def test_notebook_page_buttons(browser, server, chapter):
    page, _ = _open(browser, urljoin(server, chapter + ".html"))
    try:
        colab = [href for href in page.evaluate(
            "Array.from(document.querySelectorAll('a[href]')).map(a => a.href)") if "colab.research.google.com" in href]
        assert colab and all(href.endswith(f"/blob/main/{chapter}.ipynb") for href in colab), colab
        downloads = page.evaluate("Array.from(document.querySelectorAll('a[href$=\".ipynb\"]'))"
                                  ".map(a => a.getAttribute('href'))")
        local = [href for href in downloads if not urlparse(href).scheme]
        assert local, "no .ipynb download button"
        for href in local:
            target = (SITE / chapter).parent / href
            assert target.resolve().is_file(), f"download {href} missing"
            assert target.resolve().name == Path(chapter).name + ".ipynb"
    finally:
        page.close()


def _printed_tables(notebook: Path) -> int:
    """How many outputs of a notebook are tables: HTML with a <table>, or Markdown with a pipe table."""
    import json

    count = 0
    for cell in json.loads(notebook.read_text())["cells"]:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            html = "".join(data.get("text/html", ""))
            markdown = "".join(data.get("text/markdown", ""))
            count += "<table" in html or (not html and bool(re.search(r"^\|.*\|\s*$\n^\|\s*:?-{3,}", markdown, re.M)))
    return count


@pytest.mark.parametrize("chapter", _notebook_chapters() if SITE.is_dir() else [])
def test_every_printed_table_is_a_table(browser, server, chapter):
    """Each table a code cell prints reaches the reader as an HTML <table> with a header row."""
    expected = _printed_tables(ROOT / f"{chapter}.ipynb")
    page, _ = _open(browser, urljoin(server, chapter + ".html"))
    try:
        tables = page.locator(".cell_output table")
        assert tables.count() == expected, f"{chapter}: {expected} printed tables, {tables.count()} <table>s on the page"
        for index in range(tables.count()):
            table = tables.nth(index)
            assert table.locator("th").count() >= 2, f"{chapter}: table {index} has no header row"
            hidden = table.evaluate("t => t.parentElement.scrollWidth - t.parentElement.clientWidth")
            assert hidden <= 1, f"{chapter}: table {index} is {hidden} px wider than the page's column"
    finally:
        page.close()


def test_search_finds_the_nullspace(browser, server):
    page, problems = _open(browser, urljoin(server, "search.html?q=nullspace"))
    try:
        page.wait_for_selector("#search-results li, .search li", timeout=20_000)
        hits = page.locator("#search-results li, .search li").count()
        assert hits >= 3, f"search for 'nullspace' found {hits} pages"
        assert not problems, "\n".join(problems)
    finally:
        page.close()


def test_every_chapter_has_a_page():
    toc = (ROOT / "_toc.yml").read_text()
    for entry in re.findall(r"file: (\S+)", toc):
        assert (SITE / f"{entry}.html").is_file(), f"{entry} is in _toc.yml but has no page"
