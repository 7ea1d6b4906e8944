"""Small fixes that make the built site work offline and keep the browser console clean.

* MathJax 3 is served from the site itself instead of a CDN, so the book renders its maths offline
  (a classroom without internet, the browser test on a closed network).
* sphinx-thebe registers its inline configuration script once per environment read, and Jupyter Book
  reads twice, so every page declared ``const THEBE_JS_URL`` twice (a JavaScript error in the
  console); duplicate scripts are dropped from each page.
* pydata-sphinx-theme logs "Got invalid theme mode" on a reader's first visit when no default mode
  is set; the pages say "auto" (follow the reader's system).

The files come from the pinned PyPI package ``django-static-mathjax`` (MathJax 3.2.2, Apache-2.0; it is
plain static files, Django is not needed); only its ``es5`` build is copied, to ``_static/mathjax``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sphinx.application import Sphinx

MATHJAX_PATH = "mathjax/tex-mml-chtml.js"  # relative to _static; _config.yml sets mathjax_path to it


def _es5_directory() -> Path:
    import mathjax  # the package django-static-mathjax

    return Path(mathjax.__file__).resolve().parent / "static" / "mathjax" / "es5"


def _copy_mathjax(app: Sphinx, exception: Exception | None) -> None:
    if app.config.mathjax_path != MATHJAX_PATH:
        raise RuntimeError(f"mathjax_path is {app.config.mathjax_path!r}; _config.yml must set it to {MATHJAX_PATH!r}.")
    if exception is None and app.builder.format == "html":
        shutil.copytree(_es5_directory(), Path(app.outdir) / "_static" / "mathjax", dirs_exist_ok=True)


def _deduplicate_scripts(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    seen, unique = set(), []
    for script in context.get("script_files", []):
        # the two registrations differ only in filename None against "" (both: an inline script)
        key = (getattr(script, "filename", None) or "", tuple(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique
    if not context.get("default_mode"):
        context["default_mode"] = "auto"


def setup(app: Sphinx) -> dict:
    if not (_es5_directory() / "tex-mml-chtml.js").is_file():
        raise RuntimeError("MathJax files not found: install the pinned requirements (django-static-mathjax).")
    app.connect("build-finished", _copy_mathjax)
    app.connect("html-page-context", _deduplicate_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
