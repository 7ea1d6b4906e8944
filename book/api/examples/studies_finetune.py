import dataclasses
import tempfile

import torch
from torch.utils.data import TensorDataset

from nullspace_utils import results
from nullspace_utils.data import stack_dataset
from nullspace_utils.profiles import get_profile
from nullspace_utils.studies import common, evidence, finetune

# the settings of each profile, exactly as the committed result file stores them under "config"
settings = finetune.SETTINGS["teaching"]  # its match yardstick is the approximate sweep's recipe
assert isinstance(settings, finetune.FinetuneSettings) and settings.match.steps == 200 and settings.match.val == 500
assert isinstance(finetune.CHECK, finetune.CheckSettings) and finetune.CHECK.steps == 6  # the test's cheap run
sweep = finetune.RESULT.read(finetune.RESULT.path("teaching"))  # validated against FinetuneSweepResult
corruptions = finetune.CORRUPTIONS_RESULT.read(finetune.CORRUPTIONS_RESULT.path("teaching"))
assert sweep["config"] == common.settings_dict(settings)
assert set(sweep) <= set(finetune.FinetuneSweepResult.__annotations__)
assert set(sweep["config"]) == set(finetune.FinetuneSweepConfig.__annotations__)
noisy = sweep["runs"][finetune.run_name("nullspace", seed=0, lim=4.0)]  # "nullspace-lim4-s0"
assert set(noisy) == set(finetune.FinetuneModelRow.__annotations__) and noisy["weights"] == "nullspace-lim4-s0.safetensors"
assert set(noisy["run"]) == set(finetune.FinetuneRunRecord.__annotations__)
assert set(noisy["run"]["rounds"][0]) == set(finetune.FinetuneRoundRow.__annotations__)
assert set(sweep["check"]) == set(finetune.FinetuneCheck.__annotations__)
assert set(corruptions) == set(finetune.FinetuneCorruptionsResult.__annotations__)
assert set(corruptions["models"]["untuned"]) == set(finetune.CorruptionTable.__annotations__)

# groups of seeds, and verdicts only where the seeds' ranges separate (evidence.compare_groups)
groups = finetune.group_runs(sweep["runs"])
assert list(groups) == ["untuned", "plain", "nullspace lim 2", "gaussian lim 2", "nullspace lim 4", "gaussian lim 4"]
clean = {group: finetune.seed_scores(sweep["runs"], names, lambda row: row["clean"]) for group, names in groups.items()}
comparison = evidence.compare_groups(clean["gaussian lim 4"], clean["plain"])  # paired by seed
assert finetune.verdict_cell(comparison) == "-1.1 ± 0.2"
sentence = finetune.comparison_sentence("gaussian lim 4", "plain", "clean accuracy", comparison)
assert sentence == ("gaussian lim 4 trails plain on clean accuracy by 1.1 ± 0.2 points "
                    "(gaussian lim 4 97.9, plain 98.8-99.1)")
pairs = finetune.comparison_pairs(settings.lims)  # per lim: nullspace vs plain and vs Gaussian, Gaussian vs plain
assert pairs[-1] == ("gaussian lim 4", "plain")
assert finetune.verdict_lines(sweep["runs"], groups, lambda row: row["clean"], pairs[-1:], "clean accuracy") == [sentence]
measures = finetune.measures(sweep, corruptions)  # every yardstick, in the verdict table's order
assert isinstance(measures[0], finetune.Measure) and [m.key for m in measures] == [
    "clean", "corruptions", "pgd", "pgd", "pgd", "uniform"]
assert finetune.verdicts(sweep, "clean")[-1] == sentence  # plain vs untuned, then the pairs of every lim
assert finetune.verdict_box(sweep, "clean").splitlines()[-1] == sentence  # the same, in a collapsed box for display
assert finetune.verdict_table(sweep, corruptions).rows[0] == [
    "clean accuracy", "not separable", "+0.3 ± 0.2 (weak)", "not separable", "+0.9 ± 0.1"]

# the chapter's tables (plotting.Table) and figures' data (plotting.method_panels' panels)
assert finetune.settings_table(sweep, corruptions).rows[-1] == ["yardsticks", "clean: 2000 val images; PGD: 500; -C: 300"]
assert finetune.noise_table(sweep).rows[1] == ["4", "2.31", "5.22-9.13", "0.39-0.68", "100", "1.51-1.72"]
first = results.read("benchmarks/results/finetune_first_gpu_run_lim8.json")  # a first sweep, whose noises did not learn
assert finetune.first_run_line(first).startswith("first run, lim 8: eq. 6 loss 5.7-8.9 -> 4.3-6.6")
steps, means = finetune.loss_curve(noisy["run"], "noisy_loss")  # 150-step windows of the stored history
assert steps[:2] == [75.0, 225.0] and len(means) == len(steps)
assert [panel["title"] for panel in finetune.loss_panels(sweep)] == ["(a) clean loss", "(b) noisy loss"]
assert finetune.clean_table(sweep).rows[1] == ["plain", "98.85-99.10"]
profile = get_profile("teaching")
images, titles = finetune.corruption_gallery(stack_dataset(profile.dataset("val", n=1))[0], severity=3)
assert len(images) == 12 and titles[:2] == ["clean", "gaussian noise"]
severity = finetune.severity_panels(sweep, corruptions)  # per lim: accuracy against severity
assert severity[0]["xs"] == [1, 2, 3, 4, 5] and list(severity[0]["series"])[2] == "nullspace lim 2"
assert finetune.corruption_table(sweep, corruptions).rows[0] == [
    "gaussian noise", "71", "71-72", "71-72", "72-73", "75-77", "80-81"]
assert finetune.pgd_panels(sweep)[1]["xticklabels"] == ["0.5/255", "1/255", "2/255"]
assert finetune.nullspace_table(sweep).rows[0] == ["untuned", "98.2-99.2", "17.0-21.4", "100.0"]
assert finetune.last_lim_line(sweep).startswith("learned noise at lim 8: learning failed for 16 of 16 models")
follow_up = finetune.claims(sweep, finetune.CORRUPTIONS_RESULT.read(finetune.CORRUPTIONS_RESULT.path("teaching")))
assert [row.verdict for row in follow_up] == ["not reproduced", "not reproduced", "beyond the paper", "partly"]
one = {**sweep, "runs": {"plain-s0": sweep["runs"]["plain-s0"]}}  # one model's -C cell, redone from its weights
assert list(finetune.recomputed_lines(profile, one, corruptions)) == [
    "plain-s0: recomputed accuracy within one image of the file: True"]
hours = finetune.estimate_sweep_hours(finetune.SETTINGS["imagenet"], seconds_per_step=0.062, measured_batch=256)
assert round(hours["total"], 1) == 0.4  # the imagenet profile's sweep, from a measured step time
plain = finetune.sweep_images(finetune.SETTINGS["imagenet"], ["plain"], seeds=[0], lims=[])  # one part's images
assert plain["finetuning"] == 1480 * 64 and plain["noise"] == 0 and plain["match"] > 0
cost = results.read("benchmarks/results/learned_noise_cost_gpu.json")
assert finetune.cost_lines(finetune.SETTINGS["imagenet"], cost)[1].endswith("total 0.43 h")
# one part of the sweep counted for the plan's dry run: plain fine-tuning of seed 0 (and its model's match)
counted, added = finetune.work(finetune.SETTINGS["imagenet"], ["plain"], seeds=[0], lims=[3.0])
assert counted.forward_batches[("vit_small_patch32_224", "encoder", 64)] == 3 * 1480 and not added.learn_steps

# the runners, on tiny settings, on the CPU, written nowhere (common.Run().out is None)
labels = finetune.mapped_labels(get_profile("imagenet"), TensorDataset(torch.zeros(1, 3, 2, 2), torch.tensor([0])))
assert labels.tensors[1].item() == get_profile("imagenet").label_indices[0]  # ImageNette's 0..9 -> ImageNet's classes
match = dataclasses.replace(settings.match, seeds=(0,), steps=2, milestones=(1,), batch_size=8, probe_steps=1,
                            lr_grid=(0.1, 1.0), train=8, val=8)
tiny = dataclasses.replace(settings, seeds=(0,), lims=(4.0,), steps=2, batch_size=8, rounds=1, noise_steps=1,
                           noise_milestones=(), noise_images=8, noise_batch_size=8, probe_steps=1, train=8, val=8,
                           attack_images=4, pgd_epsilons=(1 / 255,), pgd_steps=1, match_lims=(4.0,), match=match,
                           exact_lims=(0.25,), corruption_images=2)
check = dataclasses.replace(finetune.CHECK, steps=2, noise_steps=1, train=8, val=2)
assert len(finetune.check_run(check)["loss"]) == 2  # the losses, noise RMS and clean accuracy a test compares
weights = tempfile.mkdtemp()
part = finetune.run(tiny, profile, common.Run(), methods=["untuned"], weights=weights, check=check)
merged = finetune.merge([part], common.Run())  # parts run in parallel, joined; untuned first
assert list(merged["runs"]) == ["untuned"] and merged["runs"]["untuned"]["exact"]["0.25"] == 1.0
table = finetune.run_corruptions(merged, profile, common.Run(), weights=weights, check=check)
assert len(table["models"]["untuned"]["per_corruption"]) == 11
