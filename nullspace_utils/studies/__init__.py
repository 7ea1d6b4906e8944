"""The book's experiments, one module per chapter experiment (the studies layer; see the README's Architecture).

Each study holds its settings (a frozen dataclass per profile, :data:`SETTINGS`), its runner (settings + profile +
:class:`~nullspace_utils.studies.common.Run` -> result; parts and merge where a sweep runs in parallel), its
cheap check point (which a test recomputes on the CPU from the committed file), its result file
(:data:`RESULT`, a :class:`~nullspace_utils.results.ResultKind` with a ``TypedDict`` schema) and the readers its
chapter needs (tables, figure data, verdict inputs). A chapter imports its study; ``python -m
nullspace_utils.experiments`` is the command line over them.

- :mod:`~nullspace_utils.studies.noise_sweep`: the learned-noise sweep that approximate and robustness share;
- :mod:`~nullspace_utils.studies.evidence`: the statistics every verdict uses;
- :mod:`~nullspace_utils.studies.common`: what every runner shares.
"""

from nullspace_utils.results import ResultKind

__all__ = ["result_kinds"]


def result_kinds() -> dict[str, "ResultKind"]:
    """Every study's result kinds by name (``{"approximate": ResultKind(...), ...}``): the committed files a test
    checks against their schemas."""
    from nullspace_utils.studies import approximate, finetune, fingerprint, robustness, watermark, watermark_paper

    kinds: list[ResultKind] = [approximate.RESULT, robustness.RESULT, watermark.RESULT, watermark_paper.RESULT,
             watermark_paper.MAX_NOISE_RESULT, fingerprint.RESULT,
             finetune.RESULT, finetune.CORRUPTIONS_RESULT, robustness.TRANSFER_RESULT]
    return {kind.name: kind for kind in kinds}
