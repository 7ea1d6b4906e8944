# %% [markdown]
# # Fooling the model and its explanations
#
# Paper §7, A.3 and A.4 {cite}`nullspace2023`. The watermark chapter moved an image towards a
# picture while keeping it inside [0, 1]. Drop that box and the nullspace becomes far more
# powerful: an image can be made to *look like another image* (the **target**) while the ViT, and
# every explanation method that works from the ViT's tokens onwards, still sees the first one (the
# **source**).
#
# **You will learn**
# - how fixing two colour channels turns the paper's targeted noise into one small linear system per
#   patch, and when that system has a solution (the counting of equations against unknowns);
# - that the model's logits, and explanation maps such as attention relevance and plain gradients,
#   are *identical* for the source and the transformed image, and why;
# - which explanation methods do tell them apart (those that multiply by the input, and occlusion
#   windows that straddle patches), measured;
# - what is left of the trick once pixel values must stay in [0, 1].
# %% [colab]
# %%
import matplotlib.pyplot as plt
import numpy as np
import torch


from nullspace_utils import exact, fooling, metrics, plotting, watermark, xai
from nullspace_utils.data import stack_dataset
from nullspace_utils.metrics import psnr
from nullspace_utils.profiles import get_profile

torch.manual_seed(0)
profile = get_profile()
vits = {name: profile.load_model(name) for name in profile.vit_models}
vit = vits[profile.vit_models[0]]
images, labels = stack_dataset(profile.dataset("val", n=40))
# three source/target pairs from different classes
pairs = [(0, 7), (12, 3), (25, 18)]
sources = torch.stack([images[s] for s, _ in pairs])
targets = torch.stack([images[t] for _, t in pairs])
print("source classes:", [profile.class_names[labels[s]] for s, _ in pairs])
print("target classes:", [profile.class_names[labels[t]] for _, t in pairs])

# %% [markdown]
# ## One channel, one linear system per patch
#
# Recall from the exact-nullspace chapter that a ViT embeds each $r \times r$ patch $p$ of a
# [0, 1] image as $W_{\text{pix}}\, p + c$, with $W_{\text{pix}}$ of size $d \times 3r^2$ and a constant
# $c$. Split its columns by colour channel, $W_{\text{pix}} p = W_R p_R + W_G p_G + W_B p_B$.
#
# The paper keeps the target's green and blue channels and solves only for red (A.3). We want the
# transformed patch $\tilde p = (\tilde p_R, t_G, t_B)$ to embed exactly like the source patch $s$:
#
# $$ W_R\, \tilde p_R \;=\; W_{\text{pix}}\, s \;-\; W_G\, t_G \;-\; W_B\, t_B . $$
#
# That is $d$ equations in $r^2$ unknowns. Three cases:
#
# - $d < r^2$: many solutions. We take the one closest to the target's own red channel,
#   $\tilde p_R = t_R + W_R^{+}\,(\text{right-hand side} - W_R t_R)$ with the pseudo-inverse $W_R^{+}$,
#   so the image looks as much like the target as the constraint allows.
# - $d = r^2$: exactly one solution (if $W_R$ is invertible).
# - $d > r^2$: no solution in general; `disguise` refuses unless asked for the least-squares fit.
#
# Nothing here keeps $\tilde p_R$ inside [0, 1]: this is the paper's *unconstrained* study (§7).
# Where do the zoo's ViTs fall?

# %%
rows = []
for name, model in vits.items():
    free, _ = fooling.free_channel_matrices(model, channel=0)
    d, unknowns = free.shape
    case = "d < r² (many solutions)" if d < unknowns else "d = r² (one solution)" if d == unknowns else "d > r² (none)"
    rows.append([name, d, unknowns, case])
plotting.table(rows, ["model", "equations d", "unknowns r²", "case"])

# %% [markdown]
# For the paper's patch-32 ViTs the counts are 384, 768 and 1024 equations against 1024 unknowns:
# ViT-L/32 is the square case too. Now transform our three pairs for the smallest ViT.

# %%
result = fooling.disguise(vit, sources, targets, channel=0)
with torch.no_grad():
    logits = {"source": vit(sources), "target": vit(targets), "transformed": vit(result.image)}
probabilities = {key: value.softmax(1) for key, value in logits.items()}


def caption(kind: str, index: int) -> str:
    predicted = int(probabilities[kind][index].argmax())
    return f"{kind}\n{profile.prediction_name(predicted)} {100 * probabilities[kind][index, predicted]:.1f} %"


panels, titles = [], []
for i in range(len(pairs)):
    for kind, image in (("source", sources[i]), ("target", targets[i]), ("transformed", result.image[i])):
        panels.append(image)
        titles.append(caption(kind, i))
plotting.show_images(panels, titles, ncols=6, size=1.9)
plt.show()

# %% [markdown]
# Each triplet shows the source, the target, and the transformed image with the model's prediction
# and its probability. The transformed image keeps the target's shapes, with a red tint or red
# speckle where the solved channel differs from the target's, yet the model gives it the *source's*
# class with the source's probability. The numbers:

# %%
embedding_error = ((exact.patch_embeddings(vit, result.image) - exact.patch_embeddings(vit, sources)).norm()
                   / exact.patch_embeddings(vit, sources).norm()).item()
print("relative change of the patch embeddings below 1e-5:", embedding_error < 1e-5)
print("largest logit change below 1e-4:", (logits["transformed"] - logits["source"]).abs().max().item() < 1e-4)
print("green and blue are exactly the target's:", torch.equal(result.image[:, 1:], targets[:, 1:]))
print(f"red values outside [0, 1]: {100 * result.out_of_box:.0f} %, "
      f"range [{result.image[:, 0].min():.1f}, {result.image[:, 0].max():.1f}]")

# %% [markdown]
# ```{warning}
# A figure can only show values in [0, 1], so `imshow` clips the red channel: **what you see above is
# not what the model sees.** About half of the red values lie outside the valid range. Clip them, as
# saving the image to a file would, and the trick is gone:
# ```

# %%
clipped = result.image.clamp(0, 1)
with torch.no_grad():
    clipped_predictions = vit(clipped).argmax(1)
print("predictions of the clipped images:", [profile.prediction_name(c) for c in clipped_predictions])
print("still the source's class:", (clipped_predictions == logits["source"].argmax(1)).tolist())

# %% [markdown]
# ## All three ViTs
#
# Fewer equations leave more freedom to stay near the target. The widest zoo ViT is the square
# case: its red channel is forced, and it needs enormous values. The first pair, transformed for each
# model (displayed clipped to [0, 1]), and the numbers over the three pairs:

# %%
rows, per_model = [], []
for name, model in vits.items():
    r = fooling.disguise(model, sources, targets)
    per_model.append(r.image[0])
    with torch.no_grad():
        same = (model(r.image).argmax(1) == model(sources).argmax(1)).all().item()
        change = (model(r.image) - model(sources)).abs().max().item()
    red = r.image[:, 0]
    # the logit change is float rounding (about 1e-6, its digits differ between CPUs): print the comparison
    rows.append([name, same, change < 1e-4, f"{100 * r.out_of_box:.0f} %", f"[{red.min():.0f}, {red.max():.0f}]",
                 f"{(red - targets[:, 0]).abs().mean():.2f}"])
plotting.show_images([sources[0], targets[0], *per_model], ["source", "target", *[f"transformed for\n{name}" for name in vits]],
                     size=2.0)
plt.show()
plotting.table(rows, ["model", "source's prediction kept", "max logit change below 1e-4", "red outside [0, 1]",
                      "red range", "mean |red − target red|"])

# %% [markdown]
# ## Explanations see the source
#
# The paper shows that the transformed image fools not only the model but also its explanation maps
# (Fig. 5b), using the relevance method of Chefer et al. {cite}`chefer2021,chefer2021generic`, which
# the paper calls LRP. It weighs each block's attention probabilities by their gradient,
# keeps the positive part, averages the heads, and accumulates over the blocks:
# $R \leftarrow R + \overline{(\nabla A \odot A)^+}\, R$, starting from the identity. The class
# token's row of $R$ over the patches is the map. `xai.relevance` computes it on the stock timm model.
#
# Before computing: what should we expect? Every block receives *identical tokens* for the source
# and the transformed image, so its attention probabilities and their gradients are identical too.
# The relevance maps must be equal. They are not equal to the target's.

# %%
triplet_images = [sources[0], result.image[0], targets[0]]
relevance_maps = [xai.relevance(vit, image) for image in triplet_images]
plotting.show_maps([relevance_maps], ["relevance"], ["source", "transformed", "target"], images=[triplet_images],
                   size=2.2)
plt.show()
same = metrics.compare_maps(relevance_maps[0], relevance_maps[1])
print(f"source vs transformed: correlation {same['correlation']:.6f}, "
      f"max relative difference below 1e-4: {same['max_relative_difference'] < 1e-4}")
print(f"source vs target: correlation {metrics.compare_maps(relevance_maps[0], relevance_maps[2])['correlation']:.2f}")

# %% [markdown]
# ## Which explanation methods can tell them apart?
#
# The paper's appendix (A.4, Fig. 7) reports that other explanation methods also respond "similarly"
# to the source and the transformed image. We can be precise. Write $e = W_{\text{pix}} p + c$ for a
# patch's embedding. By the chain rule, the gradient of a logit with respect to the patch's pixels is
#
# $$ \frac{\partial f}{\partial p} = W_{\text{pix}}^\top \frac{\partial f}{\partial e}, $$
#
# and $\partial f / \partial e$ depends only on the tokens, which are identical. So:
#
# - **gradient-only maps are identical**: saliency, SmoothGrad (the same noise samples, added to
#   both images, still give identical tokens), and, for a ViT, guided backpropagation and
#   deconvolution (they only change the backward pass of ReLUs, and a ViT uses GELU, so they reduce
#   to the plain gradient);
# - **maps that multiply by the input differ**: InputXGradient is $p \odot \partial f/\partial p$;
#   Integrated Gradients {cite}`sundararajan2017ig` and GradientSHAP average the gradient along a path
#   from a baseline and multiply by $(p - \text{baseline})$. Along the straight path $\alpha p$ the
#   tokens are still identical, so the averaged gradient is the same and only the final factor, the
#   input, differs;
# - **perturbation maps depend on alignment**: removing a *whole* patch of the ViT's grid (feature
#   ablation by patch) gives identical tokens again, while an occlusion window that covers half a
#   patch removes different embedding contributions in the two images.
#
# The grid below runs every captum {cite}`kokhlikyan2020captum` method in `xai.METHODS` on the first
# triplet (occlusion with patch-sized windows at half-patch strides). Each panel shows the map's
# absolute value scaled to its own maximum, so equal maps give equal pictures.

# %%
method_maps = {method: [xai.attribute(vit, image, method=method) for image in triplet_images]
               for method in xai.METHODS}
names = ["source", "transformed", "target"]
plotting.show_maps([method_maps[method] for method in method_maps], list(method_maps), names, size=1.45)
plt.show()

# %% [markdown]
# And the numbers, over all three pairs: for each method, how far the transformed image's map is from
# the source's, and, for comparison, how the target's map correlates with the source's.

# %%
rows = []
all_maps = {"relevance": [xai.relevance(vit, batch) for batch in (sources, result.image, targets)]}
all_maps.update({method: [xai.attribute(vit, batch, method=method) for batch in (sources, result.image, targets)]
                 for method in xai.METHODS})
for method, (source_maps, transformed_maps, target_maps) in all_maps.items():
    same = metrics.compare_maps(source_maps, transformed_maps)
    other = metrics.compare_maps(source_maps, target_maps)
    # identical maps differ by float rounding only (about 1e-5, digits that vary between CPUs): below the
    # tolerance we print the comparison, above it the difference itself
    difference = same["max_relative_difference"]
    verdict = "identical" if difference < 1e-3 else "differs"
    rows.append([method, verdict, "< 1e-3" if difference < 1e-3 else f"{difference:.1f}",
                 f"{same['correlation']:.3f}", f"{other['correlation']:.2f}"])
plotting.table(rows, ["method", "source vs transformed", "max relative difference",
                      "correlation", "correlation source vs target"])

# %% [markdown]
# The measurement sharpens the paper's claim. Attention relevance, saliency, SmoothGrad, guided
# backpropagation, deconvolution and patch-wise feature ablation give the *same* map for the source
# and the transformed image, up to float error: they are fooled completely, as the chain-rule
# argument predicts. InputXGradient, Integrated Gradients and GradientSHAP differ substantially
# (correlation about one half), because they multiply by pixel values that were changed on purpose;
# occlusion with windows that straddle patches differs less. None of them looks like the target's
# map either: the transformed image's explanations are "wrong" for what a person sees.
#
# ## Within valid pixel values
#
# The paper remarks (§9) that, within the usual pixel range, the perturbations are barely able to
# fool a model. We can measure how true that is. `disguise(..., bounded=True)` keeps the red channel in
# [0, 1] and, per patch, gets the embedding as close as possible to the source's (a box-constrained
# least-squares problem, solved for all patches at once). The embeddings now match only approximately,
# so the prediction may change. We try 20 pairs.

# %%
# image i of the split has class i mod 10: roll the targets so every pair has two different classes
many_sources, many_targets = images[:20], images[20:40].roll(3, dims=0)
rows = []
for name, model in vits.items():
    bounded = fooling.disguise(model, many_sources, many_targets, bounded=True)
    with torch.no_grad():
        kept_source = (model(bounded.image).argmax(1) == model(many_sources).argmax(1)).float().mean().item()
        became_target = (model(bounded.image).argmax(1) == model(many_targets).argmax(1)).float().mean().item()
    rows.append([name, f"{bounded.embedding_residual.mean():.2f}", f"{100 * kept_source:.0f} %",
                 f"{100 * became_target:.0f} %"])
plotting.table(rows, ["model", "mean relative embedding error", "source's class kept", "target's class instead"])

# %% [markdown]
# Inside the box, with two channels fixed to the target's, the embeddings stay far from the source's
# (relative errors of a few tenths). The source's class survives in only a minority of the pairs, and
# often the model now sees the target: the fooling largely disappears, as the paper says.
#
# The other way to respect the box is the watermark chapter's: keep the embeddings *exact* and give up
# on fixing any channel. Use the target as the "watermark" and the solver finds the valid image closest
# to it whose embeddings are the source's. The prediction is then guaranteed, and the question becomes
# how much of the target shows through:

# %%
as_watermark = watermark.embed(vit, sources, targets)
plotting.show_images([sources[0], targets[0], as_watermark.image[0]],
                     ["source", "target", "exact embeddings, in [0, 1]"], size=2.2)
plt.show()
print(f"PSNR to the target: {psnr(targets, as_watermark.image):.1f} dB "
      f"(the source itself: {psnr(targets, sources):.1f} dB, the unconstrained transform: "
      f"{psnr(targets, result.image):.1f} dB)")

# %% [markdown]
# ## What we learned
#
# - With two channels fixed, each patch gives $d$ equations in $r^2$ unknowns: solvable exactly when
#   $d \le r^2$, which holds for all three zoo ViTs and all three patch-32 ViTs of the paper.
# - The transformed image looks like the target (outside [0, 1]) but its tokens, logits and
#   gradient-based explanations are the source's, to float precision.
# - Explanations that multiply by the input, or perturb across patch borders, are not fooled
#   completely; the paper's "similar" in A.4 hides that difference.
# - Inside [0, 1] the trick mostly fails, in agreement with the paper's own remark; what remains
#   possible in the box, with exact embeddings, is the watermark chapter's weaker disguise.
#
# ## Exercises
#
# ```{exercise} Free another channel
# :label: ex-fool-1
# Solve for blue instead of red (`channel=2`). Does the tint change colour? Are the out-of-box values
# more or fewer?
# ```
#
# ```{solution} ex-fool-1
# :class: dropdown
# ~~~python
# blue = fooling.disguise(vit, sources, targets, channel=2)
# print(blue.out_of_box, result.out_of_box)
# plotting.show_images(list(blue.image), size=2)
# ~~~
# The tint is now blue. The share of values outside [0, 1] changes too: each channel has its own
# columns of $W_{\text{pix}}$ (the trained filters weigh the colours differently), so the system for
# blue is conditioned differently from the one for red.
# ```
#
# ```{exercise} Align the occlusion windows
# :label: ex-fool-2
# Run `xai.attribute(vit, image, method="occlusion", window=16, stride=16)` for the source and the
# transformed image and compare them with `metrics.compare_maps`. Predict the result before running it.
# ```
#
# ```{solution} ex-fool-2
# :class: dropdown
# Windows of exactly one patch at patch strides replace whole patches by zeros. Zeroed patches embed
# the same in both images, and the other patches are untouched, so every occluded input gives
# identical tokens: the maps are identical, like patch-wise feature ablation.
# ```
#
# ```{exercise} Too many equations
# :label: ex-fool-3
# Build a timm ViT with `patch_size=8` and `embed_dim=96` on 112-pixel images (so $d = 96 > r^2 = 64$).
# What does `disguise` do? What does `least_squares=True` return, and does the prediction survive?
# ```
#
# ```{solution} ex-fool-3
# :class: dropdown
# ~~~python
# from timm.models.vision_transformer import VisionTransformer
# from nullspace_utils.models import ImageClassifier, ZOO_MEAN, ZOO_STD
# small_patch = ImageClassifier(VisionTransformer(img_size=112, patch_size=8, embed_dim=96, depth=2,
#                                                 num_heads=3, num_classes=10).eval(), ZOO_MEAN, ZOO_STD)
# fit = fooling.disguise(small_patch, sources, targets, least_squares=True)
# print(fit.embedding_residual)
# ~~~
# Without the flag it raises `NoExactDisguiseError`. With it, the residual is far from zero: one channel
# cannot reproduce 96 numbers per patch from 64 pixels, so this model cannot be fooled this way (free
# two channels to get 128 unknowns).
# ```
