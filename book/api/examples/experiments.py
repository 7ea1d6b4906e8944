from nullspace_utils import experiments
from nullspace_utils.studies import robustness

# experiments.main is the command line over the studies; each sub-command writes book/results/<profile>/<kind>.json:
#   python -m nullspace_utils.experiments {watermark,watermark-slsqp,watermark-max-noise,approximate,robustness,
#                                          robustness-transfer,fingerprint,finetune,finetune-corruptions,merge} --help
runner, kind = experiments.RUNNERS["robustness"]  # the study it runs and the result file it writes
assert kind is robustness.RESULT and callable(runner)
assert set(experiments.RUNNERS) == {"watermark", "watermark-slsqp", "watermark-max-noise", "approximate",
                                    "robustness", "robustness-transfer", "fingerprint", "finetune",
                                    "finetune-corruptions", "merge"}
try:
    experiments.main(["robustness", "--profile", "teaching", "--steps", "two"])  # a wrong argument: usage, exit 2
except SystemExit as stop:
    assert stop.code == 2
else:
    raise AssertionError("argparse accepted --steps two")
try:
    experiments.main(["approximate", "--device", "cpu", "--models", "zoo-vit-xl", "--out", "never.json"])
except SystemExit as stop:  # a request the study cannot honour: status 2, one line saying why, nothing written
    assert stop.code == 2
else:
    raise AssertionError("an unknown model was accepted")
