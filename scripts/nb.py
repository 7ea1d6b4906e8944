"""Tiny helper to write a chapter notebook from a list of cells: ``python scripts/nb.py`` is not a CLI.

Chapters are written as ``book/_src/<chapter>.py`` files whose cells are separated by lines
``# %% [markdown]`` / ``# %%`` (the "percent" format that VS Code and Jupytext read), with an
optional ``tags=[...]`` and an optional ``alt="..."`` after the marker, in either order::

    # %% tags=[hide-input] alt="Learned noise keeps ViT predictions; CNNs lose them"
    # %% alt="The red change of the disguise, on a blue-white-red scale"

``alt`` is the alternative text of the cell's figures (what a screen reader says, and what a reader sees
when the image does not load): it goes into the cell's metadata as ``mystnb: {image: {alt: ...}}``, which
MyST-NB writes into every ``<img>`` the cell outputs. Say what the figure shows, not its file name (no double
quote inside it: write single quotes). A line that starts with ``# %%`` but is not such a marker is an error. A line ``# %% [colab]`` (or ``[colab-install]``, ``[colab-finetune]``) stands
for the first cell every notebook shares, kept once in ``book/_src/_colab.txt`` (``_colab_install.txt``):
it installs the library on Colab and names the profile. ``python scripts/nb.py book/_src/primer.py``
writes and executes ``book/primer.ipynb``; the executed notebook is what gets committed and nbval-checked.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

SHARED_CELL = re.compile(r"^# %% \[(?P<name>colab|colab-install|colab-finetune)\]\s*$", re.M)
MARKER = re.compile(r'^# %%(?P<md> \[markdown\])?(?P<options>(?:\s+(?:tags=\[[^\]]*\]|alt="[^"]*"))*)\s*$')
TAGS = re.compile(r"tags=\[(?P<tags>[^\]]*)\]")
ALT = re.compile(r'alt="(?P<alt>[^"]*)"')


def expand_shared_cells(source: str, folder: Path) -> str:
    """Replace each ``# %% [colab]`` line by the cell in ``folder/_colab.txt`` (and likewise for the others)."""
    return SHARED_CELL.sub(lambda match: (folder / f"_{match['name'].replace('-', '_')}.txt").read_text().rstrip("\n"),
                           source)


def parse(source: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    cells, current, kind, tags, alt = [], [], None, [], None

    def flush():
        text = "\n".join(current).strip("\n")
        if kind is None or not text:
            return
        if kind == "markdown":
            text = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in text.split("\n"))
            cell = nbformat.v4.new_markdown_cell(text)
        else:
            cell = nbformat.v4.new_code_cell(text)
        if tags:
            cell.metadata["tags"] = tags
        if alt:
            cell.metadata["mystnb"] = {"image": {"alt": alt}}
        cells.append(cell)

    for number, line in enumerate(source.split("\n"), start=1):
        match = MARKER.match(line)
        if line.startswith("# %%") and not match:
            raise ValueError(f"line {number}: {line!r} is not a cell marker: write '# %%' or '# %% [markdown]', "
                             f"then optionally tags=[a, b] and alt=\"text without double quotes\".")
        if match:
            flush()
            current, kind = [], "markdown" if match["md"] else "code"
            options = match["options"] or ""
            found_tags, found_alt = TAGS.search(options), ALT.search(options)
            tags = [t.strip().strip("'\"") for t in (found_tags["tags"] if found_tags else "").split(",") if t.strip()]
            alt = found_alt["alt"] if found_alt else None
        else:
            current.append(line)
    flush()
    nb.cells = cells
    return nb


def main(paths: list[str]) -> None:
    for path in paths:
        src = Path(path)
        target = src.parent.parent / (src.stem + ".ipynb")
        nb = parse(expand_shared_cells(src.read_text(), src.parent))
        timeout = int(os.environ.get("NB_CELL_TIMEOUT", "600"))  # seconds per cell; more on a busy machine
        NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(target.parent)}}).execute()
        for i, cell in enumerate(nb.cells):
            cell["id"] = f"cell-{i}"
        nbformat.write(nb, target)
        print("wrote", target)


if __name__ == "__main__":
    main(sys.argv[1:])
