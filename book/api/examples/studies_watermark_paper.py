import tempfile
from dataclasses import replace

import torch
from timm.models.vision_transformer import VisionTransformer

from nullspace_utils import models, watermark
from nullspace_utils.profiles import get_profile
from nullspace_utils.studies import common, watermark_paper
from nullspace_utils.studies import watermark as watermark_study

# the settings: the paper's procedure (per-channel SLSQP, p = 1, its 5000-iteration cap) on 20 val images
settings = watermark_paper.SETTINGS["teaching"]  # a SlsqpSettings
assert settings == watermark_paper.SlsqpSettings(images=20, maxiter=5000, p=1, target="mark", units="normalised")
assert watermark_paper.CHECK == watermark_paper.SlsqpCheck(image=0, patches=2)
committed = watermark_paper.RESULT.read(watermark_paper.RESULT.path("teaching"))  # validated: WatermarkSlsqpResult
assert committed["config"] == common.settings_dict(settings) and committed["mark"] == watermark_paper.MARK
assert set(committed) == set(watermark_paper.WatermarkSlsqpResult.__annotations__)
entry = committed["models"]["zoo-vit-s"]  # a SlsqpModel: sizes, what SLSQP did (SlsqpSolver), the box (SlsqpBox)
assert set(entry) == set(watermark_paper.SlsqpModel.__annotations__)
assert set(entry["slsqp"]) == set(watermark_paper.SlsqpSolver.__annotations__) and entry["slsqp"]["at_cap"] == 0
assert set(entry["box"]) == set(watermark_paper.SlsqpBox.__annotations__) and entry["box"]["max_violation"] < 1 / 255
candidates = committed["predictions"]["zoo-vit-s"]  # SlsqpConditions: one SlsqpCondition per candidate
assert list(candidates) == list(watermark_paper.CANDIDATES) == list(watermark_paper.SlsqpConditions.__annotations__)
assert set(candidates["slsqp_raw"]) == set(watermark_paper.SlsqpCondition.__annotations__)

# the readers the chapter shows it with
table = watermark_paper.candidates_table(committed)  # a plotting.Table, one row per model and candidate
assert table.rows[0] == ["`zoo-vit-s`", "`slsqp_raw`", "100 %", "0.0 %", "100 %"]
lines = watermark_paper.model_lines(committed)  # three lines per model, then the models without a nullspace
assert lines[-1] == "zoo-vit-l: no per-channel nullspace (d = 256 = r^2 = 256); joint: 512"

# the check point, on a tiny ViT (4 x 4 patches, 8 per-channel directions: SLSQP is quick there)
torch.manual_seed(0)
net = VisionTransformer(img_size=16, patch_size=4, embed_dim=8, depth=1, num_heads=2, num_classes=3).eval()
tiny = models.ImageClassifier(net, models.ZOO_MEAN, models.ZOO_STD)
point = watermark_paper.check_point(tiny, torch.rand(3, 16, 16) * 0.5 + 0.25, torch.rand(3, 16, 16))
assert len(point["objective"]) == watermark_paper.CHECK.patches and point["box_violation"] < 1e-5

# the runner solves SLSQP in worker processes (hours), or imports answers solved elsewhere
# (scripts/paper_slsqp_solve.py writes <model>.npz into a folder); a folder without them is refused
with tempfile.TemporaryDirectory() as empty:
    try:
        watermark_paper.run(replace(settings, images=1), get_profile("teaching"), common.Run(), solved=empty)
    except common.StudyError as error:
        assert "no zoo-vit-s.npz there" in str(error)
    else:
        raise AssertionError("a folder without the answers must be refused")

# the authors' published per-channel SLSQP, max_noise.py's patch_parallel_impose, as written: no mark, it maximises
# the sum of the noise (SLSQP, 1000 iterations), with the image clipped to [-1, 1] in normalised units
noisy_settings = watermark_paper.MAX_NOISE_SETTINGS["teaching"]
assert noisy_settings == watermark_paper.MaxNoiseSettings(images=20, maxiter=1000, low=-1.0, high=1.0)
start = watermark_paper.max_noise_start(tiny, torch.rand(1, 3, 16, 16), noisy_settings)  # (B, m, C, r*r), clipped
basis = watermark.channel_bases(tiny)[0]  # the red channel's nullspace, (16, 8)
solved = watermark_paper.max_noise_channel(basis, start[0, :, 0])  # a MaxNoise: the noise, iterations, statuses
assert isinstance(solved, watermark_paper.MaxNoise) and (solved.iterations < noisy_settings.maxiter).all()
best = watermark_paper.max_noise_optimum(basis, start[0, :, 0])  # HiGHS: the exact optimum of the same LP
assert abs(solved.noise.sum() - best.sum()) < 1e-3 * best.sum()  # SLSQP meets it on this linear problem
patches = torch.rand(2, 3, 16).double().numpy()
optimum = watermark_paper.watermark_optimum(tiny, patches, patches[::-1].copy())  # A.2's problem per channel, (2, 3)
assert optimum.shape == (2, 3)
point = watermark_paper.max_noise_check_point(tiny, torch.rand(3, 16, 16), torch.rand(3, 16, 16), noisy_settings)
assert set(point) == {"noise_sum", "noise_sum_optimum", "iterations", "watermark_optimum"}

# its committed run (watermark_max_noise.json, a MaxNoiseResult), on the A.2 run's 20 images
noisy = watermark_paper.MAX_NOISE_RESULT.read(watermark_paper.MAX_NOISE_RESULT.path("teaching"))
assert set(noisy) == set(watermark_paper.MaxNoiseResult.__annotations__)
model = noisy["models"]["zoo-vit-s"]  # a MaxNoiseModel
assert set(model) == set(watermark_paper.MaxNoiseModel.__annotations__)
assert set(model["slsqp"]) == set(watermark_paper.MaxNoiseSolver.__annotations__) and model["slsqp"]["at_cap"] == 0
assert set(model["box"]) == set(watermark_paper.MaxNoiseBox.__annotations__)
assert list(model["predictions"]) == [key for key, _ in watermark_paper.MAX_NOISE_CONDITIONS] == list(
    watermark_paper.MaxNoiseConditions.__annotations__)
assert model["predictions"]["noisy_vs_clipped"]["match"] == 1.0  # the noise alone keeps every prediction
assert set(model["watermark_optimum"]) == set(watermark_paper.WatermarkOptimum.__annotations__)
assert len(watermark_paper.max_noise_table(noisy).rows) == 3 * len(noisy["models"])
assert watermark_paper.max_noise_lines(noisy)[0].startswith("zoo-vit-s: 20 images, 2940 problems")

# the A.2 run against the LP optimum, its iterations, what it kept, and the reproducibility page's rows
medians, maxima = watermark_paper.slsqp_iterations(committed)  # per model, against the 5000 cap
assert max(maxima) < committed["maxiter"]
assert 0 < watermark_paper.slsqp_gap(committed, noisy, "zoo-vit-s") < 10  # per cent above the per-channel optimum
assert watermark_paper.optimum_lines(committed, noisy)[0].startswith("zoo-vit-s: SLSQP stopped after 92 iterations")
assert watermark_paper.kept_lines(committed)[0].startswith("zoo-vit-s: same prediction slsqp_raw 100 %")
evaluation = watermark_study.RESULT.read(watermark_study.RESULT.path("teaching"))
rows = watermark_paper.claims(committed, evaluation, noisy)  # evidence.Claim rows: §6, then A.2's numbers
assert watermark_paper.claims(committed) == rows  # the other two files default to the committed ones
assert [row.verdict for row in rows] == ["reproduced", "not explained"]

# the as-written run solves in worker processes, or imports <model>_max_noise.npz (scripts/paper_slsqp_solve.py
# --max-noise); a folder without them is refused
with tempfile.TemporaryDirectory() as empty:
    try:
        watermark_paper.run_max_noise(replace(noisy_settings, images=1), get_profile("teaching"), common.Run(),
                                      solved=empty)
    except common.StudyError as error:
        assert "no zoo-vit-s_max_noise.npz there" in str(error)
    else:
        raise AssertionError("a folder without the answers must be refused")
