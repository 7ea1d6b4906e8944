r"""Model fingerprinting through the nullspace: is a black-box model yours? (paper §9, "patenting").

The paper's discussion suggests that a ViT's nullspace, a property of its trained weights, could mark a
model as its owner's without any step at training time. This module makes that a test:

1. :func:`make_fingerprint` (the owner, who has the weights): draw secret *probe* images and, for each,
   a secret noise from the nullspace of the model's pixel-space patch map (§3), tiled over the image.
   Probes are squeezed into [a, 1 - a] for the noise amplitude a, so ``probe + noise`` is a valid
   image in [0, 1] without any clipping (clipping would leave the nullspace).
2. :func:`verify` (anyone holding the fingerprint): query the suspect on each probe with and without
   its noise. A model whose patch map has that nullspace (the owner's model, its exact copies, copies
   with a new head) answers the same, up to rounding. Another ViT's nullspace is not disjoint from the
   owner's: two nullspaces of dimensions :math:`k_1` and :math:`k_2` in :math:`\mathbb{R}^{C r^2}` share at least
   :math:`k_1 + k_2 - C r^2` dimensions
   (:func:`shared_nullspace_dimension`), so most of the owner's noise is invisible to it too. What gives
   it away is the rest, the part of the noise in that model's row space (:func:`leak_energy`,
   :func:`split_noise`): it changes the logits by far more than float rounding, and the tolerance
   catches that change.

"The answer did not change" is evidence only from a suspect that *would* change it: a model behind an API that
rounds its probabilities, or a constant function, keeps every probe of any fingerprint. So every probe also gets
a *control*: the same suspect under a random noise of the same energy and amplitude (the fingerprint noise's own
values, shuffled and with random signs, :func:`control_noise`), which moves the owner's logits as much as the
fingerprint noise moves an unrelated ViT's. Only probes whose answer the control changes take part; when too
few do for any claim, the verdict is "inconclusive: the suspect does not respond to its input".

Evidence per probe is one bit, *kept* or *changed*; the decision is a one-sided binomial test of
"the suspect keeps a probe with probability at most ``null_rate``" (an unrelated model), so a claim of
ownership is wrong with probability at most ``alpha`` whenever unrelated models keep probes at most at
that rate. The default ``null_rate = 0.5`` is conservative: the fingerprint chapter measures the rates
of unrelated models and finds them far lower.

Three kinds of access are supported (``output``):

* ``"logits"``: a probe is kept when ``max_j |Δz_j| <= tol * max_j |z_j|``;
* ``"probs"``: the same on log-probabilities (probabilities of confident models saturate near 0 and 1,
  their logarithms do not);
* ``"label"``: only the top-1 label. A label rarely flips under a small noise, so each probe is first
  walked to the suspect's *own* decision boundary: a bisection on the segment from the probe to a
  partner probe that the suspect labels differently, by label queries only. At the two images
  bracketing the boundary, a model for which the noise is invisible keeps both labels; for any other
  model the noise moves the boundary by far more than the bracket's width and one label flips.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from nullspace_utils import exact, linalg, metrics, models
from nullspace_utils.data import check_images
from nullspace_utils.files import atomic_write

logger = logging.getLogger(__name__)

__all__ = ["Fingerprint", "Verification", "make_fingerprint", "verify", "as_query", "probes_needed", "OUTPUTS",
           "NoisyInput", "tune_copy", "roc_curve", "roc_auc", "describe", "shared_nullspace_dimension",
           "leak_energy", "split_noise", "with_leak", "probes_to_claim", "control_noise", "INCONCLUSIVE",
           "MAX_BISECTION_STEPS"]

OUTPUTS = ("logits", "probs", "label")
FORMAT = "nullspace-vit fingerprint 1"
#: Metadata key of the sha256 over the tensors (name, dtype, shape and bytes of each, in this order).
CHECKSUM_KEY = "sha256"
CHECKSUM_TENSORS = ("probes", "noise_patches")

Query = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Fingerprint:
    """What verification needs: probes (n, C, H, W) and their noises' patches (n, C, r, r), all in [0, 1] units.

    It holds ``n`` vectors of the model's patch nullspace (of dimension C r² - d), which say nothing
    about the weights beyond being orthogonal to them; keep the file secret all the same, since whoever
    holds it can tell your model apart from others.
    """

    probes: torch.Tensor
    noise_patches: torch.Tensor
    amplitude: float
    seed: int
    model_name: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        """Refuse tensors that cannot be a fingerprint: one noise patch per probe, same channels, finite values."""
        for name, tensor in (("probes", self.probes), ("noise_patches", self.noise_patches)):
            if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point() or tensor.ndim != 4:
                shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
                raise ValueError(f"a fingerprint's {name} must be a float tensor (n, C, H, W), got {shape}: make it "
                                 "with make_fingerprint.")
            if not torch.isfinite(tensor).all():
                raise ValueError(f"a fingerprint's {name} hold NaN or infinite values: make it again with "
                                 "make_fingerprint or restore the file from a backup.")
        if len(self.probes) != len(self.noise_patches) or len(self.probes) == 0:
            raise ValueError(f"a fingerprint needs one noise patch per probe, got {len(self.probes)} probes and "
                             f"{len(self.noise_patches)} noise patches: make it again with make_fingerprint.")
        if self.probes.shape[1] != self.noise_patches.shape[1]:
            raise ValueError(f"the fingerprint's probes have {self.probes.shape[1]} channels and its noise patches "
                             f"{self.noise_patches.shape[1]}: make it again with make_fingerprint.")
        if not math.isfinite(self.amplitude) or self.amplitude <= 0:
            raise ValueError(f"a fingerprint's amplitude must be a finite number > 0, got {self.amplitude}.")

    def noises(self) -> torch.Tensor:
        """The noises tiled over the probes' size: (n, C, H, W)."""
        return exact.tile(self.noise_patches, (self.probes.shape[-2], self.probes.shape[-1]))

    def __len__(self) -> int:
        return len(self.probes)

    @staticmethod
    def _checksum(tensors: dict[str, torch.Tensor]) -> str:
        """sha256 (hex) of the tensors named in :data:`CHECKSUM_TENSORS`: their names, dtypes, shapes and bytes."""
        import hashlib

        digest = hashlib.sha256()
        for name in CHECKSUM_TENSORS:
            tensor = tensors[name].detach().cpu().contiguous()
            digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}\n".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    def save(self, path: str | Path) -> Path:
        """One safetensors file: the two tensors, the rest as metadata, with a sha256 of the tensors.

        The file is written through :func:`nullspace_utils.files.atomic_write`: if writing fails, an
        existing file at ``path`` is left as it was and no partial file remains.
        """
        from safetensors.torch import save_file

        path = Path(path)
        tensors = {"probes": self.probes.contiguous(), "noise_patches": self.noise_patches.contiguous()}
        metadata = {"format": FORMAT, "amplitude": repr(self.amplitude), "seed": str(self.seed),
                    "model_name": self.model_name, "note": self.note, CHECKSUM_KEY: self._checksum(tensors)}
        with atomic_write(path) as temporary:
            save_file(tensors, str(temporary), metadata=metadata)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Fingerprint":
        """Read a file written by :meth:`save`; a file of another kind, or a corrupt one, gives a clear error.

        The tensors are checked against the sha256 written by :meth:`save` (``ValueError`` on mismatch).
        Files saved before checksums existed have none: they load with a warning; save them again to add one.
        """
        import warnings

        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no fingerprint file at {path}: write one with Fingerprint.save(path).")
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        except (SafetensorError, OSError, ValueError) as error:
            raise ValueError(f"{path} is not a readable safetensors file ({error}); was it truncated?") from error
        if metadata.get("format") != FORMAT or set(tensors) != {"probes", "noise_patches"}:
            raise ValueError(f"{path} is a safetensors file but not a fingerprint (format "
                             f"{metadata.get('format')!r}, tensors {sorted(tensors)}).")
        if CHECKSUM_KEY not in metadata:
            warnings.warn(f"{path} has no checksum (it was saved by an older version), so corruption cannot be "
                          "detected: check that it verifies your own model, then save it again with "
                          "Fingerprint.save to add one.", stacklevel=2)
        elif cls._checksum(tensors) != metadata[CHECKSUM_KEY]:
            raise ValueError(f"{path} is corrupt: its tensors do not match the checksum written when it was "
                             "saved; restore it from a backup.")
        missing = [key for key in ("amplitude", "seed") if key not in metadata]
        if missing:
            raise ValueError(f"{path} is a fingerprint file without its {' and '.join(missing)} (metadata): it was not "
                             "written by Fingerprint.save; make the fingerprint again and save it.")
        try:
            amplitude, seed = float(metadata["amplitude"]), int(metadata["seed"])
        except ValueError as error:
            raise ValueError(f"{path} has unreadable metadata ({error}): make the fingerprint again and save "
                             "it.") from error
        try:
            return cls(tensors["probes"], tensors["noise_patches"], amplitude, seed, metadata.get("model_name", ""),
                       metadata.get("note", ""))
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from error


def _check_integer(value: object, name: str, *, least: int, most: int | None = None) -> None:
    """Refuse a non-integer (bool included) or one outside [least, most], naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least or (most is not None and value > most):
        bounds = f">= {least}" if most is None else f"in [{least}, {most}]"
        raise ValueError(f"{name} must be an integer {bounds}, got {value!r}.")


def _smooth_random_images(n: int, channels: int, size: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """Random images in [0, 1] with structure at several scales (sums of upsampled uniform noise)."""
    images = torch.zeros(n, channels, *size)
    for cells in (2, 4, 8, 16):
        coarse = torch.rand(n, channels, cells, cells, generator=generator)
        images += nn.functional.interpolate(coarse, size=size, mode="bicubic", align_corners=False) / 4
    low = images.amin(dim=(1, 2, 3), keepdim=True)
    high = images.amax(dim=(1, 2, 3), keepdim=True)
    return (images - low) / (high - low)


def make_fingerprint(model: nn.Module, *, n_probes: int = 32, amplitude: float = 0.25, seed: int = 0,
                     images: torch.Tensor | None = None, image_size: int | tuple[int, int] | None = None,
                     model_name: str = "") -> Fingerprint:
    """Draw a secret fingerprint of the ViT ``model`` (paper §3 noise; §9's patenting idea).

    ``images`` (N >= n_probes, C, H, W in [0, 1]) are the owner's own probe images, e.g. a few of
    their validation images; without them, smooth random images of ``image_size`` are drawn. Each probe
    is squeezed linearly into [amplitude, 1 - amplitude] and gets its own nullspace noise whose largest
    absolute value is ``amplitude``, so that ``probe + noise`` stays in [0, 1].

    Raises :class:`~nullspace_utils.exact.NotPatchEmbeddingError` for models without a patch embedding
    (CNNs) and :class:`~nullspace_utils.exact.NoNullspaceError` when d >= C r².
    """
    _check_integer(n_probes, "n_probes", least=1)
    _check_integer(seed, "seed", least=0)
    if not isinstance(amplitude, (int, float)) or not 0 < amplitude < 0.5:
        raise ValueError(f"amplitude must lie in (0, 0.5) so that probe + noise fits in [0, 1], got {amplitude}.")
    if image_size is not None:
        sizes = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if len(sizes) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in sizes):
            raise ValueError(f"image_size must be a positive integer or (height, width) of positive integers, a "
                             f"multiple of the patch size, got {image_size!r}.")
    basis = exact.patch_nullspace(model)  # raises for models without a (non-trivial) nullspace
    generator = torch.Generator().manual_seed(seed)
    channels = basis.shape[1]
    if images is None:
        if image_size is None:
            raise ValueError("give either images (your own probe images) or image_size (for random probes).")
        size = (image_size, image_size) if isinstance(image_size, int) else (image_size[0], image_size[1])
        images = _smooth_random_images(n_probes, channels, size, generator)
    else:
        check_images(images, name="images")  # float, finite, in [0, 1]
        if images.ndim != 4 or images.shape[1] != channels:
            raise ValueError(f"images must be (N, {channels}, H, W), got {tuple(images.shape)}.")
        if len(images) < n_probes:
            raise ValueError(f"{len(images)} images given for {n_probes} probes: pass more images or fewer probes.")
        order = torch.randperm(len(images), generator=generator)[:n_probes]
        images = images[order].detach().to("cpu", torch.float32)
    probes = amplitude + (1 - 2 * amplitude) * images
    weights = torch.randn(n_probes, basis.shape[0], generator=generator, dtype=torch.float64)
    patches = torch.einsum("bk,kcij->bcij", weights, basis)
    patches = patches * (amplitude / patches.abs().amax(dim=(1, 2, 3), keepdim=True))
    exact.tile(patches[:1], (probes.shape[-2], probes.shape[-1]))  # checks that the image size is a multiple of r
    return Fingerprint(probes.float().contiguous(), patches.float().contiguous(), float(amplitude), seed, model_name)


def as_query(model: nn.Module, output: str = "logits", *, batch_size: int = 64) -> Query:
    """A black-box view of a local model: [0, 1] images in, ``output`` out (no gradients, eval mode, full float32).

    The input is cast to the model's dtype (float16 copies work) and the output returned in float32, on the CPU
    (:func:`nullspace_utils.metrics.model_logits`).
    """
    _check_output(output)

    def query(images: torch.Tensor) -> torch.Tensor:
        logits = metrics.model_logits(model, images, batch_size=batch_size)  # the caller's model is left as it was
        if output == "logits":
            return logits
        return logits.softmax(1) if output == "probs" else logits.argmax(1)

    return query


#: The most bisection steps of label access: beyond them the two bracket images are equal in float32.
MAX_BISECTION_STEPS = 24
#: The verdict of a suspect whose answers the control noise did not change (it does not respond to its input).
INCONCLUSIVE = "inconclusive: the suspect does not respond to its input"


@dataclass
class Verification:
    """The outcome of :func:`verify`: the decision and the evidence behind it.

    A probe *takes part* when the control noise (:func:`control_noise`) changed the suspect's answer (and, with
    labels, when it has a partner probe of another label); ``kept`` counts the probes taking part whose answer the
    fingerprint noise did not change."""

    output: str
    is_yours: bool  # the binomial test rejects "unrelated model" at level alpha
    kept: int  # probes taking part whose answer the fingerprint noise did not change
    n: int  # probes taking part: the control changed their answer (label mode: and they had a partner)
    p_value: float  # P(Binomial(n, null_rate) >= kept)
    alpha: float
    null_rate: float
    changes: torch.Tensor  # per probe: relative change (logits, probs) or number of flipped labels (0, 1, 2)
    tol: float
    queries: int  # images sent to the suspect
    control_changes: torch.Tensor  # per probe, the same measure under the control noise
    probes: int  # distinct probes asked about (a probe given twice counts once)
    inconclusive: bool  # too few probes took part for any claim: the suspect does not respond to its input
    notes: list[str] = field(default_factory=list)

    @property
    def score(self) -> float:
        """Fraction of probes kept: 1 for the owner's model, low for unrelated ones."""
        return self.kept / self.n if self.n else float("nan")

    @property
    def verdict(self) -> str:
        """``"yours"``, ``"not shown to be yours"`` or :data:`INCONCLUSIVE`."""
        if self.is_yours:
            return "yours"
        return INCONCLUSIVE if self.inconclusive else "not shown to be yours"

    def summary(self) -> str:
        return (f"{self.verdict}: {self.kept}/{self.n} probes kept ({self.output}), p = {self.p_value:.2g} "
                f"(alpha {self.alpha:g}, null rate {self.null_rate:g}); the control changed {self.n} of "
                f"{self.probes} answers; {self.queries} queries"
                + "".join(f"\n  note: {note}" for note in self.notes))


def _check_output(output: str) -> None:
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}.")


def _binomial_tail(kept: int, n: int, rate: float) -> float:
    """P(Binomial(n, rate) >= kept), from scipy."""
    from scipy.stats import binom

    return float(binom.sf(kept - 1, n, rate)) if n else 1.0


def control_noise(fingerprint: Fingerprint, *, seed: int = 0) -> torch.Tensor:
    """The control of every probe, tiled like :meth:`Fingerprint.noises`: (n, C, H, W).

    Each probe's noise patch with its values shuffled over the patch and given random signs (seeded by ``seed``):
    the same energy and the same largest absolute value as the fingerprint noise, so ``probe + control`` stays in
    [0, 1], but a generic direction instead of one in the owner's nullspace. The owner's model changes its
    answer under it (its row space gets about d / (C r²) of the energy, paper §3.2), as an unrelated ViT does under
    the fingerprint noise: a suspect that does not is not answering its input."""
    _check_integer(seed, "seed", least=0)
    generator = torch.Generator().manual_seed(seed)
    patches = fingerprint.noise_patches.reshape(len(fingerprint), -1)
    order = torch.stack([torch.randperm(patches.shape[1], generator=generator) for _ in range(len(patches))])
    signs = torch.randint(0, 2, patches.shape, generator=generator).to(patches.dtype) * 2 - 1
    shuffled = (patches.gather(1, order) * signs).reshape(fingerprint.noise_patches.shape)
    return exact.tile(shuffled, (fingerprint.probes.shape[-2], fingerprint.probes.shape[-1]))


def _answer(query: Query, images: torch.Tensor, output: str, counter: list[int]) -> torch.Tensor:
    """The suspect's answer to ``images``, checked: a finite float (B, K) tensor for logits and probs, integer
    labels (B,) for label; on the CPU."""
    counter[0] += len(images)
    answer = query(images)
    rows = len(images)
    if not isinstance(answer, torch.Tensor):
        kind = type(answer).__name__
        if kind == "ndarray":
            raise TypeError("the suspect returned a numpy array: return a torch tensor (torch.from_numpy(array)) "
                            "from the query function.")
        if output == "label" and isinstance(answer, (list, tuple)) and answer and isinstance(answer[0], str):
            raise TypeError("the suspect returned label names: return class indices as a torch tensor, e.g. "
                            "torch.tensor([classes.index(name) for name in names]).")
        what = "integer labels (B,)" if output == "label" else f"{output} (B, classes)"
        raise TypeError(f"the suspect returned {kind}, not a torch tensor: the query function must return {what} "
                        "as a torch tensor.")
    answer = answer.detach().cpu()
    if output == "label":
        if answer.ndim == 2 and answer.is_floating_point():
            raise ValueError(f"output='label' needs one label per image, the suspect returned scores "
                             f"{tuple(answer.shape)}: use output='logits' or 'probs', or return scores.argmax(1).")
        if answer.ndim != 1 or answer.is_floating_point() or answer.is_complex() or answer.dtype == torch.bool:
            raise ValueError(f"output='label' needs integer class indices (B,), the suspect returned "
                             f"{answer.dtype} {tuple(answer.shape)}: return labels.long().")
    elif answer.ndim != 2 or not answer.is_floating_point() or answer.shape[1] < 2:
        raise ValueError(f"output={output!r} needs float scores (B, classes) with at least 2 classes, the suspect "
                         f"returned {answer.dtype} {tuple(answer.shape)}: use output='label' for labels.")
    if len(answer) != rows:
        raise ValueError(f"the suspect answered {rows} images with {len(answer)} rows: it must return one row per "
                         "image, in order (no duplicated or dropped rows).")
    if answer.is_floating_point() and not torch.isfinite(answer).all():
        bad = int((~torch.isfinite(answer)).reshape(rows, -1).any(1).sum())
        raise ValueError(f"the suspect returned NaN or infinite values for {bad} of {rows} images: a model with "
                         "broken weights or inputs cannot be verified; check the model on a few images first.")
    return answer.float() if answer.is_floating_point() else answer


def _relative_changes(clean: torch.Tensor, noisy: torch.Tensor, output: str) -> torch.Tensor:
    """Per row, ``max |Δ| / max |clean|`` on logits, or on log-probabilities for ``probs``
    (:func:`nullspace_utils.metrics.relative_logit_change`)."""
    if output == "probs":
        if clean.min() < 0 or clean.max() > 1 or (clean.sum(1) - 1).abs().max() > 0.5:
            raise ValueError("output='probs' needs probabilities (rows in [0, 1] summing to about 1); the query "
                             "returned something else. Use output='logits' for raw scores.")
        tiny = torch.finfo(torch.float32).tiny
        clean, noisy = clean.clamp_min(tiny).log(), noisy.clamp_min(tiny).log()
    return metrics.relative_logit_change(clean, noisy)


def _label_changes(probes: torch.Tensor, noises: torch.Tensor, controls: torch.Tensor, answer: Query, steps: int,
                   show_progress: bool = False) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Flipped labels (0, 1 or 2) at the bracket around the suspect's boundary, per probe, under the fingerprint
    noise and under the control noise; NaN: no partner."""
    labels = answer(probes)
    n = len(probes)
    changes, control_changes = torch.full((n,), float("nan")), torch.full((n,), float("nan"))
    notes = []
    for index in tqdm(range(n), disable=not show_progress, desc="bisecting to the boundary"):
        partners = [(index + shift) % n for shift in range(1, n) if labels[(index + shift) % n] != labels[index]]
        if not partners:
            continue
        start, end = probes[index], probes[partners[0]]
        low, high = 0.0, 1.0  # label(start) at low, another label at high
        for _ in range(steps):
            middle = (low + high) / 2
            if answer(((1 - middle) * start + middle * end)[None])[0] == labels[index]:
                low = middle
            else:
                high = middle
        bracket = torch.stack([(1 - low) * start + low * end, (1 - high) * start + high * end])
        before = answer(bracket)
        changes[index] = float((before != answer(bracket + noises[index])).sum())
        control_changes[index] = float((before != answer(bracket + controls[index])).sum())
    missing = int(changes.isnan().sum())
    if missing:
        notes.append(f"{missing} of {n} probes had no partner with another label and were left out"
                     + ("; the suspect gives every probe the same label: make the fingerprint from images of "
                        "several classes (images=...)." if missing == n else "."))
    return changes, control_changes, notes


def _distinct(fingerprint: Fingerprint) -> list[int]:
    """Indices of the fingerprint's probes, each (probe, noise) pair once: a probe given twice is one piece of
    evidence, not two."""
    seen: set[bytes] = set()
    indices = []
    for index in range(len(fingerprint)):
        key = (fingerprint.probes[index].contiguous().numpy().tobytes()
               + fingerprint.noise_patches[index].contiguous().numpy().tobytes())
        if key not in seen:
            seen.add(key)
            indices.append(index)
    return indices


def verify(fingerprint: Fingerprint, query: Query, *, output: str = "logits", alpha: float = 1e-3,
           null_rate: float = 0.5, tol: float = 1e-3, bisection_steps: int = 14, control_seed: int = 0,
           show_progress: bool = False) -> Verification:
    """Test whether the black box ``query`` carries ``fingerprint``'s nullspace (paper §3 noise, §9's patenting).

    ``query`` maps a batch of [0, 1] images (B, C, H, W) to logits (B, K), probabilities (B, K) or
    labels (B,), as ``output`` says (:func:`as_query` wraps a local model); its answers are checked (a torch
    tensor of that shape, one row per image, finite). ``tol`` in (0, 1) is the relative change still counted as
    rounding (logits, probs). Each probe is asked clean, with its fingerprint noise and with its control noise
    (:func:`control_noise`, seed ``control_seed``); only probes whose answer the control changed take part. The
    claim "yours" is made when P(Binomial(n, null_rate) >= kept) <= alpha; when fewer probes take part than any
    claim needs, the verdict is :data:`INCONCLUSIVE`. ``show_progress=True`` shows a tqdm bar over the probes'
    label bisections (``output="label"``: ``bisection_steps`` + 6 queries per probe, after one for the labels).
    """
    _check_output(output)
    if not isinstance(fingerprint, Fingerprint):
        raise TypeError(f"fingerprint must be a Fingerprint (make_fingerprint or Fingerprint.load), got "
                        f"{type(fingerprint).__name__}.")
    if not callable(query):
        raise TypeError(f"query must be a function from images to answers (see as_query), got {type(query).__name__}.")
    if not 0 < alpha < 1 or not 0 < null_rate < 1:
        raise ValueError(f"alpha and null_rate must lie in (0, 1), got {alpha} and {null_rate}.")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol < 1:
        raise ValueError(f"tol must be a number in (0, 1), the relative change still counted as rounding "
                         f"(default 1e-3), got {tol}.")
    _check_integer(bisection_steps, "bisection_steps", least=1, most=MAX_BISECTION_STEPS)
    counter = [0]

    def answer(images: torch.Tensor) -> torch.Tensor:
        return _answer(query, images, output, counter)

    distinct = _distinct(fingerprint)
    notes = [] if len(distinct) == len(fingerprint) else [
        f"{len(fingerprint) - len(distinct)} of {len(fingerprint)} probes repeat another and were counted once."]
    probes, noises = fingerprint.probes[distinct], fingerprint.noises()[distinct]
    controls = control_noise(fingerprint, seed=control_seed)[distinct]
    if output == "label":
        changes, control_changes, label_notes = _label_changes(probes, noises, controls, answer, bisection_steps,
                                                               show_progress)
        notes += label_notes
        taking_part = ~changes.isnan() & (control_changes > 0)
        kept_mask = changes == 0
    else:
        clean = answer(probes)
        changes = _relative_changes(clean, answer(probes + noises), output)
        control_changes = _relative_changes(clean, answer(probes + controls), output)
        taking_part = control_changes > tol
        kept_mask = changes <= tol
    n = int(taking_part.sum())
    kept = int((kept_mask & taking_part).sum())
    p_value = _binomial_tail(kept, n, null_rate)
    inconclusive = n < probes_needed(alpha, null_rate)  # even every probe kept could not make a claim
    silent = int((~control_changes.isnan() & ~taking_part).sum())
    if silent:
        notes.append(f"{silent} of {len(distinct)} probes were left out: the control noise, a random noise of the "
                     "fingerprint's energy, did not change the suspect's answer.")
    if inconclusive:
        notes.append(f"a claim needs at least {probes_needed(alpha, null_rate)} probes whose answer the control "
                     f"changes, {n} did: ask for finer outputs (logits rather than rounded probabilities) or use "
                     "more probes.")
    logger.debug("verify (%s): %d/%d probes kept, p = %.3g, %d queries", output, kept, n, p_value, counter[0])
    return Verification(output, p_value <= alpha and not inconclusive, kept, n, p_value, alpha, null_rate, changes,
                        tol, counter[0], control_changes, len(distinct), inconclusive, notes)


def probes_to_claim(n: int, alpha: float = 1e-3, null_rate: float = 0.5) -> int | None:
    """The fewest of ``n`` probes a suspect must keep for :func:`verify` to claim it (p-value <= ``alpha``), or
    None when even all ``n`` are not enough (then use more probes: :func:`probes_needed`)."""
    if n < 1 or not 0 < alpha < 1 or not 0 < null_rate < 1:
        raise ValueError(f"need n >= 1 and alpha, null_rate in (0, 1), got {n}, {alpha}, {null_rate}.")
    return next((kept for kept in range(n + 1) if _binomial_tail(kept, n, null_rate) <= alpha), None)


def probes_needed(alpha: float, null_rate: float = 0.5) -> int:
    """Smallest n for which keeping all n probes gives p <= alpha: ceil(log(alpha) / log(null_rate))."""
    return math.ceil(math.log(alpha) / math.log(null_rate))


def roc_curve(positives: list[float], negatives: list[float]) -> tuple[list[float], list[float]]:
    """False- and true-positive rates of the rule "score >= t" over every threshold t (higher score: more
    likely yours), from (0, 0) to (1, 1); the area under it is :func:`roc_auc`."""
    if not positives or not negatives:
        raise ValueError("roc_curve needs at least one positive and one negative score.")
    thresholds = sorted(set(positives) | set(negatives), reverse=True)
    fpr, tpr = [0.0], [0.0]
    for threshold in thresholds:
        fpr.append(sum(score >= threshold for score in negatives) / len(negatives))
        tpr.append(sum(score >= threshold for score in positives) / len(positives))
    return fpr, tpr


def roc_auc(positives: list[float], negatives: list[float]) -> float:
    """Area under :func:`roc_curve`: the probability that a positive outscores a negative (ties count half)."""
    pairs = [(p > n) + 0.5 * (p == n) for p in positives for n in negatives]
    return sum(pairs) / len(pairs)


def describe(fingerprint: Fingerprint) -> str:
    """A one-line description in words (sizes and settings, no tensors), e.g. "16 probes of 3 × 112 × 112, each
    with its own nullspace noise patch of 3 × 16 × 16 tiled over it, amplitude 0.25, seed 0, made for zoo-vit-s"."""
    probe, patch = fingerprint.probes.shape, fingerprint.noise_patches.shape
    return (f"{probe[0]} probes of {' × '.join(map(str, probe[1:]))}, each with its own nullspace noise patch of "
            f"{' × '.join(map(str, patch[1:]))} tiled over it, amplitude {fingerprint.amplitude:g}, "
            f"seed {fingerprint.seed}, made for {fingerprint.model_name or 'an unnamed model'}")


# --- why another ViT is told apart: the part of the noise it sees ----------------------------------------------------

def _patch_matrix_for(fingerprint: Fingerprint, model: nn.Module) -> torch.Tensor:
    """``model``'s pixel-space patch matrix (d, C r²), checked to act on ``fingerprint``'s noise patches."""
    matrix = exact.patch_embedding_matrix(model)  # raises NotPatchEmbeddingError for models without one (CNNs)
    size = fingerprint.noise_patches[0].numel()
    if matrix.shape[1] != size:
        raise ValueError(f"the model's patch embedding takes patches of {matrix.shape[1]} values, the fingerprint's "
                         f"noise patches have {size}: use a model with the owner's patch size and channels.")
    return matrix


def shared_nullspace_dimension(first: nn.Module, second: nn.Module, *, rtol: float | None = None) -> int:
    """The dimension of the intersection of two ViTs' patch nullspaces (paper §3.2, the joint d x C r² maps).

    Computed as the nullity of the two matrices stacked (a vector is in both nullspaces exactly when both
    maps send it to 0), by SVD (:func:`nullspace_utils.linalg.nullity`, tolerance ``rtol``). Two nullspaces
    of dimensions k1 and k2 in R^(C r²) share at least k1 + k2 - C r² dimensions, and generic weights share
    exactly that many. Raises :class:`~nullspace_utils.exact.NotPatchEmbeddingError` for a model without a patch
    embedding and ``ValueError`` for two models whose patches differ in size."""
    matrix_first, matrix_second = exact.patch_embedding_matrix(first), exact.patch_embedding_matrix(second)
    if matrix_first.shape[1] != matrix_second.shape[1]:
        raise ValueError(f"the two patch embeddings take patches of {matrix_first.shape[1]} and "
                         f"{matrix_second.shape[1]} values: their nullspaces live in different spaces; compare "
                         "models with the same patch size and channels.")
    # each map scaled to its largest singular value 1, so one relative tolerance suits both blocks
    stacked = torch.cat([matrix_first / torch.linalg.matrix_norm(matrix_first, ord=2),
                         matrix_second / torch.linalg.matrix_norm(matrix_second, ord=2)])
    return linalg.nullity(stacked, rtol)


def split_noise(fingerprint: Fingerprint, model: nn.Module, *,
                rtol: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Split each noise patch of ``fingerprint`` into the part ``model``'s patch map sees (its row space) and the
    part it cannot see (its nullspace), :func:`nullspace_utils.linalg.split_by_nullspace` (paper §3.2).

    Returns ``(seen, hidden)``, float64 patches (n, C, r, r) that add up to the noise patches. For the owner
    ``seen`` is zero up to float64 rounding; for another ViT it is the *leak* that verification detects."""
    matrix = _patch_matrix_for(fingerprint, model)
    patches = fingerprint.noise_patches.to(torch.float64).reshape(len(fingerprint), -1)
    seen, hidden = linalg.split_by_nullspace(matrix, patches, rtol)
    shape = fingerprint.noise_patches.shape
    return seen.reshape(shape), hidden.reshape(shape)


def leak_energy(fingerprint: Fingerprint, model: nn.Module, *, rtol: float | None = None) -> torch.Tensor:
    """Per probe, the energy share of its noise that ``model``'s patch map sees, ``||v - P v||² / ||v||²`` with
    P the projector onto that map's nullspace (paper §3.2): 1 minus the noise's *energy share* in the model's
    nullspace. About 1e-16 (float64 rounding) for the owner and its copies; the energy share of the leak
    (:func:`split_noise`) for any other ViT. A float64 tensor (n,); the same for the noise tiled over a probe,
    since every tile is the same patch."""
    seen, _ = split_noise(fingerprint, model, rtol=rtol)
    energy = fingerprint.noise_patches.to(torch.float64).pow(2).sum(dim=(1, 2, 3))
    return seen.pow(2).sum(dim=(1, 2, 3)) / energy


def with_leak(fingerprint: Fingerprint, model: nn.Module, scale: float, *, rtol: float | None = None) -> Fingerprint:
    """``fingerprint`` with each noise's part in ``model``'s row space (:func:`split_noise`) multiplied by
    ``scale``: 1 gives the noise back, 0 a noise ``model`` cannot see at all (it may leave [0, 1], which the
    model does not mind). How verification depends on the leak, one probe set at a time (paper §3.2, §9)."""
    if not math.isfinite(scale) or scale < 0:
        raise ValueError(f"scale must be a finite number >= 0, got {scale}.")
    seen, hidden = split_noise(fingerprint, model, rtol=rtol)
    patches = (hidden + scale * seen).to(fingerprint.noise_patches.dtype).contiguous()
    return Fingerprint(fingerprint.probes, patches, fingerprint.amplitude, fingerprint.seed, fingerprint.model_name,
                       f"leak into {type(models.unwrap(model)).__name__} scaled by {scale:g}")


# --- what a thief might do to a stolen copy (the fingerprint study measures each) --------------------------------

class NoisyInput(nn.Module):
    """A defence a thief could deploy: add fresh Gaussian noise (std ``sigma``) to every input image.

    It breaks the exact invariance (the noise is drawn anew for the clean and the noisy probe) and
    costs accuracy; the chapter measures both.
    """

    def __init__(self, model: nn.Module, sigma: float, seed: int = 0) -> None:
        super().__init__()
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}.")
        self.model, self.sigma = model, sigma
        self.generator = torch.Generator().manual_seed(seed)
        self.train(model.training)  # the wrapped model's mode: restoring the wrapper's never flips the model's

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.sigma == 0:
            return self.model(images)
        noise = torch.randn(images.shape, generator=self.generator).to(images.device, images.dtype)
        return self.model(images + self.sigma * noise)


def _trainable(net: nn.Module, part: str) -> list[nn.Parameter]:
    timm_net: Any = models.unwrap(net)  # a timm model: get_classifier() is not in nn.Module's type
    if part == "all":
        return list(timm_net.parameters())
    if part == "head":
        return list(timm_net.get_classifier().parameters())
    if part == "patch_embed":
        return list(exact.patch_embedding_layer(timm_net).parameters())
    raise ValueError(f"part must be 'all', 'head' or 'patch_embed', got {part!r}.")


def tune_copy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, part: str, steps: int, lr: float,
              checkpoints: tuple[int, ...] = (), batch_size: int = 32, reset_head: bool = False, seed: int = 0,
              show_progress: bool = False) -> Iterator[tuple[int, nn.Module]]:
    """Fine-tune a *copy* of ``model`` (AdamW, cross-entropy) on ``images``; yield ``(step, copy)`` at
    each step in ``checkpoints`` (0: before any step) and at the end.

    ``part`` is what the thief trains: ``"all"`` (patch embedding included), ``"head"`` (a new
    classifier on frozen features; ``reset_head=True`` re-initialises it first) or ``"patch_embed"``
    (only the layer that carries the nullspace, to erase the fingerprint). Dropout and drop-path draw from
    :class:`~nullspace_utils.models.LocalRandomState` seeded by ``seed`` (the batches from a generator of the same seed), so the same seed
    gives the same weights and the caller's random state is not consumed. ``show_progress=True`` shows a tqdm bar
    over the steps.
    """
    import copy

    thief = copy.deepcopy(model).float()
    if reset_head:  # a seeded new head, drawn without touching the caller's random state
        with models.LocalRandomState(seed).active():
            timm_thief: Any = models.unwrap(thief)  # a timm model: reset_classifier() is not in nn.Module's type
            timm_thief.reset_classifier(timm_thief.num_classes)
    for parameter in thief.parameters():
        parameter.requires_grad_(False)
    parameters = _trainable(thief, part)
    for parameter in parameters:
        parameter.requires_grad_(True)
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)  # the batches
    dropout = models.LocalRandomState(seed, next(thief.parameters()).device)  # dropout and drop-path of the training steps
    wanted = set(checkpoints) | {steps}
    if 0 in wanted:
        yield 0, thief.eval()
    for step in tqdm(range(1, steps + 1), disable=not show_progress, desc=f"fine-tuning {part}"):
        thief.train()
        index = torch.randint(len(images), (batch_size,), generator=generator)
        with dropout.active():
            logits = thief(images[index])  # on the copy's device, which may not be the images' and labels'
            loss = nn.functional.cross_entropy(logits, labels[index].to(logits.device))
            optimizer.zero_grad()
            loss.backward()
        optimizer.step()
        if step in wanted:
            yield step, thief.eval()
