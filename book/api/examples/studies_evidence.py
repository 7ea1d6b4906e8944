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
