"""The metrics module: every metric against a hand-computed small case, and the model-level functions'
batching, modes and flags."""

import math

import pytest
import torch
import torch.nn as nn

from nullspace_utils import metrics

# Two images, three classes: the clean logits and the changed ones.
CLEAN = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.5, 0.3]])
CHANGED = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.1, 0.6]])


def softmax_entry(logits: list[float], index: int) -> float:
    """softmax(logits)[index], by hand."""
    return math.exp(logits[index]) / sum(math.exp(value) for value in logits)


# |Δp| of the clean top-1 class: class 0 for image 0, class 1 for image 1
PROB_CHANGES = [abs(softmax_entry([0.9, 0.1, 0.0], 0) - softmax_entry([0.9, 0.1, 0.5], 0)),
                abs(softmax_entry([0.2, 0.5, 0.3], 1) - softmax_entry([0.2, 0.1, 0.6], 1))]


class PixelLogits(nn.Module):
    """A model whose logits are its (B, 3, 1, 1) input's pixels, behind a dropout that only eval mode switches off."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 3, bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(3))
        self.dropout = nn.Dropout(p=0.9)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(images.flatten(1)))


def as_images(logits: torch.Tensor) -> torch.Tensor:
    """The (B, 3, 1, 1) images for which PixelLogits gives ``logits`` (all values lie in [0, 1])."""
    return logits[:, :, None, None].clone()


def test_per_image_metrics_by_hand():
    assert metrics.top1_kept(CLEAN, CHANGED).tolist() == [True, False]  # image 1: argmax 1 -> 2
    assert torch.allclose(metrics.max_logit_change(CLEAN, CHANGED), torch.tensor([0.5, 0.4]))
    assert torch.allclose(metrics.relative_logit_change(CLEAN, CHANGED), torch.tensor([0.5 / 0.9, 0.4 / 0.5]))
    assert torch.allclose(metrics.squared_logit_change(CLEAN, CHANGED),
                          torch.tensor([0.25 / 3, (0.16 + 0.09) / 3]))
    assert torch.allclose(metrics.top1_prob_change(CLEAN, CHANGED), torch.tensor(PROB_CHANGES))
    assert metrics.top1_correct(CLEAN, torch.tensor([0, 2])).tolist() == [True, False]


def test_per_image_metrics_of_an_unchanged_output_are_zero():
    assert metrics.top1_kept(CLEAN, CLEAN).all()
    for metric in (metrics.max_logit_change, metrics.relative_logit_change, metrics.squared_logit_change,
                   metrics.top1_prob_change):
        assert torch.equal(metric(CLEAN, CLEAN), torch.zeros(2)), metric.__name__


def test_prob_change_follows_the_clean_top1_class_not_the_changed_one():
    clean = torch.tensor([[2.0, 0.0]])
    changed = torch.tensor([[0.0, 2.0]])  # the classes swap: p of class 0 falls from s to 1 - s
    s = softmax_entry([2.0, 0.0], 0)
    assert metrics.top1_prob_change(clean, changed).item() == pytest.approx(s - (1 - s))


def test_relative_change_of_all_zero_logits_is_finite():
    assert metrics.relative_logit_change(torch.zeros(1, 3), torch.zeros(1, 3)).item() == 0.0
    assert metrics.relative_logit_change(torch.zeros(1, 3), torch.ones(1, 3)).item() == pytest.approx(1e12)


def test_shape_errors():
    with pytest.raises(ValueError, match="classes"):
        metrics.top1_kept(CLEAN, CHANGED[:1])
    with pytest.raises(ValueError, match="classes"):
        metrics.max_logit_change(CLEAN[0], CHANGED[0])
    with pytest.raises(ValueError, match="labels"):
        metrics.top1_correct(CLEAN, torch.tensor([0, 1, 2]))


def test_prediction_changes_average_over_batches():
    changes = metrics.PredictionChanges()
    changes.add(CLEAN[:1], CHANGED[:1])  # two batches of one image each
    changes.add(CLEAN[1:], CHANGED[1:])
    assert len(changes) == 2
    assert changes.match == 0.5
    assert changes.logit_mse == pytest.approx((0.25 / 3 + 0.25 / 3) / 2)
    assert changes.prob_change == pytest.approx(sum(PROB_CHANGES) / 2)
    assert changes.logit_change_max == pytest.approx(0.5)
    assert changes.logit_change_mean == pytest.approx(0.45)
    assert changes.summary() == {"match": changes.match, "prob_change": changes.prob_change,
                                 "logit_change_max": changes.logit_change_max,
                                 "logit_change_mean": changes.logit_change_mean}
    with pytest.raises(ValueError, match="no images"):
        _ = metrics.PredictionChanges().match


def test_model_logits_batches_in_eval_mode_and_leaves_the_model_as_it_was():
    model = PixelLogits().train()
    images = as_images(CLEAN.repeat(3, 1))  # six images
    logits = metrics.model_logits(model, images, batch_size=4)  # batches of 4 and 2
    assert torch.equal(logits, CLEAN.repeat(3, 1))  # no dropout: eval mode
    assert logits.dtype == torch.float32 and logits.device == torch.device("cpu")
    assert model.training and all(parameter.requires_grad for parameter in model.parameters())
    assert not logits.requires_grad
    with pytest.raises(ValueError, match="images\\[None\\]"):
        metrics.model_logits(model, images[0])


def test_model_logits_of_a_float16_model():
    model = PixelLogits().half()
    logits = metrics.model_logits(model, as_images(CLEAN))  # float32 images are cast to the model's dtype
    assert logits.dtype == torch.float32 and torch.allclose(logits, CLEAN, atol=1e-3)


def test_compare_predictions_by_hand():
    model = PixelLogits().train()
    result = metrics.compare_predictions(model, as_images(CLEAN), as_images(CHANGED), batch_size=1)
    assert result["match"] == 0.5
    assert result["prob_change"] == pytest.approx(sum(PROB_CHANGES) / 2)
    assert result["logit_change_max"] == pytest.approx(0.5)
    assert result["logit_change_mean"] == pytest.approx(0.45)
    assert model.training
    with pytest.raises(ValueError, match="same shape"):
        metrics.compare_predictions(model, as_images(CLEAN), as_images(CHANGED)[:1])


def test_logit_change_by_hand():
    model = PixelLogits()
    images = as_images(CLEAN)
    shared = torch.tensor([0.0, 0.0, 0.25])[:, None, None]  # (C, H, W): the same noise on every image
    assert torch.allclose(metrics.logit_change(model, images, shared), torch.tensor([0.25, 0.25]))
    own = as_images(CHANGED) - images  # (B, C, H, W): one noise per image
    assert torch.allclose(metrics.logit_change(model, images, own, batch_size=1), torch.tensor([0.5, 0.4]))
    with pytest.raises(ValueError, match="NaN"):
        metrics.logit_change(model, images, shared * float("nan"))
    with pytest.raises(ValueError):
        metrics.logit_change(model, images * 3, shared)  # not in [0, 1]


def test_accuracy_by_hand_and_on_a_subset_of_classes():
    model = PixelLogits()
    images = as_images(CLEAN)  # predictions 0 and 1
    assert metrics.accuracy(model, images, torch.tensor([0, 1])) == 1.0
    assert metrics.accuracy(model, images, torch.tensor([0, 2])) == 0.5
    # labels that index classes (2, 1): image 0 scores 0.0 and 0.1 (predicts label 1), image 1 scores 0.3
    # and 0.5 (predicts label 1)
    assert metrics.accuracy(model, images, torch.tensor([1, 1]), classes=(2, 1)) == 1.0
    assert metrics.accuracy(model, images, torch.tensor([0, 1]), classes=(2, 1)) == 0.5


def test_accuracy_of_a_zoo_model_in_batches(vit_s, val_batch):
    images, labels = val_batch
    with torch.no_grad():
        expected = (vit_s(images).argmax(1) == labels).float().mean().item()
    assert metrics.accuracy(vit_s, images, labels, batch_size=7) == expected >= 0.9


def test_psnr_by_hand():
    image = torch.full((3, 4, 4), 0.5)
    assert metrics.psnr(image, image) == math.inf
    assert metrics.psnr(image, image + 0.1) == pytest.approx(20.0)  # 10 log10(1 / 0.01)
    assert metrics.psnr(image * 255, image * 255 + 25.5, peak=255.0) == pytest.approx(20.0)
    half = image.clone()
    half[0] += 0.1  # a third of the values off by 0.1: MSE 0.01 / 3
    assert metrics.psnr(image, half) == pytest.approx(10 * math.log10(300))


def test_compare_maps_by_hand():
    maps = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    same = metrics.compare_maps(maps, maps)
    assert same == {"max_relative_difference": 0.0, "correlation": pytest.approx(1.0)}
    flipped = metrics.compare_maps(maps, -maps)
    assert flipped["correlation"] == pytest.approx(-1.0) and flipped["max_relative_difference"] == pytest.approx(2.0)
    shifted = metrics.compare_maps(maps, maps + 1)  # correlation ignores an offset; the difference does not
    assert shifted["correlation"] == pytest.approx(1.0) and shifted["max_relative_difference"] == pytest.approx(0.25)
    # a batch: the largest relative difference over maps, the mean correlation
    batch = metrics.compare_maps(torch.cat([maps, maps]), torch.cat([maps, -maps]))
    assert batch["max_relative_difference"] == pytest.approx(2.0) and batch["correlation"] == pytest.approx(0.0)


def test_model_level_metrics_leave_the_backend_flags_as_they_were(tf32_allowed, flags_seen):
    spy = PixelLogits()
    inside = flags_seen(spy)
    metrics.compare_predictions(spy, as_images(CLEAN), as_images(CHANGED))
    assert inside and all(flags == ("highest", False) for flags in inside)  # full float32 inside
    assert torch.get_float32_matmul_precision() == "high" and torch.backends.cudnn.allow_tf32


def test_show_progress(capsys):
    model = PixelLogits()
    metrics.compare_predictions(model, as_images(CLEAN), as_images(CHANGED), batch_size=1)
    quiet = capsys.readouterr()
    assert quiet.out == "" and quiet.err == ""  # no bar by default: notebook outputs stay as they are
    metrics.compare_predictions(model, as_images(CLEAN), as_images(CHANGED), batch_size=1, show_progress=True)
    shown = capsys.readouterr()
    assert shown.out == "" and "comparing predictions" in shown.err and "2/2" in shown.err
