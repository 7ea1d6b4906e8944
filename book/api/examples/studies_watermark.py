from dataclasses import replace

import matplotlib.pyplot as plt
import torch

from nullspace_utils import box_solver, exact, results
from nullspace_utils import watermark as watermark_method
from nullspace_utils.data import stack_dataset
from nullspace_utils.profiles import get_profile
from nullspace_utils.studies import common, watermark

# the settings of each profile: the whole val split (images=None), eq. 7 with p = 1; the check point's 8 images
assert watermark.SETTINGS["teaching"] == watermark.WatermarkSettings(images=None, p=1)
assert watermark.CHECK == watermark.WatermarkCheck(images=8)
committed = watermark.RESULT.read(watermark.RESULT.path("teaching"))  # validated against WatermarkResult
assert committed["mark"] == watermark.MARK and committed["images"] == 2000
assert set(committed) == set(watermark.WatermarkResult.__annotations__)
entry = committed["models"]["zoo-vit-s"]  # a WatermarkModel: the whole split, its time, the check point
assert set(entry) == set(watermark.WatermarkModel.__annotations__)
assert [key for key, _ in watermark.CONDITIONS] == list(watermark.WatermarkConditions.__annotations__)
assert set(entry["all"]["exact"]) == set(watermark.WatermarkCondition.__annotations__)
assert set(watermark.PredictionChange.__annotations__) < set(watermark.WatermarkCondition.__annotations__)
assert entry["all"]["exact"]["match"] == 1.0 and entry["all"]["resized"]["match"] < 0.5  # resizing breaks it

# what the run measures, live on two val images of the zoo's ViT-S
profile = get_profile("teaching")
model = profile.load_model(profile.vit_models[0])
images, _ = stack_dataset(profile.dataset("val", n=2))
mark = watermark.watermark_mark(profile.image_size)  # rotated text, (3, 112, 112) in [0, 1]
naive = watermark.std_forgotten(model)  # the same network, its std forgotten: W's nullspace alone
assert naive.std == (1.0, 1.0, 1.0) and exact.normalisation(naive)[0] == model.mean
conditions = watermark.evaluate(model, images, mark, iterations=50)  # every condition, solver options passed on
assert conditions["exact"]["match"] == 1.0 and conditions["exact"]["logit_change_max"] < 1e-3
point = watermark.check_point(model, images, mark)  # evaluate on the first CHECK.images images (here both)
assert set(point) == set(conditions) and point["naive_std"]["psnr"] < 20  # the mark is visible

# the runner, on one image, on the CPU, written nowhere (common.Run().out is None)
result = watermark.run(replace(watermark.SETTINGS["teaching"], images=1), profile, common.Run())
assert watermark.RESULT.validate(result) is result and list(result["models"]) == list(profile.vit_models)

# the readers the chapter shows them with
table = watermark.conditions_table(committed)  # a plotting.Table, one row per model and condition
assert watermark.run_line(committed).startswith("2000 images per model")  # and the seconds per model, the device
assert table.rows[0] == ["`zoo-vit-s`", "exact", "100.0 %", "0.000 %", "< 1e-5 (rounding)", "6.3"]
matrix = torch.tensor([[1.0, 2.0]], dtype=torch.float64)  # the chapter's toy: one equation in two pixels
start, target = torch.tensor([[0.7, 0.2]], dtype=torch.float64), torch.tensor([[0.1, 0.9]], dtype=torch.float64)
figure = watermark.toy_figure(matrix, start, target, box_solver.solve_patches(matrix, start, target))
assert figure.axes[0].get_legend().get_texts()[0].get_text() == "same embedding: $y_1 + 2y_2 = $ const"
cpu, gpu = results.read("benchmarks/results/watermark_cpu.json"), results.read("benchmarks/results/watermark_gpu.json")
bars = watermark.speed_bars(cpu)  # SpeedBar(label, seconds per image, colour, extrapolated): SLSQP, HiGHS, ADMM...
assert bars[0].seconds > bars[1].seconds > max(bar.seconds for bar in bars[2:])  # SLSQP > HiGHS > ADMM
assert [bar.extrapolated for bar in bars[:3]] == [True, True, False]  # SLSQP and HiGHS: extrapolated, hatched
assert isinstance(bars[0], watermark.SpeedBar) and "EXTRAPOLATED" in bars[0].label
assert len(watermark.speed_figure(cpu).axes[0].patches) == len(bars)
gpu_now = results.read("benchmarks/results/watermark_gpu_now.json")  # the newest run: solver and embed host to host
lines = watermark.speed_lines(cpu, gpu_now)  # embed's times from the same run
assert lines[0].startswith("default (100 iterations): objective within 0.07 %")
assert "embed's default (tf32, not compiled): 2.7 s on the GPU, 3.0 s from host memory with the copies (the same run)" in lines[1]
pipeline = results.read("benchmarks/results/watermark_gpu_pipeline.json")  # or embed's times from another run
assert "3.6 s on the GPU, 4.1 s from host memory" in watermark.speed_lines(cpu, gpu, pipeline)[1]
assert lines[-1].startswith("extrapolated, not measured (hatched bars): SLSQP ") and " days per image" in lines[-1]
plt.close("all")

# the numbers behind the chapter's exercise solutions, computed (the widest ViT, JPEG copies, ADMM budgets)
profile = get_profile("teaching")
vit = profile.load_model(profile.vit_models[0])
images, _ = stack_dataset(profile.dataset("val", n=2))
mark = watermark.watermark_mark(profile.image_size)
answers = watermark.exercise_answers(profile, vit, images, mark, watermark_method.embed(vit, images, mark))
lines = watermark.exercise_lines(answers)
assert lines[0].startswith("ex. 1: joint nullspace 512 dimensions for zoo-vit-l, 672 for zoo-vit-s")
assert lines[2].endswith("embedding residual below 1e-5 at every budget: True")
