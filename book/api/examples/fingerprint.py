import tempfile
from pathlib import Path

import torch

from nullspace_utils import data, metrics, models
from nullspace_utils import fingerprint as fp

mine = models.load_model("zoo-vit-s")
my_images, my_labels = data.stack_dataset(data.synthetic_dataset("val", n=40))  # probes of several classes
secret = fp.make_fingerprint(mine, n_probes=10, amplitude=0.25, images=my_images, seed=0)  # a Fingerprint
private = Path(tempfile.mkdtemp()) / "mine.fingerprint"
secret.save(private)  # one file; keep it private
secret = fp.Fingerprint.load(private)
other = models.load_model("zoo-vit-s", weights=models.ZOO_DIR / "seeds" / "zoo-vit-s-seed1.safetensors")
result = fp.verify(secret, fp.as_query(mine))  # a Verification: is_yours, kept / n, p_value, changes
assert isinstance(result, fp.Verification) and result.is_yours and result.kept == result.n == 10
assert result.summary().startswith("yours: 10/10 probes kept (logits)")
stranger = fp.verify(secret, fp.as_query(other, "label"), output="label")  # another seed's model, labels only
assert not stranger.is_yours and stranger.summary().startswith("not shown to be yours")
assert fp.probes_needed(1e-3) == 10  # 10 probes, all kept, give p <= 0.001 at the default null rate 0.5
# the control: the same suspect under a random noise of the fingerprint's energy must change its answer
control = fp.control_noise(secret)  # the noises' values shuffled, random signs: (10, 3, 112, 112)
assert result.control_changes.min() > result.tol and result.n == result.probes == 10  # the owner answers it
constant = fp.verify(secret, lambda images: torch.zeros(len(images), 10))  # a suspect that ignores its input
assert constant.verdict == fp.INCONCLUSIVE and not constant.is_yours
assert fp.MAX_BISECTION_STEPS == 24  # label mode: beyond 24 steps the bracket's two images are equal in float32
dropout = models.LocalRandomState(seed=0)  # dropout drawn from a stream of its own, as tune_copy does
with dropout.active():
    drawn = torch.rand(2)  # the caller's global random state is as it was after the block
# what a thief might try, and what it costs them
defended = fp.NoisyInput(mine, sigma=0.01)  # fresh input noise on every query
assert metrics.accuracy(defended, my_images, my_labels) > 0.9  # still a good model...
assert not fp.verify(secret, fp.as_query(defended)).is_yours  # ...that no longer answers like the owner's
for step, copy in fp.tune_copy(mine, my_images, my_labels, part="patch_embed", steps=2, lr=1e-4):
    assert step in (1, 2) and fp.verify(secret, fp.as_query(copy)).kept <= 10
assert fp.roc_auc([1.0, 0.9], [0.0, 0.1]) == 1.0  # perfect separation
assert fp.roc_curve([1.0, 0.9], [0.0, 0.1]) == ([0.0, 0.0, 0.0, 0.5, 1.0], [0.0, 0.5, 1.0, 1.0, 1.0])
assert fp.describe(secret).startswith("10 probes of 3 × 112 × 112")  # sizes and settings in words, no tensors
# why another ViT is caught: it shares most of the owner's nullspace, and answers the small rest (the leak)
assert fp.shared_nullspace_dimension(mine, other) == 672 + 672 - 768  # as many dimensions as rank-nullity forces
seen, hidden = fp.split_noise(secret, other)  # the part of each noise patch it sees (row space) and the rest
leak = fp.leak_energy(secret, other)  # per probe, the energy share of the noise in its row space
assert 0.02 < leak.min() and leak.max() < 0.3 and fp.leak_energy(secret, mine).max() < 1e-12
assert fp.verify(fp.with_leak(secret, other, 0.0), fp.as_query(other)).kept == 10  # no leak: it keeps every probe
assert fp.probes_to_claim(16) == 15  # of 16 probes, 15 kept make a claim at alpha 0.001
