"""The two profiles a notebook can run under: ``teaching`` (default) and ``imagenet``.

A profile gives a notebook its dataset, model names and sizes, so that the same
notebook code runs offline on a laptop CPU (``teaching``: the procedurally drawn
shapes dataset and the small zoo trained on it) or in the paper's setting
(``imagenet``: timm's pretrained ViT-S/B/L-32, ResNet-50, EfficientNet-B0,
MobileNetV3-Small and ImageNette). Choose with the environment variable
``NULLSPACE_PROFILE`` or ``get_profile(name)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from torch.utils.data import Dataset

from nullspace_utils import data, models

__all__ = ["Profile", "PROFILE_NAMES", "get_profile", "ProfileNotAvailableError"]

PROFILE_NAMES = ("teaching", "imagenet")


class ProfileNotAvailableError(RuntimeError):
    """A profile exists but this part of it is not available in this version."""


@dataclass(frozen=True)
class Profile:
    """What a notebook needs to know about its setting."""

    name: str
    vit_models: tuple[str, ...]  # three ViTs, smallest first (ViT-S, ViT-B, ViT-L)
    cnn_models: tuple[str, ...]  # three CNNs (ResNet, EfficientNet, MobileNetV3)
    image_size: int
    num_classes: int
    class_names: tuple[str, ...]
    description: str
    _dataset: Callable[[str, int | None], Dataset]

    @property
    def models(self) -> tuple[str, ...]:
        """All six models, ViTs first."""
        return self.vit_models + self.cnn_models

    def dataset(self, split: str, n: int | None = None) -> Dataset:
        """The profile's images for ``split`` ("train", "val"): items ``(image in [0, 1], label)``."""
        return self._dataset(split, n)

    def load_model(self, name: str, **kwargs) -> models.ImageClassifier:
        """Load one of the profile's models (see :func:`nullspace_utils.models.load_model`)."""
        return models.load_model(name, **kwargs)


def _teaching_dataset(split: str, n: int | None) -> Dataset:
    return data.synthetic_dataset(split, n=n, size=models.ZOO_IMAGE_SIZE)


def _imagenet_dataset(split: str, n: int | None) -> Dataset:
    raise ProfileNotAvailableError(
        "The imagenet profile's dataset (ImageNette) is not available in this version of nullspace-vit; "
        "use the default teaching profile (unset NULLSPACE_PROFILE)."
    )


_IMAGENETTE_CLASSES = (
    "tench", "English springer", "cassette player", "chain saw", "church",
    "French horn", "garbage truck", "gas pump", "golf ball", "parachute",
)


def get_profile(name: str | None = None) -> Profile:
    """The profile ``name``, else ``$NULLSPACE_PROFILE``, else ``"teaching"``."""
    name = name or os.environ.get("NULLSPACE_PROFILE") or "teaching"
    if name == "teaching":
        return Profile(
            name="teaching",
            vit_models=("zoo-vit-s", "zoo-vit-b", "zoo-vit-l"),
            cnn_models=("zoo-resnet", "zoo-efficientnet", "zoo-mobilenetv3"),
            image_size=models.ZOO_IMAGE_SIZE,
            num_classes=models.ZOO_NUM_CLASSES,
            class_names=data.CLASS_NAMES,
            description="offline, CPU: 112x112 synthetic shapes and the teaching zoo",
            _dataset=_teaching_dataset,
        )
    if name == "imagenet":
        return Profile(
            name="imagenet",
            vit_models=("vit_small_patch32_224", "vit_base_patch32_224", "vit_large_patch32_224"),
            cnn_models=("resnet50", "efficientnet_b0", "mobilenetv3_small_100"),
            image_size=224,
            num_classes=1000,
            class_names=_IMAGENETTE_CLASSES,
            description="the paper's setting: timm pretrained models, ImageNette (needs network)",
            _dataset=_imagenet_dataset,
        )
    raise ValueError(f"Unknown profile {name!r}; choose one of {PROFILE_NAMES} (NULLSPACE_PROFILE).")
