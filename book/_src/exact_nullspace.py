# %% [markdown]
# # The exact nullspace of a vision transformer
#
# Paper §3 {cite}`nullspace2023`: a ViT's first layer is one linear map applied to every patch, so if
# that map has a nullspace, noise from it, repeated over every patch, changes the image and nothing
# else the network computes.
#
# **You will learn**
# - how to write a ViT's patch embedding as one matrix, with its shapes;
# - why the input normalisation must be folded into that matrix, and what happens if it is not;
# - the two nullspaces, the paper's per-channel one and this book's joint one, how large each is for
#   the paper's ViTs and for this book's zoo, and why the book uses the joint one;
# - that very visible nullspace noise leaves the logits unchanged, for every image at once;
# - what clipping to [0, 1] and saving as 8-bit do to that guarantee.
# %% [colab]
# %% tags=["hide-input"]
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display

from nullspace_utils import exact, linalg, metrics, plotting
from nullspace_utils.data import stack_dataset
from nullspace_utils.metrics import psnr
from nullspace_utils.profiles import get_profile
from nullspace_utils.studies import claims

torch.manual_seed(0)
profile = get_profile()
vit = profile.load_model(profile.vit_models[0])
images, labels = stack_dataset(profile.dataset("val", n=16))
print(profile.vit_models[0], "| images:", tuple(images.shape))

# %% tags=[hide-input]
display(claims.summary(claims.section_3()))  # §3's two claims, computed now from the zoo's weights

# %% [markdown]
# ## The patch embedding, as a matrix
#
# Following the paper's eq. (3), a ViT is a composition: a patch embedding $f_\theta$, the
# self-attention encoder $f_\phi$, and a classifier $f_\psi$. The image $x$ of shape $(C, H, W)$ is cut
# into $m = HW / r^2$ non-overlapping patches $x_i$ of shape $(C, r, r)$, and each is embedded as
#
# $$ u_i = W \operatorname{vec}(x_i) + b, \qquad W \in \mathbb{R}^{d \times C r^2}. $$
#
# In timm this is a `Conv2d` with kernel size and stride $r$: its weight of shape $(d, C, r, r)$ is $W$.
# One detail matters. Models receive *normalised* images $(x - \mu_c) / \sigma_c$, per channel $c$.
# Working with images in [0, 1], as this library always does, the map from a pixel patch to its
# embedding is
#
# $$ \begin{aligned} u_i &= \underbrace{W \operatorname{diag}(1/\sigma)}_{W_{\text{pix}}} \operatorname{vec}(x_i) \\
#    &\quad + \big(b - W \operatorname{diag}(1/\sigma)\,\mu\big), \end{aligned} $$
#
# where $\operatorname{diag}(1/\sigma)$ repeats each channel's $1/\sigma_c$ over its $r^2$ pixels. The
# mean only moves the bias; the standard deviation rescales the columns of $W$. The nullspace we want
# is that of $W_{\text{pix}}$, which `exact.patch_embedding_matrix` returns.

# %%
W_pix = exact.patch_embedding_matrix(vit)
layer = exact.patch_embedding_layer(vit)
d, n = W_pix.shape
print(f"conv weight {tuple(layer.weight.shape)} -> W_pix {tuple(W_pix.shape)}: d = {d}, C r^2 = {n}")
print("normalisation: mean", vit.mean, "std", vit.std)
print(f"rank {linalg.rank(W_pix)}, nullspace dimension {linalg.nullity(W_pix)} = {n} - {d}")

# %% [markdown]
# The rank is decided by a tolerance (see the {doc}`primer`). The singular values of the trained
# matrix leave no doubt: all $d$ of them are far from zero (the printed ratio of the largest to the
# smallest), and the $C r^2 - d$ remaining directions have no singular value at all because the
# matrix has only $d$ rows.

# %% tags=[hide-input] alt="The singular values of the pixel-space patch embedding matrix, largest first, on a log axis: all lie within about one decade of each other, many decades above the dashed line of the default tolerance near the bottom of the plot."
sigma = linalg.singular_values(W_pix)
plotting.singular_value_plot(sigma, tolerance=linalg.default_rtol(W_pix.shape) * sigma[0],
                             title=f"singular values of W_pix ({profile.vit_models[0]})")
print(f"largest / smallest singular value: {sigma[0] / sigma[-1]:.0f}")

# %% [markdown]
# ## Two nullspaces: the paper's, per channel, and the book's, joint
#
# The paper (§3.2) writes the patch embedding for "a input patch $x \in \mathbb{R}^{1\times r\times r}$"
# with "$d$ kernels" of $r \times r$ weights: **one channel at a time**. Its nullspace is then that of each
# channel's own $d \times r^2$ block $W_c$ of the matrix (the columns of channel $c$), and it says a
# non-trivial one exists when $d < r^2$. The authors' code does the same: it takes scipy's `null_space`
# of each channel's block (`max_noise.py` in {cite}`nsvit_code`). A noise $v = (v_0, v_1, v_2)$ with
# $W_c v_c = 0$ in every channel has $W v = \sum_c W_c v_c = 0$, so it is in this book's nullspace, the
# **joint** one of the whole $d \times C r^2$ matrix; but the joint nullspace also holds vectors whose
# channels cancel each other ($W_0 v_0 = -W_1 v_1 \neq 0$), which the paper's misses. Generic
# dimensions (full-rank weights):
#
# $$ \begin{aligned} \dim(\text{per channel}) &= C\,\max(r^2 - d, 0), \\
#    \dim(\text{joint}) &= \max(C r^2 - d, 0). \end{aligned} $$
#
# The book uses the joint one: it is the whole set of noises the first layer cannot see (the
# argument of the paper's eq. 5, "$f(x + v) = f(x)$", holds for every vector in it), it is larger, and it
# exists for every model with $d < C r^2$, which includes ViT-L/32, whose per-channel nullspace is
# $\{0\}$ ($d = 1024 = 32^2$). `exact.channel_nullspace` gives the paper's, `exact.patch_nullspace` the
# book's, and `exact.nullspace_dimensions(d, r)` the generic sizes of both.
#
# (exact-nullspace-dimensions)=
# ## How large is each?
#
# Rank deficiency happens only on a set of matrices of measure zero, so random weights have the
# generic dimensions, and the table below, computed now from randomly initialised timm models
# (shapes only, no download) and from the trained zoo, shows *architectures*, not the paper's
# pretrained weights. Under the `imagenet` profile with real weights this same cell computes the
# pretrained models' nullspaces; the test suite runs the chapter that way with random weights only.
# A model with $d \ge C r^2$, such as ViT-B/16, has neither, and the library says so with a
# `NoNullspaceError`.

# %% tags=[hide-input]
rows = []
for name in ["vit_small_patch32_224", "vit_base_patch32_224", "vit_large_patch32_224",
             "vit_small_patch16_224", "vit_base_patch16_224", *profile.vit_models]:
    model = profile.load_model(name, pretrained=False) if name.startswith("vit_") else profile.load_model(name)
    proj = exact.patch_embedding_layer(model)
    measured = exact.nullspace_sizes(model)  # 0 where the library raises NoNullspaceError
    generic = exact.nullspace_dimensions(proj.out_channels, proj.kernel_size[0], proj.in_channels)
    rows.append([f"`{name}`", proj.out_channels, proj.kernel_size[0] ** 2,
                 *(str(size) if size else "0 (NoNullspaceError)" for size in measured.values()),
                 "yes" if measured == generic else "NO"])
    del model
plotting.table(rows, ["model", "d", "r^2", "per channel (paper)", "joint (book)", "= generic formula"])

# %% [markdown]
# Both orderings agree with the paper's claim, $\Delta_{\text{small}} > \Delta_{\text{base}} >
# \Delta_{\text{large}}$, for the patch-32 models and for the zoo's three ViTs, whose widths were chosen
# to keep ViT-S/B/L-32's ratios $d / C r^2$ (the numbers are in the table). But with the paper's
# per-channel definition the largest model has **no** nullspace at all, in timm's ViT-L/32 as in the
# zoo's widest ViT: the paper's statement that ViT-L/32 "has a non-trivial nullspace" holds only for
# the joint one, which the paper never defines.
#
# The per-channel space sits inside the joint one: projecting its basis onto the joint nullspace
# changes nothing (up to float64 rounding), while the joint nullspace has directions the per-channel
# one lacks.

# %%
per_channel = exact.channel_nullspace(vit).reshape(-1, W_pix.shape[1])
joint = exact.patch_nullspace(vit).reshape(-1, W_pix.shape[1])
inside = (per_channel @ joint.T @ joint - per_channel).abs().max().item()
outside = joint - joint @ per_channel.T @ per_channel  # the joint directions with the per-channel part removed
print(f"{per_channel.shape[0]} per-channel directions, {joint.shape[0]} joint ones")
print("per-channel basis lies in the joint nullspace, residual below 1e-10:", inside < 1e-10)
print("joint directions outside the per-channel space:", torch.linalg.matrix_rank(outside).item())

# %% [markdown]
# ## What nullspace noise looks like
#
# `exact.patch_nullspace` returns an orthonormal basis, reshaped as patches $(k, C, r, r)$. Any
# orthonormal basis of the same space is as good as another (the SVD picks one), so a single basis
# vector shows an arbitrary choice, not a property of the model. Two pictures do not depend on
# that choice: **random combinations** of the basis (what `exact.random_nullspace_noise` draws), and
# a **real patch split** into the part the embedding cannot see, $P_{\text{null}}\,x$, and the part
# it sees, $x - P_{\text{null}}\,x$ (its projection on the row space of $W_{\text{pix}}$). Both parts
# are shown with 0 as mid-grey.

# %%
basis = exact.patch_nullspace(vit)
print("basis:", tuple(basis.shape), basis.dtype)

# %% tags=[hide-input] alt="Four random combinations of the nullspace basis, each shown as a small colour patch with 0 as mid-grey: fine, structureless colour noise."
plotting.show_images(exact.random_combinations(basis, 4, seed=4), [f"random mix {i}" for i in range(4)],
                     symmetric=True, size=1.6)
plt.show()

# %%
r = layer.kernel_size[0]
patches = exact.to_patches(images[:2].double(), r)[[24, 73]]  # one central patch of each of two images
seen, hidden = linalg.split_by_nullspace(W_pix, patches)  # hidden: what the embedding cannot see
trios = torch.stack([patches, seen, hidden], dim=1).reshape(-1, layer.in_channels, r, r)  # per patch: its 3 parts
share = hidden.norm(dim=1) ** 2 / patches.norm(dim=1) ** 2
print("the row-space part has the patch's embedding, difference below 1e-10:",
      ((seen - patches) @ W_pix.T).abs().max().item() < 1e-10)
print(f"share of each patch's energy in the nullspace part: {share.min():.2f} to {share.max():.2f} "
      f"(a random direction: {joint.shape[0] / W_pix.shape[1]:.2f} on average)")

# %% tags=[hide-input] alt="Two image patches, each followed by its two parts: a nearly flat coloured patch, then its row-space part and its nullspace part, both textured colour noise around mid-grey that looks nothing like the patch."
plotting.show_images(trios, ["patch", "row-space part", "nullspace part"] * 2, size=1.6,
                     symmetric=[False, True, True] * 2)
plt.show()

# %% [markdown]
# The random mixes are noise-like: there is no structure in them to read. The split is the more
# telling picture. Neither part looks like the patch: a nearly flat patch splits into two textured
# halves whose textures cancel, and the model keeps only the first. The nullspace part carries the
# printed share of the patch's energy, less than a random direction would (the row space was learned
# to catch what real patches contain), but still most of it: the model discards most of the pixels'
# energy and keeps a $d$-dimensional summary.
#
# `exact.tile` repeats one patch over the whole image, aligned with the model's patch grid, and
# `exact.random_nullspace_noise` draws a random combination of the basis, tiled, scaled so that its
# largest value has a chosen amplitude.

# %%
noise = exact.random_nullspace_noise(vit, profile.image_size, amplitude=0.5, seed=0)
noisy = images + noise
print(f"noise: shape {tuple(noise.shape)}, max |value| {noise.abs().max():.2f}")
print(f"PSNR of noisy vs clean images: {psnr(images, noisy):.1f} dB")

# %% tags=[hide-input] alt="Five panels: a validation image, the tiled nullspace noise (a fine repeating colour texture), the image with the noise added, clearly grainy, then a second image and the same image with the same noise."
plotting.show_images([images[0], noise, noisy[0].clamp(0, 1), images[1], noisy[1].clamp(0, 1)],
                     ["image 0", "noise (rescaled)", "image 0 + noise", "image 1", "image 1 + noise"],
                     symmetric=[False, True, False, False, False], size=2.0)
plt.show()

# %% [markdown]
# The noise is plain to see (the figure clips values outside [0, 1] for display). Now the claim:
# the model's outputs do not change, for all 16 images, with one and the same noise.

# %%
with torch.no_grad():
    clean_logits = vit(images)
    noisy_logits = vit(images + noise)
    clean_tokens = exact.patch_embeddings(vit, images)
    noisy_tokens = exact.patch_embeddings(vit, images + noise)
token_error = ((noisy_tokens - clean_tokens).abs().max() / clean_tokens.abs().max()).item()
print("largest change of a patch embedding, relative to the largest embedding value, below 1e-5:", token_error < 1e-5)
print("largest change of a logit below 1e-5:", (noisy_logits - clean_logits).abs().max().item() < 1e-5)
print("predictions unchanged:", bool((noisy_logits.argmax(1) == clean_logits.argmax(1)).all()),
      f"({(clean_logits.argmax(1) == labels).sum().item()}/16 correct)")

# %% [markdown]
# (exact-nullspace-amplitude)=
# ## Amplitude: nullspace noise against random noise
#
# How far can we push? Below, the largest logit change over the 16 images as the noise amplitude grows
# from 0.01 to 100 (a hundred times the whole range of pixel values), for nullspace noise and for
# uniform random noise of the same amplitude. Nullspace noise moves the logits only by float32
# rounding, which grows in proportion to the size of the numbers involved. Random noise destroys the
# prediction long before.

# %%
sweep = exact.amplitude_sweep(vit, images, np.logspace(-2, 2, 9))
display(plotting.table([[f"{a:.2g}", f"{m:.0%}"] for a, m in zip(sweep.amplitudes, sweep.random_match, strict=True)],
                       ["amplitude", "predictions kept under random noise"]))
print("nullspace noise: every logit change below 1e-3:", max(sweep.nullspace_change) < 1e-3)

# %% tags=[hide-input] alt="Log-log plot of the largest logit change against the noise amplitude, from 0.01 to 100: under uniform random noise it climbs steeply and then levels off at a large value; under nullspace noise it stays many decades lower at every amplitude, at the level of float rounding, rising only slowly with the amplitude."
plotting.loglog_curves(sweep.amplitudes, {"nullspace noise": (sweep.nullspace_change, "o-"),
                                          "uniform random noise": (sweep.random_change, "s-")},
                       xlabel="noise amplitude (max |value|)", ylabel="max |logit change|")
plt.show()

# %% [markdown]
# ## The normalisation pitfall
#
# It is tempting to take the nullspace of the convolution weight $W$ itself. But the model sees
# $(x - \mu)/\sigma$, and timm's ImageNet normalisation, which the zoo uses too, has a different
# $\sigma$ in each channel: $(0.229, 0.224, 0.225)$. A vector $v$ with $Wv = 0$ then satisfies
# $W \operatorname{diag}(1/\sigma) v \ne 0$. The difference is small but real, and it grows with the
# noise. `patch_nullspace(model, std=(1, 1, 1))` computes the naive nullspace of $W$ alone (explicit
# arguments override the model's normalisation).

# %%
naive_basis = exact.patch_nullspace(vit, std=(1.0, 1.0, 1.0))
weights = torch.randn(naive_basis.shape[0], generator=torch.Generator().manual_seed(2), dtype=torch.float64)
naive_patch = torch.einsum("k,kcij->cij", weights, naive_basis)
naive_noise = exact.tile(naive_patch / naive_patch.abs().max(), profile.image_size).float()  # amplitude 1
folded_noise = exact.random_nullspace_noise(vit, profile.image_size, amplitude=1.0, seed=2)
naive = metrics.logit_change(vit, images, naive_noise).max().item()
folded = metrics.logit_change(vit, images, folded_noise).max().item()
print(f"nullspace of W alone      : max logit change {naive:.3f}")
print("nullspace of W diag(1/std): max logit change below 1e-4:", folded < 1e-4)

# %% [markdown]
# ## Real images live in [0, 1] and in 8 bits
#
# The guarantee is for the unbounded input space. A real image must stay in [0, 1], and a saved
# image has 256 levels per channel. Both steps break exact invariance, and we can measure by how much.
#
# - **Clipping** $x + v$ to [0, 1] changes the noise wherever the image saturates, and the changed
#   noise is no longer in the nullspace. The paper's watermarking (§6) avoids this by *solving* for
#   noise that keeps $x + v$ inside [0, 1]; here we only clip, to see the size of the effect.
# - **Rounding to 8 bits** perturbs every pixel by up to 1/510. But that happens to the clean image
#   too when it is saved: the fair comparison is rounded-noisy against rounded-clean.

# %%
small_noise = exact.random_nullspace_noise(vit, profile.image_size, amplitude=0.1, seed=3)
effects = exact.storage_effects(vit, images, small_noise)

# %% tags=[hide-input]
rows = [["no clipping, no rounding", "below 1e-4 (float rounding)" if effects.unbounded < 1e-4 else "LARGE", "100%"]]
rows += [[label, f"{effect.max_logit_change:.3f}", f"{effect.same_prediction:.0%}"] for label, effect in [
    (f"clipped to [0, 1] ({effects.saturated:.1%} of values clipped)", effects.clipped),
    ("clean image rounded to 8 bits", effects.clean_8bit),
    ("noisy image clipped, rounded to 8 bits", effects.noisy_8bit)]]
plotting.table(rows, ["what was done to x + v (amplitude 0.1)", "max logit change", "same prediction"])

# %% [markdown]
# Rounding costs about as much as it costs the clean image: 8-bit storage is a problem of
# precision, not of the nullspace. Clipping is the real limit, and it is the reason the watermarking
# chapter solves a constrained problem instead of clipping.
#
# ```{admonition} What the paper says, what we found
# :class: warning
#
# - **Per channel or joint.** §3.2 defines the nullspace for a one-channel patch
#   $x \in \mathbb{R}^{1\times r\times r}$ and gives the condition $d < r^2$; its code takes each channel's
#   nullspace. This book uses the joint nullspace of the $d \times C r^2$ map (condition $d < C r^2$),
#   which contains the paper's and is strictly larger; every number in this book is for the joint one
#   unless it says "per channel".
# - **"$d$ basis vectors".** §3.2 writes the nullspace basis as $\{b_1, \dots, b_d\}$. A basis of the
#   nullspace has $r^2 - d$ vectors per channel (or $C r^2 - d$ jointly), not $d$: $d$ is the dimension
#   of the row space, the part the embedding keeps.
# - **"The nullspace may not exist".** The paper asks whether a nullspace "always exists" and answers
#   case by case. A nullspace always exists (it contains 0); what may fail is a *non-trivial* one, and
#   for ViT-L/32 the per-channel one is trivial, although the paper reports one for it.
# - **Dimensions "reproduced".** The dimensions above are those of the architectures, computed from
#   random weights; they equal those of pretrained weights only if those have full rank, which the
#   `imagenet` profile checks when run with the real weights.
# ```
#
# ## Summary
#
# - The patch embedding of a ViT is one matrix $W_{\text{pix}} = W \operatorname{diag}(1/\sigma)$ of shape
#   $d \times C r^2$; when $d < C r^2$ it has a nullspace of dimension at least $C r^2 - d$ (the joint one).
#   The paper's per-channel nullspace lies inside it and needs $d < r^2$.
# - Noise from it, tiled over the patches, leaves every embedding and every logit unchanged, for any
#   image, at any amplitude, up to float rounding.
# - Forgetting the per-channel $\sigma$ gives noise that does change the logits.
# - Clipping to [0, 1] breaks the invariance; 8-bit rounding costs no more than it costs any image.
#
# The library's functions take any timm ViT: `exact.patch_nullspace(timm.create_model("vit_small_patch32_224"))`
# works the same way as on the zoo.
#
# ## Exercises
#
# ```{exercise} Another model
# :label: ex-exact-1
# Repeat the invariance check with `profile.vit_models[2]` (the widest ViT). How many
# dimensions does its nullspace have, and does large noise still leave the logits unchanged?
# ```
#
# ```{solution} ex-exact-1
# :class: dropdown
# ~~~python
# big = profile.load_model(profile.vit_models[2])
# v = exact.random_nullspace_noise(big, profile.image_size, amplitude=5.0)
# print(exact.patch_nullspace(big).shape[0], metrics.logit_change(big, images, v).max())
# ~~~
# 512 dimensions in the teaching profile; the logit change stays at the level of float rounding.
# ```
#
# ```{exercise} Misaligned noise
# :label: ex-exact-2
# Shift a tiled nullspace noise by 3 pixels with `torch.roll(noise, 3, dims=2)` and measure the logit
# change. Why does it break, although every pixel value is the same?
# ```
#
# ```{solution} ex-exact-2
# :class: dropdown
# The shifted noise no longer repeats the *same* nullspace patch inside each model patch: each patch
# now sees pieces of two neighbouring tiles, which is a different vector, generally not in the
# nullspace. Invariance requires the noise to be aligned with the patch grid; resizing or cropping a
# noisy image breaks it the same way.
# ```
#
# ```{exercise} Noise in one channel only
# :label: ex-exact-3
# Is there nullspace noise that changes only the red channel? Compute the nullspace of the columns
# of $W_{\text{pix}}$ that belong to channel 0 (the first $r^2$ columns), and compare with the
# channel-0 vectors of `exact.channel_nullspace`. What is its dimension for `zoo-vit-s`, and for
# `zoo-vit-l`?
# ```
#
# ```{solution} ex-exact-3
# :class: dropdown
# ~~~python
# r2 = layer.kernel_size[0] ** 2
# print(linalg.nullity(W_pix[:, :r2]))
# print((exact.channel_nullspace(vit)[:, 0].abs().amax(dim=(1, 2)) > 0).sum())  # the same number
# ~~~
# $r^2 - d = 256 - 96 = 160$ for `zoo-vit-s`, and $256 - 256 = 0$ for `zoo-vit-l`: the widest model is
# "square" in a single channel, like ViT-L/32 ($1024 = 32^2$). This one-channel space is exactly the
# paper's per-channel nullspace, restricted to red. The fooling chapter builds on this.
# ```
