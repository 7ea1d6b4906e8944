"""Fingerprinting through the nullspace (paper §9): copies verify, other models do not, files round-trip."""

import copy
import json
import warnings

import numpy as np
import pytest
import torch

from nullspace_utils import exact, models
from nullspace_utils import fingerprint as fp


@pytest.fixture(scope="module")
def secret(vit_s, val_batch):
    images, _ = val_batch
    return fp.make_fingerprint(vit_s, n_probes=10, amplitude=0.25, seed=3, images=images)


def test_probes_and_noises_are_valid_images_and_in_the_nullspace(vit_s, secret):
    noisy = secret.probes + secret.noises()
    assert secret.probes.shape == (10, 3, 112, 112) and secret.noise_patches.shape == (10, 3, 16, 16)
    assert noisy.min() >= 0 and noisy.max() <= 1  # no clipping needed
    assert secret.noise_patches.abs().amax(dim=(1, 2, 3)).sub(0.25).abs().max() < 1e-6
    matrix = exact.patch_embedding_matrix(vit_s)
    assert (matrix @ secret.noise_patches.double().reshape(10, -1).T).abs().max() < 1e-6


@pytest.mark.parametrize("output", fp.OUTPUTS)
def test_owner_and_exact_copy_verify_with_every_output(vit_s, secret, output):
    duplicate = copy.deepcopy(vit_s)
    for model in (vit_s, duplicate):
        result = fp.verify(secret, fp.as_query(model, output), output=output)
        assert result.kept == result.n == 10 and result.is_yours
        assert result.p_value == pytest.approx(0.5 ** 10)


@pytest.mark.parametrize("output", fp.OUTPUTS)
def test_independently_trained_model_is_rejected(secret, output):
    other = models.load_model("zoo-vit-s", weights=models.ZOO_DIR / "seeds" / "zoo-vit-s-seed1.safetensors")
    result = fp.verify(secret, fp.as_query(other, output), output=output)
    assert not result.is_yours and result.kept <= 2


def test_cnn_is_rejected_and_cannot_be_fingerprinted(secret):
    cnn = models.load_model("zoo-mobilenetv3")
    assert fp.verify(secret, fp.as_query(cnn)).kept == 0
    with pytest.raises(exact.NotPatchEmbeddingError):
        fp.make_fingerprint(cnn, image_size=112)


def test_label_mode_counts_its_queries(vit_s, secret):
    steps = 6
    result = fp.verify(secret, fp.as_query(vit_s, "label"), output="label", bisection_steps=steps)
    # labels of all probes once, then per probe: `steps` bisection queries and the bracket clean, with the
    # fingerprint noise and with the control noise (two images each)
    partnered = int((~result.changes.isnan()).sum())
    assert partnered == 10 and result.queries == 10 + partnered * (steps + 6)
    assert set(result.changes.tolist()) == {0.0}


def test_save_load_round_trip_and_bad_files(vit_s, secret, tmp_path):
    path = secret.save(tmp_path / "secret.fingerprint")
    loaded = fp.Fingerprint.load(path)
    assert torch.equal(loaded.probes, secret.probes) and torch.equal(loaded.noise_patches, secret.noise_patches)
    assert (loaded.amplitude, loaded.seed) == (secret.amplitude, secret.seed)
    assert fp.verify(loaded, fp.as_query(vit_s)).changes.tolist() == fp.verify(secret, fp.as_query(vit_s)).changes.tolist()
    with pytest.raises(FileNotFoundError, match="no fingerprint file"):
        fp.Fingerprint.load(tmp_path / "missing")
    (tmp_path / "broken").write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="not a readable safetensors"):
        fp.Fingerprint.load(tmp_path / "broken")
    weights = models.ZOO_DIR / "zoo-vit-s.safetensors"
    with pytest.raises(ValueError, match="not a fingerprint"):
        fp.Fingerprint.load(weights)


def test_random_probes_and_clear_errors(vit_s, val_batch):
    random_probes = fp.make_fingerprint(vit_s, n_probes=4, image_size=112, seed=0)
    assert random_probes.probes.min() >= 0.25 - 1e-6 and random_probes.probes.max() <= 0.75 + 1e-6
    assert fp.verify(random_probes, fp.as_query(vit_s)).kept == 4
    images, _ = val_batch
    with pytest.raises(ValueError, match="image_size"):
        fp.make_fingerprint(vit_s, n_probes=4)
    with pytest.raises(ValueError, match="amplitude"):
        fp.make_fingerprint(vit_s, image_size=112, amplitude=0.6)
    with pytest.raises(ValueError, match="more images"):
        fp.make_fingerprint(vit_s, n_probes=len(images) + 1, images=images)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fp.make_fingerprint(vit_s, n_probes=2, images=images * 2)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        fp.make_fingerprint(vit_s, n_probes=2, image_size=100)
    secret = fp.make_fingerprint(vit_s, n_probes=2, image_size=112)
    with pytest.raises(ValueError, match="output must be one of"):
        fp.verify(secret, fp.as_query(vit_s), output="top5")
    with pytest.raises(ValueError, match="probabilities"):
        fp.verify(secret, fp.as_query(vit_s, "logits"), output="probs")


def test_probes_needed():
    assert fp.probes_needed(1e-3) == 10 and 0.5 ** fp.probes_needed(1e-3) <= 1e-3 < 0.5 ** 9
    assert fp.probes_needed(1e-3, null_rate=0.1) == 3


def test_noisy_input_defence_breaks_invariance_only_when_on(vit_s, secret):
    assert fp.verify(secret, fp.as_query(fp.NoisyInput(vit_s, 0.0))).kept == 10
    assert fp.verify(secret, fp.as_query(fp.NoisyInput(vit_s, 0.01))).kept == 0
    with pytest.raises(ValueError, match="sigma"):
        fp.NoisyInput(vit_s, -1.0)
    assert not fp.NoisyInput(vit_s, 0.01).training and not vit_s.training  # the wrapper keeps the model's mode


def test_tune_copy_parts(vit_s, secret, val_batch):
    images, labels = val_batch
    before = {k: v.clone() for k, v in vit_s.state_dict().items()}
    (_, head_only), = list(fp.tune_copy(vit_s, images, labels, part="head", steps=3, lr=1e-2, reset_head=True))
    assert torch.equal(exact.patch_embedding_layer(head_only).weight, exact.patch_embedding_layer(vit_s).weight)
    assert fp.verify(secret, fp.as_query(head_only)).kept == 10  # a new head keeps the nullspace
    steps = [step for step, _ in fp.tune_copy(vit_s, images, labels, part="patch_embed", steps=3, lr=1e-3,
                                              checkpoints=(0, 2))]
    assert steps == [0, 2, 3]
    *_, (_, moved) = fp.tune_copy(vit_s, images, labels, part="patch_embed", steps=3, lr=1e-3)
    assert not torch.equal(exact.patch_embedding_layer(moved).weight, exact.patch_embedding_layer(vit_s).weight)
    assert torch.equal(models.unwrap(moved).head.weight, models.unwrap(vit_s).head.weight)
    assert fp.verify(secret, fp.as_query(moved)).kept < 10
    assert all(torch.equal(v, before[k]) for k, v in vit_s.state_dict().items())  # the owner is untouched
    with pytest.raises(ValueError, match="part must be"):
        next(fp.tune_copy(vit_s, images, labels, part="blocks", steps=1, lr=1e-3))


def test_label_mode_explains_when_every_probe_gets_the_same_label(secret):
    result = fp.verify(secret, lambda images: torch.zeros(len(images), dtype=torch.long), output="label")
    assert result.n == 0 and not result.is_yours and "several classes" in result.summary()


def _small_fingerprint() -> fp.Fingerprint:
    generator = torch.Generator().manual_seed(0)
    return fp.Fingerprint(torch.rand(3, 3, 32, 32, generator=generator),
                          torch.rand(3, 3, 16, 16, generator=generator) - 0.5, 0.25, 7, "tiny")


def test_corrupt_fingerprint_file_is_refused(tmp_path):
    path = _small_fingerprint().save(tmp_path / "secret.fingerprint")
    content = bytearray(path.read_bytes())
    header_length = int.from_bytes(content[:8], "little")
    assert fp.CHECKSUM_KEY in json.loads(content[8:8 + header_length])["__metadata__"]
    middle = (8 + header_length + len(content)) // 2  # inside the tensors' bytes
    content[middle] ^= 0xFF
    path.write_bytes(bytes(content))
    with pytest.raises(ValueError, match="corrupt.*checksum.*backup"):
        fp.Fingerprint.load(path)


def test_file_without_checksum_loads_with_a_warning(tmp_path):
    from safetensors.torch import save_file

    secret = _small_fingerprint()
    save_file({"probes": secret.probes, "noise_patches": secret.noise_patches}, str(tmp_path / "old.fingerprint"),
              metadata={"format": fp.FORMAT, "amplitude": "0.25", "seed": "7", "model_name": "tiny", "note": ""})
    with pytest.warns(UserWarning, match="no checksum.*save it again"):
        loaded = fp.Fingerprint.load(tmp_path / "old.fingerprint")
    assert torch.equal(loaded.noise_patches, secret.noise_patches)
    loaded.save(tmp_path / "new.fingerprint")  # re-saving adds the checksum: no warning any more
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(fp.Fingerprint.load(tmp_path / "new.fingerprint").probes, secret.probes)


def test_failed_fingerprint_save_leaves_the_old_file(tmp_path, monkeypatch):
    import safetensors.torch

    path = _small_fingerprint().save(tmp_path / "secret.fingerprint")
    before = path.read_bytes()

    def half_write(tensors, filename, metadata=None):
        with open(filename, "wb") as handle:
            handle.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", half_write)
    with pytest.raises(OSError, match="disk full"):
        _small_fingerprint().save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_progress_bars_only_when_asked(vit_s, secret, val_batch, capsys):
    images, labels = val_batch
    fp.verify(secret, fp.as_query(vit_s, "label"), output="label", bisection_steps=2)
    list(fp.tune_copy(vit_s, images, labels, part="head", steps=2, lr=1e-3))
    quiet = capsys.readouterr()
    assert quiet.out == "" and quiet.err == ""
    fp.verify(secret, fp.as_query(vit_s, "label"), output="label", bisection_steps=2, show_progress=True)
    list(fp.tune_copy(vit_s, images, labels, part="head", steps=2, lr=1e-3, show_progress=True))
    shown = capsys.readouterr().err
    assert "bisecting to the boundary" in shown and "10/10" in shown  # one bisection per probe
    assert "fine-tuning head" in shown and "2/2" in shown


def test_queries_compute_in_full_float32_and_leave_the_flags(vit_s, secret, tf32_allowed, flags_seen):
    seen = flags_seen(vit_s)
    assert fp.verify(secret, fp.as_query(vit_s)).kept == 10
    assert seen and all(flags == ("highest", False) for flags in seen)
    assert torch.get_float32_matmul_precision() == "high" and torch.backends.cudnn.allow_tf32


# --- why another ViT is caught: the shared nullspace and the leak (paper §3.2 applied to §9) -----------------------

@pytest.fixture(scope="module")
def other_vit_s():
    return models.load_model("zoo-vit-s", weights=models.ZOO_DIR / "seeds" / "zoo-vit-s-seed1.safetensors")


def test_shared_nullspace_dimension_agrees_with_principal_angles(vit_s, other_vit_s):
    import numpy as np

    shared = fp.shared_nullspace_dimension(vit_s, other_vit_s)
    first = exact.patch_nullspace(vit_s).reshape(672, -1).numpy()
    second = exact.patch_nullspace(other_vit_s).reshape(672, -1).numpy()
    cosines = np.linalg.svd(first @ second.T, compute_uv=False)  # cosines of the principal angles
    assert shared == int((cosines > 1 - 1e-8).sum()) == 672 + 672 - 768  # generic: exactly the least possible
    assert fp.shared_nullspace_dimension(vit_s, copy.deepcopy(vit_s)) == 672
    assert fp.shared_nullspace_dimension(vit_s, models.load_model("zoo-vit-l")) == 672 + 512 - 768
    with pytest.raises(exact.NotPatchEmbeddingError):
        fp.shared_nullspace_dimension(vit_s, models.load_model("zoo-mobilenetv3"))


def test_split_noise_and_leak_energy(vit_s, other_vit_s, secret):
    seen, hidden = fp.split_noise(secret, other_vit_s)
    assert torch.allclose(seen + hidden, secret.noise_patches.double(), atol=1e-12)
    matrix = exact.patch_embedding_matrix(other_vit_s)
    assert (matrix @ hidden.reshape(10, -1).T).abs().max() < 1e-9  # the hidden part is in its nullspace
    assert (seen.reshape(10, -1) * hidden.reshape(10, -1)).sum(1).abs().max() < 1e-9  # orthogonal parts
    leak = fp.leak_energy(secret, other_vit_s)
    energy = secret.noise_patches.double().pow(2).sum(dim=(1, 2, 3))
    assert torch.allclose(leak, seen.pow(2).sum(dim=(1, 2, 3)) / energy)
    assert 0.02 < leak.min() and leak.max() < 0.3  # a few per cent, far from 0 and from 1
    assert fp.leak_energy(secret, vit_s).max() < 1e-12  # the owner sees nothing


def test_verification_answers_the_leak_only(other_vit_s, secret):
    query = fp.as_query(other_vit_s)
    assert fp.verify(fp.with_leak(secret, other_vit_s, 0.0), query).kept == 10  # no leak: every probe kept
    assert fp.verify(fp.with_leak(secret, other_vit_s, 1.0), query).kept == fp.verify(secret, query).kept <= 2
    rescaled = fp.leak_energy(fp.with_leak(secret, other_vit_s, 0.1), other_vit_s)
    leak = fp.leak_energy(secret, other_vit_s)
    assert torch.allclose(rescaled, 0.01 * leak / (1 - leak + 0.01 * leak), rtol=1e-4)
    with pytest.raises(ValueError, match="scale"):
        fp.with_leak(secret, other_vit_s, -1.0)


def test_leak_needs_the_owner_s_patch_size(secret):
    big = fp.Fingerprint(secret.probes, torch.zeros(10, 3, 8, 8), 0.25, 0)
    with pytest.raises(ValueError, match="patch size"):
        fp.leak_energy(big, models.load_model("zoo-vit-b"))


def test_probes_to_claim():
    assert fp.probes_to_claim(16) == 15 and fp.probes_to_claim(10) == 10 and fp.probes_to_claim(9) is None
    from scipy.stats import binom

    for n in (12, 16, 32):
        k = fp.probes_to_claim(n)
        assert binom.sf(k - 1, n, 0.5) <= 1e-3 < binom.sf(k - 2, n, 0.5)
    with pytest.raises(ValueError, match="n >= 1"):
        fp.probes_to_claim(0)


def test_section_9_claim_numbers_come_from_the_result_file():
    """The reproducibility page's §9 row (studies.fingerprint.claims): every number recomputed here from the committed
    result file, without the study's readers, and found in the sentence; its figure label is in the chapter."""
    from pathlib import Path

    from nullspace_utils.studies import fingerprint as study

    committed = study.RESULT.read(study.RESULT.path("teaching"))
    claim, = study.claims(committed)
    assert (claim.verdict, claim.chapter, claim.figure) == ("beyond the paper", "fingerprint", "fingerprint-suspects")
    chapter = Path(__file__).resolve().parents[1] / "book" / "_src" / "fingerprint.py"
    assert f"# ({claim.figure})=\n# ## " in chapter.read_text()  # the label sits above a heading
    config, suspects, leak = committed["config"], committed["suspects"], committed["leak"]
    n, outputs = config["n_probes"], ("logits", "probs", "label")
    sentence = claim.sentence
    assert f"Over {config['fingerprints']} fingerprints of {n} probes" in sentence
    exact_points = [p for name in ("owner", "exact copy") for o in outputs for p in suspects[name][o]]
    assert all(p["is_yours"] for p in exact_points) and "every time with every output" in sentence
    unrelated = [name for name, entry in suspects.items() if not entry["derived"]]
    points = [p for name in unrelated for o in outputs for p in suspects[name][o]]
    assert f"unrelated models in {sum(p['is_yours'] for p in points)} of {len(points)} verifications" in sentence
    assert f"at most {max(p['kept'] for p in points)} of {n} probes kept" in sentence
    for name in ("float16 copy", "int8 copy"):
        assert ", ".join(str(sum(p["is_yours"] for p in suspects[name][o])) for o in outputs) in sentence
    same = {e["shared_dimension"] for e in leak.values() if not e["derived"] and e["nullity"] == 672}
    assert same == {576} and "shares 576 of the owner's 672 nullspace dimensions" in sentence
    energies = [v for e in leak.values() if not e["derived"] for row in e["energy"] for v in row]
    assert f"{100 * min(energies):.1f}–{100 * max(energies):.1f} % of the noise's energy" in sentence
    changes = [v for e in leak.values() if not e["derived"] for row in e["change"] for v in row]
    within = sum(value <= config["tol"] for value in changes)
    assert f"past the tolerance {config['tol']:g} on all but {within} of {len(changes)} probes" in sentence
    assert f"(the closest at {min(changes) / config['tol']:.1f} times it)" in sentence
    runs = committed["fade"]["patch_embed"]
    claimed = [sum(v["is_yours"] for run in runs for v in run["rows"][i]["logits"]) for i in range(len(runs[0]["rows"]))]
    steps = [row["step"] for row in runs[0]["rows"]]
    end = next(steps[i] for i in range(len(steps)) if not any(claimed[i:]))
    assert f"over {len(runs) * config['fade_fingerprints']} runs per point" in sentence
    assert f"leaves no logits claim from step {end} on" in sentence
    sigmas = [row["sigma"] for row in committed["defence"][0]["rows"]]
    for output in outputs:
        claimed = [any(v["is_yours"] for run in committed["defence"] for v in run["rows"][i][output])
                   for i in range(len(sigmas))]
        first = next((sigmas[i] for i in range(len(sigmas)) if not any(claimed[i:])), None)
        if first is not None:
            assert f"{output} from std {first:g}" in sentence


# --- claims that cannot be faked (#32 item 1): a control on every probe, checked answers and arguments -------------

def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and message
    return message


def _rounded_probabilities(model, decimals: int = 2):
    """A web API that rounds its probabilities (rows rescaled to sum to 1 again)."""
    query = fp.as_query(model, "probs")

    def api(images):
        rounded = (query(images) * 10 ** decimals).round() / 10 ** decimals
        return rounded / rounded.sum(1, keepdim=True)

    return api


def test_control_noise_has_the_fingerprint_s_size_but_not_its_invisibility(vit_s, secret):
    control = fp.control_noise(secret)
    noises = secret.noises()
    assert control.shape == noises.shape and not torch.equal(control, noises)
    assert torch.allclose(control.pow(2).sum(dim=(1, 2, 3)), noises.pow(2).sum(dim=(1, 2, 3)))  # same energy
    assert torch.allclose(control.abs().amax(dim=(1, 2, 3)), noises.abs().amax(dim=(1, 2, 3)))  # same amplitude
    assert (secret.probes + control).min() >= 0 and (secret.probes + control).max() <= 1
    assert torch.equal(fp.control_noise(secret, seed=0), control) and not torch.equal(fp.control_noise(secret, seed=1),
                                                                                          control)
    result = fp.verify(secret, fp.as_query(vit_s))  # the owner answers the control on every probe, beyond the tolerance
    assert result.control_changes.min() > 10 * result.tol and result.n == result.probes == 10


def test_constant_function_is_inconclusive_not_yours(secret):
    for output, constant in (("logits", lambda x: torch.zeros(len(x), 10)),
                             ("probs", lambda x: torch.full((len(x), 10), 0.1))):
        result = fp.verify(secret, constant, output=output)
        assert not result.is_yours and result.inconclusive and result.n == 0 and result.kept == 0
        assert result.verdict == fp.INCONCLUSIVE and result.summary().startswith("inconclusive: the suspect does not "
                                                                                 "respond to its input")


def test_unrelated_model_behind_a_rounding_api_is_not_yours(vit_s, val_batch):
    """Issue #32: an unrelated ViT-B behind an API that rounds probabilities to 2 decimals was 'yours 12/12'
    (0/12 with exact probabilities): rounding hides every change, the fingerprint noise's and the control's."""
    unrelated = models.load_model("zoo-vit-b")
    secret = fp.make_fingerprint(vit_s, n_probes=12, amplitude=0.1, seed=0, images=val_batch[0])
    exact_answers = fp.verify(secret, fp.as_query(unrelated, "probs"), output="probs")
    assert exact_answers.kept == 0 and exact_answers.n == 12 and exact_answers.verdict == "not shown to be yours"
    rounded = fp.verify(secret, _rounded_probabilities(unrelated), output="probs")
    assert (rounded.changes <= rounded.tol).all()  # the fingerprint noise changes no rounded answer...
    assert not rounded.is_yours and rounded.verdict == fp.INCONCLUSIVE  # ...nor does the control: no evidence
    assert rounded.n < fp.probes_needed(1e-3) and "finer outputs" in rounded.summary()


def test_duplicated_rows_are_refused_and_repeated_probes_count_once(vit_s, secret):
    query = fp.as_query(vit_s)
    with pytest.raises(ValueError, match="one row per image") as error:
        fp.verify(secret, lambda images: torch.cat([query(images), query(images)]))
    _one_line(error)
    seven = fp.Fingerprint(secret.probes[:7], secret.noise_patches[:7], secret.amplitude, secret.seed)
    doubled = fp.Fingerprint(secret.probes[:7].repeat(2, 1, 1, 1), secret.noise_patches[:7].repeat(2, 1, 1, 1),
                             secret.amplitude, secret.seed)
    once, twice = fp.verify(seven, query), fp.verify(doubled, query)
    assert (twice.kept, twice.n, twice.probes) == (once.kept, once.n, once.probes) == (7, 7, 7)
    assert twice.p_value == once.p_value == 0.5 ** 7 and not twice.is_yours
    assert "7 of 14 probes repeat another and were counted once" in twice.summary()


@pytest.mark.parametrize("arguments, match", [
    ({"tol": float("inf")}, "tol must be a number in"), ({"tol": -1e-3}, "tol must be a number in"),
    ({"tol": float("nan")}, "tol must be a number in"), ({"tol": 0.0}, "tol must be a number in"),
    ({"bisection_steps": 0}, "bisection_steps must be an integer in"),
    ({"bisection_steps": -3}, "bisection_steps must be an integer in"),
    ({"bisection_steps": 2.5}, "bisection_steps must be an integer in"),
    ({"bisection_steps": fp.MAX_BISECTION_STEPS + 1}, "bisection_steps must be an integer in"),
    ({"alpha": float("nan")}, "alpha and null_rate"), ({"control_seed": -1}, "seed must be an integer")])
def test_verify_refuses_arguments_that_would_make_any_model_yours(secret, arguments, match):
    with pytest.raises(ValueError, match=match) as error:
        fp.verify(secret, lambda x: torch.zeros(len(x), 10), output="label" if "bisection_steps" in arguments
                  else "logits", **arguments)
    _one_line(error)


@pytest.mark.parametrize("output, answer, kind, match", [
    ("logits", lambda x: np.zeros((len(x), 10), dtype=np.float32), TypeError, r"numpy array.*torch\.from_numpy"),
    ("logits", lambda x: None, TypeError, "returned NoneType, not a torch tensor"),
    ("probs", lambda x: "cat", TypeError, "returned str, not a torch tensor"),
    ("label", lambda x: ["cat"] * len(x), TypeError, "label names.*class indices"),
    ("label", lambda x: torch.randn(len(x), 10), ValueError, r"needs one label per image.*argmax\(1\)"),
    ("label", lambda x: torch.zeros(len(x)), ValueError, r"integer class indices.*labels\.long\(\)"),
    ("logits", lambda x: torch.zeros(len(x)), ValueError, r"needs float scores \(B, classes\)"),
    ("logits", lambda x: torch.zeros(len(x) - 1, 10), ValueError, "one row per image"),
    ("logits", lambda x: torch.full((len(x), 10), float("nan")), ValueError, "NaN or infinite values for 10 of 10"),
    ("probs", lambda x: torch.randn(len(x), 10), ValueError, "needs probabilities")])
def test_the_suspect_s_answer_is_checked(secret, output, answer, kind, match):
    with pytest.raises(kind, match=match) as error:
        fp.verify(secret, answer, output=output)
    _one_line(error)


def test_a_fine_tuned_copy_still_verifies(vit_s, secret, val_batch):
    images, labels = val_batch
    (_, tuned), = list(fp.tune_copy(vit_s, images, labels, part="all", steps=2, lr=1e-5, seed=1))
    assert not torch.equal(exact.patch_embedding_layer(tuned).weight, exact.patch_embedding_layer(vit_s).weight)
    for output in ("logits", "probs"):
        result = fp.verify(secret, fp.as_query(tuned, output), output=output)
        assert result.is_yours and result.verdict == "yours" and result.n == 10


def test_bad_fingerprint_files_give_one_line_errors(secret, tmp_path):
    from safetensors.torch import save_file

    def write(name, tensors, **metadata):
        path = tmp_path / name
        save_file(tensors, str(path), metadata={"format": fp.FORMAT, fp.CHECKSUM_KEY: fp.Fingerprint._checksum(tensors),
                                                **metadata})
        return path

    tensors = {"probes": secret.probes.contiguous(), "noise_patches": secret.noise_patches.contiguous()}
    with pytest.raises(ValueError, match="without its seed") as error:
        fp.Fingerprint.load(write("no_seed", tensors, amplitude="0.25"))
    _one_line(error)
    with pytest.raises(ValueError, match="unreadable metadata") as error:
        fp.Fingerprint.load(write("bad_seed", tensors, amplitude="0.25", seed="three"))
    _one_line(error)
    short = {"probes": tensors["probes"], "noise_patches": tensors["noise_patches"][:6].contiguous()}
    with pytest.raises(ValueError, match="one noise patch per probe, got 10 probes and 6 noise patches") as error:
        fp.Fingerprint.load(write("short", short, amplitude="0.25", seed="3"))
    _one_line(error)
    with pytest.raises(ValueError, match="NaN or infinite"):
        fp.Fingerprint(secret.probes * float("nan"), secret.noise_patches, 0.25, 0)


@pytest.mark.parametrize("arguments, match", [
    ({"image_size": 0}, "image_size must be a positive integer"), ({"image_size": (112,)}, "image_size must be"),
    ({"image_size": (112, -16)}, "image_size must be"), ({"image_size": 112, "n_probes": 2.5}, "n_probes must be"),
    ({"image_size": 112, "n_probes": True}, "n_probes must be"), ({"image_size": 112, "n_probes": 0}, "n_probes must"),
    ({"image_size": 112, "seed": -1}, "seed must be"), ({"image_size": 112, "amplitude": float("nan")}, "amplitude")])
def test_make_fingerprint_refuses_bad_arguments(vit_s, arguments, match):
    with pytest.raises(ValueError, match=match) as error:
        fp.make_fingerprint(vit_s, **arguments)
    _one_line(error)


# --- dropout drawn from a stream of its own (#32 item 7) -----------------------------------------------------------

def _with_dropout(model, p: float = 0.3):
    noisy = copy.deepcopy(model)
    for module in noisy.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = p
    return noisy


def test_tune_copy_with_dropout_is_seeded_and_leaves_the_global_random_state(vit_s, val_batch):
    images, labels = val_batch
    model = _with_dropout(vit_s)

    def tuned(global_seed: int, seed: int = 0, between: bool = False) -> dict[str, torch.Tensor]:
        torch.manual_seed(global_seed)
        for _step, thief in fp.tune_copy(model, images, labels, part="all", steps=2, lr=1e-3, checkpoints=(1,),
                                         seed=seed):
            if between:
                torch.rand(5)  # the caller draws between the steps
            last = thief
        return {k: v.clone() for k, v in last.state_dict().items()}

    first, second, drawing = tuned(1), tuned(2), tuned(3, between=True)
    assert all(torch.equal(first[k], second[k]) and torch.equal(first[k], drawing[k]) for k in first)
    without = _with_dropout(vit_s, 0.0)
    torch.manual_seed(1)
    *_, (_, plain) = fp.tune_copy(without, images, labels, part="all", steps=2, lr=1e-3, seed=0)
    assert not all(torch.equal(first[k], v) for k, v in plain.state_dict().items())  # the dropout did act
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    tuned(7)  # reseeds to 7 itself, then tunes: the global stream must still be where the seed put it
    assert torch.equal(torch.rand(3), expected)


def test_local_random_state_carries_on_and_restores():
    torch.manual_seed(0)
    outside = torch.rand(2)
    state = models.LocalRandomState(5)
    torch.manual_seed(0)
    with state.active():
        a = torch.rand(2)
    with state.active():
        b = torch.rand(2)
    assert torch.equal(torch.rand(2), outside)  # the caller's stream, untouched
    torch.manual_seed(5)
    assert torch.equal(torch.cat([a, b]), torch.rand(4))  # one stream seeded 5, carried across the blocks
    with pytest.raises(ValueError, match="seed must be"):
        models.LocalRandomState(-1)


def test_leak_table_writes_rounding_level_changes_as_comparisons():
    """Relative logit changes below 1e-5 (float rounding, their digits differ between CPUs) print as "below 1e-05",
    also as the low end of a range; larger ones keep two significant digits."""
    from nullspace_utils import results
    from nullspace_utils.studies import fingerprint as study

    assert study._below([1e-7, 2e-6], 1e-5) == "below 1e-05"
    assert study._below([1.1e-7, 0.13], 1e-5) == "below 1e-05–0.13"
    assert study._below([0.0024, 0.51], 1e-5) == "0.0024–0.51"
    rows = study.leak_rows(results.read(study.RESULT.path("teaching")))
    changes = [row[5] for row in rows]
    assert all("e-0" not in cell.replace("below 1e-05", "") for cell in changes)  # no rounding-level digits left
