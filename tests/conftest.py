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
