from nullspace_utils import experiments

sweep = experiments.load_result("book/results/teaching/robustness.json", missing_ok=True)
if sweep is None:  # outside a checkout: how to make the file
    print(experiments.how_to_produce("robustness", "teaching"))
else:
    print(sweep["provenance"]["command"], sorted(sweep["input"]))
