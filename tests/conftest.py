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


@pytest.fixture(scope="session")
def vit_s():
    """The zoo's ViT-S (`models.load_model("zoo-vit-s")`), loaded once for the whole session and shared by every
    test file. Tests must not modify it (weights, requires_grad, train/eval mode, hooks left on, moving it to
    another device): a test that changes the model takes `copy.deepcopy(vit_s)` first."""
    from nullspace_utils import models

    return models.load_model("zoo-vit-s")


@pytest.fixture(autouse=True)
def vit_s_left_as_it_was(request):
    """After every test that used the shared ``vit_s`` (directly or through another fixture): it is still in eval
    mode, trainable, without gradients or hooks left on, so one test's change cannot leak into another's."""
    yield
    if "vit_s" not in request.fixturenames:
        return
    model = request.getfixturevalue("vit_s")
    hooks = sum(len(module._forward_hooks) + len(module._forward_pre_hooks) for module in model.modules())
    problems = [problem for problem, found in (("in training mode", model.training),
                                                ("with frozen parameters", not all(p.requires_grad for p in model.parameters())),
                                                ("with gradients", any(p.grad is not None for p in model.parameters())),
                                                (f"with {hooks} hooks", hooks > 0)) if found]
    assert not problems, (f"{request.node.nodeid} left the shared vit_s {', '.join(problems)}: "
                          "change a copy.deepcopy(vit_s) instead")


def _tf32_flags() -> tuple:
    return torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32


@pytest.fixture
def restore_tf32_flags():
    """Whatever a test does to the TF32 flags, later tests see the process's own settings."""
    matmul, cudnn = _tf32_flags()
    yield
    torch.set_float32_matmul_precision(matmul)
    torch.backends.cudnn.allow_tf32 = cudnn


@pytest.fixture
def tf32_allowed(restore_tf32_flags):
    """TF32 allowed, as a caller might have set it (matmul precision "high", cuDNN TF32 on); restored afterwards."""
    torch.set_float32_matmul_precision("high")
    torch.backends.cudnn.allow_tf32 = True


@pytest.fixture
def flags_seen():
    """`flags_seen(model)` returns a list that gets the TF32 flags (matmul precision, cuDNN TF32) at each forward
    pass of `model`; the hooks are removed when the test ends."""
    handles = []

    def watch(model):
        seen: list = []
        handles.append(model.register_forward_pre_hook(lambda module, inputs: seen.append(_tf32_flags())))
        return seen

    yield watch
    for handle in handles:
        handle.remove()


@pytest.fixture(autouse=True)
def no_dataset_downloads(monkeypatch):
    """Tests never download: torchvision's archive download fails at once, as it would offline."""
    import urllib.error

    import torchvision.datasets.imagenette as tv_imagenette

    def offline(*args, **kwargs):
        raise urllib.error.URLError("downloads are disabled in the tests")

    monkeypatch.setattr(tv_imagenette, "download_and_extract_archive", offline)


@pytest.fixture()
def quick_solver(monkeypatch):
    """A stand-in for watermark.embed that returns the image unchanged at once (the CLI tests' fast solver)."""
    from nullspace_utils import cli

    def embed(model, image, mark, **kwargs):
        return cli.watermark.WatermarkResult(image=image.clone(), noise=torch.zeros_like(image),
                                             objective=torch.tensor(0.0), embedding_residual=0.0,
                                             box_violation=0.0, seconds=0.0, solver="quick", iterations=0)
    monkeypatch.setattr(cli.watermark, "embed", embed)
