"""benchmarks/watermark.py's GPU rows, run on the CPU: the code a GPU call spends device time on is checked here
first (the CUDA memory counters, which the CPU lacks, are stood in for)."""
import argparse
from pathlib import Path

import torch
from scripts_loader import load_script

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_embed_rows_in_cuda_graphs_and_without_are_exact_and_say_which_they_are(monkeypatch):
    """embed_pipelined's rows (the solve comparison's embed_cuda_graphs and embed_pipelined): two calls per
    setting, each exact (the host residual recomputed from the returned images, the box, the noise), not below the
    HiGHS optimum on the checked patches, and labelled with the setting and whether a cuda_graphs block was open."""
    bench = load_script("watermark", BENCHMARKS)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda *args, **kwargs: None)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *args, **kwargs: 0)
    model, _, mark = bench.problem()
    batch = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    args = argparse.Namespace(device="cpu", batch=2, highs_patches=1)
    optimum, _ = bench.highs_optimum(model, batch[:1], mark, 1)
    floor = {"embed_seconds": 1.0}
    in_graphs = bench.embed_pipelined(args, model, batch, mark, optimum, floor, bench.GRAPH_SETTINGS, graphs=True)
    plain = bench.embed_pipelined(args, model, batch, mark, optimum, floor, bench.PIPELINE_SETTINGS[:1])
    assert [(row["precision"], row["call"]) for row in in_graphs] == [
        (precision, call) for precision, _, _ in bench.GRAPH_SETTINGS for call in ("first", "second")]
    assert all(row["cuda_graphs"] for row in in_graphs) and not any(row["cuda_graphs"] for row in plain)
    for row in in_graphs + plain:
        assert row["host_residual"] < 1e-5 and row["box_violation"] == 0 and row["noise_exact"]
        assert row["gap_percent"] > -1e-4  # no better than the LP optimum, up to HiGHS's tolerance
