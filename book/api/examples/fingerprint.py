from nullspace_utils import fingerprint as fp
from nullspace_utils import data, models

mine = models.load_model("zoo-vit-s")
my_images, _ = data.stack_dataset(data.synthetic_dataset("val", n=40))  # probes of several classes
secret = fp.make_fingerprint(mine, n_probes=10, amplitude=0.25, images=my_images, seed=0)
secret.save("/tmp/mine.fingerprint")  # one file, keep it private; fp.Fingerprint.load reads it back
other = models.load_model("zoo-vit-s", weights=models.ZOO_DIR / "seeds" / "zoo-vit-s-seed1.safetensors")
print(fp.verify(secret, fp.as_query(mine)).summary())  # yours: 10/10 probes kept ...
print(fp.verify(secret, fp.as_query(other, "label"), output="label").summary())  # not shown to be yours
