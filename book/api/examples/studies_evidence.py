from nullspace_utils.studies import evidence

assert evidence.separated([0.9, 0.95], [0.5, 0.6]) == 1  # every seed above every other: a difference
assert evidence.separated([0.5, 0.9], [0.8, 0.95]) == 0  # the ranges overlap: no verdict


def seed(learned_match: float, learned_loss: float, shuffled_loss: float) -> dict:
    """One seed of a sweep point, as noise_sweep.noise_point stores it (the keys the evidence reads)."""
    return {"learned": {"match": learned_match}, "shuffled": {"match": 0.5}, "final_norm": 3.0,
            "train_loss": {"initial": 6.0, "learned": learned_loss, "shuffled": shuffled_loss},
            "learning_failed": False}


point = {"lim": 2.0, "lr_choice": {"at_edge": False}, "learning_failed": False,
         "seeds": [seed(0.90, 1.0, 5.0), seed(0.92, 1.1, 5.0), seed(0.95, 3.0, 5.0)]}
assert evidence.seed_values(point, "learned") == [0.90, 0.92, 0.95]  # one value per seed
assert evidence.seed_values(point, "final_norm", "") == [3.0, 3.0, 3.0]  # a per-seed number
evidence.judge_learning(point)  # the third seed ends at 3.0 > SEED_LOSS_RATIO x 1.0: it failed to learn
assert [entry["learning_failed"] for entry in point["seeds"]] == [False, False, True] and point["learning_failed"]
assert evidence.SEED_LOSS_RATIO == 2.0
assert evidence.point_verdict(point).startswith("lim 2: learning failed, no verdict")  # no verdict on a failure
point["seeds"][2] = seed(0.95, 1.2, 5.0)
assert evidence.point_verdict(evidence.judge_learning(point)) == (
    "lim 2: learned keeps more (learned 90.0-95.0 %, shuffled 50.0-50.0 %; 3 seeds)")

# the one learning-failure rule, with its reasons: a loss that did not halve, a noise that grew past its start
point["seeds"][1] = {**seed(0.92, 1.8, 5.0), "initial_norm": 3.0}
point["seeds"][1]["train_loss"]["initial"] = 3.0  # 1.8 of 3.0 left: more than MAX_LOSS_LEFT
point["seeds"][2] = {**seed(0.95, 1.2, 5.0), "initial_norm": 2.0}  # the norm grew from 2 to 3
assert evidence.MAX_LOSS_LEFT == 0.5 and evidence.learning_failures(point) == [
    "seed 1: loss only fell to 60 % of its start", "seed 2: noise norm grew from 2 to 3"]

# a seed that passed, but within NEAR_MARGIN of the rule's edge, is named so that a verdict can say so
narrow = {"lim": 1.0, "learning_failed": False, "seeds": [{"train_loss": {"initial": 1.0, "learned": 0.48}}]}
assert evidence.NEAR_MARGIN == 0.1 and evidence.near_failures(narrow) == [0.48]

# how often two alike sets of seeds separate by chance: 3 a side 10 %, one reference against 3 seeds 50 %
assert evidence.false_separation_rate(3, 3) == 0.1 and evidence.false_separation_rate(1, 3) == 0.5

# one row of the reproducibility page: a one-word verdict (a key of VERDICTS) and one sentence from the data
row = evidence.Claim(claim="Noise |v| can be learned (§4)", chapter="approximate", figure="approximate-fig2",
                     verdict="reproduced", sentence="learned keeps 98-99 %, shuffled 66-67 %")
assert set(evidence.VERDICTS) == {"reproduced", "partly", "not reproduced", "not explained", "beyond the paper"}
assert row.markdown_row().startswith("| Noise \\|v\\| can be learned (§4) | {doc}`approximate` | **reproduced**:")
