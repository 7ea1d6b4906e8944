"""The built site as a reader sees it: every page of ``_build/html`` in headless Chromium.

Run by ``make site-test`` after the book is built (``$NULLSPACE_SITE`` names another built site, e.g. one
built with ``jupyter-book build . --path-output DIR``: ``DIR/_build/html``). Chromium is Debian's
(``/usr/bin/chromium``, or ``$CHROMIUM``), driven by Playwright's Python package, which never downloads a
browser here. Pages are served from a local HTTP server; the site needs no network (MathJax is served by the
site itself). Screenshots land in ``screenshots/`` beside the site (``_build/screenshots/``): one per page at
desktop width and one per chapter at phone width (``phone/``), for a person to look at.

Each check of what a reader sees (issue #31) is a function of a browser page that returns the problems it
found; ``test_checks_catch_planted_defects`` plants each defect in a copy of a built page or in a tiny page and
asserts that its check reports it.
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
SITE = Path(os.environ.get("NULLSPACE_SITE") or ROOT / "_build" / "html").resolve()
SHOTS = SITE.parent / "screenshots"
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
    served = SITE / unquote(urlparse(url).path).lstrip("/")
    if served.is_file() and 'http-equiv="Refresh"' in served.read_text(encoding="utf-8", errors="replace"):
        # a redirect page (the site's index.html): wait for the page it leads to, or a check would run while the
        # browser navigates away ("Execution context was destroyed")
        page.wait_for_url(lambda now: now != url, timeout=20_000)
        page.wait_for_load_state("load")
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
        # every image has loaded or failed (what the check below reads); not "networkidle", which a long page on a busy
        # 2-core machine did not reach within 90 s
        page.wait_for_function("Array.from(document.images).every(i => i.complete)", timeout=90_000)
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
            header = table.evaluate("t => t.rows.length ? Array.from(t.rows[0].cells).map(c => c.tagName) : []")
            assert header and set(header) == {"TH"}, f"{chapter}: table {index} has no header row ({header})"
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


# ------------------------------------------------------------------------------------------------ reader checks
# Each returns the problems it finds on an open page (issue #31); test_checks_catch_planted_defects proves each
# one fails on a planted defect.

MACHINE_PATH = re.compile(r"(?<![\w.~/-])/(?:tmp|root|home)(?:/[^\s'\"<>),;]*|\b)")
# chapters that test claims of the paper (or its follow-up): each opens with a "What we found" box
CLAIM_CHAPTERS = ("exact_nullspace", "approximate", "robustness", "watermark", "fooling", "fingerprint", "finetune")
ANSWER_TITLE = "What we found"
MAX_OUTPUT_LINES = 15  # a printed output longer than this belongs in a table, a figure or a dropdown
PHONE = {"width": 390, "height": 844}

# The rendered tables of the page's article, as rows of cell texts (maths left out: the source's TeX and
# MathJax's rendering of it do not compare as text), and whether a cell hides part of its text.
_RENDERED_TABLES = """() => {
  const root = document.querySelector('article') || document.body;
  return Array.from(root.querySelectorAll('table'))
    .filter(t => !t.closest('.highlight, .cell_input, .highlighttable'))
    .map(t => Array.from(t.rows).map(row => Array.from(row.cells).map(cell => {
      const copy = cell.cloneNode(true);
      copy.querySelectorAll('mjx-container, .math, script').forEach(e => e.remove());
      return copy.textContent.replace(/\\s+/g, ' ').trim();
    })));
}"""
_CLIPPED_CELLS = """() => {
  const root = document.querySelector('article') || document.body;
  const found = [];
  for (const cell of root.querySelectorAll('td, th')) {
    const style = getComputedStyle(cell);
    const hides = style.overflowX !== 'visible' || style.textOverflow === 'ellipsis';
    if (hides && cell.scrollWidth > cell.clientWidth + 1) found.push(cell.textContent.trim().slice(0, 60));
  }
  for (const table of root.querySelectorAll('table')) {
    const box = table.parentElement;
    if (box.scrollWidth > box.clientWidth + 1)
      found.push(`a table ${box.scrollWidth - box.clientWidth} px wider than the column: ` +
                 table.textContent.trim().slice(0, 40));
  }
  return found;
}"""


class _HtmlTables(HTMLParser):
    """The tables of an HTML fragment (a cell's output, a Markdown page's raw HTML), as rows of cell texts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[str]]] = []
        self._depth = 0  # nested tables count as their outer one's text

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._depth += 1
            if self._depth == 1:
                self.tables.append([])
        elif self._depth == 1 and tag == "tr":
            self.tables[-1].append([])
        elif self._depth == 1 and tag in ("td", "th") and self.tables[-1]:
            self.tables[-1][-1].append("")

    def handle_endtag(self, tag):
        if tag == "table":
            self._depth -= 1

    def handle_data(self, data):
        if self._depth and self.tables and self.tables[-1] and self.tables[-1][-1]:
            self.tables[-1][-1][-1] += data


def _html_tables(html: str) -> list[list[list[str]]]:
    parser = _HtmlTables()
    parser.feed(html)
    return parser.tables


_PIPE_DELIMITER = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")


def _pipe_cells(line: str) -> list[str]:
    """A pipe-table row's cells as MyST (GFM) splits them: at every pipe that is not escaped as ``\\|``."""
    cells = re.split(r"(?<!\\)\|", line.strip())
    if cells and not cells[0].strip():
        cells = cells[1:]
    if cells and not cells[-1].strip():
        cells = cells[:-1]
    return [cell.strip() for cell in cells]


_FENCE = re.compile(r"^\s*(`{3,}|~{3,}|:{3,})\s*(.*)$")


def _fence_step(line: str, fence: str | None, directives: list[str]) -> tuple[bool, str | None]:
    """Whether ``line`` opens or closes a fence, and the open code fence after it. A code fence (``` or ~~~ with a
    language or none, or a ``{code...}`` directive) hides its content from the Markdown; a directive fence
    (``:::{admonition}``, ``:::{dropdown}``, ```` ```{note} ````) holds Markdown the page renders, tables included,
    so only its markers are skipped (``directives``: the open ones, innermost last)."""
    match = _FENCE.match(line)
    if match is None:
        return False, fence
    marker, rest = match[1], match[2]
    if fence is not None:
        return True, (None if line.strip() == fence else fence)
    if not rest and directives and directives[-1] == marker:
        directives.pop()
    elif marker.startswith(":") or (rest.startswith("{") and not rest.startswith("{code")):
        directives.append(marker)
    else:
        fence = marker
    return True, fence


def _markdown_tables(markdown: str) -> list[list[list[str]]]:
    """The tables of a Markdown text in order: pipe tables (header, delimiter, rows) and raw HTML tables, those
    inside directives (a dropdown's table) included; code blocks are skipped. A row keeps every cell its pipes make,
    even past the header's count (the renderer drops those: that is the defect this finds)."""
    tables, lines, fence, directives, index = [], markdown.splitlines(), None, [], 0
    while index < len(lines):
        line = lines[index]
        is_fence, fence = _fence_step(line, fence, directives)
        if is_fence:
            pass
        elif fence is None and "<table" in line:
            end = next((j for j in range(index, len(lines)) if "</table>" in lines[j]), len(lines) - 1)
            tables += _html_tables("\n".join(lines[index:end + 1]))
            index = end
        elif (fence is None and line.lstrip().startswith("|") and index + 1 < len(lines)
              and _PIPE_DELIMITER.match(lines[index + 1])):
            rows = [_pipe_cells(line)]
            index += 2
            while index < len(lines) and lines[index].lstrip().startswith("|"):
                rows.append(_pipe_cells(lines[index]))
                index += 1
            tables.append(rows)
            continue
        index += 1
    return tables


def _source_tables(source: Path) -> list[list[list[str]]]:
    """The tables a page's source holds, in the order the page shows them: a Markdown page's, or a notebook's
    Markdown cells' and outputs' (HTML before Markdown, as MyST-NB chooses; removed cells and outputs left out)."""
    import json

    if source.suffix != ".ipynb":
        return _markdown_tables(source.read_text(encoding="utf-8"))
    tables = []
    for cell in json.loads(source.read_text(encoding="utf-8"))["cells"]:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if "remove-cell" in tags:
            continue
        if cell["cell_type"] == "markdown":
            tables += _markdown_tables("".join(cell["source"]))
            continue
        if "remove-output" in tags:
            continue
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "text/html" in data:
                tables += _html_tables("".join(data["text/html"]))
            elif "text/markdown" in data:
                tables += _markdown_tables("".join(data["text/markdown"]))
    return tables


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w{3,}", text.lower()))


def _source_words(cell: str) -> set[str]:
    """The words of a source cell a reader must find in its rendered cell: no maths, no role targets (a
    ``{doc}`` link shows the page's title), link texts without their addresses, no Markdown marks."""
    cell = re.sub(r"\$[^$]*\$", " ", cell)
    cell = re.sub(r"\{(doc|ref|numref|cite:?\w*|eq)\}`[^`]*`", " ", cell)
    cell = re.sub(r"\{\w+\}`([^`]*)`", r"\1", cell)
    cell = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", cell)
    cell = re.sub(r"<[^>]+>", " ", cell)
    return _words(cell.replace("\\|", "|"))


def table_problems(page, source: Path | None) -> list[str]:
    """Table cells that hide part of their text (clipped, or behind a sideways scroll), and, given the page's
    source, rendered tables whose rows, cells or words differ from the source's tables."""
    problems = [f"a table cell hides part of its text: {text!r}" for text in page.evaluate(_CLIPPED_CELLS)]
    if source is None or not source.is_file() or "automodule" in source.read_text(encoding="utf-8"):
        return problems  # an API page's tables come from docstrings, not from its source
    rendered, expected = page.evaluate(_RENDERED_TABLES), _source_tables(source)
    if len(rendered) != len(expected):
        return problems + [f"the page shows {len(rendered)} tables, its source {source.name} has {len(expected)}"]
    for number, (shown, written) in enumerate(zip(rendered, expected, strict=True), start=1):
        if [len(row) for row in shown] != [len(row) for row in written]:
            problems.append(f"table {number}: cells per row {[len(row) for row in shown]} on the page, "
                            f"{[len(row) for row in written]} in the source (an unescaped | splits a cell?)")
            continue
        for row_shown, row_written in zip(shown, written, strict=True):
            for cell_shown, cell_written in zip(row_shown, row_written, strict=True):
                lost = _source_words(cell_written) - _words(cell_shown)
                if lost:
                    problems.append(f"table {number}: the cell {cell_written[:60]!r} shows {cell_shown[:60]!r}, "
                                    f"without {sorted(lost)[:5]}")
    return problems


def machine_path_problems(page) -> list[str]:
    """Machine paths (/tmp, /root, /home) anywhere a reader meets them: text, code, outputs, links, tooltips, alt
    texts. Only a docstring's ``>>>`` examples are exempt: they show what a function is given (``shown_command``
    documents how it turns a recorded machine path into the file's place in the repository)."""
    text = page.evaluate("""() => {
      const root = (document.querySelector('article') || document.body).cloneNode(true);
      root.querySelectorAll('div.doctest').forEach(e => e.remove());
      const attributes = Array.from(document.querySelectorAll('[href], [src], [title], [alt]')).flatMap(
          e => ['href', 'src', 'title', 'alt'].map(name => e.getAttribute(name) || ''));
      return root.textContent + '\\n' + attributes.join('\\n');
    }""")
    return [f"a machine path: ...{text[max(0, match.start() - 50):match.end() + 30]!r}..."
            for match in list(MACHINE_PATH.finditer(text))[:5]]


def tooltip_tex_problems(page) -> list[str]:
    """Raw TeX in tooltips (a citation's title attribute shows its reference on hover)."""
    titles = page.evaluate("Array.from(document.querySelectorAll('[title]')).map(e => e.getAttribute('title'))")
    return [f"raw TeX in a tooltip: {title[:100]!r}" for title in titles if RAW_TEX.search(title)]


def alt_text_problems(page) -> list[str]:
    """Images of the page's content whose alt text is missing, empty or a file path instead of what they show."""
    alts = page.evaluate("""() => Array.from((document.querySelector('article') || document.body)
        .querySelectorAll('img')).map(i => [i.getAttribute('src') || '', i.getAttribute('alt')])""")
    problems = []
    for src, alt in alts:
        if alt is None or not alt.strip():
            problems.append(f"an image without alt text: {src}")
        elif re.search(r"\.(png|jpe?g|svg|gif|webp)\b|^[./]*_images/|^[0-9a-f]{32,}", alt.strip(), re.I):
            problems.append(f"an image whose alt text is a file path: {alt[:80]}")
    return problems


def answer_box_problems(page) -> list[str]:
    """The chapter's first "What we found" box: present, and starting on the first screen (its top above the
    window's bottom edge) when the page opens."""
    top = page.evaluate("""(title) => {
      const titles = Array.from(document.querySelectorAll('.admonition-title, summary, .sd-summary-title'));
      const box = titles.find(t => t.textContent.trim().startsWith(title));
      return box ? box.getBoundingClientRect().top + window.scrollY : null;
    }""", ANSWER_TITLE)
    if top is None:
        return [f"no {ANSWER_TITLE!r} box"]
    height = page.viewport_size["height"]
    return [] if top < height else [f"the {ANSWER_TITLE!r} box starts {top:.0f} px down, below the first screen "
                                    f"({height} px)"]


def long_output_problems(page) -> list[str]:
    """Printed outputs longer than MAX_OUTPUT_LINES lines that are not folded (a dropdown or a hidden output)."""
    blocks = page.evaluate("""() => Array.from(document.querySelectorAll('.cell_output pre, .output pre'))
        .filter(p => !p.closest('details, .dropdown, .toggle-hidden, .tag_hide-output, .tag_hide-cell'))
        .map(p => p.textContent.replace(/\\n+$/, ''))""")
    return [f"a printed output of {text.count(chr(10)) + 1} lines outside a dropdown: {text[:60]!r}..."
            for text in blocks if text.count("\n") + 1 > MAX_OUTPUT_LINES]


def figure_text_problems(page) -> list[str]:
    """Figures whose smallest text would show below ``plotting.MIN_PHONE_PIXELS`` on this (phone-width) page: the
    smallest text the book's figures may carry is ``plotting.smallest_points`` of the figure's width in inches
    (the PNG's pixels over its dpi, as matplotlib saved it; ``plotting.readable`` enlarges every text to it), which
    the page shrinks with the image. A figure drawn without ``readable`` is not covered: its fonts are unknown here."""
    from io import BytesIO

    from PIL import Image

    from nullspace_utils.plotting import MIN_PHONE_PIXELS, smallest_points

    problems = []
    images = page.evaluate("""() => Array.from(document.querySelectorAll('.cell_output img'))
        .filter(i => !i.closest('details:not([open]), .toggle-hidden'))  // folded: not shown until opened
        .map(i => [i.currentSrc || i.src, i.naturalWidth, i.getBoundingClientRect().width])""")
    for src, natural, shown in images:
        if not natural or not shown:
            problems.append(f"a figure that did not load or shows no width at phone width: {src[-60:]}")
            continue
        if src.startswith("data:"):
            import base64

            data = base64.b64decode(src.split(",", 1)[1])
        else:
            data = page.request.get(src).body()
        dpi = Image.open(BytesIO(data)).info.get("dpi", (72.0,))[0]
        width_inches = natural / dpi
        pixels = smallest_points(width_inches) / 72.0 * shown / width_inches
        if pixels < MIN_PHONE_PIXELS - 0.05:
            problems.append(f"a figure {width_inches:.1f} in wide shown {shown:.0f} px wide: its smallest text "
                            f"would be {pixels:.1f} px, under {MIN_PHONE_PIXELS:g} ({src.rsplit('/', 1)[-1]})")
    return problems


def _source_of(name: str) -> Path | None:
    """The source the site copied for the page ``name`` (``book/x.html``): ``_sources/book/x.md`` or ``.ipynb``."""
    stem = SITE / "_sources" / Path(name).with_suffix("")
    return next((path for path in (stem.with_suffix(".md"), stem.with_suffix(".ipynb")) if path.is_file()), None)


@pytest.mark.parametrize("name", PAGES)
def test_what_a_reader_sees(browser, server, name):
    """Tables that keep their text, no machine paths, no TeX in tooltips, alt texts that describe (#31)."""
    page, _ = _open(browser, urljoin(server, name))
    try:
        problems = (table_problems(page, _source_of(name)) + machine_path_problems(page)
                    + tooltip_tex_problems(page) + alt_text_problems(page))
        assert not problems, f"{name}:\n" + "\n".join(problems)
    finally:
        page.close()


@pytest.mark.parametrize("chapter", _notebook_chapters() if SITE.is_dir() else [])
def test_chapter_at_phone_and_desktop_width(browser, server, chapter):
    """A chapter at phone width (screenshot in screenshots/phone/): figures' text readable; at desktop width:
    a claim chapter's answer on the first screen, and no long printed output outside a dropdown (#31)."""
    page, _ = _open(browser, urljoin(server, chapter + ".html"))
    try:
        problems = long_output_problems(page)
        if Path(chapter).name in CLAIM_CHAPTERS:
            problems += answer_box_problems(page)
        page.set_viewport_size(PHONE)
        page.wait_for_timeout(300)  # the layout settles at the new width
        (SHOTS / "phone").mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "phone" / (Path(chapter).name + ".png")), full_page=True)
        problems += figure_text_problems(page)
        assert not problems, f"{chapter}:\n" + "\n".join(problems)
    finally:
        page.close()


def test_one_search_box_at_desktop_width(browser, server):
    page, _ = _open(browser, urljoin(server, "book/primer.html"))
    try:
        visible = page.evaluate("""() => Array.from(document.querySelectorAll(
            '.search-button-field, .bd-search, input[type=search], .search-button')).filter(e => {
              const box = e.getBoundingClientRect(), style = getComputedStyle(e);
              return box.width > 0 && box.height > 0 && style.visibility !== 'hidden' && !e.closest('dialog');
            }).length""")
        assert visible == 1, f"{visible} search boxes at 1280 px (the theme's header adds one: navbar_persistent)"
    finally:
        page.close()


def test_exercises_are_numbered_per_chapter_as_the_teachers_page_says(browser, server):
    """Each chapter's exercises read "Exercise <chapter>.<n>" on the site, and the teachers page lists exactly
    those numbers (book_pages.exercises, from _toc.yml's numbered part)."""
    from nullspace_utils import book_pages

    found = book_pages.exercises()
    teachers, _ = _open(browser, urljoin(server, "book/teachers.html"))
    try:
        listed = teachers.evaluate("document.querySelector('article').textContent")
    finally:
        teachers.close()
    for chapter in dict.fromkeys(exercise.chapter for exercise in found):
        page, _ = _open(browser, urljoin(server, f"book/{chapter}.html"))
        try:
            shown = page.evaluate("""() => Array.from(document.querySelectorAll(
                '.exercise .admonition-title, .exercise-title, p.admonition-title')).map(t => t.textContent)
                .map(t => (t.match(/^Exercise ([0-9.]+)/) || [])[1]).filter(Boolean)""")
        finally:
            page.close()
        expected = [exercise.number for exercise in found if exercise.chapter == chapter]
        assert shown == expected, f"{chapter}: the site numbers its exercises {shown}, book_pages says {expected}"
        for number in expected:
            assert f"Exercise {number}" in listed, f"the teachers page does not list Exercise {number}"


# ---------------------------------------------------------------------------------------- the checks, checked
_PLANTED_PNG: dict[str, str] = {}


def _png_data_uri(width_inches: float, dpi: int = 100) -> str:
    """A blank PNG of a figure ``width_inches`` wide at ``dpi``, as matplotlib would save it (its dpi stored)."""
    import base64
    from io import BytesIO

    from PIL import Image

    key = f"{width_inches}-{dpi}"
    if key not in _PLANTED_PNG:
        buffer = BytesIO()
        Image.new("RGB", (int(width_inches * dpi), int(width_inches * dpi / 3)), "white").save(buffer, "PNG",
                                                                                          dpi=(dpi, dpi))
        _PLANTED_PNG[key] = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    return _PLANTED_PNG[key]


def _page_with(browser, html: str, viewport: dict | None = None):
    page = browser.new_page()
    if viewport:
        page.set_viewport_size(viewport)
    page.set_content(f"<html><body><article>{html}</article></body></html>")
    return page


def test_checks_catch_planted_defects(browser, server, tmp_path):
    """Every check above, on a copy of a built page with a defect planted in it (or on a tiny page), reports it;
    and on the same page without the defect reports nothing of that kind."""
    # 1. a table cell cut short by an unescaped pipe (the |Δp| bug), and a rendered cell that lost words
    source = tmp_path / "page.md"
    source.write_text("| claim | verdict |\n|---|---|\n| watermark | kept, mean \\|Δp\\| below one |\n")
    good = _page_with(browser, "<table><tr><th>claim</th><th>verdict</th></tr>"
                               "<tr><td>watermark</td><td>kept, mean |Δp| below one</td></tr></table>")
    try:
        assert table_problems(good, source) == []
        source.write_text(source.read_text().replace("\\|", "|"))  # as the reproducibility page once had it
        assert any("cells per row" in problem for problem in table_problems(good, source))
        source.write_text(source.read_text().replace("|Δp|", "\\|Δp\\|"))
        good.evaluate("document.querySelectorAll('td')[1].textContent = 'kept, mean'")  # text lost on the way
        assert any("without" in problem and "below" in problem for problem in table_problems(good, source))
    finally:
        good.close()
    # ... and on the built reproducibility page, against a copy of its source with a cell's escaped pipe unescaped
    page, _ = _open(browser, urljoin(server, "book/reproducibility.html"))
    try:
        written = _source_of("book/reproducibility.html").read_text(encoding="utf-8")
        assert "\\|" in written, "the reproducibility page no longer escapes a pipe: plant another defect"
        source.write_text(written)
        assert table_problems(page, source) == []
        source.write_text(written.replace("\\|", "|", 1))
        assert any("cells per row" in problem for problem in table_problems(page, source))
    finally:
        page.close()
    clipped = _page_with(browser, "<table><tr><th>a</th></tr><tr><td style='max-width:40px; overflow:hidden; "
                                  "white-space:nowrap'>a sentence far too long for its narrow cell</td></tr></table>")
    try:
        assert any("hides part of its text" in problem for problem in table_problems(clipped, None))
    finally:
        clipped.close()
    # 2-5. in a copy of a built claim chapter: a machine path, TeX in a tooltip, an image's alt text, the answer box
    page, _ = _open(browser, urljoin(server, "book/primer.html"))
    try:
        assert machine_path_problems(page) == [] and tooltip_tex_problems(page) == []
        page.evaluate("document.querySelector('article p').append(' made by: python -m x --out /tmp/sweep/a.json')")
        assert any("/tmp/sweep" in problem for problem in machine_path_problems(page))
        page.evaluate("document.querySelector('article a').title = 'Anonymous. \\\\texttt{max_noise.py}, 2023'")
        assert tooltip_tex_problems(page)
        assert not _reader_problems(page)
        page.evaluate("document.querySelector('article p').append(' the script \\\\texttt{max_noise.py} ')")
        assert any("raw TeX" in problem for problem in _reader_problems(page))
        page.evaluate("""() => { const i = document.createElement('img');
            i.src = '../_images/0123abcd.png'; i.alt = '../_images/0123abcd.png';
            document.querySelector('article').append(i); }""")
        assert any("file path: ../_images/0123abcd.png" in problem for problem in alt_text_problems(page))
        page.evaluate("document.querySelector('article img[src$=\"0123abcd.png\"]').alt = ''")
        assert any("without alt text: ../_images/0123abcd.png" in problem for problem in alt_text_problems(page))
        page.evaluate("document.querySelector('article img[src$=\"0123abcd.png\"]').alt = 'Noise keeps 100 %'")
        assert not any("0123abcd" in problem for problem in alt_text_problems(page))
        page.evaluate("""(title) => {
            document.querySelectorAll('.admonition-title, summary, .sd-summary-title').forEach(
                t => { if (t.textContent.trim().startsWith(title)) t.remove(); });
            const box = document.createElement('div'); box.className = 'admonition'; box.id = 'planted-answer';
            box.innerHTML = `<p class="admonition-title">${title}</p><p>ViTs keep 100 % of predictions.</p>`;
            document.querySelector('article h1').after(box); }""", ANSWER_TITLE)
        assert answer_box_problems(page) == []  # right under the title
        page.evaluate("""() => { const filler = document.createElement('div'); filler.style.height = '2000px';
            document.getElementById('planted-answer').before(filler); }""")
        assert any("below the first screen" in problem for problem in answer_box_problems(page))
        page.evaluate("document.getElementById('planted-answer').remove()")
        assert answer_box_problems(page) == [f"no {ANSWER_TITLE!r} box"]
        # 6. a long printed output, shown, then folded into a dropdown
        page.evaluate("""() => { const o = document.createElement('div'); o.className = 'cell_output';
            o.innerHTML = '<pre>' + Array.from({length: 20}, (_, i) => 'verdict line ' + i).join('\\n') + '</pre>';
            o.id = 'planted'; document.querySelector('article').append(o); }""")
        assert any("20 lines" in problem for problem in long_output_problems(page))
        page.evaluate("""() => { const d = document.createElement('details');
            d.append(document.getElementById('planted')); document.querySelector('article').append(d); }""")
        assert not any("20 lines" in problem for problem in long_output_problems(page))
    finally:
        page.close()
    # 7. at phone width, a figure squeezed into a narrow column (its text shrinks below 6 px), and the same figure
    # at the column's full width
    for style, readable in (("width:150px", False), ("max-width:100%", True)):
        phone = _page_with(browser, f"<div class='cell_output'><img style='{style}' alt='a figure' "
                                    f"src='{_png_data_uri(7.0)}'></div>", PHONE)
        try:
            assert (figure_text_problems(phone) == []) is readable, (style, figure_text_problems(phone))
        finally:
            phone.close()
