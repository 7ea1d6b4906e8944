import shutil

import pytest
import torch
from safetensors.torch import save_file

from nullspace_utils import files, models
from nullspace_utils.data import stack_dataset, synthetic_dataset


@pytest.fixture(scope="module")
def fresh_test_batch():
    # the test split: never seen in training or model selection
    return stack_dataset(synthetic_dataset("test", n=50))


@pytest.mark.parametrize("name", models.available_models())
def test_zoo_model_loads_hash_checked_and_accurate(name, fresh_test_batch):
    manifest = models.load_manifest()
    entry = manifest["models"][name]
    assert files.sha256_of_file(models.ZOO_DIR / entry["file"]) == entry["sha256"]
    model = models.load_model(name)
    assert isinstance(model, models.ImageClassifier) and not model.training
    assert model.mean == models.ZOO_MEAN and model.std == models.ZOO_STD
    images, labels = fresh_test_batch
    with torch.no_grad():
        logits = model(images)
    assert logits.shape == (50, 10)
    assert (logits.argmax(1) == labels).float().mean().item() >= 0.9
    assert entry["val_accuracy"] >= 0.9


def test_manifest_records_provenance_and_size():
    manifest = models.load_manifest()
    assert set(manifest["models"]) == set(models.available_models())
    assert manifest["provenance"]["command"] and manifest["provenance"]["torch"]
    total = sum((models.ZOO_DIR / e["file"]).stat().st_size for e in manifest["models"].values())
    assert total <= 25 * 1024 * 1024


def test_wrapper_normalises_inside():
    net = torch.nn.Identity()
    model = models.ImageClassifier(net, (0.5, 0.5, 0.5), (0.25, 0.5, 1.0))
    out = model(torch.ones(1, 3, 2, 2))
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([2.0, 1.0, 0.5]))
    with pytest.raises(ValueError, match="images\\[None\\]"):
        model(torch.ones(3, 2, 2))
    with pytest.raises(ValueError, match="positive"):
        models.ImageClassifier(net, (0.0,), (0.0,))


def test_unknown_name_lists_close_matches():
    with pytest.raises(models.UnknownModelError, match="zoo-vit-s"):
        models.load_model("zoo-vit-x")
    with pytest.raises(models.UnknownModelError, match="vit_small_patch32_224"):
        models.load_model("vit_smal_patch32_224")


def test_corrupt_zoo_weights_are_refused(tmp_path, monkeypatch):
    entry = models.load_manifest()["models"]["zoo-vit-s"]
    shutil.copy(models.ZOO_DIR / "manifest.json", tmp_path / "manifest.json")
    target = tmp_path / entry["file"]
    shutil.copy(models.ZOO_DIR / entry["file"], target)
    raw = bytearray(target.read_bytes())
    raw[-10] ^= 0xFF
    target.write_bytes(bytes(raw))
    monkeypatch.setattr(models, "ZOO_DIR", tmp_path)
    with pytest.raises(models.WeightsError, match="corrupt.*sha256"):
        models.load_model("zoo-vit-s")
    target.unlink()
    with pytest.raises(models.WeightsError, match="does not exist"):
        models.load_model("zoo-vit-s")


def test_missing_manifest_is_explained(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "ZOO_DIR", tmp_path)
    with pytest.raises(models.WeightsError, match="manifest"):
        models.load_model("zoo-vit-b")


def test_offline_pretrained_timm_raises_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(models.WeightsUnavailableError, match="weights="):
        models.load_model("vit_small_patch32_224")


def test_timm_model_from_local_safetensors(tmp_path):
    import timm

    source = timm.create_model("vit_small_patch32_224", pretrained=False)
    path = tmp_path / "vit_s32.safetensors"
    save_file(source.state_dict(), str(path))
    model = models.load_model("vit_small_patch32_224", weights=path)
    assert model.mean == tuple(source.pretrained_cfg["mean"]) and model.std == tuple(source.pretrained_cfg["std"])
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        expected = source.eval()((x - model._mean) / model._std)
        assert torch.allclose(model(x), expected, atol=1e-5)

    wrong = tmp_path / "wrong.safetensors"
    save_file(timm.create_model("vit_tiny_patch16_224", pretrained=False).state_dict(), str(wrong))  # small: tmp disk
    with pytest.raises(models.WeightsError, match="does not fit"):
        models.load_model("vit_small_patch32_224", weights=wrong)
    pickle_file = tmp_path / "model.pth"
    torch.save(source.state_dict(), pickle_file)
    with pytest.raises(models.WeightsError, match="safetensors"):
        models.load_model("vit_small_patch32_224", weights=pickle_file)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    with pytest.raises(models.WeightsError, match="could not be read"):
        models.load_model("vit_small_patch32_224", weights=garbage)


def test_networks_for_weights_skip_initialisation_but_keep_computed_buffers():
    """Built on the meta device and given empty memory when a weight file fills every tensor; built normally when a
    non-persistent buffer (absent from weight files) holds a value its constructor computed, or meta fails."""
    devices = []

    def build():
        devices.append(torch.empty(0).device.type)
        return models.build_zoo_network("zoo-vit-s")

    empty = models._build_for_weights(build)
    assert devices == ["meta"]  # built once, on meta: no random initialisation ran
    assert all(p.device.type == "cpu" for p in empty.parameters())
    assert set(empty.state_dict()) == set(models.build_zoo_network("zoo-vit-s").state_dict())

    class Computed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(2, 2)
            self.register_buffer("index", torch.arange(4), persistent=False)

    assert torch.equal(models._build_for_weights(Computed).index, torch.arange(4))

    class Tied(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encode, self.decode = torch.nn.Linear(2, 2, bias=False), torch.nn.Linear(2, 2, bias=False)
            self.decode.weight = self.encode.weight  # one parameter, two names

    tied = models._build_for_weights(Tied)
    assert tied.decode.weight is tied.encode.weight and tied.encode.weight.device.type == "cpu"

    builds = []

    class ReadsAValue(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            builds.append(torch.empty(0).device.type)
            self.linear = torch.nn.Linear(int(torch.tensor(2).item()), 2)  # .item() fails on meta

    assert models._build_for_weights(ReadsAValue).linear.weight.device.type == "cpu"
    assert builds == ["meta", "cpu"]  # tried on meta, then built normally


def test_extra_seed_models_match_their_manifest(vit_s):
    """The fingerprint chapter's independently trained ViT-S: files match the sha256 recorded when they
    were trained, and each is a working classifier different from the zoo's own ViT-S."""
    import json

    import torch

    folder = models.ZOO_DIR / "seeds"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["provenance"]["command"] and len(manifest["models"]) == 3
    zoo_weights = vit_s.net.patch_embed.proj.weight
    for name, entry in manifest["models"].items():
        path = folder / entry["file"]
        assert files.sha256_of_file(path) == entry["sha256"], name
        assert entry["val_accuracy"] > 0.95 and entry["training"]["seed"] != 0
        model = models.load_model("zoo-vit-s", weights=path)
        assert not torch.equal(model.net.patch_embed.proj.weight, zoo_weights)


def _legacy_flags() -> tuple:
    return (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision())


@pytest.mark.parametrize("allowed", [True, False])
def test_exact_float32_switches_tf32_off_inside_and_restores_the_flags(allowed, restore_tf32_flags):
    torch.backends.cuda.matmul.allow_tf32 = allowed
    torch.backends.cudnn.allow_tf32 = allowed
    before = _legacy_flags()
    assert before == (allowed, allowed, "high" if allowed else "highest")
    with models.exact_float32():
        assert _legacy_flags() == (False, False, "highest")
        with models.exact_float32():  # nested: still off, and the outer block's settings come back
            assert _legacy_flags() == (False, False, "highest")
        assert _legacy_flags() == (False, False, "highest")
    assert _legacy_flags() == before
    with pytest.raises(RuntimeError, match="inside"):  # restored on errors too
        with models.exact_float32():
            raise RuntimeError("inside")
    assert _legacy_flags() == before


def test_exact_float32_keeps_a_medium_matmul_precision(restore_tf32_flags):
    torch.set_float32_matmul_precision("medium")
    with models.exact_float32():
        assert torch.get_float32_matmul_precision() == "highest"
    assert torch.get_float32_matmul_precision() == "medium"


@pytest.mark.skipif(not hasattr(torch.backends.cuda.matmul, "fp32_precision"), reason="torch < 2.9: no fp32_precision")
def test_exact_float32_restores_flags_set_through_the_fp32_precision_api(restore_tf32_flags):
    # after this API is used, torch refuses to read the legacy flags, so the context manager must use it too
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    previous = (matmul.fp32_precision, conv.fp32_precision)
    try:
        matmul.fp32_precision, conv.fp32_precision = "tf32", "tf32"
        with models.exact_float32():
            assert (matmul.fp32_precision, conv.fp32_precision) == ("ieee", "ieee")
        assert (matmul.fp32_precision, conv.fp32_precision) == ("tf32", "tf32")
    finally:
        matmul.fp32_precision, conv.fp32_precision = previous


def test_tf32_matmuls_allows_tf32_inside_and_restores_the_flags(restore_tf32_flags):
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    with models.tf32_matmuls():
        assert torch.get_float32_matmul_precision() == "high"  # TF32 matrix products...
        assert torch.backends.cudnn.allow_tf32 is False  # ...convolutions untouched
        with models.exact_float32():  # an exact block inside still gets full float32
            assert torch.get_float32_matmul_precision() == "highest"
        assert torch.get_float32_matmul_precision() == "high"
    assert torch.get_float32_matmul_precision() == "highest" and torch.backends.cudnn.allow_tf32 is False


@pytest.mark.skipif(not hasattr(torch.backends.cuda.matmul, "fp32_precision"), reason="torch < 2.9: no fp32_precision")
def test_tf32_matmuls_works_through_the_fp32_precision_api(restore_tf32_flags):
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    previous = (matmul.fp32_precision, conv.fp32_precision)
    try:
        matmul.fp32_precision, conv.fp32_precision = "ieee", "ieee"
        with models.tf32_matmuls():
            assert (matmul.fp32_precision, conv.fp32_precision) == ("tf32", "ieee")
        assert (matmul.fp32_precision, conv.fp32_precision) == ("ieee", "ieee")
    finally:
        matmul.fp32_precision, conv.fp32_precision = previous
