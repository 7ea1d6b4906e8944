"""The reproducibility page's numbers for §4 and §5 come from the committed result files: each is recomputed
here and must appear, formatted the same way, in the row it supports."""

from pathlib import Path

import pytest

from nullspace_utils import results
from nullspace_utils.profiles import get_profile
from nullspace_utils.studies import evidence
from nullspace_utils.studies import finetune as finetune_study
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


def test_section_5_rows_are_the_robustness_study_s_claims(profile):
    """The §5 rows are what studies.robustness.claims computes from the sweep and the transfer file, and their
    verdicts follow from the data: no lim where every arm learned separates ViTs from CNNs, ViTs ahead of the
    CNNs that learned at the larger lims; transfer within ViTs, none from ViTs to CNNs at the largest lim."""
    sweep = results.read("book/results/teaching/robustness.json")
    transfer = results.read("book/results/teaching/robustness_transfer.json")
    vits, cnns = profile.vit_models, profile.cnn_models
    rows = robustness_study.claims(sweep, transfer, vits, cnns)
    assert _row("ViTs tolerate learned") == rows[0].markdown_row()
    assert _row("Noise hardly transfers") == rows[1].markdown_row()
    learned = robustness_study.architecture_verdicts(sweep["input"], vits, cnns)
    assert not [v for v in learned if v["verdict"] == "ViTs ahead"]
    assert [v["lim"] for v in learned if v["verdict"] == "not comparable"] == [0.5, 1.0]
    assert all(v["among_learned"]["verdict"] == "ViTs ahead" for v in learned if v["verdict"] == "not comparable")
    assert rows[0].verdict == "partly" and "no lim where all six learned separates them" in rows[0].sentence
    counts = robustness_study.transfer_summary(transfer, "0.5", vits, cnns)
    assert counts["ViT→ViT"] == {"transfers": 6} and counts["ViT→CNN"] == {"no better than uniform": 9}
    assert rows[1].verdict == "partly"
    # learning leaves the exact-nullspace part of the start as it was: the learned noise's null part is the
    # projected start (equal norms), and it keeps every prediction
    for name in vits:
        for point in sweep["input"][name]:
            for entry in point["seeds"]:
                assert entry["row_removed"]["noise_norm"] == pytest.approx(entry["projected"]["noise_norm"], rel=1e-4)
                assert entry["row_removed"]["match"] == 1.0


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


def test_beyond_the_paper_rows_are_the_finetune_study_s_claims():
    """The follow-up's rows are what studies.finetune.claims computes, and its comparisons hold in the data."""
    sweep = results.read("book/results/teaching/finetune.json")
    table = results.read("book/results/teaching/finetune_corruptions.json")
    rows = finetune_study.claims(sweep, table)
    for claim in rows:
        assert _row(claim.claim) == claim.markdown_row()
    runs, groups = sweep["runs"], finetune_study.group_runs(sweep["runs"])
    mean = lambda row: row["mean"]  # noqa: E731
    for lim in (2, 4):  # "not separable" from plain, "behind" the Gaussian control on -C
        nullspace = finetune_study.seed_scores(table["models"], groups[f"nullspace lim {lim}"], mean)
        assert evidence.compare_groups(nullspace, finetune_study.seed_scores(table["models"], groups["plain"], mean))[
            "separated"] == 0
        assert evidence.compare_groups(nullspace, finetune_study.seed_scores(
            table["models"], groups[f"gaussian lim {lim}"], mean))["separated"] == -1
    assert [claim.verdict for claim in rows] == ["not reproduced", "not reproduced", "beyond the paper", "beyond the paper"]
    pgd = lambda run: run["pgd"]["2/255"]  # noqa: E731
    assert all(evidence.compare_groups(finetune_study.seed_scores(runs, groups[group], pgd), [pgd(runs["untuned"])])
               ["separated"] == -1 for group in groups if group != "untuned")  # "every fine-tuning ... lowers"
