import tempfile
from pathlib import Path

import torch

from nullspace_utils import files, models

assert models.available_models() == ["zoo-vit-s", "zoo-vit-b", "zoo-vit-l",  # the teaching zoo (any timm name
                                     "zoo-resnet", "zoo-efficientnet", "zoo-mobilenetv3"]  # loads too)
spec = models.ZOO["zoo-vit-s"]  # a ZooSpec: how each zoo model is built, and the paper model it plays
assert isinstance(spec, models.ZooSpec) and spec.kind == "vit" and spec.plays == "ViT-S/32"
vit = models.load_model("zoo-vit-s")  # weights checked against the zoo manifest's sha256
assert isinstance(vit, models.ImageClassifier) and not vit.training  # normalisation inside; in eval mode
assert vit.mean == models.ZOO_MEAN and vit.std == models.ZOO_STD  # [0, 1] images in, logits out
manifest = models.load_manifest()
entry = manifest["models"]["zoo-vit-s"]
assert entry["val_accuracy"] > 0.9  # measured when the zoo was trained
assert files.sha256_of_file(models.ZOO_DIR / entry["file"]) == entry["sha256"]
net = models.build_zoo_network("zoo-vit-s")  # the bare timm network, untrained
wrapped = models.ImageClassifier(net, manifest["mean"], manifest["std"], name="untrained")
assert wrapped(torch.rand(1, 3, 112, 112)).shape == (1, 10)
assert models.unwrap(wrapped) is net and models.unwrap(net) is net  # the timm network inside, or the model itself
with models.evaluating(wrapped.train()) as inside:  # eval mode for the block; training mode again after it
    assert not inside.training
assert wrapped.training
if torch.cuda.is_available():
    vit = vit.to("cuda")  # computes there; CPU images in, CPU logits out
assert models.model_device(vit).type == ("cuda" if torch.cuda.is_available() else "cpu")
with models.exact_float32():  # full float32 on CUDA in the block: TF32's rounding would hide exact invariances
    assert vit(torch.rand(2, 3, 112, 112)).device.type == "cpu"
    assert torch.get_float32_matmul_precision() == "highest"
with models.tf32_matmuls():  # the opposite: faster TF32 products, where a float64 step restores exactness later
    assert torch.get_float32_matmul_precision() == "high"
try:
    models.load_model("zoo-vit-xl")
except models.UnknownModelError as error:
    assert "Close matches: zoo-vit-l" in str(error)
else:
    raise AssertionError("an unknown name must be refused")
corrupt = Path(tempfile.mkdtemp()) / "corrupt.safetensors"
corrupt.write_bytes(b"not a safetensors file")
try:
    models.load_model("zoo-vit-s", weights=corrupt)  # weights= a local file, for zoo and timm models alike
except models.WeightsError as error:  # also a file that does not exist, or of the wrong shapes
    assert str(corrupt) in str(error)
else:
    raise AssertionError("a corrupt weight file must be refused")
try:
    timm_vit = models.load_model("vit_small_patch32_224")  # timm's pretrained weights, from the Hugging Face Hub
except models.WeightsUnavailableError as error:  # offline: at once, and says how to use a downloaded file
    assert "weights=" in str(error)
    timm_vit = models.load_model("vit_small_patch32_224", pretrained=False)  # random weights
assert timm_vit.name == "vit_small_patch32_224" and timm_vit.mean == (0.5, 0.5, 0.5)  # timm's normalisation
# models.NormalisationUnknownError: a model whose mean and std cannot be read (see the exact module's example)
try:
    vit((torch.rand(1, 3, 112, 112) * 255).to(torch.uint8))  # 8-bit images: refused, with the fix
except TypeError as error:
    assert "/ 255" in str(error)
else:
    raise AssertionError("8-bit images must be refused")
as_whole_numbers = (torch.rand(2, 3, 112, 112) * 255).round()  # float, but an 8-bit image's values
try:
    models.check_not_8bit(as_whole_numbers, name="my images")  # what the model runs on every call
except ValueError as error:
    assert "divide by 255" in str(error)
else:
    raise AssertionError("whole numbers up to 255 must be refused")
with models.inputs_checked():  # for a loop over images tested once already: the model skips the test
    assert vit(as_whole_numbers).shape == (2, 10)  # wrong input, accepted: the block turned the test off
