"""Nullspace-augmented fine-tuning (the authors' CPAL 2025 follow-up) and its yardsticks, on the zoo's ViT-S and a
few teaching images. Tests of corruptions and attacks need imagecorruptions / torchattacks and are skipped, with
the reason, where those are not installed (`make install` installs them)."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from nullspace_utils import approximate, finetune, models
from nullspace_utils.data import stack_dataset, synthetic_dataset
from nullspace_utils.studies import common, evidence
from nullspace_utils.studies import finetune as finetune_study

NEEDS_CORRUPTIONS = "imagecorruptions is not installed: `make install` (imagecorruptions-imaug) installs it"
NEEDS_ATTACKS = "torchattacks is not installed: `make install` installs it"


@pytest.fixture(scope="module")
def batch():
    return stack_dataset(synthetic_dataset("val", n=16))


@pytest.fixture(scope="module")
def train():
    return TensorDataset(*stack_dataset(synthetic_dataset("train", n=16)))


def tiny(**overrides):
    """A fine-tuning run of a few steps on one batch of all 16 images, with a fixed noise rate (no probe)."""
    settings = dict(steps=4, batch_size=16, rounds=2, lim=2.0, noise_steps=3, noise_lr=1.0, noise_milestones=(),
                    noise_images=16, noise_batch_size=16, lr=3e-4, seed=0)
    settings.update(overrides)
    return finetune.FinetuneConfig(**settings)


def weights(model):
    return torch.cat([parameter.detach().flatten() for parameter in model.parameters()])


# --------------------------------------------------------------------------- schedule and noises
def test_round_starts_are_evenly_spaced_from_zero():
    assert finetune.round_starts(10, 3) == [0, 3, 6]
    assert finetune.round_starts(4, 1) == [0]
    assert finetune.round_starts(5, 5) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="rounds <= steps"):
        finetune.round_starts(2, 3)


def test_gaussian_noise_has_exactly_the_stated_rms_and_follows_its_seed():
    noise = finetune.gaussian_noise((49, 96), rms=0.7, seed=3)
    assert noise.shape == (49, 96)
    assert math.isclose(noise.pow(2).mean().sqrt().item(), 0.7, rel_tol=1e-6)
    assert torch.equal(noise, finetune.gaussian_noise((49, 96), rms=0.7, seed=3))
    assert not torch.equal(noise, finetune.gaussian_noise((49, 96), rms=0.7, seed=4))
    with pytest.raises(ValueError, match="rms must be positive"):
        finetune.gaussian_noise((4,), rms=0.0)


def test_config_defaults_match_the_uniform_start_and_reject_bad_settings():
    assert math.isclose(finetune.FinetuneConfig(lim=3.0).gaussian_rms_of(0), 3.0 / math.sqrt(3))
    assert finetune.FinetuneConfig(rounds=2, gaussian_rms=(0.5, 0.25)).gaussian_rms_of(1) == 0.25
    with pytest.raises(ValueError, match="method must be one of"):
        finetune.FinetuneConfig(method="adversarial")
    with pytest.raises(ValueError, match="cannot exceed steps"):
        finetune.FinetuneConfig(steps=2, rounds=3)
    with pytest.raises(ValueError, match="one per round"):
        finetune.FinetuneConfig(rounds=3, gaussian_rms=(0.5, 0.5))
    with pytest.raises(ValueError, match="noise_lr must be"):
        finetune.FinetuneConfig(noise_lr="fast")
    with pytest.raises(ValueError, match="lim must be positive"):
        finetune.FinetuneConfig(lim=0.0)


def test_augmentation_loss_is_clean_plus_noisy_cross_entropy(vit_s, batch):
    images, labels = batch
    with torch.no_grad():
        clean = F.cross_entropy(vit_s(images), labels)
        alone, parts = finetune.augmentation_loss(vit_s, images, labels, None)
        assert torch.allclose(alone, clean) and set(parts) == {"loss", "clean_loss"}
        zero, _ = finetune.augmentation_loss(vit_s, images, labels, torch.zeros(49, 96))
        assert torch.allclose(zero, 2 * clean, rtol=1e-5)  # zero noise: the noisy term is the clean one
        noise = finetune.gaussian_noise((49, 96), rms=3.0)
        loud, parts = finetune.augmentation_loss(vit_s, images, labels, noise)
    assert parts["noisy_loss"] > parts["clean_loss"]  # a large random token noise hurts the zoo ViT
    assert math.isclose(loud.item(), parts["clean_loss"] + parts["noisy_loss"], rel_tol=1e-5)
    assert len(vit_s.net.patch_embed._forward_hooks) == 0  # the noise hook is gone afterwards
    with pytest.raises(ValueError, match="encoder noise has shape"):
        finetune.augmentation_loss(vit_s, images, labels, torch.zeros(48, 96))


# --------------------------------------------------------------------------- fine-tuning
@pytest.fixture(scope="module")
def runs(vit_s, train):
    """The three methods at one tiny budget and seed, the Gaussian one matched to the nullspace noise's energy."""
    learned = finetune.finetune(vit_s, train, tiny(method="nullspace"))
    return {"nullspace": learned, "plain": finetune.finetune(vit_s, train, tiny(method="plain")),
            "gaussian": finetune.finetune(vit_s, train, tiny(method="gaussian", gaussian_rms=learned.noise_rms))}


def test_nullspace_finetuning_learns_a_noise_per_round_and_leaves_the_model_alone(vit_s, runs):
    before = weights(models.load_model("zoo-vit-s"))  # a fresh load: the shared vit_s must still equal it
    result = runs["nullspace"]
    assert torch.equal(weights(vit_s), before)  # the caller's model is untouched
    assert not torch.equal(weights(result.model), before)  # the copy was trained
    assert not result.model.training and len(result.history) == 4
    assert [record.start_step for record in result.rounds] == [0, 2]
    for record in result.rounds:
        # learned from the Uniform(-2, 2) start in token units (49 x 96 entries) with the rate asked for
        assert math.isclose(record.initial_norm, math.sqrt(49 * 96) * 2 / math.sqrt(3), rel_tol=0.05)
        assert record.noise_lr == 1.0 and record.noise_loss_last < record.noise_loss_first
        assert math.isclose(record.rms, record.norm / math.sqrt(49 * 96))
    assert all(set(entry) == {"step", "loss", "clean_loss", "noisy_loss"} for entry in result.history)


def test_finetuning_lowers_the_loss_on_its_batch(runs):
    for method, result in runs.items():
        clean = [entry["clean_loss"] for entry in result.history]
        assert clean[-1] < clean[0], (method, clean)
    for method in ("nullspace", "gaussian"):  # within a round (same noise), the noisy loss falls too
        noisy = [entry["noisy_loss"] for entry in runs[method].history]
        assert noisy[1] < noisy[0] and noisy[3] < noisy[2], (method, noisy)


def test_gaussian_baseline_matches_the_nullspace_noise_energy_round_by_round(runs):
    matched, learned = runs["gaussian"], runs["nullspace"]
    assert len(matched.noise_rms) == 2 and matched.noise_rms != (learned.noise_rms[0],) * 2
    for ours, theirs in zip(matched.noise_rms, learned.noise_rms, strict=True):
        assert math.isclose(ours, theirs, rel_tol=1e-6)


def test_plain_finetuning_is_reproducible_and_has_no_noise(vit_s, train, runs):
    first = runs["plain"]
    assert first.rounds == [] and all("noisy_loss" not in entry for entry in first.history)
    second = finetune.finetune(vit_s, train, tiny(method="plain"))
    assert torch.equal(weights(first.model), weights(second.model))
    other = finetune.finetune(vit_s, train, tiny(method="plain", steps=2, rounds=1, batch_size=4, seed=1))
    assert not torch.equal(weights(first.model), weights(other.model))


def test_noise_methods_need_a_vit(train):
    cnn = models.load_model("zoo-resnet")
    with pytest.raises(ValueError, match="needs a ViT"):
        finetune.finetune(cnn, train, tiny(method="nullspace"))


def test_saved_weights_load_back_as_the_same_model(vit_s, train, batch, tmp_path):
    result = finetune.finetune(vit_s, train, tiny(method="plain", steps=1, rounds=1))
    path = tmp_path / "tuned.safetensors"
    finetune.save_weights(result.model, str(path))
    loaded = models.load_model("zoo-vit-s", weights=path)
    with torch.no_grad():
        assert torch.equal(loaded(batch[0]), result.model(batch[0]))
    with pytest.raises(ValueError, match="safetensors"):
        finetune.save_weights(result.model, str(tmp_path / "tuned.pt"))


def test_clean_accuracy_checks_its_inputs(vit_s, batch):
    images, labels = batch
    assert finetune.clean_accuracy(vit_s, images, labels) > 0.8  # the zoo ViT-S is 99 % accurate
    with pytest.raises(ValueError, match="must lie in \\[0, 1\\]"):
        finetune.clean_accuracy(vit_s, images * 255, labels)
    with pytest.raises(ValueError, match="one per image"):
        finetune.clean_accuracy(vit_s, images, labels[:3])
    with pytest.raises(TypeError, match="floating point"):
        finetune.clean_accuracy(vit_s, (images * 255).to(torch.uint8), labels)


# --------------------------------------------------------------------------- corruptions (imagecorruptions)
def test_corruptions_change_images_deterministically_under_a_seed(batch):
    pytest.importorskip("imagecorruptions", reason=NEEDS_CORRUPTIONS)
    images = batch[0][:3]
    state = np.random.get_state()
    # impulse noise and glass blur take their own seed in imagecorruptions-imaug (OS entropy without one)
    for corruption in ("gaussian_noise", "impulse_noise", "glass_blur", "defocus_blur", "jpeg_compression"):
        corrupted = finetune.corrupt_images(images, corruption, 3, seed=5)
        assert corrupted.shape == images.shape and corrupted.dtype == images.dtype
        assert 0 <= corrupted.min() and corrupted.max() <= 1
        assert (corrupted - images).abs().mean() > 1 / 255, corruption
        assert torch.equal(corrupted, finetune.corrupt_images(images, corruption, 3, seed=5))
    for corruption in ("gaussian_noise", "impulse_noise", "glass_blur"):
        assert not torch.equal(finetune.corrupt_images(images, corruption, 3, seed=5),
                               finetune.corrupt_images(images, corruption, 3, seed=6)), corruption
    stronger = finetune.corrupt_images(images, "gaussian_noise", 5, seed=5)
    assert (stronger - images).abs().mean() > (finetune.corrupt_images(images, "gaussian_noise", 1, seed=5)
                                               - images).abs().mean()
    after = np.random.get_state()
    assert state[0] == after[0] and np.array_equal(state[1], after[1])  # NumPy's global state untouched


def test_every_listed_corruption_runs_on_teaching_images(batch):
    pytest.importorskip("imagecorruptions", reason=NEEDS_CORRUPTIONS)
    image = batch[0][:1]
    for corruption in finetune.CORRUPTIONS:
        corrupted = finetune.corrupt_images(image, corruption, 2)
        assert corrupted.shape == image.shape and not torch.equal(corrupted, image), corruption


def test_corruption_accuracy_table(vit_s, batch):
    pytest.importorskip("imagecorruptions", reason=NEEDS_CORRUPTIONS)
    images, labels = batch[0][:8], batch[1][:8]
    table = finetune.corruption_accuracy(vit_s, images, labels, corruptions=("gaussian_noise", "pixelate"),
                                         severities=(1, 5))
    assert set(table["per_severity"]) == {"gaussian_noise", "pixelate"}
    assert set(table["per_severity"]["pixelate"]) == {1, 5}
    means = [np.mean(list(row.values())) for row in table["per_severity"].values()]
    assert math.isclose(table["mean"], float(np.mean(means)))


def test_corruption_bad_inputs_say_what_to_do(batch):
    pytest.importorskip("imagecorruptions", reason=NEEDS_CORRUPTIONS)
    with pytest.raises(ValueError, match="unknown corruption 'rain'"):
        finetune.corrupt_images(batch[0][:1], "rain", 1)
    with pytest.raises(ValueError, match="severity must be one of"):
        finetune.corrupt_images(batch[0][:1], "gaussian_noise", 6)
    with pytest.raises(ValueError, match="\\(B, 3, H, W\\)"):
        finetune.corrupt_images(batch[0][0], "gaussian_noise", 1)


# --------------------------------------------------------------------------- PGD (torchattacks)
def test_pgd_at_zero_radius_changes_nothing(vit_s, batch):
    pytest.importorskip("torchattacks", reason=NEEDS_ATTACKS)
    images, labels = batch[0][:4], batch[1][:4]
    assert torch.equal(finetune.pgd_images(vit_s, images, labels, eps=0.0), images)


def test_pgd_stays_in_its_ball_raises_the_loss_and_is_seeded(vit_s, batch):
    pytest.importorskip("torchattacks", reason=NEEDS_ATTACKS)
    images, labels = batch[0][:4], batch[1][:4]
    model = copy.deepcopy(vit_s).train()  # the attack must leave the model's mode as it found it
    eps = 2 / 255
    adversarial = finetune.pgd_images(model, images, labels, eps=eps, steps=5, seed=1)
    assert model.training
    assert (adversarial - images).abs().max() <= eps + 1e-7 and 0 <= adversarial.min() and adversarial.max() <= 1
    assert (adversarial - images).abs().max() > eps / 2
    assert torch.equal(adversarial, finetune.pgd_images(vit_s, images, labels, eps=eps, steps=5, seed=1))
    with torch.no_grad():
        assert F.cross_entropy(vit_s(adversarial), labels) > F.cross_entropy(vit_s(images), labels)
    scores = finetune.pgd_accuracy(vit_s, images, labels, epsilons=(0.0, eps), steps=2)
    assert set(scores) == {"0/255", "2/255"} and scores["0/255"] >= scores["2/255"]
    with pytest.raises(ValueError, match="eps must be a finite number >= 0"):
        finetune.pgd_images(vit_s, images, labels, eps=-0.1)


def test_untouched_noise_api_still_adds_at_the_encoder(vit_s):
    """The fine-tuning relies on approximate.add_noise at the encoder: a shape mismatch is named, not broadcast."""
    assert approximate.noise_shape(vit_s, "encoder", 112) == (49, 96)


# --------------------------------------------------------------------------- reading a sweep (the study)
def _fake_runs():
    runs = {"untuned": {"method": "untuned", "lim": None, "seed": None, "clean": 0.99}}
    for seed, (plain, noisy) in enumerate(((0.90, 0.95), (0.91, 0.96), (0.92, 0.94))):
        runs[f"plain-s{seed}"] = {"method": "plain", "lim": None, "seed": seed, "clean": plain}
        runs[f"nullspace-lim4-s{seed}"] = {"method": "nullspace", "lim": 4.0, "seed": seed, "clean": noisy}
        runs[f"gaussian-lim4-s{seed}"] = {"method": "gaussian", "lim": 4.0, "seed": seed, "clean": noisy - 0.03}
        runs[f"nullspace-lim2-s{seed}"] = {"method": "nullspace", "lim": 2.0, "seed": seed, "clean": plain + 0.005}
    return runs


def _clean(run):
    return run["clean"]


def test_group_runs_orders_methods_and_seeds():
    runs = _fake_runs()
    groups = finetune_study.group_runs(dict(reversed(list(runs.items()))))  # the file's order does not matter
    assert list(groups) == ["untuned", "plain", "nullspace lim 2", "nullspace lim 4", "gaussian lim 4"]
    assert groups["nullspace lim 4"] == ["nullspace-lim4-s0", "nullspace-lim4-s1", "nullspace-lim4-s2"]
    assert finetune_study.seed_scores(runs, groups["plain"], _clean) == [0.90, 0.91, 0.92]
    assert [finetune_study.run_name(*args) for args in (("untuned",), ("plain", 2), ("nullspace", 0, 4.0))] == [
        "untuned", "plain-s2", "nullspace-lim4-s0"]
    assert finetune_study.comparison_pairs([4.0]) == [("nullspace lim 4", "plain"),
                                                      ("nullspace lim 4", "gaussian lim 4"), ("gaussian lim 4", "plain")]


def test_comparison_reads_a_difference_only_where_the_seeds_separate():
    runs = _fake_runs()
    groups = finetune_study.group_runs(runs)

    def score(name):
        return finetune_study.seed_scores(runs, groups[name], _clean)

    ahead = evidence.compare_groups(score("nullspace lim 4"), score("plain"))
    assert ahead["separated"] == 1
    assert ahead["difference"] == pytest.approx(0.04)  # paired by seed: (0.05 + 0.05 + 0.02) / 3
    assert ahead["spread"] == pytest.approx(np.std([0.05, 0.05, 0.02], ddof=1))
    sentence = finetune_study.comparison_sentence("nullspace lim 4", "plain", "clean accuracy", ahead)
    assert sentence.startswith("nullspace lim 4 beats plain on clean accuracy by 4.0 ± 1.7 points")
    assert finetune_study.verdict_cell(ahead) == "+4.0 ± 1.7"
    behind = evidence.compare_groups(score("plain"), score("nullspace lim 4"))
    assert finetune_study.verdict_cell(behind) == "-4.0 ± 1.7"
    assert "trails" in finetune_study.comparison_sentence("plain", "nullspace lim 4", "clean accuracy", behind)
    overlap = evidence.compare_groups(score("nullspace lim 2"), score("plain"))
    assert overlap["separated"] == 0
    assert "not separable" in finetune_study.comparison_sentence("a", "b", "clean accuracy", overlap)
    assert finetune_study.verdict_cell(overlap) == "not separable"
    chance = evidence.compare_groups([0.50, 0.51, 0.90], [0.10, 0.49, 0.11])  # separated, but the seeds disagree
    assert chance["separated"] == 1 and chance["weak"] and not ahead["weak"]
    assert finetune_study.verdict_cell(chance).endswith("(weak)")
    assert "(weak: under twice its spread)" in finetune_study.comparison_sentence("a", "b", "clean accuracy", chance)
    reference = evidence.compare_groups(score("plain"), score("untuned"))  # one model: every seed against it
    assert reference["separated"] == -1 and reference["difference"] == pytest.approx(0.91 - 0.99)
    with pytest.raises(ValueError, match="pairs seeds"):
        evidence.compare_groups([0.1, 0.2], [0.1, 0.2, 0.3])
    lines = finetune_study.verdict_lines(runs, groups, _clean, [("nullspace lim 4", "plain"),
                                                                ("nullspace lim 2", "plain")], "clean accuracy")
    assert lines == [finetune_study.comparison_sentence("nullspace lim 4", "plain", "clean accuracy", ahead),
                     finetune_study.comparison_sentence("nullspace lim 2", "plain", "clean accuracy", overlap)]


def test_loss_curve_averages_windows_and_names_a_missing_loss():
    record = {"history": [{"step": step, "loss": float(step), "clean_loss": 1.0} for step in range(300)]}
    xs, means = finetune_study.loss_curve(record, window=150)
    assert xs == [75.0, 225.0] and means == [74.5, 224.5]
    with pytest.raises(ValueError, match="no 'noisy_loss'"):
        finetune_study.loss_curve(record, "noisy_loss")
    with pytest.raises(ValueError, match="window must be"):
        finetune_study.loss_curve(record, window=0)


def test_sweep_cost_estimate_counts_every_run():
    """Doubling the fine-tuning steps doubles the fine-tuning hours and leaves the match's alone."""
    import dataclasses

    settings = finetune_study.SETTINGS["imagenet"]
    hours = finetune_study.estimate_sweep_hours(settings, seconds_per_step=0.1, measured_batch=128)
    longer = finetune_study.estimate_sweep_hours(settings.with_steps(2 * settings.steps), 0.1, 128)
    assert longer["finetuning"] == pytest.approx(2 * hours["finetuning"]) and longer["match"] == hours["match"]
    assert hours["total"] == pytest.approx(hours["finetuning"] + hours["noise"] + hours["match"])
    assert dataclasses.replace(settings, steps=7).with_steps(None).steps == 7


# --------------------------------------------------------------------------- the committed sweep
@pytest.fixture(scope="module")
def committed():
    """The committed teaching sweep and its -C file, checked against their schemas."""
    return (finetune_study.RESULT.read(finetune_study.RESULT.path("teaching")),
            finetune_study.CORRUPTIONS_RESULT.read(finetune_study.CORRUPTIONS_RESULT.path("teaching")))


def test_committed_finetune_sweep_is_sound_and_matches_a_recomputed_point(committed):
    """The committed GPU sweep: its settings are the code's, every group has every seed, the Gaussian runs match
    their nullspace runs' energy round by round, the untuned model keeps every prediction under its own exact
    nullspace noise, the committed weights are the ones judged (sha256), and the check run repeated here on the
    CPU gives the GPU's losses, noise sizes and clean accuracy."""
    from nullspace_utils import files, results

    sweep = committed[0]
    settings = finetune_study.SETTINGS["teaching"]
    assert sweep["config"] == common.settings_dict(settings)
    check = {key: value for key, value in sweep["check"].items() if key != "result"}
    assert check == common.settings_dict(finetune_study.CHECK)
    runs, groups = sweep["runs"], finetune_study.group_runs(sweep["runs"])
    expected = ["untuned", "plain"] + [f"{m} lim {lim:g}" for lim in settings.lims for m in ("nullspace", "gaussian")]
    assert list(groups) == expected
    assert all(len(groups[label]) == len(settings.seeds) for label in expected[1:])
    for lim in settings.lims:
        for seed in settings.seeds:
            noisy = runs[finetune_study.run_name("nullspace", seed, lim)]["run"]["rounds"]
            gaussian = runs[finetune_study.run_name("gaussian", seed, lim)]["run"]["rounds"]
            assert [r["rms"] for r in gaussian] == pytest.approx([r["rms"] for r in noisy], rel=1e-5)
            assert len(noisy) == settings.rounds
    assert all(value == 1.0 for value in runs["untuned"]["exact"].values())
    folder = results.REPOSITORY_ROOT / sweep["weights_folder"]
    committed_weights = sorted(folder.glob("*.safetensors"))
    assert committed_weights, f"no weights in {folder}"
    for path in committed_weights:
        assert files.sha256_of_file(path) == runs[path.stem]["weights_sha256"], path.name
    stored = sweep["check"]["result"]
    again = finetune_study.check_run(finetune_study.CHECK, "cpu")
    assert again["loss"] == pytest.approx(stored["loss"], rel=1e-3)
    assert again["noise_rms"] == pytest.approx(stored["noise_rms"], rel=1e-3)
    assert abs(again["clean"] - stored["clean"]) <= 1 / finetune_study.CHECK.val


def test_committed_match_settings_are_the_approximate_sweeps():
    """The match yardstick is the approximate chapter's point: the same recipe as its committed sweep."""
    from nullspace_utils import results

    approximate_config = results.read("book/results/teaching/approximate.json")["config"]
    match = common.settings_dict(finetune_study.SETTINGS["teaching"].match)
    assert match == {key: approximate_config[key] for key in match}


def test_committed_corruption_results_cover_the_sweep_and_match_a_recomputed_point(committed):
    pytest.importorskip("imagecorruptions", reason=NEEDS_CORRUPTIONS)
    from nullspace_utils.profiles import get_profile

    sweep, table = committed
    assert list(table["models"]) == list(sweep["runs"])
    for row in table["models"].values():
        assert list(row["per_corruption"]) == list(finetune.CORRUPTIONS)
        assert row["mean"] == pytest.approx(np.mean(list(row["per_corruption"].values())))
        assert all(value == pytest.approx(np.mean(list(row["per_severity"][name].values())))
                   for name, value in row["per_corruption"].items())
    check = table["check"]
    images, labels = stack_dataset(get_profile("teaching").dataset("val", n=check["images"]))
    corrupted = finetune.corrupt_images(images, check["corruption"], check["severity"], seed=table["config"]["seed"])
    again = finetune.clean_accuracy(models.load_model(sweep["config"]["model"]), corrupted, labels)
    assert abs(again - check["accuracy"]) <= 1 / check["images"]
    assert check["corruption"] == finetune_study.CHECK.corruption


def test_readers_show_every_group_measure_and_verdict(committed):
    """The chapter's readers on the committed files: a verdict per compared pair and measure, a table row per
    group (or corruption, or measure), a panel per lim with the lim's four groups."""
    sweep, table = committed
    groups = finetune_study.group_runs(sweep["runs"])
    pairs = len(finetune_study.comparison_pairs(sweep["config"]["lims"]))
    keys = [measure.key for measure in finetune_study.measures(sweep, table)]
    assert keys == ["clean", "corruptions", "pgd", "pgd", "pgd", "uniform"]
    assert "corruptions" not in [measure.key for measure in finetune_study.measures(sweep)]
    assert len(finetune_study.verdicts(sweep, "clean")) == pairs + 1  # and plain against the untuned model
    assert len(finetune_study.verdicts(sweep, "pgd")) == 3 * (pairs + 1)
    assert len(finetune_study.verdicts(sweep, "uniform")) == pairs
    with pytest.raises(ValueError, match="needs the corruptions file"):
        finetune_study.verdicts(sweep, "corruptions")
    box = finetune_study.verdict_box(sweep, "pgd", table)  # the same sentences, one bullet each, collapsed
    assert box.splitlines() == finetune_study.verdicts(sweep, "pgd", table)
    assert box.markdown.count("\n- ") == 3 * (pairs + 1) and ":class: dropdown" in box.markdown
    assert len(finetune_study.verdict_table(sweep, table).rows) == len(keys)
    assert [row[0] for row in finetune_study.clean_table(sweep).rows] == list(groups)
    assert [row[0] for row in finetune_study.nullspace_table(sweep).rows] == list(groups)
    assert len(finetune_study.corruption_table(sweep, table).rows) == len(finetune.CORRUPTIONS)
    assert finetune_study.settings_table(sweep).rows[-1][1].endswith("-C: ?")
    assert len(finetune_study.noise_table(sweep).rows) == len(sweep["config"]["lims"])
    for panels in (finetune_study.severity_panels(sweep, table), finetune_study.pgd_panels(sweep)):
        assert [panel["title"] for panel in panels] == ["(a) lim 2", "(b) lim 4"]
        assert list(panels[1]["series"]) == ["untuned", "plain", "nullspace lim 4", "gaussian lim 4"]
    clean_panel, noisy_panel = finetune_study.loss_panels(sweep)
    assert "plain" in clean_panel["series"] and "plain" not in noisy_panel["series"]
