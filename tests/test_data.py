import numpy as np
import pytest
import torch

from nullspace_utils import data


def test_same_arguments_give_identical_images():
    a = data.synthetic_dataset("val", n=5)
    b = data.synthetic_dataset("val", n=5)
    for i in range(5):
        assert torch.equal(a[i][0], b[i][0])
        assert a[i][1] == b[i][1] == i % 10


def test_image_does_not_depend_on_split_size():
    assert torch.equal(data.synthetic_dataset("train", n=3)[2][0], data.synthetic_dataset("train", n=100)[2][0])


def test_splits_are_disjoint():
    train = data.synthetic_dataset("train", n=10)
    val = data.synthetic_dataset("val", n=10)
    assert not any(torch.equal(train[i][0], val[i][0]) for i in range(10))
    assert len(set(data.SPLIT_SEEDS.values())) == len(data.SPLIT_SEEDS)


def test_shapes_dtype_range_and_balance():
    ds = data.synthetic_dataset("val", n=20, size=64)
    images, labels = data.stack_dataset(ds)
    assert images.shape == (20, 3, 64, 64) and images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1
    assert torch.bincount(labels, minlength=10).tolist() == [2] * 10
    assert ds.classes == list(data.CLASS_NAMES) and len(ds) == 20


def test_default_sizes_and_repr():
    assert len(data.synthetic_dataset("train")) == 20_000
    assert len(data.synthetic_dataset("val")) == 2_000
    assert "val" in repr(data.synthetic_dataset("val", n=1))


def test_images_are_not_trivial():
    images, _ = data.stack_dataset(data.synthetic_dataset("val", n=10))
    # textured: every image uses a wide range of values and differs from the others
    assert all(float(img.std()) > 0.05 for img in images)
    assert float((images[0] - images[1]).abs().mean()) > 0.05


@pytest.mark.parametrize("kwargs,match", [({"split": "nope"}, "split"), ({"split": "val", "n": 0}, "positive")])
def test_bad_dataset_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.synthetic_dataset(**kwargs)


def test_index_errors_and_class_index():
    ds = data.synthetic_dataset("val", n=3)
    with pytest.raises(IndexError):
        ds[3]
    with pytest.raises(ValueError, match="class_index"):
        data.render_shape_image(10, np.random.default_rng(0))


def test_check_images_messages():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        data.check_images(torch.full((3, 4, 4), 2.0))
    with pytest.raises(TypeError, match="255"):
        data.check_images(torch.zeros((3, 4, 4), dtype=torch.uint8))
    with pytest.raises(ValueError, match="shape"):
        data.check_images(torch.zeros(4, 4))
    assert data.check_images(torch.zeros(2, 3, 4, 4)).batched


def test_psnr_and_quantize():
    x = torch.full((3, 4, 4), 0.5)
    assert data.psnr(x, x) == float("inf")
    assert data.psnr(x, x + 0.1) == pytest.approx(20.0)
    q = data.quantize_8bit(torch.tensor([[[0.0, 0.5, 1.0, 0.001]]]))
    assert torch.allclose(q * 255, torch.round(q * 255))
    assert (q - torch.tensor([[[0.0, 0.5, 1.0, 0.001]]])).abs().max() <= 0.5 / 255 + 1e-7
