"""Sphinx extension for the API pages.

- A dataclass field with a ``default_factory`` shows its default as the value the factory makes
  (``history=[]``) instead of Python's ``<factory>`` placeholder.
- The docstring of a constant or attribute keeps its first line as written: napoleon would read
  ``"The book's colours: Okabe and Ito's palette"`` as a type (``The book's colours``) and a description.
  The library's docstrings are sentences; their types come from the annotations."""

from __future__ import annotations

import dataclasses
import re
from typing import Any


def _factory_default(field: dataclasses.Field) -> str:
    """How a reader would write the default of ``field``: ``[]``, ``{}``, or ``Factory()``."""
    made = {list: "[]", dict: "{}", set: "set()", tuple: "()"}
    factory = field.default_factory
    return made.get(factory, f"{getattr(factory, '__name__', 'factory')}()")  # type: ignore[call-overload]


def show_factory_defaults(app: Any, what: str, name: str, obj: Any, options: Any, signature: str | None,
                          return_annotation: str | None) -> tuple[str | None, str | None] | None:
    """``autodoc-process-signature``: replace each ``name=<factory>`` of a dataclass's signature."""
    if not signature or "<factory>" not in signature or not dataclasses.is_dataclass(obj):
        return None
    fields = {field.name: field for field in dataclasses.fields(obj)}
    signature = re.sub(r"(\w+)(\s*:[^=]+?)?(\s*=\s*)<factory>",
                       lambda match: f"{match[1]}{match[2] or ''}{match[3]}{_factory_default(fields[match[1]])}"
                       if match[1] in fields else match[0], signature)
    return signature, return_annotation


_ATTRIBUTES = ("attribute", "data", "property")
_AS_WRITTEN: dict[str, list[str]] = {}


def remember_attribute(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """``autodoc-process-docstring``, before napoleon: keep an attribute's docstring as written."""
    if what in _ATTRIBUTES:
        _AS_WRITTEN[name] = list(lines)


def restore_attribute(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """``autodoc-process-docstring``, after napoleon: put the attribute's docstring back as written (napoleon
    would have read its first words, up to a colon, as a type)."""
    if what in _ATTRIBUTES and name in _AS_WRITTEN:
        lines[:] = _AS_WRITTEN.pop(name)


def setup(app: Any) -> dict[str, Any]:
    app.connect("autodoc-process-signature", show_factory_defaults)
    app.connect("autodoc-process-docstring", remember_attribute, priority=100)  # napoleon's runs at 500
    app.connect("autodoc-process-docstring", restore_attribute, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
