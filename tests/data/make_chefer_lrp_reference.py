"""Run Chefer et al.'s reference LRP (CVPR 2021) on the zoo ViT-S and save its maps (see README.md here).

Usage: python make_chefer_lrp_reference.py OUT.npz NULLSPACE_VIT_CHECKOUT, from a folder outside this repository
that holds baselines/ and modules/ of hila-chefer/Transformer-Explainability, with that folder, einops and the
checkout on PYTHONPATH. Not part of the test suite: it needs the reference code, which this repository does not
ship.
"""
import sys

import numpy as np
import torch
from safetensors.torch import load_file

torch.Tensor.cuda = lambda self, *args, **kwargs: self  # generate_LRP calls .cuda(); this run is on the CPU

from baselines.ViT.ViT_explanation_generator import LRP  # noqa: E402
from baselines.ViT.ViT_LRP import VisionTransformer  # noqa: E402

from nullspace_utils import fooling, models  # noqa: E402
from nullspace_utils.data import stack_dataset, synthetic_dataset  # noqa: E402

out = sys.argv[1]
repo = sys.argv[2]
torch.manual_seed(0)
zoo = models.load_model("zoo-vit-s")
ref = VisionTransformer(img_size=112, patch_size=16, num_classes=10, embed_dim=96, depth=6, num_heads=3,
                        mlp_ratio=4.0, qkv_bias=True)
ref.norm.eps = 1e-6  # timm's ViT uses eps 1e-6 in its final norm too; the reference class defaults to 1e-5
state = load_file(f"{repo}/nullspace_utils/zoo/zoo-vit-s.safetensors")
ref.load_state_dict(state, strict=True)  # timm's key names are the reference model's
ref.eval()
mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

images, labels = stack_dataset(synthetic_dataset("val", n=40))
pairs = [(0, 7), (12, 3), (25, 18)]
sources = torch.stack([images[s] for s, _ in pairs])
targets = torch.stack([images[t] for _, t in pairs])
disguised = fooling.disguise(zoo, sources, targets, channel=0, solution="least_change", p=2).image  # L2
batch = torch.cat([sources, disguised, targets])  # 9 images: 3 sources, their disguises, 3 targets
kinds = ["source"] * 3 + ["disguised"] * 3 + ["target"] * 3

lrp = LRP(ref)
tokens, pixels, classes, logit_gap = [], [], [], []
for image in batch:
    x = ((image[None] - mean) / std).requires_grad_(True)
    with torch.no_grad():
        timm_logits = zoo(image[None])
    logit_gap.append((ref(x).detach() - timm_logits).abs().max().item())
    cls = int(timm_logits.argmax())
    classes.append(cls)
    tokens.append(lrp.generate_LRP(x, index=cls, method="transformer_attribution").detach().numpy()[0])
    pixels.append(lrp.generate_LRP(x, index=cls, method="full").detach().numpy()[0])
np.savez_compressed(out, tokens=np.stack(tokens).astype(np.float32), pixels=np.stack(pixels).astype(np.float16),
                    classes=np.array(classes), kinds=np.array(kinds), pairs=np.array(pairs),
                    input_sums=batch.double().sum((1, 2, 3)).numpy())
print("max |logit(reference) - logit(timm)|:", max(logit_gap))
print("classes:", classes)
