# %% [markdown]
# # The setting: images and models
#
# Every experiment in this book needs images and trained models. This short chapter introduces the
# ones used throughout.
#
# **You will learn**
# - what the two *profiles* of the book are and how a notebook picks one;
# - what the offline `teaching` dataset looks like and why it is drawn by a program;
# - which six models stand in for the paper's ViT-S/B/L and ResNet-50, EfficientNet-B0 and
#   MobileNetV3-Small, and how accurate they are.
# %% [colab]
# %% [markdown]
# ## Profiles
#
# A *profile* tells a notebook which images and which models to use, and where the models compute.
# The default, `teaching`, runs offline on a laptop CPU; `imagenet` is the paper's own setting (timm's
# pretrained models and ImageNette, downloaded once), on the GPU when there is one. To switch, set the
# environment variable `NULLSPACE_PROFILE=imagenet` before starting Jupyter; on Colab, change
# `PROFILE` in the notebook's first cell. `NULLSPACE_DEVICE` (`cpu`, `cuda`) overrides the device.
# Everything else in the notebooks stays the same: images stay on the CPU, and the library's models
# move them to their own device and hand the results back on the CPU.

# %%
import matplotlib.pyplot as plt
import torch
from IPython.display import display

from nullspace_utils import plotting
from nullspace_utils.data import stack_dataset
from nullspace_utils.profiles import get_profile, model_card
from nullspace_utils.studies import claims

torch.manual_seed(0)
profile = get_profile()
print(profile.name, "-", profile.description, "- models on", profile.device)
print("ViTs:", profile.vit_models)
print("CNNs:", profile.cnn_models)

# %% tags=[hide-input]
val = profile.dataset("val")
test_images, test_labels = stack_dataset(profile.dataset("test", n=500))
cards = [model_card(profile, name, test_images, test_labels) for name in profile.models]  # the zoo's table, below
vits = [card for card in cards if card.patch is not None]
accuracy = [100 * card.test_accuracy for card in cards]
display(claims.findings([
    f"{len(val)} validation images of {len(profile.class_names)} classes ({', '.join(profile.class_names[:3])}, ...), "
    f"{profile.image_size} × {profile.image_size} pixels ({{ref}}`see the images <setting-dataset>`).",
    f"{len(vits)} ViTs (as {', '.join(card.plays or card.name for card in vits)}) with patch {vits[0].patch} and "
    f"widths d = {' / '.join(str(card.width) for card in vits)}: their "
    f"first layers have nullspaces of {' / '.join(str(card.nullspace_dim) for card in vits)} dimensions, smaller as "
    "the model widens ({ref}`see the zoo <setting-zoo>`).",
    f"{len(cards) - len(vits)} CNNs (as {', '.join(card.plays or card.name for card in cards if card.patch is None)}) "
    "start with convolutions, not a patch embedding, and have no such nullspace.",
    f"On {len(test_labels)} test images that no model saw, the {len(cards)} models are right on "
    f"{min(accuracy):.1f} to {max(accuracy):.1f} % of them, so the chapters can read how noise changes predictions "
    "that were right.",
]))

# %% [markdown]
# (setting-dataset)=
# ## The teaching dataset
#
# Ten classes of shapes, drawn by `nullspace_utils.data` with a random colour, size, position and
# rotation on a textured background with distractor strokes and pixel noise. Because every image is
# rendered from its own seeded random generator, the same call gives the same pixels on any machine,
# and no download is needed. Images are 112 x 112 pixels, float values in [0, 1].

# %% tags=[hide-input] alt="A grid of validation images, one class per column (circle, square, triangle, star, cross, ring, hexagon, arrow, ellipse, heart), four images each: one coloured shape per image, at its own size, position and rotation, on a textured, noisy background with small distractor strokes and dots."
print(f"{len(val)} images; classes:", ", ".join(profile.class_names))
plotting.class_grid(val, profile.class_names, per_class=4)
plt.show()

# %% [markdown]
# (setting-zoo)=
# ## The model zoo
#
# The paper studies ViT-S, ViT-B and ViT-L with patch size 32 on 224 x 224 images: 7 x 7 = 49 patches,
# each of $3 \cdot 32^2 = 3072$ values, embedded in $d$ = 384, 768 and 1024 dimensions. The teaching
# zoo keeps those proportions at a size a CPU handles: 112 x 112 images with patch 16 also give 49
# patches, each of $3 \cdot 16^2 = 768$ values, embedded in $d$ = 96, 192 and 256 dimensions. So $d$
# over the patch size is 1/8, 1/4 and 1/3, exactly as for the paper's models, and the nullspace
# shrinks from the small to the large model, as in the paper. The three CNNs are small members of the
# ResNet, EfficientNet and MobileNetV3 families, built with timm.
#
# All six were trained on the GPU by `scripts/train_zoo.sh`; their weights ship with the library as
# safetensors files whose sha256 is checked when they load. The table below is computed now: the
# parameters and nullspace dimensions from the loaded weights, and the accuracy on 500 images of the
# `test` split, which no model saw during training.

# %% tags=[hide-input]
rows = []
for card in cards:  # computed above, from the weights and the test images
    manifest = "—" if card.val_accuracy is None else f"{100 * card.val_accuracy:.1f}"  # zoo models only
    rows.append([f"`{card.name}`", card.plays or "—", f"{card.params / 1e6:.2f} M",
                 "convolutional" if card.patch is None else f"patch {card.patch}, d = {card.width}",
                 "—" if card.nullspace_dim is None else card.nullspace_dim,
                 f"{manifest} / {100 * card.test_accuracy:.1f} %"])
headers = ["model", "plays", "parameters", "first layer", "nullspace dim", "accuracy: val (manifest) / test (now)"]
plotting.table(rows, headers)

# %% [markdown]
# The task is easy for all six models, by design: the chapters that follow study how predictions
# *change* under noise, and that is easiest to read when the clean predictions are right.
#
# ## Exercises
#
# ```{exercise} Your own image
# :label: ex-setting-1
# Draw a single image of class "star" with `nullspace_utils.data.render_shape_image` and a generator
# of your choice, and let `zoo-vit-s` classify it. Does the prediction survive a rotation by 90°
# (`torch.rot90`)?
# ```
#
# ```{solution} ex-setting-1
# :class: dropdown
# ~~~python
# import numpy as np, torch
# from nullspace_utils.data import render_shape_image, CLASS_NAMES
# from nullspace_utils import models
# image = torch.from_numpy(render_shape_image(CLASS_NAMES.index("star"), np.random.default_rng(7)))
# model = models.load_model("zoo-vit-s")
# for k in range(4):
#     print(k, CLASS_NAMES[model(torch.rot90(image, k, dims=(1, 2))[None]).argmax().item()])
# ~~~
# The models were trained with random quarter turns, so the prediction should not change.
# ```
#
# ```{exercise} Nullspace dimensions by hand
# :label: ex-setting-2
# Before looking at the table: what nullspace dimension do you expect for a patch embedding with
# $d = 192$ outputs and $3 \cdot 16 \cdot 16$ inputs, assuming the matrix has full rank?
# ```
#
# ```{solution} ex-setting-2
# :class: dropdown
# By the rank-nullity theorem, $768 - 192 = 576$. The next chapter explains the theorem.
# ```
