from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from nullspace_utils.profiles import get_profile
from nullspace_utils.studies import approximate, robustness

settings: robustness.RobustnessSettings = robustness.SETTINGS["teaching"]  # the input-level sweep (Fig. 3b, c)
assert settings.lims == (0.05, 0.1, 0.25, 0.5, 1.0) and settings.transfer_lims == (0.1, 0.25, 0.5)
check: robustness.RobustnessCheck = robustness.CHECK  # the cheap point: MobileNetV3 at the input
assert (check.cnn_index, check.level) == (2, "input")
# robustness.run(settings, profile, Run(...), models=...) runs the sweep, a part of it with `models`; each run
# saves its noises at the transfer lims beside its file (noise_file), robustness.merge computes the transfer
# tables from the parts' and saves them all beside the merged file
assert robustness.noise_file(Path("parts/cnns.json")).name == "cnns.noises.safetensors"
assert robustness.LOSS.startswith("eq. 6") and callable(robustness.run) and callable(robustness.merge)

profile = get_profile("teaching")
sweep: robustness.RobustnessResult = robustness.RESULT.read(robustness.RESULT.path("teaching"))
tokens = approximate.RESULT.read(approximate.RESULT.path("teaching"))  # panel (a) reads the ViTs' token rows
vits, cnns = profile.vit_models, profile.cnn_models
assert robustness.run_summary(sweep)[0].startswith("200 SGD steps of 128 images")
panel_a, panel_b = robustness.panels(sweep, tokens, vits, profile.models)  # for plotting.seed_panels
assert panel_b["title"] == "(b) image, all models" and len(panel_b["series"]) == 2 * len(profile.models)
verdicts = robustness.architecture_verdicts(sweep["input"], vits, cnns)  # lim by lim: do ViTs keep more?
assert {verdict["verdict"] for verdict in verdicts} <= {"ViTs ahead", "CNNs ahead", "not separable", "not comparable"}
assert robustness.verdict_sentence(verdicts[0]).startswith("at lim 0.05 (learned noise): ")
at_half = next(verdict for verdict in verdicts if verdict["lim"] == 0.5)  # an arm failed to learn there:
assert at_half["verdict"] == "not comparable" and at_half["among_learned"]["verdict"] == "ViTs ahead"
table = robustness.verdict_table(sweep, vits, cnns)  # every lim: learned, failed arms, uniform reference
assert len(table.rows) == len(verdicts) and table.headers[1] == "learned noise"
assert robustness.verdict_summary(verdicts).count("lim") >= 1
assert robustness.relative_size(sweep["input"]["zoo-resnet"][0])[0] > 0  # noise norm / clean norm, per seed
assert [row[0] for row in robustness.lr_rows(sweep, 0.5)] == list(profile.models)
assert robustness.null_part_rows(sweep, vits)[0][-1] == "yes"  # learning leaves the null part alone
start = sweep["input"]["zoo-vit-s"][0]["seeds"][0]  # a uniform start holds (3r^2 - d) / 3r^2 of its energy there
assert abs(robustness.null_energy_share(start, "projected_norm_kept") - 672 / 768) < 0.01

# Fig. 3c over seeds: robustness.run_transfer(settings, sweep, profile, Run(...), noises=...) reads every
# model's noise of every seed at the transfer lims on every model: the sweep's own noises when they were saved
# beside it (sweep_noises; None for the committed sweeps), else each learned again with the sweep's rates
transfer: robustness.TransferResult = robustness.TRANSFER_RESULT.read(robustness.TRANSFER_RESULT.path("teaching"))
assert callable(robustness.run_transfer) and transfer["source"] == "zoo-vit-s"
assert robustness.transfer_origin(transfer).startswith("The noises were learned again")  # the committed file's
matrix = robustness.mean_transfer_matrix(transfer, "0.5")  # mean over seeds, for plotting.matrix_heatmap
assert matrix["zoo-vit-s"]["zoo-vit-s"] > 0.95
entries = robustness.transfer_verdicts(transfer, "0.5", "zoo-vit-s")  # against the uniform noise it started from
assert {entry["target"]: entry["verdict"] for entry in entries}["zoo-vit-b"] == "transfers"
assert robustness.transfer_summary(transfer, "0.5", vits, cnns)["ViT→CNN"] == {"no better than uniform": 9}
gains = robustness.transfer_gains(transfer, "0.25", vits, cnns)  # points above uniform, where a pair separates
assert len(gains) == 8 and all(0 < gain < 10 for gain in gains)
assert len(robustness.transfer_table(transfer, "0.5", vits[:1]).rows) == len(profile.models) - 1
section_5 = robustness.claims(sweep, transfer, vits, cnns)  # the reproducibility page's rows
assert [claim.verdict for claim in section_5] == ["partly", "partly"]

val = TensorDataset(torch.rand(8, 3, 112, 112), torch.zeros(8, dtype=torch.long))
models = {name: profile.load_model(name) for name in ("zoo-vit-s", "zoo-resnet")}
rows = robustness.uniform_reference_rows(models, val, (0.01,), profile.image_size)  # noise nobody learned
assert rows[0][0] == "zoo-vit-s" and rows[0][1].endswith(" %")
listed, extensions = robustness.work(robustness.SETTINGS["teaching"], profile, "zoo-resnet")  # one part's work
assert set(listed.learn_steps) == {("zoo-resnet", "input", settings.batch_size)}  # model, level, batch size
moved = robustness.transfer_work(robustness.SETTINGS["teaching"], profile, reuse_noises=False)  # learned again
assert len(moved.learn_steps) == len(profile.models)
reused = robustness.transfer_work(robustness.SETTINGS["teaching"], profile, reuse_noises=True)  # the sweep's
assert not reused.learn_steps and len(reused.forward_batches) == len(profile.models)
assert robustness.sweep_noises(sweep, Path(robustness.RESULT.path("teaching"))) is None  # none committed
