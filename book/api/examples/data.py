from nullspace_utils import data

val = data.synthetic_dataset("val", n=20)  # the teaching images: 10 classes of drawn shapes
images, labels = data.stack_dataset(val)  # (20, 3, 112, 112) in [0, 1], (20,)
print(images.shape, [data.CLASS_NAMES[int(label)] for label in labels[:3]])
print(data.psnr(images[0], data.quantize_8bit(images[0])))  # what 8-bit storage costs, in dB
