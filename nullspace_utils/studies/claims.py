"""The reproducibility page (``book/reproducibility.md``): one row per claim of the paper and of the authors'
follow-up, each an :class:`~nullspace_utils.studies.evidence.Claim` that a study computes from its committed result
files, so that the page, the chapters and the tests read one set of verdicts.

The page's prose is written by hand; its two tables are generated between the markers
``<!-- claims: paper -->`` / ``<!-- claims: follow-up -->`` and ``<!-- /claims -->`` by
``python scripts/reproducibility_page.py`` (``--check``: fail if the committed page differs).
"""

from __future__ import annotations

import re
from typing import Sequence

import torch

from nullspace_utils import exact, plotting, results
from nullspace_utils.data import stack_dataset
from nullspace_utils.profiles import get_profile
from nullspace_utils.studies import approximate, finetune, fingerprint, fooling, robustness, watermark, watermark_paper
from nullspace_utils.studies.evidence import VERDICTS, Claim, false_separation_rate

__all__ = ["COLUMNS", "clauses", "summary", "findings", "folded", "section_3", "paper", "follow_up", "legend", "table", "render", "MARKER"]

#: the columns of the paper's table (the follow-up's first column is "claim (follow-up)")
COLUMNS = ("claim (paper section, figure)", "where we test it", "verdict")


def _header(columns: tuple[str, ...]) -> str:
    """A pipe table's header and separator lines."""
    return "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns)
#: the opening marker of a generated table (``<!-- claims: paper -->``), its closing one ``<!-- /claims -->``
MARKER = re.compile(r"(<!-- claims: (?P<name>[a-z-]+) -->\n)(.*?)(<!-- /claims -->)", re.DOTALL)

#: timm's ViT-S/B/L-32 (d = 384 / 768 / 1024, r = 32) and the zoo's ViT-S/B/L (d = 96 / 192 / 256, r = 16)
ARCHITECTURES = {"ViT-S/B/L-32": ((384, 768, 1024), 32), "the zoo's ViT-S/B/L": ((96, 192, 256), 16)}


def _dimensions(kind: str) -> str:
    return " and ".join(f"{' / '.join(str(exact.nullspace_dimensions(d, r)[kind]) for d in widths)} for {name}"
                     for name, (widths, r) in ARCHITECTURES.items())


def section_3(images: int = 8, amplitude: float = 1.0) -> list[Claim]:
    """§3's two rows: the nullspace's dimensions (paper's per-channel definition against the book's joint one,
    :func:`~nullspace_utils.exact.nullspace_dimensions`), and exact nullspace noise as large as the image (each
    zoo ViT, ``images`` validation images, seed 1) moving the logits by float32 rounding only."""
    profile = get_profile("teaching")
    batch = stack_dataset(profile.dataset("val", n=images))[0]
    changes = {}
    with torch.no_grad():
        for name in profile.vit_models:
            model = profile.load_model(name)
            changes[name] = exact.amplitude_sweep(model, batch, [amplitude]).nullspace_change[0]
    largest = max(changes.values())
    bound = "below 1e-4" if largest < 1e-4 else f"up to {largest:.1g}"
    zero = [name for name, (widths, r) in ARCHITECTURES.items() for d in widths
            if exact.nullspace_dimensions(d, r)["per_channel"] == 0]
    return [
        Claim(claim="ViT-S/32, ViT-B/32 and ViT-L/32 each have a non-trivial patch-embedding nullspace (§3.2, where "
                    "it is taken per channel: one-channel r × r patches, d kernels, as in the authors' code)",
              chapter="exact_nullspace", figure="exact-nullspace-dimensions", verdict="partly",
              sentence=f"per channel the dimension is 3(r² − d): {_dimensions('per_channel')}, so the paper's own "
                       f"definition leaves the largest ViT of {' and of '.join(zero)} without a nullspace although "
                       f"§3.2 reports one; the book uses the joint nullspace of the d × 3r² map (3r² − d: "
                       f"{_dimensions('joint')}), which contains the per-channel one and exists whenever d < 3r² "
                       "(dimensions of random and zoo weights; pretrained weights give the same if they have full rank)"),
        Claim(claim="Noise from that nullspace, tiled over every patch, leaves the whole network's output unchanged, "
                    "for any image (§3.2, Fig. 1)",
              chapter="exact_nullspace", figure="exact-nullspace-amplitude", verdict="reproduced",
              sentence=f"exact nullspace noise as large as the image (amplitude {amplitude:g}) moves the logits of "
                       f"each of the {len(changes)} zoo ViTs ({', '.join(changes)}) by {bound} on {images} validation "
                       "images, float32 rounding (computed when this page runs; the figure shows the first of them)"),
    ]


def paper(profile_name: str = "teaching") -> list[Claim]:
    """The paper's claims, section by section, from the profile's committed result files."""
    profile = get_profile(profile_name)
    vits, cnns = profile.vit_models, profile.cnn_models
    read = results.read
    sweep = read(robustness.RESULT.path(profile_name))
    return [*section_3(),
            *approximate.claims(read(approximate.RESULT.path(profile_name))),
            *robustness.claims(sweep, read(robustness.TRANSFER_RESULT.path(profile_name)), vits, cnns),
            *watermark_paper.claims(read(watermark_paper.RESULT.path(profile_name)),
                                    read(watermark.RESULT.path(profile_name)),
                                    read(watermark_paper.MAX_NOISE_RESULT.path(profile_name))),
            *fooling.claims(fooling.measure(profile)),
            *fingerprint.claims(read(fingerprint.RESULT.path(profile_name)))]


def follow_up(profile_name: str = "teaching") -> list[Claim]:
    """The authors' follow-up's claims (nullspace-noise fine-tuning), from the fine-tuning study's files."""
    return finetune.claims(results.read(finetune.RESULT.path(profile_name)),
                           results.read(finetune.CORRUPTIONS_RESULT.path(profile_name)))


def legend(profile_name: str = "teaching") -> str:
    """The verdict words, what each means, and how often the book's separation test reads a difference by chance
    at the group sizes its verdicts use (:func:`~nullspace_utils.studies.evidence.false_separation_rate`)."""
    words = "\n".join(f"- **{word}**: {meaning}." for word, meaning in VERDICTS.items())
    rates = ", ".join(f"{100 * false_separation_rate(n, m):.2g} % for {n} against {m}"
                      for n, m in ((3, 3), (6, 3), (9, 9), (1, 3)))
    return (f"{words}\n\nA difference is read only where every value of one side lies beyond every value of the "
            f"other (the seeds' ranges separate). Two sets of alike values still separate by chance: {rates} "
            "(a single reference model against three seeds: half the time), so the size of a difference is "
            "weighed too.")


def clauses(sentence: str) -> list[str]:
    """``sentence`` cut at its top-level semicolons (not those inside brackets), each part capitalised: the
    evidence of a claim as short separate lines instead of one long sentence.

    >>> clauses("match 97 % (seeds 0; 1); shuffled 50 %")
    ['Match 97 % (seeds 0; 1)', 'Shuffled 50 %']
    """
    parts, depth, start = [], 0, 0
    for index, character in enumerate(sentence):
        if character in "([{":
            depth += 1
        elif character in ")]}":
            depth -= 1
        elif character == ";" and depth == 0:
            parts.append(sentence[start:index])
            start = index + 1
    parts.append(sentence[start:])
    return [part.strip()[:1].upper() + part.strip()[1:] for part in parts if part.strip()]


def summary(claims: Sequence[Claim], title: str = "What we found") -> results.Note:
    """The box a chapter shows right after its setting (``display(claims.summary(...))``): one bullet per claim,
    its verdict in bold, the claim and a link to the figure that shows it, and under it the sentence formatted
    from the data, one short line per clause (:func:`clauses`). As plain text (``print``), one line per claim."""
    if not claims:
        raise ValueError("summary of no claims: pass the chapter's claims (its study's claims(...)).")
    bullets = "\n".join(f"- **{claim.verdict}**: {claim.claim} ({{ref}}`see the figure <{claim.figure}>`).\n"
                        + "\n".join(f"  - {clause.rstrip('.')}." for clause in clauses(claim.sentence))
                        for claim in claims)
    text = "\n".join(f"{claim.verdict}: {claim.claim}. {claim.sentence}" for claim in claims)
    return results.Note(text, f":::{{admonition}} {title}\n:class: tip\n{bullets}\n:::\n")


def findings(bullets: Sequence[str], title: str = "What we found") -> results.Note:
    """The box of a chapter that tests no claim of the paper (the primer, the setting), built like :func:`summary`:
    ``bullets``, three to five sentences whose numbers the chapter formats from what it computes. As plain text,
    one line per bullet."""
    if not bullets:
        raise ValueError("findings with no bullets: pass the chapter's three to five sentences.")
    listed = "\n".join(f"- {bullet}" for bullet in bullets)
    return results.Note("\n".join(bullets), f":::{{admonition}} {title}\n:class: tip\n{listed}\n:::\n")


def folded(title: str, table: plotting.Table) -> results.Note:
    """``table`` in a collapsed box titled ``title`` (a MyST ``dropdown``), for the per-point rows behind a chapter's
    verdicts: the page shows one line until the reader opens it. As plain text, the aligned table."""
    return results.Note(repr(table), f":::{{admonition}} {title}\n:class: dropdown\n{table.to_markdown()}\n:::\n")


def table(claims: list[Claim], columns: tuple[str, ...] = COLUMNS) -> str:
    """A pipe table of ``claims`` under ``columns`` (:data:`COLUMNS`, or the follow-up's)."""
    return "\n".join([_header(columns), *(claim.markdown_row() for claim in claims)])


def render(page: str, profile_name: str = "teaching") -> str:
    """``page`` with each generated part between its markers (``legend``, ``paper``, ``follow-up``) replaced by
    what the result files give now; the rest of the page as it is."""
    tables = {"legend": legend, "paper": lambda name: table(paper(name)),
              "follow-up": lambda name: table(follow_up(name), ("claim (follow-up)", *COLUMNS[1:]))}

    def fill(match: re.Match) -> str:
        name = match.group("name")
        if name not in tables:
            raise ValueError(f"unknown table {name!r} on the reproducibility page: use one of {', '.join(tables)}.")
        return f"{match.group(1)}{tables[name](profile_name)}\n{match.group(4)}"

    rendered, count = MARKER.subn(fill, page)
    if not count:
        raise ValueError("no generated table on this page: mark each with <!-- claims: NAME --> ... <!-- /claims -->, "
                         f"NAME one of {', '.join(tables)}.")
    return rendered
