"""Loading models by name: the teaching zoo and any timm model.

Every model comes back as an :class:`ImageClassifier`: a ``torch.nn.Module`` in
eval mode that takes images in [0, 1] (the library's convention) and applies its
own per-channel normalisation ``(x - mean) / std`` before the timm network. The
timm network is ``.net``; the normalisation is ``.mean`` and ``.std`` (tuples).

Devices: a model computes where its parameters are (:func:`model_device`), and its
outputs come back on the device of the images you gave it. A notebook can keep its
images and plots on the CPU while the model runs on a GPU; autograd follows the copy.
Where float32 rounding matters (the invariances the book measures), compute inside
``with exact_float32():``, which switches TF32 off for the block only.

This module knows nothing about nullspaces.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import itertools
import json
import logging
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn as nn

from nullspace_utils.files import sha256_of_file

logger = logging.getLogger(__name__)

__all__ = [
    "ZOO_DIR",
    "ZOO_MEAN",
    "ZOO_STD",
    "ZooSpec",
    "ZOO",
    "ImageClassifier",
    "WeightsError",
    "WeightsUnavailableError",
    "UnknownModelError",
    "NormalisationUnknownError",
    "available_models",
    "build_zoo_network",
    "load_manifest",
    "load_model",
    "model_device",
    "unwrap",
    "evaluating",
    "exact_float32",
    "LocalRandomState",
    "tf32_matmuls",
    "check_not_8bit",
    "inputs_checked",
]

#: Folder of the zoo's weights and manifest, inside the installed package (``nullspace_utils/zoo``).
#:
#: :meta hide-value:
ZOO_DIR = Path(__file__).resolve().parent / "zoo"

#: The zoo normalises like timm's ImageNet models: a different std per channel,
#: so that the pitfall of forgetting the normalisation (paper §3, our exact chapter) shows here too.
ZOO_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
ZOO_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
ZOO_IMAGE_SIZE = 112
ZOO_NUM_CLASSES = 10


class WeightsError(ValueError):
    """A weight file is missing, corrupt, or does not fit the model."""


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be downloaded (no network) and no local file was given."""


class NormalisationUnknownError(ValueError):
    """How a model normalises its input cannot be read, so nothing that depends on it can be computed."""


class UnknownModelError(ValueError):
    """A model name is neither in the teaching zoo nor in timm."""


# --------------------------------------------------------------------------- the zoo
def _vit(embed_dim: int, num_heads: int) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from timm.models.vision_transformer import VisionTransformer

        return VisionTransformer(
            img_size=ZOO_IMAGE_SIZE,
            patch_size=16,
            embed_dim=embed_dim,
            depth=6,
            num_heads=num_heads,
            mlp_ratio=4.0,
            num_classes=ZOO_NUM_CLASSES,
        )

    return build


def _resnet() -> nn.Module:
    from timm.models.resnet import BasicBlock, ResNet

    # A ResNet-10 with the "tiered" deep stem of timm's resnet10t, at half width.
    return ResNet(
        BasicBlock,  # type: ignore[arg-type]  # timm's hint says an instance; it takes the class
        (1, 1, 1, 1),
        channels=(32, 64, 128, 256),
        stem_type="deep_tiered",
        stem_width=24,
        avg_down=True,
        num_classes=ZOO_NUM_CLASSES,
    )


def _timm_by_name(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import timm

        return timm.create_model(name, pretrained=False, num_classes=ZOO_NUM_CLASSES)

    return build


@dataclass(frozen=True)
class ZooSpec:
    """One model of the teaching zoo: what it plays in the paper and how to build it."""

    name: str
    kind: str  # "vit" or "cnn"
    plays: str  # the paper's model it stands in for
    description: str
    build: Callable[[], nn.Module]


ZOO: dict[str, ZooSpec] = {
    spec.name: spec
    for spec in [
        ZooSpec("zoo-vit-s", "vit", "ViT-S/32", "ViT, patch 16, width 96, depth 6, 3 heads", _vit(96, 3)),
        ZooSpec("zoo-vit-b", "vit", "ViT-B/32", "ViT, patch 16, width 192, depth 6, 3 heads", _vit(192, 3)),
        ZooSpec("zoo-vit-l", "vit", "ViT-L/32", "ViT, patch 16, width 256, depth 6, 4 heads", _vit(256, 4)),
        ZooSpec("zoo-resnet", "cnn", "ResNet-50", "timm ResNet, BasicBlock [1,1,1,1], widths 32-256", _resnet),
        ZooSpec(
            "zoo-efficientnet", "cnn", "EfficientNet-B0", "timm tinynet_e (EfficientNet-B0 rescaled)",
            _timm_by_name("tinynet_e"),
        ),
        ZooSpec(
            "zoo-mobilenetv3", "cnn", "MobileNetV3-Small", "timm mobilenetv3_small_050",
            _timm_by_name("mobilenetv3_small_050"),
        ),
    ]
}


def available_models() -> list[str]:
    """Names of the teaching zoo's models (any timm model name is accepted by :func:`load_model` too)."""
    return list(ZOO)


def build_zoo_network(name: str) -> nn.Module:
    """A freshly initialised timm network of zoo model ``name`` (no weights loaded).

    Args:
        name: a zoo model's name (:func:`available_models`).
    """
    if name not in ZOO:
        raise UnknownModelError(_unknown_name_message(name))
    return ZOO[name].build()


@lru_cache(maxsize=None)
def _read_manifest(path: str, mtime: float) -> dict[str, Any]:
    with open(path) as handle:
        return json.load(handle)


def load_manifest(zoo_dir: Path | str = ZOO_DIR) -> dict[str, Any]:
    """The zoo's ``manifest.json``: files, sha256, training config and accuracy of every model."""
    path = Path(zoo_dir) / "manifest.json"
    if not path.is_file():
        raise WeightsError(
            f"The zoo manifest {path} is missing. Reinstall the package from a full clone "
            "(`pip install -e .`) or train the zoo with `python -m nullspace_utils.zoo train`."
        )
    return _read_manifest(str(path), path.stat().st_mtime)


# --------------------------------------------------------------------------- the wrapper
_READ_ONLY = ("ImageClassifier.{what} is read-only: the forward pass and the nullspace both depend on it, and "
              "changing it in place would make them disagree. Wrap the network anew instead: "
              "models.ImageClassifier(model.net, mean, std, name=model.name).")


class ImageClassifier(nn.Module):
    """A timm network behind its own normalisation: ``forward(x) = net((x - mean) / std)``.

    ``x`` holds images in [0, 1], shape (B, C, H, W). ``mean`` and ``std`` are
    per-channel tuples, as in timm's ``pretrained_cfg``.
    """

    _mean: torch.Tensor  # (1, C, 1, 1) buffers of mean and std, on the network's device
    _std: torch.Tensor

    def __init__(self, net: nn.Module, mean: tuple[float, ...], std: tuple[float, ...], name: str = "") -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean and std must have one value per channel, got {len(mean)} and {len(std)}.")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive in every channel, got {std}.")
        self.net = net
        self.name = name
        self._mean_values = tuple(float(m) for m in mean)
        self._std_values = tuple(float(s) for s in std)
        if not all(math.isfinite(value) for value in self._mean_values + self._std_values):
            raise ValueError(f"mean and std must be finite numbers, got mean {mean} and std {std}.")
        device = model_device(net)
        self.register_buffer("_mean", torch.tensor(self.mean, device=device).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(self.std, device=device).view(1, -1, 1, 1), persistent=False)

    # Read-only: the forward pass uses the buffers made from these tuples in __init__, and the nullspace
    # (exact.normalisation) reads the tuples, so changing one alone would make the two disagree (issue 32).
    @property
    def mean(self) -> tuple[float, ...]:
        """The per-channel mean subtracted before the network (read-only)."""
        return self._mean_values

    @mean.setter
    def mean(self, value: object) -> None:
        raise AttributeError(_READ_ONLY.format(what="mean"))

    @property
    def std(self) -> tuple[float, ...]:
        """The per-channel std divided by before the network (read-only)."""
        return self._std_values

    @std.setter
    def std(self, value: object) -> None:
        raise AttributeError(_READ_ONLY.format(what="std"))

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Map [0, 1] images to the network's input space."""
        return (images - self._mean) / self._std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of [0, 1] ``images``, computed on the model's device and returned on the images' device."""
        if images.ndim != 4 or images.shape[1] != len(self.mean):
            raise ValueError(
                f"{self.name or 'model'} expects images of shape (B, {len(self.mean)}, H, W), "
                f"got {tuple(images.shape)}; add a batch axis with images[None] for one image."
            )
        if not images.is_floating_point():
            raise TypeError(f"{self.name or 'model'} takes float images in [0, 1], got dtype {images.dtype}: "
                            "convert 8-bit images with images.float() / 255.")
        if not _INPUTS_CHECKED.get():
            check_not_8bit(images, name=f"the input of {self.name or 'the model'}")
        inputs = images.to(self._mean.device, self._mean.dtype)  # a float16 model computes in float16
        return self.net(self.normalize(inputs)).to(images.device)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, mean={self.mean}, std={self.std}"


@contextlib.contextmanager
def evaluating(model: nn.Module, device: torch.device | str | None = None) -> Iterator[nn.Module]:
    """``model`` in eval mode (and on ``device``, when given) inside the ``with`` block; its mode and
    device are restored afterwards, so a library function never changes its caller's model.

    Args:
        model: the model to use.
        device: where to move it for the block; ``None``: where it is.
    """
    was_training, original = model.training, model_device(model)
    try:
        yield model.to(device).eval() if device is not None else model.eval()
    finally:
        model.to(original).train(was_training)


def unwrap(model: nn.Module) -> nn.Module:
    """The timm network inside an :class:`ImageClassifier` (its ``.net``); any other model as it is.

    Args:
        model: an :class:`ImageClassifier` or any other module.
    """
    return getattr(model, "net", model)


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s parameters (its buffers when it has none; the CPU when it has neither).

    Args:
        model: any torch module.
    """
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def _tf32_settings() -> tuple[str, tuple[str | bool, str | bool]]:
    """The TF32 settings of matrix products and cuDNN convolutions, with the torch API that can read them.

    ``("legacy", (float32 matmul precision, cudnn.allow_tf32))`` normally; ``("fp32_precision", (matmul,
    conv))`` when the caller set them through torch's per-backend ``fp32_precision`` API, after which
    torch refuses to read the legacy flags (a ``RuntimeError`` about mixing the two APIs).
    """
    try:
        return "legacy", (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32)
    except RuntimeError:
        convolution = torch.backends.cudnn.conv.fp32_precision  # type: ignore[attr-defined]  # untyped in torch
        return "fp32_precision", (torch.backends.cuda.matmul.fp32_precision, convolution)


def _set_tf32_settings(api: str, settings: tuple[str | bool, str | bool],
                       current: tuple[str | bool, str | bool]) -> None:
    """Write ``settings`` through the API that :func:`_tf32_settings` named, only where they differ from
    ``current`` (torch records which API set a flag, so an unneeded write would change what it reports)."""
    (matmul, convolution), (matmul_now, convolution_now) = settings, current
    if api == "legacy":
        if matmul != matmul_now:
            torch.set_float32_matmul_precision(str(matmul))  # "highest" is cuda.matmul.allow_tf32 = False
        if convolution != convolution_now:
            torch.backends.cudnn.allow_tf32 = bool(convolution)
    else:
        if matmul != matmul_now:
            torch.backends.cuda.matmul.fp32_precision = matmul
        if convolution != convolution_now:
            torch.backends.cudnn.conv.fp32_precision = convolution  # type: ignore[attr-defined]  # untyped in torch


#: True inside :func:`inputs_checked`: :meth:`ImageClassifier.forward` then skips :func:`check_not_8bit`.
_INPUTS_CHECKED: contextvars.ContextVar[bool] = contextvars.ContextVar("nullspace_inputs_checked", default=False)


def check_not_8bit(images: torch.Tensor, *, name: str = "model") -> None:
    """Refuse float images of which any holds an 8-bit image's whole numbers (0 to 255) instead of values in [0, 1]:
    the model would see it 255 times too bright and answer without an error. :meth:`ImageClassifier.forward`
    calls it on every call outside :func:`inputs_checked`; on a GPU it waits for the device (a host sync)."""
    if not images.numel():
        return
    flat = images.detach().flatten(1) if images.ndim > 1 else images.detach()[None]
    looks_8bit = (flat.amax(1) > 1.5) & (flat.amin(1) >= 0) & (flat == flat.round()).all(1)  # per image
    if looks_8bit.any():
        largest = flat[looks_8bit].max().item()
        raise ValueError(f"{name} must hold images in [0, 1], but {int(looks_8bit.sum())} of them hold whole numbers "
                         f"from 0 to {largest:.0f}, an 8-bit image's values: divide by 255 first.")


@contextlib.contextmanager
def inputs_checked() -> Iterator[None]:
    """Inside the ``with`` block :class:`ImageClassifier` skips its test for 8-bit images
    (:func:`check_not_8bit`). For loops over images that were tested once beforehand (the noise-learning steps of
    :mod:`nullspace_utils.approximate`): on a GPU the test waits for the device at every call, so the next step
    could not be queued while this one runs (issue #33's "no host sync per step"). The caller's setting is
    restored afterwards."""
    token = _INPUTS_CHECKED.set(True)
    try:
        yield
    finally:
        _INPUTS_CHECKED.reset(token)


@contextlib.contextmanager
def exact_float32() -> Iterator[None]:
    """Float32 matrix products and convolutions in full float32 inside the ``with`` block; the caller's
    settings are restored afterwards, so no library function changes the process's backend flags.

    On Ampere and Hopper GPUs cuDNN defaults to TF32, which rounds inputs to 10 mantissa bits: 1e-3 to 1e-2 on
    the logits (measured), far above the float32 invariances of paper §3 that the library measures. The
    flags are ``torch.backends.cuda.matmul.allow_tf32`` (through ``torch.set_float32_matmul_precision``) and
    ``torch.backends.cudnn.allow_tf32``; they only matter on CUDA, and setting them costs nothing elsewhere.
    """
    api, saved = _tf32_settings()
    exact = ("highest", False) if api == "legacy" else ("ieee", "ieee")
    _set_tf32_settings(api, exact, saved)
    try:
        yield
    finally:
        _set_tf32_settings(api, saved, exact)


@contextlib.contextmanager
def tf32_matmuls() -> Iterator[None]:
    """TF32 float32 matrix products inside the ``with`` block (convolutions untouched); the caller's settings
    are restored afterwards. For computations whose exactness comes from a later float64 step, such as the
    watermark solver's iterations (``watermark.embed(precision="tf32")``): the counterpart of
    :func:`exact_float32`, through the same two torch APIs."""
    api, saved = _tf32_settings()
    fast = ("high" if api == "legacy" else "tf32", saved[1])
    _set_tf32_settings(api, fast, saved)
    try:
        yield
    finally:
        _set_tf32_settings(api, saved, fast)


# --------------------------------------------------------------------------- loading
class LocalRandomState:
    """A random stream of its own for code that draws from torch's global generators (dropout, drop-path, a new
    layer's initialisation): inside ``with state.active():`` they draw from a stream seeded by ``seed`` on the CPU
    and on ``device``, which carries on from one ``with`` block to the next, and the caller's global random state
    is as it was after each block (``torch.random.fork_rng``). So a seeded training run gives the same weights
    whatever the caller drew before, between or after its steps.
    """

    def __init__(self, seed: int, device: torch.device | str = "cpu") -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}.")
        self.seed, self.device = seed, torch.device(device)
        self._states: tuple[torch.Tensor, torch.Tensor | None] | None = None  # (CPU, CUDA) after the last block

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Draw from this stream inside the block; the global state is restored after it."""
        cuda = self.device.type == "cuda"
        index = (self.device.index if self.device.index is not None else torch.cuda.current_device()) if cuda else 0
        with torch.random.fork_rng(devices=[index] if cuda else []):
            if self._states is None:  # seed the CPU generator and this device's only, never every GPU's
                torch.default_generator.manual_seed(self.seed)
                if cuda:
                    torch.cuda.default_generators[index].manual_seed(self.seed)
            else:
                torch.set_rng_state(self._states[0])
                if cuda and self._states[1] is not None:
                    torch.cuda.set_rng_state(self._states[1], index)
            try:
                yield
            finally:
                self._states = (torch.get_rng_state(), torch.cuda.get_rng_state(index) if cuda else None)


def _unknown_name_message(name: str) -> str:
    import timm

    candidates = available_models() + timm.list_models()
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.6)
    hint = f" Close matches: {', '.join(close)}." if close else ""
    return (
        f"Unknown model {name!r}: it is neither in the teaching zoo ({', '.join(available_models())}) "
        f"nor a timm model name.{hint}"
    )


def _load_safetensors(path: Path, *, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise WeightsError(f"Weight file {path} does not exist.")
    if path.suffix != ".safetensors":
        raise WeightsError(
            f"Weight file {path} is not a .safetensors file. Only safetensors is read (never pickle); "
            "convert a checkpoint with safetensors.torch.save_file(model.state_dict(), 'model.safetensors')."
        )
    if expected_sha256 is not None:
        actual = sha256_of_file(path)
        if actual != expected_sha256:
            raise WeightsError(
                f"Weight file {path} is corrupt: its sha256 is {actual}, the manifest expects "
                f"{expected_sha256}. Restore it with `git checkout -- {path.name}` or retrain the zoo."
            )
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise WeightsError(f"Weight file {path} could not be read as safetensors: {error}") from error


def _load_state(net: nn.Module, state: dict[str, torch.Tensor], source: Path, name: str) -> None:
    own = net.state_dict()
    state = {key: value.to(own[key].dtype) if key in own else value for key, value in state.items()}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise WeightsError(f"Weight file {source} does not fit model {name!r}:\n{error}") from error


def _build_for_weights(build: Callable[[], nn.Module]) -> nn.Module:
    """``build()``'s network in uninitialised CPU memory, for weights about to be loaded into every tensor: built on
    the meta device, so no random initialisation runs (ViT-L/32's took 5 s on a 2-core CPU, this 0.1 s), then given
    empty memory. A network that cannot be built on meta, or that has a non-persistent buffer (one a weight file
    does not hold, so it must keep the value its constructor computed) or tied weights (one parameter under two
    names, which ``to_empty`` would untie), is built normally."""
    try:
        with torch.device("meta"):
            net = build()
    except (RuntimeError, NotImplementedError):  # e.g. a constructor that reads a tensor's value
        return build()
    persistent = net.state_dict()
    if any(key not in persistent for key, _ in net.named_buffers()):
        return build()
    names = [name for name, _ in net.named_parameters(remove_duplicate=False)]
    if len(names) != len(dict(net.named_parameters())):  # tied weights: to_empty would untie them
        return build()
    return net.to_empty(device="cpu")


def _load_zoo_model(name: str, weights: Path | None) -> ImageClassifier:
    manifest = load_manifest()
    entry = manifest["models"].get(name)
    if entry is None and weights is None:
        raise WeightsError(f"Zoo model {name!r} has no entry in {ZOO_DIR / 'manifest.json'}; train it first.")
    net = _build_for_weights(lambda: build_zoo_network(name))  # every tensor is loaded just below
    path = Path(weights) if weights is not None else ZOO_DIR / entry["file"]
    expected = entry["sha256"] if weights is None else None
    _load_state(net, _load_safetensors(path, expected_sha256=expected), path, name)
    return ImageClassifier(net, ZOO_MEAN, ZOO_STD, name=name)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub answers a TCP connection within ``timeout`` seconds (offline: at once).

    Without this check timm's download retries for about a minute before it gives up on a machine with
    no network.
    """
    import socket

    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _offline_message(name: str, error: BaseException) -> str:
    return (
        f"Could not download timm's pretrained weights for {name!r} ({type(error).__name__}: {error}). "
        "This needs network access to the Hugging Face Hub. Offline, download the model's "
        "`model.safetensors` elsewhere and pass it with load_model(name, weights='path/to/model.safetensors')."
    )


def _load_timm_model(name: str, weights: Path | None, pretrained: bool) -> ImageClassifier:
    import timm

    if weights is not None:
        net = _build_for_weights(lambda: timm.create_model(name, pretrained=False))  # loaded just below
        _load_state(net, _load_safetensors(Path(weights)), Path(weights), name)
    elif pretrained:
        if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or not _hub_reachable():
            raise WeightsUnavailableError(_offline_message(name, ConnectionError("the Hugging Face Hub cannot be "
                                                                                 "reached from this machine")))
        try:
            net = timm.create_model(name, pretrained=True)
        except (OSError, RuntimeError, ValueError) as error:  # hub errors subclass these
            raise WeightsUnavailableError(_offline_message(name, error)) from error
    else:
        net = timm.create_model(name, pretrained=False)
    cfg = getattr(net, "pretrained_cfg", {}) or {}
    if cfg.get("mean") is None or cfg.get("std") is None:
        raise NormalisationUnknownError(
            f"timm's config for {name!r} gives no mean and std, so the normalisation its weights were trained "
            "with is unknown. Build it yourself and wrap it: models.ImageClassifier(net, mean, std).")
    return ImageClassifier(net, tuple(cfg["mean"]), tuple(cfg["std"]), name=name)


def load_model(
    name: str,
    *,
    weights: str | os.PathLike | None = None,
    pretrained: bool = True,
    device: str | torch.device = "cpu",
) -> ImageClassifier:
    """Load a model by name, ready for [0, 1] images, in eval mode on ``device``.

    ``name`` is a teaching-zoo name (:func:`available_models`) or any timm model
    name. Zoo weights come from the package and are checked against the
    manifest's sha256. timm models load timm's pretrained weights (network needed),
    or ``weights=`` a local ``.safetensors`` file, or random weights with
    ``pretrained=False``. Normalisation comes from timm's ``pretrained_cfg``.

    Args:
        name: a zoo name or any timm model name.
        weights: a local ``.safetensors`` file for a timm model; ``None``: the zoo's or timm's weights.
        pretrained: load pretrained weights (``False``: random weights).
        device: where to put the model.
    """
    weights_path = Path(weights) if weights is not None else None
    if name in ZOO:
        model = _load_zoo_model(name, weights_path)
    else:
        import timm

        if not timm.is_model(name):
            raise UnknownModelError(_unknown_name_message(name))
        model = _load_timm_model(name, weights_path, pretrained)
    source = weights_path or ("the zoo" if name in ZOO else "timm's pretrained weights" if pretrained
                              else "random weights")
    logger.info("loaded %s from %s onto %s", name, source, device)
    return model.to(device).eval()
