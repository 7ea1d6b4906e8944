import json

import numpy as np

from nullspace_utils import files, models
from nullspace_utils.data import SPLIT_SEEDS, synthetic_dataset
from nullspace_utils.zoo import train


def test_training_script_end_to_end_on_cpu(tmp_path):
    cache = tmp_path / "train.npy"
    train.main(["data", "--n", "40", "--out", str(cache), "--workers", "1"])
    pixels = np.load(cache)
    assert pixels.shape == (40, 3, 112, 112) and pixels.dtype == np.uint8
    # the cache holds the train split's own images, rounded to 8 bits
    first = synthetic_dataset("train", n=1)[0][0].numpy()
    assert np.abs(pixels[0] / 255.0 - first).max() <= 0.5 / 255 + 1e-6
    # the splits are drawn from different seeds: no validation image is a training image
    val_first = synthetic_dataset("val", n=1)[0][0].numpy()
    assert not np.allclose(first, val_first) and SPLIT_SEEDS["train"] != SPLIT_SEEDS["val"]

    train.main(["train", "--models", "zoo-mobilenetv3", "--cache", str(cache), "--out-dir", str(tmp_path),
                "--epochs", "1", "--batch-size", "20", "--warmup-epochs", "1", "--val-size", "20", "--device", "cpu"])
    train.main(["manifest", "--out-dir", str(tmp_path), "--command", "test"])
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    entry = manifest["models"]["zoo-mobilenetv3"]
    assert entry["sha256"] == files.sha256_of_file(tmp_path / entry["file"])
    assert entry["training"]["epochs"] == 1 and 0.0 <= entry["val_accuracy"] <= 1.0
    model = models.load_model("zoo-mobilenetv3", weights=tmp_path / entry["file"])
    assert model.net.classifier.out_features == 10
