from nullspace_utils import models

print(models.available_models()[:6])  # the teaching zoo first, then timm names
vit = models.load_model("zoo-vit-s")  # weights checked against the zoo manifest's sha256
print(vit)  # an ImageClassifier: normalisation inside, [0, 1] images in, logits out
