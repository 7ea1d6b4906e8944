"""The reproducibility page's numbers for §4 and §5 come from the committed result files: each is recomputed
here and must appear, formatted the same way, in the row it supports."""

from pathlib import Path

import pytest

from nullspace_utils import results
from nullspace_utils.profiles import get_profile
from nullspace_utils.studies import evidence
from nullspace_utils.studies import robustness as robustness_study

PAGE = Path(__file__).resolve().parents[1] / "book" / "reproducibility.md"


def _row(start: str) -> str:
    rows = [line for line in PAGE.read_text().splitlines() if line.startswith(f"| {start}")]
    assert len(rows) == 1, f"the reproducibility page has {len(rows)} rows starting {start!r}"
    return rows[0]


def test_every_table_row_has_its_header_s_columns():
    """A literal ``|`` inside a cell must be escaped (``\\|``): unescaped, it splits the cell and the rest of the
    sentence silently disappears from the rendered table."""
    import re

    lines = PAGE.read_text().splitlines()
    tables = [index for index, line in enumerate(lines) if re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", line.strip())]
    assert tables, "no pipe table found on the reproducibility page"
    for separator in tables:
        columns = len(re.findall(r"(?<!\\)\|", lines[separator - 1]))
        row = separator + 1
        while row < len(lines) and lines[row].startswith("|"):
            found = len(re.findall(r"(?<!\\)\|", lines[row]))
            assert found == columns, f"line {row + 1} has {found - 1} cells, its header {columns - 1}: escape a | as \\|"
            row += 1


def _range(values: list[float]) -> str:
    return f"{100 * min(values):.1f}–{100 * max(values):.1f}"


@pytest.fixture(scope="module")
def profile():
    return get_profile("teaching")


def test_section_4_row_matches_the_approximate_sweep(profile):
    sweep = results.read("book/results/teaching/approximate.json")
    row = _row("Noise can be *learned*")
    last = [sweep["models"][name][-1] for name in profile.vit_models]
    assert " / ".join(_range(evidence.seed_values(point, "learned")) for point in last) in row
    assert " / ".join(_range(evidence.seed_values(point, "shuffled")) for point in last) in row
    held = sweep["keep_norm"][profile.vit_models[0]][-1]
    assert f"{_range(evidence.seed_values(held, 'learned'))} % against " \
           f"{_range(evidence.seed_values(held, 'shuffled'))} %" in row
    points = [point for rows in sweep["models"].values() for point in rows]
    assert "No point failed to learn" in row and not any(point["learning_failed"] for point in points)
    assert not any(point["lr_choice"]["at_edge"] for point in points)
    for point in last:  # "reproduced where noise matters": learned ahead at the largest lim, for every ViT
        assert evidence.separated(evidence.seed_values(point, "learned"),
                                     evidence.seed_values(point, "shuffled")) == 1


def test_section_5_rows_match_the_robustness_sweep(profile):
    sweep = results.read("book/results/teaching/robustness.json")
    row = _row("ViTs tolerate learned")
    learned = robustness_study.architecture_verdicts(sweep["input"], profile.vit_models, profile.cnn_models)
    uniform = robustness_study.architecture_verdicts(sweep["input"], profile.vit_models, profile.cnn_models, kind="uniform")
    assert [v["lim"] for v in learned if v["verdict"] == "ViTs ahead"] == [0.5]
    assert [(v["lim"], v["failed"]) for v in learned if v["verdict"] == "learning failed"] == [(1.0, ["zoo-vit-s"])]
    assert all(v["verdict"] == "not separable" for v in learned if v["lim"] < 0.5)
    assert all(v["verdict"] == "not separable" for v in uniform)
    at = {v["lim"]: v for v in learned}[0.5]
    assert f"({_range(at['vit_range'])} % against {_range(at['cnn_range'])} %)" in row
    at_uniform = {v["lim"]: v for v in uniform}[0.5]
    assert f"({_range(at_uniform['vit_range'])} % against {_range(at_uniform['cnn_range'])} %)" in row
    failed = sweep["input"][profile.vit_models[0]][-1]["seeds"]
    assert "two of ViT-S's three seeds failed to learn" in row and sum(e["learning_failed"] for e in failed) == 2
    # learning leaves the exact-nullspace part of the start as it was: the learned noise's null part is the
    # projected start (equal norms), and it keeps every prediction
    for name in profile.vit_models:
        for point in sweep["input"][name]:
            for entry in point["seeds"]:
                assert entry["row_removed"]["noise_norm"] == pytest.approx(entry["projected"]["noise_norm"], rel=1e-4)
                assert entry["row_removed"]["match"] == 1.0
    transfer = _row("Noise hardly transfers")
    own, exact = sweep["transfer"]["0.5"][profile.vit_models[0]], sweep["exact_transfer"]["0.5"]
    vits, cnns = profile.vit_models, profile.cnn_models
    assert f"keeps {100 * own[vits[0]]:.0f} % on ViT-S, " + " / ".join(f"{100 * own[n]:.0f}" for n in vits[1:]) in transfer
    assert " / ".join(f"{100 * own[n]:.0f}" for n in cnns) + " % on the CNNs" in transfer
    assert " / ".join(f"{100 * exact[n]:.0f}" for n in vits) + " % on the three ViTs and " \
           + " / ".join(f"{100 * exact[n]:.0f}" for n in cnns) in transfer


def test_section_3_row_matches_the_dimensions_the_library_computes(profile):
    """Both nullspaces' dimensions, for timm's ViT-S/B/L-32 (d = 384 / 768 / 1024, r = 32) and the zoo (r = 16)."""
    from nullspace_utils import exact

    row = _row("A ViT whose patch embedding")
    for widths, r in (((384, 768, 1024), 32), ((96, 192, 256), 16)):
        dims = [exact.nullspace_dimensions(d, r) for d in widths]
        assert " / ".join(str(dim["joint"]) for dim in dims) in row
        assert " / ".join(f"**{dim['per_channel']}**" if dim["per_channel"] == 0 else str(dim["per_channel"])
                          for dim in dims) in row


def test_section_6_row_matches_the_paper_procedure_run():
    committed = results.read("book/results/teaching/watermark_slsqp.json")
    row = _row("A visible watermark")
    models = list(committed["predictions"])
    resized = [committed["predictions"][name]["slsqp_clipped_resized"] for name in models]
    assert " / ".join(f"{100 * entry['match']:.0f} %" for entry in resized) + " kept" in row
    assert "mean \\|Δp\\| " + " / ".join(f"{100 * entry['prob_change']:.0f} %" for entry in resized) in row
    for name in models:  # "keeps 100 % of predictions raw, clipped and 8-bit; so do the joint space and a forgotten std"
        for key in ("slsqp_raw", "slsqp_clipped", "slsqp_clipped_8bit", "joint_exact", "joint_naive_std"):
            assert committed["predictions"][name][key]["match"] == 1.0
        assert committed["models"][name]["slsqp"]["at_cap"] == 0  # "never reaches the cap"
        assert committed["models"][name]["box"]["max_violation"] < 1 / 255  # "by less than one 8-bit level"
    assert "not explained" in row


def test_section_9_row_matches_the_fingerprint_results():
    committed = results.read("book/results/teaching/fingerprint.json")
    row = _row("A ViT's nullspace could")
    suspects = committed["suspects"]

    def claimed(name: str) -> str:
        return ", ".join(str(sum(entry["is_yours"] for entry in suspects[name][output]))
                         for output in ("logits", "probs", "label"))

    assert f"float16 claimed in {claimed('float16 copy')} of 8" in row
    assert f"int8 in {claimed('int8 copy')} of 8" in row
    unrelated = [name for name, entry in suspects.items() if not entry["derived"]]
    assert not any(entry["is_yours"] for name in unrelated for output in ("logits", "probs", "label")
                   for entry in suspects[name][output])
    most = max(entry["kept"] for name in unrelated for output in ("logits", "probs", "label")
               for entry in suspects[name][output])
    assert f"at most {most} of 16 probes kept" in row


def test_beyond_the_paper_rows_match_the_finetune_sweep():
    """The follow-up's rows: every range and difference recomputed from finetune.json and finetune_corruptions.json
    (ranges over seeds, differences as evidence.compare_groups gives them), with the verdict words they justify."""
    import numpy as np

    from nullspace_utils.studies import evidence
    from nullspace_utils.studies import finetune as finetune_study

    sweep = results.read("book/results/teaching/finetune.json")
    table = results.read("book/results/teaching/finetune_corruptions.json")
    runs, groups = sweep["runs"], finetune_study.group_runs(sweep["runs"])

    def spread(rows, group, score):
        values = finetune_study.seed_scores(rows, groups[group], score)
        return _range(values) if len(values) > 1 else f"{100 * values[0]:.1f}"

    def difference(rows, first, second, score, separated):
        comparison = evidence.compare_groups(finetune_study.seed_scores(rows, groups[first], score),
                                             finetune_study.seed_scores(rows, groups[second], score))
        assert comparison["separated"] == separated, (first, second)
        return f"{100 * abs(comparison['difference']):.1f} ± {100 * comparison['spread']:.1f}"

    mean = lambda row: row["mean"]  # noqa: E731
    row = _row("Nullspace-noise fine-tuning improves robustness to common")
    assert "**not reproduced" in row
    assert (f"{spread(table['models'], 'nullspace lim 2', mean)} / {spread(table['models'], 'nullspace lim 4', mean)} %"
            f" at lim 2 / 4 against {spread(table['models'], 'plain', mean)} %") in row
    for lim in (2, 4):
        difference(table["models"], f"nullspace lim {lim}", "plain", mean, 0)
    assert (f"{difference(table['models'], 'nullspace lim 2', 'gaussian lim 2', mean, -1)} / "
            f"{difference(table['models'], 'nullspace lim 4', 'gaussian lim 4', mean, -1)} points") in row
    pgd = lambda run: run["pgd"]["2/255"]  # noqa: E731
    row = _row("Nullspace-noise fine-tuning improves robustness to adversarial")
    assert (f"{spread(runs, 'nullspace lim 2', pgd)} / {spread(runs, 'nullspace lim 4', pgd)} % at lim 2 / 4 against "
            f"{spread(runs, 'plain', pgd)} %") in row
    assert (f"{difference(runs, 'nullspace lim 2', 'plain', pgd, -1)} / "
            f"{difference(runs, 'nullspace lim 4', 'plain', pgd, -1)} points, both weak") in row
    assert all(evidence.compare_groups(finetune_study.seed_scores(runs, groups[f"nullspace lim {lim}"], pgd),
                                       finetune_study.seed_scores(runs, groups["plain"], pgd))["weak"] for lim in (2, 4))
    assert f"untuned model's {spread(runs, 'untuned', pgd)} %" in row
    assert all(evidence.compare_groups(finetune_study.seed_scores(runs, groups[group], pgd), [pgd(runs["untuned"])])
               ["separated"] == -1 for group in groups if group != "untuned")  # "every fine-tuning ... lowers"
    clean = lambda run: run["clean"]  # noqa: E731
    row = _row("What it costs in clean accuracy")
    assert (f"{spread(runs, 'nullspace lim 2', clean)} / {spread(runs, 'nullspace lim 4', clean)} % at lim 2 / 4 "
            f"against {spread(runs, 'plain', clean)} %") in row
    for lim in (2, 4):
        difference(runs, f"nullspace lim {lim}", "plain", clean, 0)
    assert (f"{difference(runs, 'gaussian lim 2', 'plain', clean, -1)} / "
            f"{difference(runs, 'gaussian lim 4', 'plain', clean, -1)} points") in row
    uniform = lambda run: np.mean([entry["uniform"]["match"] for point in run["match"] if point["lim"] == 4.0  # noqa: E731
                                   for entry in point["seeds"]])
    row = _row("It enlarges the model's nullspace-like tolerance")
    assert (f"from {spread(runs, 'plain', uniform)} % (plain) to {spread(runs, 'nullspace lim 2', uniform)} / "
            f"{spread(runs, 'nullspace lim 4', uniform)} % (nullspace, lim 2 / 4) and to "
            f"{spread(runs, 'gaussian lim 2', uniform)} / {spread(runs, 'gaussian lim 4', uniform)} % (Gaussian)") in row
    assert f"at least {100 * min(run['exact']['0.5'] for run in runs.values()):.1f} %" in row
