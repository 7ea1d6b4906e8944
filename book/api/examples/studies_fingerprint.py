from dataclasses import replace

from nullspace_utils import fingerprint as fp
from nullspace_utils.data import stack_dataset
from nullspace_utils.profiles import get_profile
from nullspace_utils.studies import common, fingerprint

# the settings of each profile, exactly as the committed result file stores them under "config"
settings = fingerprint.SETTINGS["teaching"]
assert isinstance(settings, fingerprint.FingerprintSettings) and settings.n_probes == 16
assert settings.fine_tune == fingerprint.ThiefTuning(images=2_000, steps=200, batch_size=32,
                                                     checkpoints=(0, 1, 2, 5, 10, 20, 50, 100, 200),
                                                     lr=fingerprint.ThiefRates(all=1e-4, patch_embed=1e-4, head=1e-3),
                                                     seeds=(0, 1, 2))
assert settings.fine_tune.lr.of("head") == 1e-3  # a new head learns faster than the copied layers
assert (settings.fade_fingerprints, settings.defence_seeds) == (3, (0, 1, 2))  # fade and defence: 3 x 3 runs a point
assert fingerprint.CHECK == fingerprint.FingerprintCheckPoint(part="all", step=5, fingerprint_seed=0, tune_seed=0)
committed = fingerprint.RESULT.read(fingerprint.RESULT.path("teaching"))  # validated against FingerprintResult
assert committed["config"] == common.settings_dict(settings)
assert set(committed) == set(fingerprint.FingerprintResult.__annotations__)
assert set(committed["config"]) == set(fingerprint.FingerprintConfig.__annotations__)
assert set(committed["config"]["fine_tune"]) == set(fingerprint.ThiefTuningConfig.__annotations__)
assert set(committed["check"]) == set(fingerprint.FingerprintCheck.__annotations__)

# the readers the chapter shows the committed file with
assert fingerprint.settings_line(committed) == "8 fingerprints of 16 probes, amplitude 0.25, tol 0.001"
table = fingerprint.suspect_rows(committed)  # the eight-secret table: probes kept, lowest–highest (claims)
assert table[0] == ["owner", "yes", "99.0 %", "100–100 % (8/8)", "100–100 % (8/8)", "100–100 % (8/8)"]
assert fingerprint.claim_lines(committed)[3] == "int8 copy: claimed 'yours' with logits 0/8, probs 0/8, label 1/8"
leak = fingerprint.leak_rows(committed)  # per ViT suspect: nullity, dimensions shared with the owner's, the leak
assert leak[4][:4] == ["zoo-vit-s-seed1", "no", "672", "576 (≥ 576)"]  # shares all that rank-nullity forces
window = fingerprint.tolerance_window(committed)  # the owner's changes and the unrelated ViTs', around the tolerance
assert window["owner_largest"] < window["tol"] and window["unrelated_within"] == 1  # one unrelated probe in 640 within
assert fingerprint.unrelated_claims(committed) == 0 and fingerprint.unrelated_rates(committed)["label"] == 0.0
bullets = fingerprint.findings(committed)  # the chapter's "What we found" box: copies, quantised, fine-tuning, noise
assert len(bullets) == 4 and bullets[0].startswith("**Exact copies are proven, strangers are not.**")
curves = fingerprint.roc_curves(committed)  # output -> {"all derived", "without int8"} -> (fpr, tpr, area)
assert set(curves) == set(fp.OUTPUTS) and curves["label"]["all derived"][2] == 1.0  # labels separate all
panels = fingerprint.fade_panels(committed)  # fingerprint.range_panels' input, one band per tuned part
assert [panel["title"] for panel in panels][-1] == "accuracy of the thief's model"
assert set(panels[0]["series"]) == set(fingerprint.TUNED_PARTS.values())
steps = fingerprint.step_ranges(committed, "head", "logits")  # per checkpoint: step, kept in each run, claims
assert steps[-1][0] == 200 and len(steps[-1][1]) == 9  # 3 fine-tuning seeds x 3 fingerprints
assert fingerprint.fade_lines(committed)[1].startswith("- **a new head only**: after 1 step(s) logits keep 100 %")
assert fingerprint.defence_rows(committed)[0] == ["0", "99.0 %", "100 % (9/9)", "100 % (9/9)", "100 % (9/9)"]
assert fingerprint.fade_rows(committed)[0][:2] == ["everything", "0"]  # per part and step: ranges and claims
assert fingerprint.runs_line(committed).startswith("9 runs per point")
assert fingerprint.defence_thresholds(committed)["label"] == 1e-4  # no run claimed from this noise std on
assert fingerprint.defence_lines(committed)[2].startswith("- label: no run claimed from std 0.0001 on")
assert fingerprint.leak_lines(committed)[0].startswith("owner's architecture, other seeds: nullity 672, shares 576")
leak_figure = fingerprint.leak_panels(committed)  # plotting.line_panels' input: change vs leak, kept vs leak
assert [panel["title"] for panel in leak_figure][0] == "each probe: logit change vs leak"
run = committed["fade"]["all"][0]  # a FingerprintFadeRun: one fine-tuning seed at every checkpoint
assert set(run) == set(fingerprint.FingerprintFadeRun.__annotations__)
assert set(committed["defence"][0]) == set(fingerprint.FingerprintDefenceRun.__annotations__)
figure = fingerprint.range_panels(panels, xlabel="steps")  # bands over the runs, the median as a line
assert len(figure.axes) == 4
claim, = fingerprint.claims(committed)  # the reproducibility page's row for §9
assert claim.verdict == "beyond the paper" and claim.figure == "fingerprint-suspects"

# the suspects, verified live: rows shaped as the result file's
profile = get_profile("teaching")
owner = profile.load_model(profile.vit_models[0])
suspects = fingerprint.make_suspects(profile, owner)  # name -> (model, derived from the owner's?)
assert [name for name, (_, derived) in suspects.items() if derived] == ["owner", "exact copy", "float16 copy",
                                                                       "int8 copy"]
images, labels = stack_dataset(profile.dataset("val", n=40))
secret = fp.make_fingerprint(owner, n_probes=10, amplitude=0.25, seed=0, images=images)  # 10: p <= 0.001
row = fingerprint.verification_row(secret, suspects["exact copy"][0], output="logits")
assert set(row) == set(fingerprint.VerificationRow.__annotations__) and row["kept"] == row["n"] == 10
assert row["queries"] == 30 and row["is_yours"]  # per probe: clean, with its noise, with the control noise
rows = fingerprint.verification_rows(secret, suspects["zoo-vit-b"][0])  # output -> row
assert set(rows) == set(fp.OUTPUTS) and not any(row["is_yours"] for row in rows.values())
assert fingerprint.claim_cells("owner", fp.verify(secret, fp.as_query(owner))) == ["10/10", "0.001", "**yours**"]
assert "int8 copy" in fingerprint.BACKEND_DEPENDENT_SUSPECTS  # its counts vary with the CPU's kernels, so the
int8 = fingerprint.claim_cells("int8 copy", fp.verify(secret, fp.as_query(suspects["int8 copy"][0])))  # chapter
assert int8 == ["varies by CPU", "—", "see the eight-secret table"]  # prints them from the result file only
sizes = fingerprint.overlap(owner, suspects["zoo-vit-b"][0])  # how its nullspace meets the owner's
assert sizes == {"values": 768, "nullity": 576, "shared": 480, "least": 480}
entry = fingerprint.leak_entry(owner, suspects["zoo-vit-b"][0], [secret], derived=False)  # a FingerprintLeak
assert entry["shared_dimension"] == 480 and len(entry["energy"][0]) == len(entry["change"][0]) == 10
curves = fingerprint.leak_curves(secret, {"zoo-vit-b": suspects["zoo-vit-b"][0]}, (1e-3, 1.0))  # kept vs leak
assert curves["zoo-vit-b"][1][-1] == 0.0  # its own leak: no probe kept
point = fingerprint.check_point(owner, secret, images, labels, settings)  # a copy tuned for 5 steps, logits
assert point["n"] == 10 and point["queries"] == 30  # per probe: clean, with its noise, with the control

# the runner, on tiny settings, on the CPU, written nowhere (common.Run().out is None)
tiny = replace(settings, n_probes=4, fingerprints=1, fade_fingerprints=1, bisection_steps=4, sigmas=(0.0,), val=16,
               defence_seeds=(0,), fine_tune=replace(settings.fine_tune, images=16, steps=2, batch_size=8,
                                                     checkpoints=(0, 2), seeds=(0,)))
result = fingerprint.run(tiny, profile, common.Run())
assert set(result["suspects"]["owner"]) == set(fingerprint.FingerprintSuspect.__annotations__)
assert set(result["fade"]["head"][0]["rows"][-1]) == set(fingerprint.FingerprintFadeRow.__annotations__)
assert set(result["defence"][0]["rows"][0]) == set(fingerprint.FingerprintDefenceRow.__annotations__)
assert [row["step"] for row in result["fade"]["head"][0]["rows"]] == [0, 2] and result["check"]["result"]["n"] == 4
assert set(result["leak"]["owner"]) == set(fingerprint.FingerprintLeak.__annotations__)
