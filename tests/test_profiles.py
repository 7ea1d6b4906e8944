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
    assert [f.name for f in dataclasses.fields(teaching)] == [f.name for f in dataclasses.fields(imagenet)]
    assert imagenet.vit_models == ("vit_small_patch32_224", "vit_base_patch32_224", "vit_large_patch32_224")
    assert imagenet.image_size == 224 and len(imagenet.label_indices) == len(imagenet.class_names) == 10


def test_unknown_profile():
    with pytest.raises(ValueError, match="teaching"):
        get_profile("cifar")


def test_profile_loads_its_models():
    model = get_profile("teaching").load_model("zoo-vit-s")
    assert model(torch.rand(2, 3, 112, 112)).shape == (2, 10)
