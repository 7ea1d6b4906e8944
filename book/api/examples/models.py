import torch

from nullspace_utils import models

print(models.available_models()[:6])  # the teaching zoo first, then timm names
vit = models.load_model("zoo-vit-s")  # weights checked against the zoo manifest's sha256
print(vit)  # an ImageClassifier: normalisation inside, [0, 1] images in, logits out
manifest = models.load_manifest()
print(manifest["models"]["zoo-vit-s"]["val_accuracy"], models.sha256_of_file(models.ZOO_DIR / "zoo-vit-s.safetensors"))
net = models.build_zoo_network("zoo-vit-s")  # the bare timm network, untrained
wrapped = models.ImageClassifier(net, manifest["mean"], manifest["std"], name="untrained")
print(wrapped(torch.rand(1, 3, 112, 112)).shape)  # (1, 10)
assert models.unwrap(wrapped) is net and models.unwrap(net) is net  # the timm network inside, or the model itself
with models.evaluating(wrapped.train()) as inside:  # eval mode for the block; training mode again after it
    assert not inside.training
assert wrapped.training
if torch.cuda.is_available():
    vit = vit.to("cuda")  # computes there; CPU images in, CPU logits out
print(models.model_device(vit), vit(torch.rand(2, 3, 112, 112)).device)
models.disable_tf32()  # full float32 on CUDA: TF32's rounding would hide the exact invariances
try:
    models.load_model("zoo-vit-xl")
except models.UnknownModelError as error:
    print(error)  # lists close matches
# models.WeightsError: a weights file of the wrong shape or corrupt; models.WeightsUnavailableError: offline
# (at once, when the Hugging Face Hub cannot be reached); models.NormalisationUnknownError: no mean and std
try:
    vit((torch.rand(1, 3, 112, 112) * 255).to(torch.uint8))  # 8-bit images: refused, with the fix
except TypeError as error:
    print(error)
# models.ZooSpec: how each zoo model is built (kind, the paper model it plays, a description)
