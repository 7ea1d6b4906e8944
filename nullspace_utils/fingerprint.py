"""Model fingerprinting through the nullspace: is a black-box model yours? (paper §9, "patenting").

The paper's discussion suggests that a ViT's nullspace, a property of its trained weights, could mark a
model as its owner's without any step at training time. This module makes that a test:

1. :func:`make_fingerprint` (the owner, who has the weights): draw secret *probe* images and, for each,
   a secret noise from the nullspace of the model's pixel-space patch map (§3), tiled over the image.
   Probes are squeezed into [a, 1 - a] for the noise amplitude a, so ``probe + noise`` is a valid
   image in [0, 1] without any clipping (clipping would leave the nullspace).
2. :func:`verify` (anyone holding the fingerprint): query the suspect on each probe with and without
   its noise. A model whose patch map has that nullspace (the owner's model, its exact copies, copies
   with a new head) answers the same, up to rounding. Another ViT's nullspace is not disjoint from the
   owner's: two nullspaces of dimensions k1 and k2 in R^(C r²) share at least k1 + k2 - C r² dimensions
   (:func:`shared_nullspace_dimension`), so most of the owner's noise is invisible to it too. What gives
   it away is the rest, the part of the noise in that model's row space (:func:`leak_energy`,
   :func:`split_noise`): it changes the logits by far more than float rounding, and the tolerance
   catches that change.

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

import json
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
           "leak_energy", "split_noise", "with_leak", "probes_to_claim"]

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
        return cls(tensors["probes"], tensors["noise_patches"], float(metadata["amplitude"]), int(metadata["seed"]),
                   metadata.get("model_name", ""), metadata.get("note", ""))


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
    if n_probes < 1:
        raise ValueError(f"n_probes must be at least 1, got {n_probes}.")
    if not 0 < amplitude < 0.5:
        raise ValueError(f"amplitude must lie in (0, 0.5) so that probe + noise fits in [0, 1], got {amplitude}.")
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


@dataclass
class Verification:
    """The outcome of :func:`verify`: the decision and the evidence behind it."""

    output: str
    is_yours: bool  # the binomial test rejects "unrelated model" at level alpha
    kept: int  # probes whose answer the noise did not change
    n: int  # probes that took part (label mode drops probes without a differently-labelled partner)
    p_value: float  # P(Binomial(n, null_rate) >= kept)
    alpha: float
    null_rate: float
    changes: torch.Tensor  # per probe: relative change (logits, probs) or number of flipped labels (0, 1, 2)
    tol: float
    queries: int  # images sent to the suspect
    notes: list[str] = field(default_factory=list)

    @property
    def score(self) -> float:
        """Fraction of probes kept: 1 for the owner's model, low for unrelated ones."""
        return self.kept / self.n if self.n else float("nan")

    def summary(self) -> str:
        verdict = "yours" if self.is_yours else "not shown to be yours"
        return (f"{verdict}: {self.kept}/{self.n} probes kept ({self.output}), p = {self.p_value:.2g} "
                f"(alpha {self.alpha:g}, null rate {self.null_rate:g}), {self.queries} queries"
                + "".join(f"\n  note: {note}" for note in self.notes))


def _check_output(output: str) -> None:
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}.")


def _binomial_tail(kept: int, n: int, rate: float) -> float:
    """P(Binomial(n, rate) >= kept), from scipy."""
    from scipy.stats import binom

    return float(binom.sf(kept - 1, n, rate)) if n else 1.0


def _counted(query: Query, counter: list[int]) -> Query:
    def wrapped(images: torch.Tensor) -> torch.Tensor:
        counter[0] += len(images)
        return query(images)

    return wrapped


def _relative_changes(clean: torch.Tensor, noisy: torch.Tensor, output: str) -> torch.Tensor:
    """Per row, ``max |Δ| / max |clean|`` on logits, or on log-probabilities for ``probs``
    (:func:`nullspace_utils.metrics.relative_logit_change`)."""
    if clean.shape != noisy.shape or clean.ndim != 2:
        raise ValueError(f"the query must return (B, classes) for output={output!r}, got {tuple(clean.shape)}.")
    if output == "probs":
        if clean.min() < 0 or (clean.sum(1) - 1).abs().max() > 1e-3:
            raise ValueError("output='probs' needs probabilities (rows >= 0 summing to 1); the query returned "
                             "something else. Use output='logits' for raw scores.")
        tiny = torch.finfo(torch.float32).tiny
        clean, noisy = clean.clamp_min(tiny).log(), noisy.clamp_min(tiny).log()
    return metrics.relative_logit_change(clean, noisy)


def _label_changes(fingerprint: Fingerprint, query: Query, steps: int,
                   show_progress: bool = False) -> tuple[torch.Tensor, list[str]]:
    """Flipped labels (0, 1 or 2) at the bracket around the suspect's boundary, per probe; NaN: no partner."""
    probes, noises = fingerprint.probes, fingerprint.noises()
    labels = query(probes)
    n = len(probes)
    changes = torch.full((n,), float("nan"))
    notes = []
    for index in tqdm(range(n), disable=not show_progress, desc="bisecting to the boundary"):
        partners = [(index + shift) % n for shift in range(1, n) if labels[(index + shift) % n] != labels[index]]
        if not partners:
            continue
        start, end = probes[index], probes[partners[0]]
        low, high = 0.0, 1.0  # label(start) at low, another label at high
        for _ in range(steps):
            middle = (low + high) / 2
            if query(((1 - middle) * start + middle * end)[None])[0] == labels[index]:
                low = middle
            else:
                high = middle
        bracket = torch.stack([(1 - low) * start + low * end, (1 - high) * start + high * end])
        before = query(bracket)
        after = query(bracket + noises[index])
        changes[index] = float((before != after).sum())
    missing = int(changes.isnan().sum())
    if missing:
        notes.append(f"{missing} of {n} probes had no partner with another label and were left out"
                     + ("; the suspect gives every probe the same label: make the fingerprint from images of "
                        "several classes (images=...)." if missing == n else "."))
    return changes, notes


def verify(fingerprint: Fingerprint, query: Query, *, output: str = "logits", alpha: float = 1e-3,
           null_rate: float = 0.5, tol: float = 1e-3, bisection_steps: int = 14,
           show_progress: bool = False) -> Verification:
    """Test whether the black box ``query`` carries ``fingerprint``'s nullspace.

    ``query`` maps a batch of [0, 1] images (B, C, H, W) to logits (B, K), probabilities (B, K) or
    labels (B,), as ``output`` says (:func:`as_query` wraps a local model). ``tol`` is the relative
    change still counted as rounding (logits, probs). The claim "yours" is made when
    P(Binomial(n, null_rate) >= kept) <= alpha. ``show_progress=True`` shows a tqdm bar over the probes'
    label bisections (``output="label"``: ``bisection_steps`` + 2 queries per probe).
    """
    _check_output(output)
    if not 0 < alpha < 1 or not 0 < null_rate < 1:
        raise ValueError(f"alpha and null_rate must lie in (0, 1), got {alpha} and {null_rate}.")
    counter = [0]
    counted = _counted(query, counter)
    if output == "label":
        changes, notes = _label_changes(fingerprint, counted, bisection_steps, show_progress)
        taking_part = ~changes.isnan()
        kept_mask = changes == 0
    else:
        clean = counted(fingerprint.probes)
        noisy = counted(fingerprint.probes + fingerprint.noises())
        changes, notes = _relative_changes(clean.float(), noisy.float(), output), []
        taking_part = torch.ones(len(changes), dtype=torch.bool)
        kept_mask = changes <= tol
    n = int(taking_part.sum())
    kept = int((kept_mask & taking_part).sum())
    p_value = _binomial_tail(kept, n, null_rate)
    logger.debug("verify (%s): %d/%d probes kept, p = %.3g, %d queries", output, kept, n, p_value, counter[0])
    return Verification(output, p_value <= alpha, kept, n, p_value, alpha, null_rate, changes, tol, counter[0], notes)


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
    """A one-line JSON description (sizes and settings, no tensors)."""
    return json.dumps({"probes": list(fingerprint.probes.shape), "noise_patches": list(fingerprint.noise_patches.shape),
                       "amplitude": fingerprint.amplitude, "seed": fingerprint.seed, "model": fingerprint.model_name})


# --- why another ViT is caught: the part of the noise it sees ----------------------------------------------------

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
    (only the layer that carries the nullspace, to erase the fingerprint). ``show_progress=True`` shows a
    tqdm bar over the steps.
    """
    import copy

    thief = copy.deepcopy(model).float()
    if reset_head:  # a seeded new head, drawn without touching the caller's random state
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            timm_thief: Any = models.unwrap(thief)  # a timm model: reset_classifier() is not in nn.Module's type
            timm_thief.reset_classifier(timm_thief.num_classes)
    for parameter in thief.parameters():
        parameter.requires_grad_(False)
    parameters = _trainable(thief, part)
    for parameter in parameters:
        parameter.requires_grad_(True)
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    wanted = set(checkpoints) | {steps}
    if 0 in wanted:
        yield 0, thief.eval()
    for step in tqdm(range(1, steps + 1), disable=not show_progress, desc=f"fine-tuning {part}"):
        thief.train()
        index = torch.randint(len(images), (batch_size,), generator=generator)
        logits = thief(images[index])  # on the copy's device, which may not be the images' and labels'
        loss = nn.functional.cross_entropy(logits, labels[index].to(logits.device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step in wanted:
            yield step, thief.eval()
