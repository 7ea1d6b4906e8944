import dataclasses

import pytest
import torch

from nullspace_utils.profiles import get_profile


def test_teaching_profile_is_default(monkeypatch):
    monkeypatch.delenv("NULLSPACE_PROFILE", raising=False)
    profile = get_profile()
    assert profile.name == "teaching"
    assert profile.vit_models == ("zoo-vit-s", "zoo-vit-b", "zoo-vit-l")
    assert len(profile.cnn_models) == 3 and profile.models[:3] == profile.vit_models
    assert profile.image_size == 112 and profile.num_classes == len(profile.class_names) == 10
    image, label = profile.dataset("val", n=3)[0]
    assert image.shape == (3, 112, 112) and label == 0


def test_profile_from_environment(monkeypatch):
    monkeypatch.setenv("NULLSPACE_PROFILE", "imagenet")
    assert get_profile().name == "imagenet"


def test_imagenet_profile_has_the_same_attributes():
    teaching, imagenet = get_profile("teaching"), get_profile("imagenet")
    # every setting a chapter reads is filled in by both profiles, with values of the same kind (the
    # teaching set's labels are its own classes, so only it may leave label_indices empty)
    for field in dataclasses.fields(teaching):
        mine, theirs = getattr(teaching, field.name), getattr(imagenet, field.name)
        assert theirs is not None and theirs != "" and theirs != (), f"imagenet leaves {field.name} empty"
        assert mine is None and field.name == "label_indices" or type(mine) is type(theirs), field.name
    assert imagenet.vit_models == ("vit_small_patch32_224", "vit_base_patch32_224", "vit_large_patch32_224")
    assert imagenet.image_size == 224 and len(imagenet.label_indices) == len(imagenet.class_names) == 10


def test_unknown_profile():
    with pytest.raises(ValueError, match="teaching"):
        get_profile("cifar")


def test_profile_loads_its_models():
    model = get_profile("teaching").load_model("zoo-vit-s")
    assert model(torch.rand(2, 3, 112, 112)).shape == (2, 10)


def test_loading_a_model_leaves_the_backend_flags_alone(monkeypatch, tf32_allowed):
    """No library function changes global backend flags: TF32 is switched off only inside the functions that
    measure invariances (models.exact_float32), not for the whole process when a model is loaded onto a GPU."""
    from nullspace_utils import models

    loaded = []
    monkeypatch.setattr(models, "load_model", lambda name, **kwargs: loaded.append((name, kwargs)))  # no GPU here
    get_profile("teaching").load_model("zoo-vit-s", device="cuda")
    assert loaded == [("zoo-vit-s", {"device": "cuda"})]
    assert torch.get_float32_matmul_precision() == "high" and torch.backends.cudnn.allow_tf32


def test_model_card_reads_the_manifest_and_measures_the_rest():
    from nullspace_utils import exact, models
    from nullspace_utils.data import stack_dataset
    from nullspace_utils.profiles import ModelCard, model_card

    profile = get_profile("teaching")
    images, labels = stack_dataset(profile.dataset("test", n=20))
    manifest = models.load_manifest()["models"]
    card = model_card(profile, "zoo-vit-b", images, labels)
    assert isinstance(card, ModelCard) and card.name == "zoo-vit-b"
    assert card.plays == manifest["zoo-vit-b"]["plays"] and card.val_accuracy == manifest["zoo-vit-b"]["val_accuracy"]
    assert (card.patch, card.width, card.nullspace_dim) == (16, 192, 576)
    model = profile.load_model("zoo-vit-b")
    assert card.params == sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        assert card.test_accuracy == (model(images).argmax(1) == labels).float().mean().item()
    assert card.nullspace_dim == exact.patch_nullspace(model).shape[0]
    cnn = model_card(profile, "zoo-resnet", images, labels)
    assert (cnn.patch, cnn.width, cnn.nullspace_dim) == (None, None, None)
    wrong = model_card(profile, "zoo-resnet", images, (labels + 1) % 10)  # accuracy is measured, not read
    assert wrong.test_accuracy < cnn.test_accuracy
