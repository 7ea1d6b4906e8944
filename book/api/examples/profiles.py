import os

import torch
from PIL import Image

from nullspace_utils.data import stack_dataset
from nullspace_utils.profiles import (
    PROFILE_NAMES,
    ModelCard,
    Profile,
    eval_transform,
    get_profile,
    model_card,
    profile_device,
    spread_subset,
)

assert get_profile().name == (os.environ.get("NULLSPACE_PROFILE") or "teaching")  # what a chapter runs under
profile = get_profile("teaching")  # a Profile: the chapters' models, images and device, by name
assert isinstance(profile, Profile) and profile.name in PROFILE_NAMES
assert profile.vit_models == ("zoo-vit-s", "zoo-vit-b", "zoo-vit-l")  # smallest first, like ViT-S/B/L
assert profile.cnn_models == ("zoo-resnet", "zoo-efficientnet", "zoo-mobilenetv3")
images = profile.dataset("val", n=4)  # items (image in [0, 1], label)
image, label = images[0]
assert image.shape == (3, profile.image_size, profile.image_size) and profile.class_names[label] == "circle"
model = profile.load_model(profile.vit_models[0])  # on profile.device
assert profile.prediction_name(int(model(image[None]).argmax())) == "circle"  # output index -> name
# where models compute: $NULLSPACE_DEVICE, else the CPU for teaching and the GPU (if any) for imagenet
assert profile.device == profile_device("teaching")
if not os.environ.get("NULLSPACE_DEVICE"):
    assert profile_device("imagenet").type == ("cuda" if torch.cuda.is_available() else "cpu")
few = spread_subset(profile.dataset("val"), 10)  # 10 images spread over the whole split (ImageNette is sorted)
assert len(few) == 10
transform = eval_transform("vit_small_patch32_224")  # timm's resize and crop for that model, no normalisation
red = transform(Image.new("RGB", (320, 240), (255, 0, 0)))  # a PIL image in, a [0, 1] tensor out
assert red.shape == (3, 224, 224) and red[0].min() == 1 and red[1:].max() == 0
test_images, test_labels = stack_dataset(profile.dataset("test", n=10))  # one batch, and its labels
card = model_card(profile, "zoo-vit-s", test_images, test_labels)  # a ModelCard, as the setting chapter lists it
assert isinstance(card, ModelCard) and card.plays == "ViT-S/32" and (card.patch, card.width) == (16, 96)
assert card.nullspace_dim == 768 - 96 and 0 <= card.test_accuracy <= 1 and card.val_accuracy > 0.9
