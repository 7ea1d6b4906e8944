import numpy as np

from nullspace_utils import data

val = data.synthetic_dataset("val", n=20)  # a SyntheticShapes: 10 classes of drawn shapes, seeded per split
images, labels = data.stack_dataset(val)  # (20, 3, 112, 112) in [0, 1], (20,)
print(images.shape, [data.CLASS_NAMES[int(label)] for label in labels[:3]])
custom = data.SyntheticShapes(5, size=64, seed=1)  # any number of images, any size
star = data.render_shape_image(3, np.random.default_rng(0), size=64)  # one (64, 64, 3) star as numpy
print(data.check_images(images).batched)  # True: the library's image convention holds
data.check_finite(images - 0.5, name="noise")  # any values, but no NaN or infinity (noise, disguised images)
print(data.psnr(images[0], data.quantize_8bit(images[0])))  # what 8-bit storage costs, in dB
path = data.save_image(images[0], "/tmp/shape.png")  # 8-bit PNG (or .npy, lossless)
print(data.load_image(path, size=112).shape)  # (3, 112, 112) in [0, 1]
with data.atomic_write("/tmp/labels.txt") as temporary:  # written beside the target, renamed when complete
    temporary.write_text(" ".join(str(int(label)) for label in labels))
print(data.data_dir())  # $NULLSPACE_DATA, else ~/.cache/nullspace-vit: where ImageNette goes
try:
    data.imagenette("val", download=False)  # the imagenet profile's images (torchvision's Imagenette)
except data.DatasetUnavailableError as error:
    print(error)  # says where to put imagenette2-320.tgz by hand
fake = data.write_fake_imagenette("/tmp/fake-imagenette", per_class=1)  # ImageNette's layout, noise images
print(len(data.imagenette("val", root=fake, download=False)))  # 10: one per class, read like the real one
