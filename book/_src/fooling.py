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
# - how fixing two colour channels turns the paper's targeted noise into one linear system per patch, and
#   when it has a solution;
# - what the norm (the paper's L1, or L2) does to the image;
# - why the logits and token-level explanations (LRP relevance, gradients) are *identical* for the source
#   and the transformed image, and which methods do tell them apart, measured;
# - what is left of the trick once pixel values must stay in [0, 1].
# %% [colab]
# %% tags=["hide-input"]
import matplotlib.pyplot as plt
import torch
from IPython.display import display

from nullspace_utils import exact, fooling, plotting, watermark, xai
from nullspace_utils.data import stack_dataset
from nullspace_utils.metrics import psnr
from nullspace_utils.profiles import get_profile
from nullspace_utils.studies import claims, watermark_paper
from nullspace_utils.studies import fooling as fooling_study

# %% tags=["hide-input"]
torch.manual_seed(0)
profile = get_profile()
vits = {name: profile.load_model(name) for name in profile.vit_models}
vit = vits[profile.vit_models[0]]
settings = fooling_study.SETTINGS[profile.name]  # three source/target pairs from different classes
images, labels = stack_dataset(profile.dataset("val", n=settings.images))
sources, targets = fooling_study.pair_images(images, settings)
print("source classes:", [profile.class_names[labels[s]] for s, _ in settings.pairs])
print("target classes:", [profile.class_names[labels[t]] for _, t in settings.pairs])

# %% tags=[hide-input]
found = fooling_study.measure(profile)  # the disguises of every ViT and every method's maps, on these pairs
display(claims.summary(fooling_study.claims(found)))

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
# - $d < r^2$: many solutions. We take the one closest to the target's own red channel $t_R$, so the
#   image looks as much like the target as the constraint allows.
# - $d = r^2$: exactly one solution (if $W_R$ is invertible).
# - $d > r^2$: no solution in general; `disguise` refuses unless asked for the least-squares fit.
#
# "Closest" needs a norm. A.3 says the details "are identical to that for watermarking", and the
# watermarking appendix (A.2) uses the L1 norm, $p = 1$. So the paper's transformed patch solves
#
# $$ \min_{\tilde p_R} \; \| \tilde p_R - t_R \|_1 \quad\text{subject to}\quad
#    W_R\, \tilde p_R = W_{\text{pix}}\, s - W_G\, t_G - W_B\, t_B , $$
#
# a linear program per patch, which `disguise(..., p=1)` solves with the watermark chapter's LP solver
# (`box_solver.solve_patches`; the watermark's [0, 1] box is widened until it no longer binds). With the
# L2 norm instead (`p=2`, the library's default) the answer has a closed form,
# $\tilde p_R = t_R + W_R^{+}\,(\text{right-hand side} - W_R t_R)$ with the pseudo-inverse $W_R^{+}$.
# Both are exact: every patch embeds like the source's. They differ in *where* they put the change:
# L2 spreads it thinly over all pixels, L1 concentrates it on fewer pixels, with larger values.
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
display(plotting.table(rows, ["model", "equations d", "unknowns r²", "case"]))
print(fooling_study.paper_counts_line())  # timm's ViT-S/B/L-32, built without weights: d and r² from their shapes

# %% [markdown]
# The line under the table gives the same counts for the paper's patch-32 ViTs, read from timm's architectures:
# the one it names as the square case is ViT-L/32. Now transform our three pairs for the smallest ViT, with the paper's
# L1 objective, and with L2 beside it.

# %% alt="Three source, target and transformed triplets with the model's predicted class and probability: each transformed image looks like its target with a red tint, yet gets its source's class"
result = fooling.disguise(vit, sources, targets, channel=settings.channel, p=settings.p)  # the paper's p = 1 (A.2, A.3)
result_l2 = fooling.disguise(vit, sources, targets, channel=0, p=2)
with torch.no_grad():
    logits = {"source": vit(sources), "target": vit(targets), "transformed": vit(result.image)}
shown = {"source": sources, "target": targets, "transformed": result.image}
panels, titles = plotting.prediction_panels(shown, logits, profile.prediction_name)  # class and probability
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
      f"range [{result.image[:, 0].min():.0f}, {result.image[:, 0].max():.0f}]")

# %% [markdown]
# And the two norms side by side: the first pair's red channel minus the target's red channel (the
# change each solution makes), and the numbers over the three pairs.

# %% tags=[hide-input] alt="The first pair's red-channel change against the target, for the L1 and the L2 solution, on a blue-white-red scale centred at zero: L1 concentrates the change on fewer pixels, L2 spreads it thinly"
change_l1, change_l2 = result.image[:, 0] - targets[:, 0], result_l2.image[:, 0] - targets[:, 0]
plotting.show_images([change_l1[0:1], change_l2[0:1]], ["red change, L1 (paper)", "red change, L2"],
                     symmetric=True, size=2.4)
plt.show()
plotting.channel_change_table({"L1 (p=1, paper)": fooling.channel_change(result, targets),
                               "L2 (p=2)": fooling.channel_change(result_l2, targets)})

# %% [markdown]
# ```{warning}
# A figure can only show values in [0, 1], so `imshow` clips the red channel: **what you see above is
# not what the model sees.** A large share of the red values lies outside the valid range (the table
# above). Clip them, as saving the image to a file would, and the trick is gone:
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
# case: its red channel is forced (L1 and L2 give the same, unique solution), and it needs enormous
# values. The first pair, transformed for each model with the paper's L1 objective (displayed clipped
# to [0, 1]), and the numbers over the three pairs:

# %% alt="The first pair's source and target, then the image transformed for each zoo ViT, shown clipped to [0, 1]"
disguised = {name: fooling.disguise(model, sources, targets, channel=settings.channel, p=settings.p)
             for name, model in vits.items()}
checks = {name: fooling.check_predictions(vits[name], r.image, sources, targets) for name, r in disguised.items()}
changes = {name: fooling.channel_change(r, targets) for name, r in disguised.items()}
plotting.show_images([sources[0], targets[0], *[r.image[0] for r in disguised.values()]],
                     ["source", "target", *[f"transformed for\n{name}" for name in vits]], size=2.0)
plt.show()
# the logit change is float rounding (about 1e-6, its digits differ between CPUs): the table prints the comparison
plotting.disguise_table(checks, changes)

# %% [markdown]
# (fooling-explanations)=
#
# ## Explanations see the source
#
# The paper shows that the transformed image fools not only the model but also its explanation maps
# (Fig. 5b), with the method it calls LRP: the relevance of Chefer et al.'s "Transformer
# interpretability beyond attention visualization" {cite}`chefer2021`. It works in two passes.
#
# 1. **Relevance propagation.** Start with relevance 1 on the explained logit and pass it down the
#    network layer by layer with layer-wise relevance propagation (LRP) rules: a linear layer shares
#    each output's relevance among its inputs in proportion to their positive contributions; a residual
#    addition splits it between its two branches, keeping the total; an attention product
#    $A V$ gives half to the attention probabilities $A$ and half to the values. Each block $b$ ends up
#    with a relevance $R^{(b)}$ for its attention matrix (one per head).
# 2. **Gradient-weighted rollout.** Weigh each head's $R^{(b)}$ by the gradient of the logit with
#    respect to $A^{(b)}$, keep the positive part and average the heads:
#    $\bar A^{(b)} = \mathbb{E}_h\big[(\nabla A^{(b)} \odot R^{(b)})^+\big]$. Roll out over the
#    blocks, $R \leftarrow R + \bar A^{(b)} R$ starting from the identity; the class token's row of $R$
#    over the patches is the map, one value per patch.
#
# `xai.transformer_attribution` computes it on the stock timm model through forward hooks; the tests
# check it against the authors' own code run on the same weights (correlation above 0.999 on every
# image of the fixture, `tests/data/`). Two relatives help to read it. The same authors' later
# *generic* method {cite}`chefer2021generic` skips the propagation and rolls out
# $\mathbb{E}_h[(\nabla A \odot A)^+]$, the gradient times the attention probabilities themselves
# (`xai.gradient_attention_rollout`): a different map. And the propagation can be carried on, past the
# position embedding and through the patch embedding, down to the pixels (`xai.lrp`, the "full LRP" of
# the same paper).
#
# Before computing: what should we expect? Every block receives *identical tokens* for the source
# and the transformed image, so its attention probabilities, their gradients and the relevance
# propagated to them are identical too: the two token-level maps must be equal. The pixel-level map
# is different: its last step, through the patch embedding, multiplies by the pixel values, which
# the disguise changed on purpose.

# %% alt="Relevance maps of the paper's LRP, the gradient rollout and LRP carried to the pixels, overlaid on the source, the transformed image and the target of the first pair"
triplet_images = [sources[0], result.image[0], targets[0]]
# the paper's LRP, the generic rollout and LRP carried to the pixels (fooling_study.TOKEN_METHODS)
chefer_maps = fooling_study.token_maps(vit, (sources, result.image, targets))  # every pair; the figure shows the first
plotting.show_maps([[maps[0] for maps in chefer_maps[name]] for name in chefer_maps], list(chefer_maps),
                   ["source", "transformed", "target"], images=[triplet_images] * len(chefer_maps), size=2.2)
plt.show()

# %% [markdown]
# Each row is one method, overlaid on each image; the three pairs in numbers (correlation of the
# source's map with the transformed image's, and with the target's):

# %% tags=[hide-input]
chefer_agreements = {name: xai.compare_disguise(*maps) for name, maps in chefer_maps.items()}
display(plotting.map_correlation_table(chefer_agreements))
lrp_difference = chefer_agreements["LRP (the paper's)"].transformed["max_relative_difference"]
# float rounding that LRP's divisions magnify: its digits vary between CPUs, so the comparison is printed
print(f"LRP (the paper's): largest difference between the source's and the transformed image's maps below "
      f"{fooling_study.TOKEN_IDENTICAL:.0%} of the map's peak: {lrp_difference < fooling_study.TOKEN_IDENTICAL}")

# %% [markdown]
# The paper's LRP and the generic rollout are fooled completely, as Fig. 5b shows. LRP's divisions
# magnify the tokens' float rounding a little (the printed comparison with the map's peak), but the maps
# are the same. LRP carried to the pixels is *nearly*, not completely, fooled: its maps of source and
# transformed image correlate slightly less than 1, by the amount the table shows, and stay far from the
# target's map. (Its maps look noisy next to the token-level ones, which is why Chefer et al. replaced it.)
#
# (fooling-methods)=
#
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

# %% alt="A grid of captum attribution maps, one row per method, for the source, the transformed image and the target of the first pair, each scaled to its own maximum"
all_maps = fooling_study.captum_maps(vit, (sources, result.image, targets))  # every pair; the grid shows the first
names = ["source", "transformed", "target"]
plotting.show_maps([[maps[0] for maps in all_maps[method]] for method in all_maps], list(all_maps), names, size=1.45)
plt.show()

# %% [markdown]
# And the numbers, over all three pairs: for each method, how far the transformed image's map is from
# the source's, and, for comparison, how the target's map correlates with the source's.

# %% tags=[hide-input]
agreements = {method: xai.compare_disguise(*maps) for method, maps in all_maps.items()}
# identical maps differ by float rounding only (about 1e-5, digits that vary between CPUs): below 1e-3 the table
# prints the comparison, above it the difference itself
display(plotting.map_difference_table(agreements))
by_input = [c for method in fooling_study.INPUT_METHODS for c in agreements[method].transformed_correlations]
occlusion = agreements["occlusion"].transformed_correlations
print(f"methods that multiply by the input, per pair: correlation {min(by_input):.2f} to {max(by_input):.2f}")
print(f"occlusion, per pair: correlation {min(occlusion):.2f} to {max(occlusion):.2f}")

# %% [markdown]
# The measurement sharpens the paper's claim. Saliency, SmoothGrad, guided backpropagation,
# deconvolution and patch-wise feature ablation give the *same* map for the source and the transformed
# image, up to float error: they are fooled completely, as the chain-rule argument predicts, like the
# token-level LRP above. InputXGradient, Integrated Gradients and GradientSHAP differ substantially
# (the correlations printed under the table), because they multiply by pixel values that were changed
# on purpose; occlusion with windows that straddle patches differs less. For the methods that are fooled,
# the transformed image's map *is* the source's, so it is as far from the target's map as the source's is
# (the last column): their explanations are "wrong" for what a person sees. How close the three
# input-multiplying methods come to the target's map is not measured here.
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
    check = fooling.check_predictions(model, bounded.image, many_sources, many_targets)
    rows.append([name, f"{bounded.embedding_residual.mean():.2f}", f"{100 * check.source_kept:.0f} %",
                 f"{100 * check.target_taken:.0f} %"])
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

# %% alt="The source, the target, and the valid image closest to the target whose patch embeddings are exactly the source's"
as_watermark = watermark.embed(vit, sources, targets)
plotting.show_images([sources[0], targets[0], as_watermark.image[0]],
                     ["source", "target", "exact embeddings, in [0, 1]"], size=2.2)
plt.show()
print(f"PSNR to the target: {psnr(targets, as_watermark.image):.1f} dB "
      f"(the source itself: {psnr(targets, sources):.1f} dB, the unconstrained transform: "
      f"{psnr(targets, result.image):.1f} dB)")

# %% [markdown]
# Does any of this explain the predictions that the paper's own watermarks lost (A.2: 85 % kept)? The
# {doc}`watermark` chapter ran the paper's text, per-channel SLSQP towards the mark, on 20 images, and
# kept its answers raw, clipped to [0, 1] and saved as 8 bits (its section
# {ref}`watermark-paper-run`). What that run kept:

# %% tags=[hide-input]
a2_run, a2_note = watermark_paper.RESULT.chapter_result(profile.name, device=None)
display(a2_note)
if a2_run is not None:
    print("\n".join(watermark_paper.kept_lines(a2_run)))  # per model: same prediction in each condition

# %% [markdown]
# ```{admonition} What the paper says, what we found
# :class: important
#
# - **§7: the watermarked output "will still be slightly altered potentially due to (i) limited
#   expressiveness imposed due to the nullspace (ii) the constraint" of [0, 1].** Neither can alter the
#   output. Every feasible point of eq. 7 is the source patch plus a nullspace vector, so its patch
#   embeddings, and with them every logit, are the source's: the chapter {doc}`watermark` proves it and
#   measures it. The nullspace and the box limit how much of the *target* shows through, never the
#   prediction. The paper's A.2 lost predictions all the same (85 % kept); the watermark chapter's run of
#   the paper's text kept every prediction raw, clipped and 8-bit (printed above), and only resizing lost
#   any, in other amounts: the 85 % is not explained by the solver, the clip to [0, 1] or the nullspace.
# - **A.3: the optimisation "details are identical to that for watermarking".** That is the L1 norm of
#   A.2, with the box removed (§7). This chapter solves exactly that problem, one linear program per
#   patch (`p=1`); the L2 closed form beside it is ours. Both keep the embeddings exact; they differ in
#   how the change is spread over the red channel.
# - **Fig. 5b, "LRP (Chefer et al., 2021)".** The map is the token-level relevance of Chefer et al.'s
#   CVPR 2021 paper, computed here and checked against the authors' code: source and transformed image
#   give the same map, as the paper shows. Carried down to the pixels, the same LRP does see a
#   difference.
# - **A.4: other methods "respond similarly".** Gradient-only methods and patch-aligned perturbations
#   give identical maps; methods that multiply by the input differ strongly (the correlations printed
#   under the table); occlusion that straddles patches differs somewhat.
# - **§7: transformed images are "visually similar to target images".** Only while pixel values may
#   leave [0, 1]; an image file cannot store them, and clipped to [0, 1] the trick fails. Inside the
#   box, the fooling largely disappears, as the paper itself remarks in §9.
# ```
#
# ## What we learned
#
# - With two channels fixed, each patch gives $d$ equations in $r^2$ unknowns: solvable exactly when
#   $d \le r^2$, which holds for all three zoo ViTs and all three patch-32 ViTs of the paper.
# - The paper's L1 objective and the L2 closed form both give exact disguises; L1 changes fewer
#   pixels by larger amounts.
# - The transformed image looks like the target (outside [0, 1]) but its tokens, logits and
#   token-level explanations (the paper's LRP, attention rollout, gradients) are the source's, to float
#   precision.
# - Explanations that multiply by the input, or occlusion across patch borders, are not fooled
#   completely; LRP carried down to the pixels sees only a slight difference (its correlations are
#   under the table). The paper's "similar" in A.4 hides the first two.
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
# blue = fooling.disguise(vit, sources, targets, channel=2, p=1)
# print(blue.out_of_box, result.out_of_box)
# plotting.show_images(list(blue.image), size=2)
# ~~~
# The tint is now blue. The share of values outside [0, 1] changes too (both shares are in the folded
# cell after the exercises): each channel has its own
# columns of $W_{\text{pix}}$ (the trained filters weigh the colours differently), so the system for
# blue is conditioned differently from the one for red.
# ```
#
# ```{exercise} Occlusion windows of other sizes
# :label: ex-fool-2
# Run occlusion for the sources and the transformed images with windows of 32 pixels at stride 16,
# and with windows of 8 pixels at stride 8 (`xai.attribute(vit, sources, method="occlusion",
# window=32, stride=16)`), and compare each pair of maps with `metrics.compare_maps`. Predict both
# results from the patch grid before running them.
# ```
#
# ```{solution} ex-fool-2
# :class: dropdown
# ~~~python
# from nullspace_utils import metrics
#
# for window, stride in ((32, 16), (8, 8)):
#     maps = [xai.attribute(vit, batch, method="occlusion", window=window, stride=stride)
#             for batch in (sources, result.image)]
#     print(window, stride, metrics.compare_maps(*maps))
# ~~~
# Windows of 32 pixels at stride 16 always cover whole 16-pixel patches (2 x 2 of them): every
# occluded input zeroes whole patches, which embed the same in both images, and leaves the others
# untouched, so the maps are identical (to float error). Windows of 8 pixels cover a quarter of a
# patch: the occluded patch keeps three quarters of *different* pixels in the two images, its
# embeddings differ, and so do the maps (the correlations are in the folded cell after the exercises).
# ```
#
# ```{exercise} Too many equations
# :label: ex-fool-3
# Build a timm ViT with `patch_size=8` and `embed_dim=96` on 112-pixel images (so $d = 96 > r^2 = 64$)
# and ask `disguise` for its least-squares fit (`least_squares=True`). How large is the relative
# embedding residual, and how many colour channels would have to be free for an exact disguise?
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
# The residual is a sizeable share of the embedding's norm (printed in the folded cell after the
# exercises; random weights, so the exact values depend on the seed): far from float error. One channel gives 64 unknowns for 96
# equations per patch; two free channels give 128 unknowns, enough for an exact solution in general
# (`disguise` frees one channel, as the paper does; without the flag it raises
# `NoExactDisguiseError`).
# ```
#
# ```{exercise} Where does LRP to the pixels see the disguise?
# :label: ex-fool-4
# Compute `xai.lrp` for the first source and its transformed image, and the absolute difference of the
# two maps summed over each patch. Which patches carry most of the difference: those where the red
# channel changed most, or those the source's map finds relevant? Argue from the last step of the
# propagation before you look.
# ```
#
# ```{solution} ex-fool-4
# :class: dropdown
# ~~~python
# source_map = xai.lrp(vit, sources[0])
# difference = (xai.lrp(vit, result.image[0]) - source_map).abs()
# red_change = (result.image[0, 0] - sources[0, 0]).abs()
# per_patch = lambda m: m.reshape(7, 16, 7, 16).sum((1, 3)).flatten()
# for name, other in (("red change", red_change), ("source's relevance", source_map.abs())):
#     print(name, torch.corrcoef(torch.stack([per_patch(difference), per_patch(other)]))[0, 1].item())
# ~~~
# The relevant patches, not the most changed ones (the per-pair correlations with the source's
# relevance and with the red change are in the folded cell after the exercises). Down to the tokens both images carry
# the same relevance, patch for patch; the last step only *redistributes* each patch's relevance
# among its pixels, in proportion to pixel value times weight. A patch with little relevance has
# little to redistribute, however much its pixels changed.
# ```
#
# The numbers behind these solutions, computed here (the cell is folded: open it after trying the
# exercises).

# %% tags=["hide-cell"]
lrp_maps = chefer_maps["LRP to pixels"][:2]  # the source's and the transformed images', computed above
answers = fooling_study.exercise_answers(vit, sources, targets, result, lrp_maps)
for line in fooling_study.exercise_lines(answers):
    print(line)
