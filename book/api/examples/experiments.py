from nullspace_utils import experiments
from nullspace_utils import fingerprint as fp
from nullspace_utils.data import stack_dataset
from nullspace_utils.profiles import get_profile

# experiments.main is the command line; each runner writes book/results/<profile>/<kind>.json (see --help):
#   python -m nullspace_utils.experiments {watermark,watermark-slsqp,approximate,robustness,fingerprint} --help
assert experiments.ROBUSTNESS_CONFIG["teaching"]["lims"] == (0.05, 0.1, 0.25, 0.5, 1.0)  # settings per profile
assert experiments.APPROXIMATE_CHECK["steps"] == 20  # the cheap point a test recomputes from the committed file

profile = get_profile("teaching")
owner = profile.load_model("zoo-vit-s")
images, labels = stack_dataset(profile.dataset("test", n=64))
secret = fp.make_fingerprint(owner, n_probes=8, amplitude=0.25, seed=0, images=images)
# the fingerprint run's check point: a copy fine-tuned for FINGERPRINT_CHECK["step"] steps, verified with logits
check = experiments.fingerprint_check(owner, secret, images, labels, experiments.FINGERPRINT_CONFIG["teaching"])
assert check["n"] == 8 and 0 <= check["kept"] <= 8 and check["queries"] == 16
try:
    experiments.main(["robustness", "--profile", "teaching", "--steps", "two"])  # a wrong argument: usage, exit 2
except SystemExit as stop:
    assert stop.code == 2
else:
    raise AssertionError("argparse accepted --steps two")
