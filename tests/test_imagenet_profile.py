"""The imagenet profile, offline: a fake ImageNette in torchvision's layout, local weights, clear errors."""

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from nullspace_utils import data, models
from nullspace_utils.profiles import eval_transform, get_profile, spread_subset

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def fake_data(tmp_path, monkeypatch):
    root = data.write_fake_imagenette(tmp_path / "data")
    monkeypatch.setenv("NULLSPACE_DATA", str(root))
    return root


def test_class_mapping_matches_timms_imagenet_index():
    from timm.data import ImageNetInfo

    wnids = ImageNetInfo().label_names()  # the 1000 WordNet ids in ImageNet-1k index order
    for wnid, index in data.IMAGENETTE_WNIDS:
        assert wnids[index] == wnid
    assert [wnid for wnid, _ in data.IMAGENETTE_WNIDS] == sorted(wnid for wnid, _ in data.IMAGENETTE_WNIDS)
    profile = get_profile("imagenet")
    names = [ImageNetInfo().index_to_description(index) for index in profile.label_indices]
    for short, long in zip(profile.class_names, names, strict=True):
        assert short.lower().split()[0] in long.lower(), (short, long)


def test_fake_imagenette_through_the_profile(fake_data):
    profile = get_profile("imagenet")
    val = profile.dataset("val")
    assert len(val) == 20
    image, label = val[3]
    assert image.shape == (3, 224, 224) and image.dtype == torch.float32
    assert 0 <= image.min() and image.max() <= 1
    assert label == 1  # sorted by class, two images each
    train = profile.dataset("train", n=10)
    assert sorted(label for _, label in train) == list(range(10))  # spread over all classes, not ten tench
    assert len(profile.dataset("test", n=5)) == 5


def test_prediction_names_of_the_ten_imagenet_columns_are_imagenettes_classes():
    profile = get_profile("imagenet")
    assert [profile.prediction_name(index) for index in profile.label_indices] == list(profile.class_names)
    assert profile.prediction_name(1) == "goldfish"  # any of the 1000 outputs has a name
    assert get_profile("teaching").prediction_name(3) == get_profile("teaching").class_names[3]


def test_class_logits_pick_the_ten_imagenet_columns():
    profile = get_profile("imagenet")
    logits = torch.zeros(2, 1000)
    logits[0, 701] = 5.0  # parachute
    logits[1, 217] = 5.0  # English springer
    assert profile.class_logits(logits).argmax(1).tolist() == [9, 1]
    assert get_profile("teaching").class_logits(logits) is logits


def test_offline_without_data_is_clear_and_fast(tmp_path, monkeypatch):
    import torchvision.datasets.imagenette as tv_imagenette

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tv_imagenette, "download_and_extract_archive", offline)
    monkeypatch.setenv("NULLSPACE_DATA", str(tmp_path / "empty"))
    with pytest.raises(data.DatasetUnavailableError, match="imagenette2-320.tgz") as error:
        get_profile("imagenet").dataset("val")
    assert str(tmp_path / "empty") in str(error.value) and "3df6f0d01a2c9592104656642f5e78a3" in str(error.value)


def test_a_fake_imagenette_of_given_split_sizes_is_the_same_from_several_processes(tmp_path):
    """split_sizes spreads each split over the ten classes as ImageNette does (the first classes one more); every
    class is drawn from its own seed, so two worker processes write the same files, byte for byte."""
    sizes = {"train": 23, "val": 11}
    one = data.write_fake_imagenette(tmp_path / "one", split_sizes=sizes)
    two = data.write_fake_imagenette(tmp_path / "two", split_sizes=sizes, workers=2)
    files = sorted(path.relative_to(one) for path in one.rglob("*.JPEG"))
    assert files == sorted(path.relative_to(two) for path in two.rglob("*.JPEG"))
    assert all((one / path).read_bytes() == (two / path).read_bytes() for path in files)
    for split, size in sizes.items():
        labels = [label for _, label in data.imagenette(split, root=one, download=False)]
        assert len(labels) == size and labels.count(0) == size // 10 + 1 and labels.count(9) == size // 10
    assert data.IMAGENETTE_SIZES == {"train": 9_469, "val": 3_925}
    with pytest.raises(ValueError, match="per_class or split_sizes, not both"):
        data.write_fake_imagenette(tmp_path / "x", per_class=1, split_sizes=sizes)
    with pytest.raises(ValueError, match="at least 10 images each"):
        data.write_fake_imagenette(tmp_path / "x", split_sizes={"train": 9, "val": 10})
    with pytest.raises(ValueError, match="workers must be at least 1"):
        data.write_fake_imagenette(tmp_path / "x", workers=0)


def test_decoded_images_are_kept_between_processes_under_the_cache_variable(fake_data, tmp_path, monkeypatch):
    """With NULLSPACE_TENSOR_CACHE set, a split is decoded once: the next call reads the same tensors back without
    decoding, another subset or a changed file is decoded again under a new name, and unset nothing is written."""
    from nullspace_utils import profiles

    profile = get_profile("imagenet")
    first = profile.tensor_dataset("val", 7)
    assert not (tmp_path / "tensors").exists()
    monkeypatch.setenv(profiles.TENSOR_CACHE_VARIABLE, str(tmp_path / "tensors"))
    decoded = []
    original = data.as_uint8_if_exact
    monkeypatch.setattr(data, "as_uint8_if_exact", lambda batch: decoded.append(len(batch)) or original(batch))
    kept = profile.tensor_dataset("val", 7)
    assert decoded == [7] and len(list((tmp_path / "tensors").iterdir())) == 1
    again = profile.tensor_dataset("val", 7)
    assert decoded == [7]  # read back, not decoded
    for one, two, three in zip(first.tensors, kept.tensors, again.tensors, strict=True):
        assert torch.equal(one, two) and torch.equal(one, three) and one.dtype == three.dtype
    profile.tensor_dataset("val", 5)
    assert decoded == [7, 5] and len(list((tmp_path / "tensors").iterdir())) == 2
    picture = sorted((fake_data / "imagenette2-320" / "val").rglob("*.JPEG"))[0]
    Image.new("RGB", (320, 240), (255, 0, 0)).save(picture, format="JPEG")  # a changed file: decoded anew
    changed = profile.tensor_dataset("val", 7)
    assert decoded == [7, 5, 7] and not torch.equal(changed.tensors[0], first.tensors[0])


def test_wrong_class_folders_are_refused(tmp_path):
    root = data.write_fake_imagenette(tmp_path)
    (root / "imagenette2-320" / "val" / "n01440764").rename(root / "imagenette2-320" / "val" / "n00000000")
    with pytest.raises(data.DatasetUnavailableError, match="Re-extract"):
        data.imagenette("val", root=root)
    with pytest.raises(ValueError, match="splits"):
        data.imagenette("test", root=root)


def test_eval_transform_follows_the_timm_config():
    picture = Image.fromarray(np.zeros((240, 320, 3), dtype=np.uint8) + 255)
    for name in ("vit_small_patch32_224", "resnet50"):
        tensor = eval_transform(name)(picture)
        assert tensor.shape == (3, 224, 224) and torch.allclose(tensor, torch.ones_like(tensor))
    with pytest.raises(ValueError, match="pretrained config"):
        eval_transform("zoo-vit-s")


def test_spread_subset():
    items = list(range(100))
    assert list(spread_subset(items, 5)) == [0, 25, 50, 74, 99]
    assert spread_subset(items, None) is items
    with pytest.raises(ValueError, match="positive"):
        spread_subset(items, 0)


def test_weights_folder_and_random_weights(tmp_path, monkeypatch):
    import timm

    profile = get_profile("imagenet")
    source = timm.create_model("vit_small_patch32_224", pretrained=False)
    save_file(source.state_dict(), str(tmp_path / "vit_small_patch32_224.safetensors"))
    monkeypatch.setenv("NULLSPACE_WEIGHTS", str(tmp_path))
    model = profile.load_model("vit_small_patch32_224")
    assert torch.equal(model.net.patch_embed.proj.weight.cpu(), source.patch_embed.proj.weight)  # cuda under a GPU
    with pytest.raises(models.WeightsError, match="has no resnet50.safetensors"):
        profile.load_model("resnet50")
    monkeypatch.setenv("NULLSPACE_WEIGHTS", "random")
    assert profile.load_model("mobilenetv3_small_100")(torch.rand(1, 3, 224, 224)).shape == (1, 1000)


@pytest.mark.imagenet_smoke
def test_exact_chapter_runs_under_the_imagenet_profile(fake_data, monkeypatch, tmp_path):
    """The exact-nullspace chapter end to end with random weights and the fake ImageNette (code path only)."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("NULLSPACE_PROFILE", "imagenet")
    monkeypatch.setenv("NULLSPACE_WEIGHTS", "random")
    notebook = nbformat.read(REPOSITORY_ROOT / "book" / "exact_nullspace.ipynb", as_version=4)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # the kernel inherits the environment set above
    printed = "".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                      for output in cell.get("outputs", []))
    assert "vit_small_patch32_224" in printed


def test_chapter_code_names_no_teaching_model_or_image_size():
    """Every chapter runs under both profiles, so its code takes model names and sizes from the profile.

    (Prose, comments and hidden solutions may speak of the zoo. The primer is about the zoo's ViT-S on
    purpose.) The GPU smoke run of the imagenet profile once failed on a hard-coded 112."""
    import re

    offenders = []
    for source in sorted((REPOSITORY_ROOT / "book" / "_src").glob("*.py")):
        if source.stem == "primer":
            continue
        cells = re.split(r"^# %%.*$", source.read_text(), flags=re.M)
        markers = re.findall(r"^# %%.*$", source.read_text(), flags=re.M)
        for marker, cell in zip(markers, cells[1:], strict=True):
            if "[markdown]" in marker:
                continue
            for line in cell.splitlines():
                code = line.split("#", 1)[0]
                if re.search(r"zoo-|\b112\b", code):
                    offenders.append(f"{source.name}: {line.strip()}")
    assert not offenders, "teaching-only names or sizes in chapter code:\n" + "\n".join(offenders)


def test_sweep_data_is_stored_as_exact_uint8(vit_s, fake_data):
    """The imagenet runners keep decoded JPEGs as uint8 (a quarter of float32's memory) and batch them back
    into exactly the floats the transform made, so no sweep number depends on the storage."""
    from torch.utils.data import TensorDataset

    from nullspace_utils import approximate

    profile = get_profile("imagenet")
    stored = profile.tensor_dataset("val", 20, "cpu")
    assert stored.tensors[0].dtype == torch.uint8 and stored.tensors[0].shape == (20, 3, 224, 224)
    reference_images, reference_labels = data.stack_dataset(profile.dataset("val", n=20))
    images, labels = next(iter(approximate._TensorBatches(stored, batch_size=20, shuffle=False, seed=0)))
    assert images.dtype == torch.float32 and torch.equal(images, reference_images)
    assert torch.equal(labels, reference_labels.long())

    # learning noise from either storage gives the same noise
    small = TensorDataset(stored.tensors[0][:8, :, :112, :112], stored.tensors[1][:8])
    floats = TensorDataset(small.tensors[0].float().div(255), small.tensors[1])
    runs = [approximate.learn_noise(vit_s, d, level="encoder", lim=1.0, steps=2, lr=1.0, milestones=(),
                                    batch_size=4).noise
            for d in (small, floats)]
    assert torch.equal(runs[0], runs[1])


def test_images_that_are_not_8_bit_stay_float():
    exact = torch.arange(256, dtype=torch.float32).div(255).reshape(1, 1, 16, 16)
    assert data.as_uint8_if_exact(exact).dtype == torch.uint8
    smooth = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert data.as_uint8_if_exact(smooth) is smooth
