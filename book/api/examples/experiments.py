from nullspace_utils import experiments

print(experiments.result_file("robustness", "teaching"))  # book/results/teaching/robustness.json
sweep = experiments.load_result("book/results/teaching/robustness.json", missing_ok=True)  # checkout or GitHub
if sweep is None:  # outside a checkout and offline: how to make the file
    print(experiments.how_to_produce("robustness", "teaching"))
else:
    print(sweep["provenance"]["command"], sorted(sweep["input"]))
found = experiments.chapter_result("fingerprint", "teaching")  # prints where the file came from
print(experiments.git_commit()[:10])  # recorded in every result file written by the runners
print(experiments.ROBUSTNESS_CONFIG["teaching"]["lims"])  # each runner's settings per profile
from nullspace_utils.profiles import get_profile  # noqa: E402

profile = get_profile("teaching")
suspects = experiments.fingerprint_suspects(profile, profile.load_model("zoo-vit-s"))  # the fingerprint chapter's
print({name: derived for name, (_, derived) in suspects.items()})  # name -> derived from the owner's model?
# experiments.main is the command line; the runners are one per heavy experiment (see --help):
#   python -m nullspace_utils.experiments {watermark,watermark-slsqp,approximate,robustness,fingerprint} --help
