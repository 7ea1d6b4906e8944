from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from nullspace_utils.profiles import get_profile
from nullspace_utils.studies import approximate, robustness

settings: robustness.RobustnessSettings = robustness.SETTINGS["teaching"]  # the input-level sweep (Fig. 3b, c)
assert settings.lims == (0.05, 0.1, 0.25, 0.5, 1.0) and settings.transfer_lims == (0.1, 0.25, 0.5)
check: robustness.RobustnessCheck = robustness.CHECK  # the cheap point: MobileNetV3 at the input
assert (check.cnn_index, check.level) == (2, "input")
# robustness.run(settings, profile, Run(...), models=...) runs the sweep, a part of it with `models`; the parts
# save their noises beside their files (noise_file) and robustness.merge computes the transfer tables from them
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
assert {verdict["verdict"] for verdict in verdicts} <= {"ViTs ahead", "CNNs ahead", "not separable", "learning failed"}
assert robustness.verdict_sentence(verdicts[0]).startswith("at lim 0.05 (learned noise): ")
assert robustness.verdict_summary(verdicts).count("lim") >= 1
assert robustness.relative_size(sweep["input"]["zoo-resnet"][0])[0] > 0  # noise norm / clean norm, per seed
assert [row[0] for row in robustness.lr_rows(sweep, 0.5)] == list(profile.models)
assert robustness.null_part_rows(sweep, vits)[0][-1] == "yes"  # learning leaves the null part alone
assert robustness.exact_transfer_rows(sweep, profile.models)[0][0] == "0.1"
assert robustness.claim_lines(sweep, vits, cnns)[0].startswith("- **(b), learned image noise")

val = TensorDataset(torch.rand(8, 3, 112, 112), torch.zeros(8, dtype=torch.long))
models = {name: profile.load_model(name) for name in ("zoo-vit-s", "zoo-resnet")}
rows = robustness.uniform_reference_rows(models, val, (0.01,), profile.image_size)  # noise nobody learned
assert rows[0][0] == "zoo-vit-s" and rows[0][1].endswith(" %")
