"""Result files of the book's heavy experiments: where they live, how to read and write them, and who made them.

Each study (``nullspace_utils.studies``) writes one JSON file per experiment and profile,
``book/results/<profile>/<kind>.json``, and declares its kind as a :class:`ResultKind`: the file's name,
its schema (a ``TypedDict`` in the study's module) and the command that makes it. This module holds what
every kind shares:

* :func:`provenance`: the record every result file carries (command, settings, commit, versions,
  device, date), and :func:`describe_provenance`, the line a chapter prints from it;
* :class:`ResultKind`: validation against the schema by pydantic v2 (``TypeAdapter`` in strict mode; an error
  names the file, the key and the fix), reading (the checkout first, else the repository on GitHub) and
  writing (validated, then written all at once); :func:`write_partial` (a run's rows so far);
* :func:`chapter_result`: what a chapter shows for a result file that may not exist yet.

Schemas use plain JSON types: a number is ``float`` (an integer is a number too, a boolean is not), a list is
``list``. A file may hold keys its schema does not name; every key the schema names must be there, with its type.
"""

# No ``from __future__ import annotations``: pydantic reads the schemas' NotRequired keys at run time.
import hashlib
import json
import logging
import os
import platform
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Generic, NamedTuple, TypeVar

import numpy as np
import pydantic
import torch
from typing_extensions import NotRequired, TypedDict

from nullspace_utils.files import REPOSITORY_ROOT, atomic_write, git_commit, sha256_of_file

__all__ = ["provenance", "describe_provenance", "shown_command", "result_file", "how_to_produce", "read", "write_json",
           "write_partial", "chapter_result", "chapter_file", "ChapterResult", "Note",
           "how_made_markdown", "unavailable_markdown", "ResultKind", "ResultFileError", "Provenance", "Fraction",
           "committed_file", "cache_folder", "offline", "REPOSITORY_ROOT", "RESULTS", "RAW_URL",
           "EXPERIMENTS_COMMAND", "OFFLINE_VARIABLE"]

logger = logging.getLogger(__name__)

RESULTS = REPOSITORY_ROOT / "book" / "results"
#: Where the repository's committed files are read from when this checkout lacks them (its raw GitHub address).
RAW_URL = "https://raw.githubusercontent.com/nullspace-vit/nullspace-vit/main/"
EXPERIMENTS_COMMAND = "python -m nullspace_utils.experiments"
OFFLINE_VARIABLE = "NULLSPACE_OFFLINE"  # set (to 1) to keep the library from fetching committed files (:func:`offline`)

Result = TypeVar("Result")


class ResultFileError(ValueError):
    """A result file (or a result about to be written) that does not have the shape of its kind."""


# --------------------------------------------------------------------------- provenance
class Provenance(TypedDict):
    """Who made a result file (:func:`provenance`). ``numpy``, ``python`` and ``config`` are recorded by
    runs made since this module exists; ``commit_note`` is written by hand where the commit needs a word."""

    command: str
    commit: str
    torch: str
    timm: str
    device: str
    date: str
    numpy: NotRequired[str]
    python: NotRequired[str]
    config: NotRequired[dict[str, Any]]
    commit_note: NotRequired[str]
    judged_by: NotRequired[str]  # flags re-derived from the stored measurements by a later rule (scripts/rejudge_learning.py)


# --------------------------------------------------------------------------- kinds and validation
def _json_name(value: Any) -> str:
    """``value``'s JSON type in words, with the value itself (shortened)."""
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
             dict: "an object", type(None): "null"}
    shown = json.dumps(value, default=repr)
    return f"{names.get(type(value), type(value).__name__)} ({shown[:40] + '...' if len(shown) > 40 else shown})"


#: pydantic's error types in the book's words: what the schema expected there
_EXPECTED = {"float_type": "a number", "int_type": "an integer", "bool_type": "a boolean", "string_type": "a string",
             "list_type": "a list", "dict_type": "an object", "none_required": "null"}


#: A share of a whole in a schema (a match, an accuracy, an energy share): the schemas' unit for these is a fraction
#: (their docstrings say "fraction", the files hold 0.96, not 96), so validation refuses a value outside [0, 1].
Fraction = Annotated[float, pydantic.Field(ge=0, le=1)]

#: How deep a result file may nest (the deepest committed one, fingerprint.json, nests 8 levels); deeper is damage.
MAX_DEPTH = 32


def _unusual_number(data: Any) -> str | None:
    """The first NaN or infinite number in ``data`` (JSON's NaN and Infinity, which Python's json reads), or a
    nesting deeper than :data:`MAX_DEPTH`, in the words of :func:`_problem`; None when there is neither. Walked
    without recursion, so a pathologically deep file cannot overflow the stack."""
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack:
        value, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"it nests more than {MAX_DEPTH} levels deep (at {where[:60]}...), which no result does"
        if isinstance(value, float) and not np.isfinite(value):
            return f"{where or 'the whole result'} should be a finite number, found {value}"
        if isinstance(value, dict):
            stack.extend((item, f'{where}["{key}"]', depth + 1) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend((item, f"{where}[{index}]", depth + 1) for index, item in enumerate(value))
    return None


def _parse_json(text: str, source: str) -> Any:
    """``text`` parsed as JSON, or :class:`ResultFileError` naming ``source`` for text that is not JSON or is nested
    too deep for Python's parser. NaN and Infinity are read as Python reads them; :meth:`ResultKind.validate`
    refuses them in a result."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ResultFileError(f"{source} is not a result file: it nests deeper than JSON can be read. Restore the "
                              f"committed file (git checkout -- {source}) or make it again.") from None
    except ValueError as error:  # json.JSONDecodeError too
        raise ResultFileError(f"{source} is not valid JSON ({error}). Restore the committed file "
                              f"(git checkout -- {source}) or make it again with the command in the README.") from None


def _problem(error: pydantic.ValidationError, data: Any) -> str:
    """pydantic's first error in the book's words: the key as a Python index (``["check"]["result"]``) and what is
    wrong there. Keys of ``loc`` that are not in ``data`` (the tags of a union's branches) are skipped."""
    first = error.errors(include_url=False)[0]
    keys: list[int | str] = []
    value = data
    for key in first["loc"]:
        if isinstance(value, dict) and key in value or isinstance(value, list) and isinstance(key, int):
            keys.append(key)
            value = value[key]  # type: ignore[index]  # a dict's key or a list's index, as just checked
        elif first["type"] == "missing" and key == first["loc"][-1]:
            keys.append(key)
    where = "".join(f"[{key}]" if isinstance(key, int) else f'["{key}"]' for key in keys)
    if first["type"] == "missing":
        parent = where[: where.rindex("[")]
        return f'missing key "{keys[-1]}" ' + (f"in {parent}" if parent else "at the top level")
    expected = _EXPECTED.get(first["type"], first["msg"].lower().removeprefix("input should be "))
    return f"{where or 'the whole result'} should be {expected}, found {_json_name(first['input'])}"


@dataclass(frozen=True)
class ResultKind(Generic[Result]):
    """One kind of result file: ``name`` (the file's stem, ``book/results/<profile>/<name>.json``), its ``schema``
    (a ``TypedDict``) and the ``command`` of ``python -m nullspace_utils.experiments`` that makes it.

    >>> from nullspace_utils.studies import fingerprint
    >>> fingerprint.RESULT.path("teaching")
    'book/results/teaching/fingerprint.json'
    """

    name: str
    schema: type
    command: str

    @cached_property
    def _adapter(self) -> pydantic.TypeAdapter:
        return pydantic.TypeAdapter(self.schema)

    def path(self, profile: str) -> str:
        """Where this kind's file of ``profile`` lives, relative to the repository root."""
        return result_file(self.name, profile)

    def remake_fix(self, profile: str, path: str | None) -> str:
        """The fix for a result (the file at ``path``, when there is one) that does not fit the schema."""
        restore = f"restore the committed one (git checkout -- {path}) or " if path else ""
        return (f"The file is damaged, cut short (a run stopped early) or made by other code: {restore}make it "
                f"again with\n    {EXPERIMENTS_COMMAND} {self.command} --profile {profile}")

    def validate(self, data: Any, *, source: str | None = None, fix: str | None = None) -> Result:
        """``data`` checked against the schema (pydantic, strict: no type is coerced), returned as it was.

        Raises :class:`ResultFileError` naming ``source`` (the file it came from), the first key that is missing
        or has the wrong type (as a Python index, e.g. ``["check"]["result"]["learned"]["match"]``) and ``fix``
        (by default: how to make the file again)."""
        problem = _unusual_number(data)
        if problem is None:
            try:
                self._adapter.validate_python(data, strict=True)
            except pydantic.ValidationError as error:
                problem = _problem(error, data)
        if problem is not None:
            if fix is None:
                profile = data.get("profile") if isinstance(data, dict) else None
                fix = self.remake_fix(profile if isinstance(profile, str) else "<profile>", source)
            raise ResultFileError(f"{source or 'the data'} is not a valid {self.name} result: {problem}. {fix}")
        return data

    def read(self, path: str, *, missing_ok: bool = False) -> Result | None:
        """The file at ``path`` (relative to the repository root; see :func:`read`), validated; ``None`` for a file
        that exists nowhere, with ``missing_ok``."""
        data = read(path, missing_ok=missing_ok)
        return data if data is None else self.validate(data, source=path)

    def load(self, path: str | Path) -> Result:
        """A result file on disk at ``path`` as a user gives it (relative to the current folder, not to the
        repository; no GitHub fallback), validated: what the command line reads for ``merge`` and ``--sweep``."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist (relative paths are read from {Path.cwd()}).")
        try:
            text = path.read_text()
        except UnicodeDecodeError as error:
            raise ResultFileError(f"{path} is not a JSON {self.name} result: it is binary, not text ({error}).") from None
        return self.validate(_parse_json(text, str(path)), source=str(path))

    def write(self, path: str | Path, result: Any) -> Path:
        """Write ``result`` as JSON at ``path``, all at once, after checking it, as the JSON it becomes, against the
        schema: a result that fails is not written (an existing file stays) and raises :class:`ResultFileError`."""
        path = Path(path)
        self.validate(json.loads(json.dumps(result)), source=f"the result for {path}",
                      fix=f"Nothing was written: make the code that builds it and the schema {self.schema.__name__} "
                          "agree.")
        return write_json(path, result)

    def chapter_result(self, profile: str, *, device: str | None = "cuda") -> "ChapterResult":
        """:func:`chapter_result` of this kind's file for ``profile``."""
        return chapter_result(self, profile, device=device)


def provenance(command: str, config: dict[str, Any], *, device: str | torch.device = "cpu") -> Provenance:
    """The record every result file carries: the ``command`` that made it, the ``config`` it ran with (JSON-ready;
    the experiments give their command-line arguments, defaults included), the checkout's commit, the versions
    of torch, timm, numpy and python, the name of the ``device`` it computed on (``"cpu"`` or the GPU's) and
    the date."""
    import timm

    device = torch.device(device)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return {"command": command, "commit": git_commit(), "torch": torch.__version__, "timm": timm.__version__,
            "numpy": np.__version__, "python": platform.python_version(), "device": device_name,
            "date": time.strftime("%Y-%m-%d"), "config": config}


def shown_command(command: str, place: str | None = None) -> str:
    """``command`` as a reader should see it, without the folders of the machine that ran it: the ``--out`` file as
    ``place`` (where the result lives in the repository, when given), and every other absolute path relative to
    the run's folder (the folder of ``--out``), or by its name alone where it lies outside that folder.

    >>> shown_command("x merge /root/out/a_part.json --out /root/out/a.json", "book/results/teaching/a.json")
    'x merge a_part.json --out book/results/teaching/a.json'
    >>> shown_command("x merge /tmp/sweep/parts/p.json --weights /tmp/w --out /tmp/sweep/f.json")
    'x merge parts/p.json --weights w --out f.json'
    """
    words = command.split()
    out = next((after for word, after in zip(words, words[1:], strict=False) if word == "--out"), None)
    run_folder = PurePosixPath(out).parent if out and out.startswith("/") else None
    shown = []
    for before, word in zip(["", *words], words, strict=False):  # each word with the one before it
        if before == "--out" and place is not None:
            word = place
        elif word.startswith("/"):
            path = PurePosixPath(word)
            word = str(path.relative_to(run_folder)) if run_folder and path.is_relative_to(run_folder) else path.name
        shown.append(word)
    return " ".join(shown)


def describe_provenance(result: dict[str, Any], place: str | None = None) -> str:
    """The two lines a chapter prints above a result: the command (:func:`shown_command`, ``place`` being where the
    result lives in the repository), then device, versions and commit."""
    made = result["provenance"]
    return (f"made by: {shown_command(made['command'], place)}\non {made['device']}, torch {made['torch']}, "
            f"timm {made['timm']}, commit {made['commit'][:10]}")


# --------------------------------------------------------------------------- where, read, write
def result_file(experiment: str, profile: str) -> str:
    """Where ``experiment``'s runner writes its result for ``profile``, relative to the repository root."""
    return f"book/results/{profile}/{experiment.replace('-', '_')}.json"


def _command(experiment: str, profile: str, device: str | None) -> str:
    """The command line that makes ``experiment``'s result file for ``profile``."""
    return f"{EXPERIMENTS_COMMAND} {experiment} --profile {profile}" + (f" --device {device}" if device else "")


def how_to_produce(experiment: str, profile: str, *, device: str | None = "cuda") -> str:
    """What a chapter prints when a result file of ``profile`` does not exist yet."""
    where = "on a GPU " if device == "cuda" else ""
    return (f"No results of the {profile!r} profile for this part yet. Produce them {where}with\n"
            f"    {_command(experiment, profile, device)}\n"
            f"which writes {result_file(experiment, profile)}; then run this chapter again.")


def offline() -> bool:
    """Whether the library may not use the network to fetch committed files: ``NULLSPACE_OFFLINE`` set to anything
    but ``""`` or ``0``. The outside-the-checkout CI step (``scripts/outside_checkout.py``) sets it where it cannot
    cut the network itself; a reader can set it to see what a chapter shows offline."""
    return os.environ.get(OFFLINE_VARIABLE, "0") not in ("", "0")


def _download(path: str) -> bytes:
    """The bytes of the committed file at ``path`` from the repository on GitHub (:data:`RAW_URL`); raises
    ``urllib.error.URLError`` when offline (:func:`offline`) or unreachable, ``HTTPError`` for an answer
    other than 200."""
    if offline():
        raise urllib.error.URLError(f"the network is off for this library ({OFFLINE_VARIABLE}=1)")
    with urllib.request.urlopen(RAW_URL + path, timeout=20) as response:
        logger.info("%s is not in this checkout: fetched from %s", path, RAW_URL)
        return response.read()


def _read_text(path: str, *, missing_ok: bool) -> str | None:
    """The text of the file at ``path`` (relative to the repository root): the checkout's, else GitHub's."""
    local = REPOSITORY_ROOT / path
    if local.is_file():
        return local.read_text()
    in_checkout = (REPOSITORY_ROOT / "_toc.yml").is_file()
    try:
        return _download(path).decode()
    except urllib.error.HTTPError as error:
        if error.code == 404 and missing_ok:
            return None
        reason = "it is not in the repository" if error.code == 404 else f"GitHub answered {error.code}"
        raise FileNotFoundError(f"{path} is not in this checkout, and {reason} ({RAW_URL}). "
                                "Produce it with the command in the README.") from error
    except (urllib.error.URLError, TimeoutError) as error:
        if missing_ok and in_checkout:
            return None
        raise FileNotFoundError(
            f"{path} is not in this checkout and could not be fetched from {RAW_URL} ({error}). "
            "Clone the repository, or produce it with the command in the README."
        ) from error


def read(path: str, *, missing_ok: bool = False, text: bool = False) -> Any:
    """A committed file by its path in the repository, e.g. ``"book/results/teaching/watermark.json"``, parsed
    as JSON (``text=True``: its text). :meth:`ResultKind.read` also checks a result file against its schema.

    Read from the checkout when there is one; otherwise (a notebook opened alone, on Colab) fetched
    from the repository on GitHub. With ``missing_ok=True`` a file that exists nowhere gives ``None``
    (see :func:`how_to_produce`): GitHub answers 404, or GitHub cannot be reached and the checkout lacks
    it. Without a checkout (the library installed alone, e.g. on Colab) and without network, whether the
    file exists is unknown: that raises ``FileNotFoundError`` saying so, even with ``missing_ok``.
    A file that is not JSON raises :class:`ResultFileError` saying how to restore it.
    """
    try:
        content = _read_text(path, missing_ok=missing_ok)
    except UnicodeDecodeError as error:
        raise ResultFileError(f"{path} is binary, not text ({error}). Restore the committed file "
                              f"(git checkout -- {path}) or make it again with the command in the README.") from None
    if content is None or text:
        return content
    return _parse_json(content, path)


def cache_folder() -> Path:
    """Where :func:`committed_file` keeps the files it fetched: ``repository/`` in the library's cache
    (:func:`nullspace_utils.data.data_dir`: ``$NULLSPACE_DATA``, else ``~/.cache/nullspace-vit``)."""
    from nullspace_utils.data import data_dir

    return data_dir() / "repository"


def committed_file(path: str, sha256: str) -> Path:
    """A committed binary file (e.g. fine-tuned weights a chapter recomputes from) by its path in the repository,
    as a local file checked against its ``sha256`` (recorded in the result file that names it): the checkout's,
    else a copy fetched once from the repository on GitHub (:data:`RAW_URL`) into :func:`cache_folder`.

    Raises ``FileNotFoundError`` when the file is neither here nor fetchable (no network: the message says how to
    get it), and :class:`ResultFileError` when a file's sha256 differs (a damaged or replaced file)."""
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ValueError(f"sha256 must be 64 lowercase hex digits, got {sha256!r}: pass the file's recorded hash.")
    local = REPOSITORY_ROOT / path
    if local.is_file():
        if sha256_of_file(local) != sha256:
            raise ResultFileError(f"{path} does not match its recorded sha256 {sha256[:12]}...: restore the committed "
                                  f"file (git checkout -- {path}).")
        return local
    cached = cache_folder() / path
    if cached.is_file() and sha256_of_file(cached) == sha256:
        return cached
    try:
        content = _download(path)
    except urllib.error.HTTPError as error:
        raise FileNotFoundError(f"{path} is not in this checkout, and GitHub answered {error.code} for it "
                                f"({RAW_URL}): clone the repository to have it.") from error
    except (urllib.error.URLError, TimeoutError) as error:
        raise FileNotFoundError(f"{path} is not in this checkout and could not be fetched from {RAW_URL} "
                                f"({getattr(error, 'reason', error)}): run this once with network (it is then kept in "
                                f"{cache_folder()}), or clone the repository.") from error
    if hashlib.sha256(content).hexdigest() != sha256:
        raise ResultFileError(f"{path} as fetched from {RAW_URL} does not match its recorded sha256 {sha256[:12]}...: "
                              "the repository's copy changed since the result file was written; nothing was kept.")
    cached.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(cached) as temporary:
        temporary.write_bytes(content)
    return cached


def write_json(path: str | Path, result: Any) -> Path:
    """``result`` as indented JSON at ``path``, written all at once (:func:`~nullspace_utils.files.atomic_write`: a
    failed write leaves an existing file as it was); the folder is made when missing. Unchecked: a result file
    is written by :meth:`ResultKind.write`, which checks it first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as temporary:
        temporary.write_text(json.dumps(result, indent=1) + "\n")
    return path


def write_partial(path: str | Path, result: dict[str, Any]) -> Path:
    """Write a run's rows so far to ``path`` unchecked (a run cut short keeps them); the run's last write is a
    checked :meth:`ResultKind.write`. Reading such a file back fails its schema, saying what is missing."""
    return write_json(path, result)


# --------------------------------------------------------------------------- chapters
class Note(str):
    """What a chapter shows above a result: plain text (``print(note)``, tests, the command line), and a Markdown
    form that a notebook renders (``display(note)``): a collapsed "how this was made" box for a file found, a
    note box for one that cannot be had."""

    markdown: str

    def __new__(cls, text: str, markdown: str) -> "Note":
        note = super().__new__(cls, text)
        note.markdown = markdown
        return note

    def _repr_markdown_(self) -> str:
        return self.markdown

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # a notebook's text/plain form: the text, unquoted
        printer.text(str(self))


class ChapterResult(NamedTuple):
    """A result file as a chapter shows it: the result (``None`` when it cannot be had) and the note to show
    above it (:class:`Note`: where it came from, or how to make it)."""

    result: Any
    note: Note


def how_made_markdown(result: dict[str, Any], place: str) -> str:
    """A collapsed box (a MyST ``dropdown`` admonition) saying how the result file at ``place`` was made: command
    (:func:`shown_command`, no machine paths), commit, date, device and versions, and the parallel parts it joins."""
    made = result["provenance"]
    lines = [f"- command: `{shown_command(made['command'], place)}`",
             f"- commit `{made['commit'][:10]}`, {made['date']}, on {made['device']}",
             f"- torch {made['torch']}, timm {made['timm']}, numpy {made['numpy']}, python {made['python']}"]
    parts = result.get("parts") or []
    if parts:
        devices = sorted({part["device"] for part in parts})
        lines.append(f"- joined from {len(parts)} parts run in parallel, on {', '.join(devices)}")
    body = "\n".join(lines)
    return f":::{{admonition}} How this was made: `{place}`\n:class: dropdown\n{body}\n:::\n"


def unavailable_markdown(why: str, command: str | None = None) -> str:
    """A note box for a file a chapter cannot show: ``why`` as prose, then the ``command`` that makes it (if any) as a
    code block."""
    block = f"\n```bash\n{command}\n```" if command else ""
    return f":::{{note}}\n{why}{block}\n:::\n"


def chapter_result(kind: ResultKind, profile: str, *, device: str | None = "cuda") -> ChapterResult:
    """The result file of ``kind`` that a chapter plots, and the note the chapter shows above it::

        sweep, note = results.chapter_result(studies.robustness.RESULT, profile.name)
        display(note)

    The note (:class:`Note`) is :func:`describe_provenance` (with the file's place in the repository) when the file
    is found, shown in a notebook as a collapsed "how this was made" box; when it does not exist, the result is
    ``None`` and the note says how to make it (on ``device``); when it cannot be read (the library installed
    without the repository, and no network), the note says why. A damaged file raises
    :class:`ResultFileError`, so a chapter never shows numbers from a file that does not fit its schema.
    """
    try:
        result = kind.read(kind.path(profile), missing_ok=True)
    except FileNotFoundError as error:
        command = _command(kind.command, profile, device)
        text = f"{error}\nThe cells that show it are skipped. The command that makes it:\n    {command}"
        why = f"{error} The cells that show it are skipped. The command that makes it:"
        return ChapterResult(None, Note(text, unavailable_markdown(why, command)))
    if result is None:
        where = "on a GPU " if device == "cuda" else ""
        why = (f"No results of the {profile!r} profile for this part yet. Produce them {where}with the command "
               f"below, which writes `{kind.path(profile)}`; then run this chapter again.")
        text = how_to_produce(kind.command, profile, device=device)
        return ChapterResult(None, Note(text, unavailable_markdown(why, _command(kind.command, profile, device))))
    place = kind.path(profile)
    return ChapterResult(result, Note(describe_provenance(result, place), how_made_markdown(result, place)))


def chapter_file(path: str, *, text: bool = False) -> ChapterResult:
    """A committed file that is not a study's result (a benchmark's timings, a page's data), as a chapter shows it:
    like :func:`chapter_result`, the file (``None`` when it cannot be had: not in this checkout and no network)
    and a :class:`Note` (how it was made when it carries a provenance; else where it lives), so a chapter opened
    outside the repository and offline skips the cells that need it instead of stopping."""
    try:
        content = read(path, text=text)
    except FileNotFoundError as error:
        message = f"{error} The cells that show it are skipped."
        return ChapterResult(None, Note(message, unavailable_markdown(message)))
    if isinstance(content, dict) and "provenance" in content:
        return ChapterResult(content, Note(describe_provenance(content, path), how_made_markdown(content, path)))
    return ChapterResult(content, Note(f"read from {path}", f"Read from `{path}`.\n"))
