import torch
from torch.utils.data import TensorDataset

from nullspace_utils import models
from nullspace_utils.profiles import get_profile
from nullspace_utils.studies import noise_sweep

vit = models.load_model("zoo-vit-s")
torch.manual_seed(0)
data = TensorDataset(torch.rand(16, 3, 112, 112), torch.zeros(16, dtype=torch.long))
noises: dict = {}
row: noise_sweep.NoisePoint = noise_sweep.noise_point(vit, data, data, level="input", lim=0.1, seeds=(0, 1), steps=2,
                                                      milestones=(), batch_size=8, lr=1.0, train_images=16,
                                                      noises=noises)  # one multi-seed point, JSON-ready
assert len(row["seeds"]) == 2 and set(noises) == {0, 1} and row["lr_choice"] is None  # a fixed rate: no probe
first: noise_sweep.NoiseSeedRow = row["seeds"][0]
assert first["projected"]["match"] == 1.0  # the start projected onto null(W_pix): every prediction kept
evaluation: noise_sweep.NoiseEvaluationRow = first["learned"]
losses: noise_sweep.TrainLossRow = first["train_loss"]  # eq. 6 of the start, the learned noise, its shuffled copy
assert 0.0 <= evaluation["match"] <= 1.0 and losses["initial"] > 0
choice: noise_sweep.LrChoiceRow | None = row["lr_choice"]

settings = noise_sweep.SweepSettings(lims=(0.1,), extend_until=0.5, extend_factor=2.0, max_extensions=1,
                                     seeds=(0,), steps=2, milestones=(1,), batch_size=8, probe_steps=2,
                                     lr_grid=(0.1, 1.0), train=16, val=16)
assert settings.with_steps(4).milestones == (2,)  # the rate decays stay at the same fractions of the run
assert settings.point() == noise_sweep.PointSettings(seeds=(0,), steps=2, milestones=(1,), batch_size=8, probe_steps=2,
                                                    lr_grid=(0.1, 1.0), train=16, val=16)  # how each point learns
kwargs = noise_sweep.point_settings(settings, "cpu")  # what a sweep's settings fix of noise_point
rows: list = []
noise_sweep.lim_sweep(lambda lim: noise_sweep.noise_point(vit, data, data, level="encoder", lim=lim, lr=1.0, **kwargs),
                      settings, lambda: None, rows)  # lims extended while uniform noise keeps >= extend_until
assert rows[0]["lim"] == 0.1 and all(row["lim"] in (0.1, 0.2) for row in rows)
wider = noise_sweep.SweepSettings(**{**vars(settings), "lims": (0.1, 0.2, 0.4)})
assert noise_sweep.chosen_lims([0.4, 0.1], wider) == (0.1, 0.4)  # one part's lims (--lims), in the listed order
assert wider.adds_lims((0.1, 0.4)) and not wider.adds_lims((0.2,))  # the part with the last lim extends the sweep
check = noise_sweep.CheckPoint(lim=0.1, seeds=(0,), steps=2, milestones=(1,), lr=1.0, batch_size=8, train=16, val=16)
assert noise_sweep.CheckPoint.from_record({**vars(check), "seeds": [0], "result": {}}) == check
point = noise_sweep.check_point(vit, data, data, check, "encoder", "cpu")  # what a test recomputes
assert point["lim"] == 0.1
train, val, small_train, small_val = noise_sweep.sweep_datasets(get_profile("teaching"), settings, check, "cpu")
assert len(train) == len(val) == 16 and len(small_train) == 16  # rendered images: the sweep's and the check's
# the settings and the check point as a result file stores them (schemas, checked by pydantic on reading)
assert {"lims", "lr_grid"} <= set(noise_sweep.SweepConfig.__annotations__)
assert "result" in noise_sweep.SweepCheck.__annotations__

# what a point costs, counted: learning steps (the rate probe, then each seed) and float32 forward batches
point = noise_sweep.PointSettings(seeds=(0, 1), steps=10, milestones=(), batch_size=8, probe_steps=2,
                                  lr_grid=(0.1, 1.0), train=16, val=16)
work: noise_sweep.Work = noise_sweep.point_work(point, "zoo-vit-s", "input", vit_input=True)
assert work.learn_steps == {("zoo-vit-s", "input", 8): (2 + 2) * 2 + 2 * 10}  # grid + 2 refinements, x probe; seeds
assert work.times(3).learn_steps[("zoo-vit-s", "input", 8)] == 3 * 28 and (work + noise_sweep.NO_WORK) == work
# the clean passes once (2 validation + 2 training batches), then per seed 5 evaluations and 3 losses, noisy only
assert work.forward_batches == {("zoo-vit-s", "input", 8): (2 + 2) + 2 * (5 * 2 + 3 * 2)}
