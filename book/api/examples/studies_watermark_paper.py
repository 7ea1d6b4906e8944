import tempfile
from dataclasses import replace

import torch
from timm.models.vision_transformer import VisionTransformer

from nullspace_utils import models
from nullspace_utils.profiles import get_profile
from nullspace_utils.studies import common, watermark_paper

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
