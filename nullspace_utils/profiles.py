"""The two profiles a notebook can run under: ``teaching`` (default) and ``imagenet``.

A profile gives a notebook its dataset, model names and sizes, so that the same
notebook code runs offline on a laptop CPU (``teaching``: the procedurally drawn
shapes dataset and the small zoo trained on it) or in the paper's setting
(``imagenet``: timm's pretrained ViT-S/B/L-32, ResNet-50, EfficientNet-B0,
MobileNetV3-Small and ImageNette). Choose with the environment variable
``NULLSPACE_PROFILE`` or ``get_profile(name)``.

A profile also says where its models compute (:attr:`Profile.device`): ``teaching`` on the CPU (its
committed outputs are CPU numbers), ``imagenet`` on the GPU when there is one. ``NULLSPACE_DEVICE``
(``cpu``, ``cuda``, ``cuda:1``, ``mps``) overrides both. Images stay on the CPU in the notebooks: the
library's models and functions move them to the model's device and give results back on the CPU.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sized, cast

import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from nullspace_utils import data, exact, models
from nullspace_utils.files import atomic_write
from nullspace_utils.models import ImageClassifier

logger = logging.getLogger(__name__)

__all__ = ["Profile", "PROFILE_NAMES", "get_profile", "profile_device", "eval_transform", "spread_subset", "TENSOR_CACHE_VARIABLE", "ModelCard",
           "model_card"]

PROFILE_NAMES = ("teaching", "imagenet")


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
    #: for 1000-way ImageNet models evaluated on ImageNette: the ImageNet index of each of the profile's
    #: classes (None when the models have exactly the profile's classes)
    label_indices: tuple[int, ...] | None = None
    #: where the profile's models compute (see :func:`profile_device`)
    device: torch.device = torch.device("cpu")

    @property
    def models(self) -> tuple[str, ...]:
        """All six models, ViTs first."""
        return self.vit_models + self.cnn_models

    def dataset(self, split: str, n: int | None = None) -> Dataset:
        """The profile's images for ``split`` ("train", "val"): items ``(image in [0, 1], label)``."""
        return self._dataset(split, n)

    def tensor_dataset(self, split: str, n: int | None, device: str | torch.device = "cpu") -> TensorDataset:
        """The split loaded once into memory as a TensorDataset on ``device``, for the GPU sweeps: the teaching
        set drawn in parallel over all CPU cores; decoded JPEGs through DataLoader workers, kept as uint8
        when that loses nothing (:func:`nullspace_utils.data.as_uint8_if_exact`). With :data:`TENSOR_CACHE_VARIABLE`
        set, the decoded images are kept in that folder and read back by the next process that asks for the same
        files (ImageNette's 9,469 + 3,925 images: about 2 GB, decoded in about 20 s per 4,000 images on 2 cores)."""
        dataset = self.dataset(split, n=n)
        if self.name == "teaching":
            images, labels = data.stack_dataset_in_parallel(dataset)
            return TensorDataset(images.to(device), labels.to(device))
        cached = _tensor_cache_file(dataset, split)
        if cached is not None and cached.is_file():
            from safetensors.torch import load_file

            stored = load_file(str(cached))
            return TensorDataset(stored["images"].to(device), stored["labels"].to(device))
        loader = DataLoader(dataset, batch_size=128, num_workers=min(8, os.cpu_count() or 1))
        batches, label_batches = [], []
        for batch, label in loader:
            batches.append(data.as_uint8_if_exact(batch))
            label_batches.append(label)
        if any(batch.dtype != torch.uint8 for batch in batches):  # a transform that is not 8-bit: keep floats
            batches = [batch.float().div(255) if batch.dtype == torch.uint8 else batch for batch in batches]
        images, labels = torch.cat(batches), torch.cat(label_batches).long()
        if cached is not None:
            from safetensors.torch import save_file

            cached.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(cached) as temporary:
                save_file({"images": images, "labels": labels}, str(temporary))
        return TensorDataset(images.to(device), labels.to(device))

    def load_model(self, name: str, **kwargs) -> ImageClassifier:  # (self.models is a property: no models.X here)
        """Load one of the profile's models (see :func:`nullspace_utils.models.load_model`).

        For timm models, ``$NULLSPACE_WEIGHTS`` may name a folder of ``<model name>.safetensors`` files
        (used instead of downloading timm's pretrained weights), or be ``random`` for untrained weights
        (to test code paths offline; the numbers then mean nothing). The model is put on :attr:`device`
        unless ``device=`` says otherwise. Backend flags are left alone: the library's functions that
        measure invariances compute inside :func:`nullspace_utils.models.exact_float32` (no TF32 on CUDA).
        """
        folder = os.environ.get("NULLSPACE_WEIGHTS")
        if folder and name not in models.ZOO and "weights" not in kwargs:
            if folder == "random":
                kwargs["pretrained"] = False
            else:
                path = Path(folder).expanduser() / f"{name}.safetensors"
                if not path.is_file():
                    raise models.WeightsError(
                        f"NULLSPACE_WEIGHTS={folder} has no {path.name}. Save the model's weights there with "
                        "safetensors, or unset NULLSPACE_WEIGHTS to download timm's pretrained weights."
                    )
                kwargs["weights"] = path
            logger.info("%s: weights from NULLSPACE_WEIGHTS=%s", name, folder)
        kwargs.setdefault("device", self.device)
        return models.load_model(name, **kwargs)

    def prediction_name(self, index: int) -> str:
        """The name of a model's output ``index``: one of ``class_names``, or for 1000-way ImageNet models
        the ImageNet class (read offline from timm's ImageNet class index; its first synonym)."""
        index = int(index)
        if self.label_indices is None:
            return self.class_names[index]
        from timm.data import ImageNetInfo

        return ImageNetInfo().index_to_description(index).split(",")[0]

    def class_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The logits of the profile's own classes: for 1000-way models on ImageNette, the ten columns of
        :attr:`label_indices` (so that argmax gives a 0..9 label); otherwise the logits unchanged.

        Matching predictions, the paper's measure, need no labels and use the full logits; accuracy on the
        profile's labels uses these.
        """
        if self.label_indices is None:
            return logits
        return logits[..., list(self.label_indices)]


def _teaching_dataset(split: str, n: int | None) -> Dataset:
    return data.synthetic_dataset(split, n=n, size=models.ZOO_IMAGE_SIZE)


def eval_transform(model_name: str):
    """The evaluation resize and crop of a timm model's pretrained config, giving [0, 1] tensors.

    Normalisation is left out on purpose: the library's models normalise inside (see ``models``).
    """
    import timm
    from timm.data import create_transform, resolve_data_config

    pretrained = timm.get_pretrained_cfg(model_name)
    if pretrained is None:
        raise ValueError(f"timm has no pretrained config for {model_name!r}; pass your own transform.")
    config = resolve_data_config(pretrained_cfg=pretrained.to_dict())
    return create_transform(config["input_size"], interpolation=config["interpolation"], crop_pct=config["crop_pct"],
                            crop_mode=config.get("crop_mode", "center"), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


#: the environment variable naming a folder where :meth:`Profile.tensor_dataset` keeps the imagenet profile's
#: decoded images between processes (``experiments all`` sets it to ``<work>/tensors``); unset: decoded each time
TENSOR_CACHE_VARIABLE = "NULLSPACE_TENSOR_CACHE"
#: changes when what is stored for the same files changes (the decoding), so older files are not read
_TENSOR_CACHE_FORMAT = "1"


def _tensor_cache_file(dataset: Dataset, split: str) -> Path | None:
    """Where :meth:`Profile.tensor_dataset` keeps ``dataset``'s decoded images under :data:`TENSOR_CACHE_VARIABLE`,
    named by a hash of its transform and of each image file's path, size and modification time (a changed or
    re-extracted file makes a new name); ``None`` when the variable is unset or the files cannot be listed."""
    folder = os.environ.get(TENSOR_CACHE_VARIABLE)
    indices = None
    if isinstance(dataset, Subset):
        indices, dataset = list(dataset.indices), dataset.dataset
    samples = getattr(dataset, "_samples", None)  # torchvision's Imagenette: (path, label) per image
    if not folder or samples is None:
        return None
    chosen = samples if indices is None else [samples[index] for index in indices]
    digest = hashlib.sha256(f"{_TENSOR_CACHE_FORMAT}\0{getattr(dataset, 'transform', None)!r}\0".encode())
    for path, label in chosen:
        status = os.stat(path)
        digest.update(f"{Path(path).resolve()}\0{status.st_size}\0{status.st_mtime_ns}\0{label}\n".encode())
    return Path(folder) / f"{split}-{len(chosen)}-{digest.hexdigest()[:20]}.safetensors"


def spread_subset(dataset: Dataset, n: int | None) -> Dataset:
    """``n`` items spread evenly over ``dataset`` (all when ``n`` is None). ImageNette is sorted by class,
    so the first ``n`` items would all be tench."""
    size = len(cast(Sized, dataset))  # map-style datasets have a length; torch's Dataset type does not say so
    if n is None or n >= size:
        return dataset
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}.")
    return Subset(dataset, torch.linspace(0, size - 1, n).round().long().tolist())


def _imagenet_dataset(split: str, n: int | None) -> Dataset:
    """ImageNette: ``train`` is its train split (for learning noise); ``val`` and ``test`` are its val split.

    Images are resized and cropped like ViT-S/32's pretrained config (all six models use 224x224 inputs;
    see :func:`eval_transform` for one model's own config).
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}.")
    dataset = data.imagenette("train" if split == "train" else "val", transform=eval_transform("vit_small_patch32_224"))
    return spread_subset(dataset, n)


_IMAGENETTE_CLASSES = (
    "tench", "English springer", "cassette player", "chain saw", "church",
    "French horn", "garbage truck", "gas pump", "golf ball", "parachute",
)


def profile_device(profile_name: str) -> torch.device:
    """Where a profile's models compute: ``$NULLSPACE_DEVICE`` if set, else the CPU for ``teaching`` and the
    GPU (when there is one) for ``imagenet``. An unknown or absent device is refused with what to set instead."""
    wanted = os.environ.get("NULLSPACE_DEVICE")
    if not wanted:
        return torch.device("cuda" if profile_name == "imagenet" and torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(wanted)
    except RuntimeError as error:
        raise ValueError(f"NULLSPACE_DEVICE={wanted!r} is not a torch device ({error}); use cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise ValueError(f"NULLSPACE_DEVICE={wanted!r}, but torch sees {torch.cuda.device_count()} CUDA device(s) "
                         "here. Unset NULLSPACE_DEVICE or set it to cpu (on Colab: Runtime > Change runtime type > GPU).")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"NULLSPACE_DEVICE={wanted!r}, but MPS is not available here. Unset it or set it to cpu.")
    return device


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
            device=profile_device("teaching"),
        )
    if name == "imagenet":
        return Profile(
            name="imagenet",
            vit_models=("vit_small_patch32_224", "vit_base_patch32_224", "vit_large_patch32_224"),
            cnn_models=("resnet50", "efficientnet_b0", "mobilenetv3_small_100"),
            image_size=224,
            num_classes=1000,
            class_names=_IMAGENETTE_CLASSES,
            description="the paper's setting: timm pretrained models, ImageNette (needs network once)",
            _dataset=_imagenet_dataset,
            label_indices=tuple(index for _, index in data.IMAGENETTE_WNIDS),
            device=profile_device("imagenet"),
        )
    raise ValueError(f"Unknown profile {name!r}; choose one of {PROFILE_NAMES} (NULLSPACE_PROFILE).")


@dataclass(frozen=True)
class ModelCard:
    """One of a profile's models as the setting chapter lists it."""

    name: str
    plays: str | None  # the paper's model a zoo model stands in for (in its manifest entry); None for timm's
    params: int  # the number of parameters (the zoo's manifest; counted for a timm model)
    val_accuracy: float | None  # accuracy on the val split at training (the zoo's manifest); None for timm's
    test_accuracy: float  # accuracy on the images given to :func:`model_card`, measured then
    patch: int | None  # a ViT's patch size r; None for a CNN
    width: int | None  # a ViT's embedding width d; None for a CNN
    nullspace_dim: int | None  # the dimension of a ViT's joint nullspace (exact.patch_nullspace); None for a CNN


def model_card(profile: Profile, name: str, images: torch.Tensor, labels: torch.Tensor) -> ModelCard:
    """:class:`ModelCard` of the model ``name`` of ``profile``: what the zoo's manifest records of it, its first
    layer's geometry and nullspace (for a ViT), and its accuracy on ``images`` (B, C, H, W) in [0, 1] with the
    profile's ``labels`` (through :meth:`Profile.class_logits`, so also for 1000-way ImageNet models)."""
    model = profile.load_model(name)
    with torch.no_grad():
        accuracy = (profile.class_logits(model(images)).argmax(1) == labels).float().mean().item()
    entry = models.load_manifest()["models"].get(name, {})  # zoo models have a manifest entry; timm models do not
    patch = width = nullspace_dim = None
    if hasattr(models.unwrap(model), "patch_embed"):
        patch = exact.patch_embedding_layer(model).kernel_size[0]
        width = exact.patch_embedding_matrix(model).shape[0]
        nullspace_dim = exact.patch_nullspace(model).shape[0]
    return ModelCard(name=name, plays=entry.get("plays"),
                     params=entry.get("params", sum(parameter.numel() for parameter in model.parameters())),
                     val_accuracy=entry.get("val_accuracy"), test_accuracy=accuracy, patch=patch, width=width,
                     nullspace_dim=nullspace_dim)
