import os

# Never touch the network in tests: timm/huggingface_hub fail fast when offline is declared.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def val_batch():
    from nullspace_utils.data import stack_dataset, synthetic_dataset

    return stack_dataset(synthetic_dataset("val", n=40))


@pytest.fixture(autouse=True)
def no_dataset_downloads(monkeypatch):
    """Tests never download: torchvision's archive download fails at once, as it would offline."""
    import urllib.error

    import torchvision.datasets.imagenette as tv_imagenette

    def offline(*args, **kwargs):
        raise urllib.error.URLError("downloads are disabled in the tests")

    monkeypatch.setattr(tv_imagenette, "download_and_extract_archive", offline)
