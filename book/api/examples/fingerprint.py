from nullspace_utils import data, metrics, models
from nullspace_utils import fingerprint as fp
from nullspace_utils.profiles import get_profile

mine = models.load_model("zoo-vit-s")
my_images, my_labels = data.stack_dataset(data.synthetic_dataset("val", n=40))  # probes of several classes
secret = fp.make_fingerprint(mine, n_probes=10, amplitude=0.25, images=my_images, seed=0)  # a Fingerprint
secret.save("/tmp/mine.fingerprint")  # one file; keep it private
secret = fp.Fingerprint.load("/tmp/mine.fingerprint")
other = models.load_model("zoo-vit-s", weights=models.ZOO_DIR / "seeds" / "zoo-vit-s-seed1.safetensors")
result = fp.verify(secret, fp.as_query(mine))  # a Verification: is_yours, kept / n, p_value, changes
print(result.summary())  # yours: 10/10 probes kept (logits) ...
print(fp.verify(secret, fp.as_query(other, "label"), output="label").summary())  # not shown to be yours
print(fp.probes_needed(1e-3))  # 10 probes, all kept, give p <= 0.001 at the default null rate 0.5
# what a thief might try, and what it costs them
defended = fp.NoisyInput(mine, sigma=0.01)  # fresh input noise on every query
print(metrics.accuracy(defended, my_images, my_labels), fp.verify(secret, fp.as_query(defended)).kept)
for step, copy in fp.fine_tune(mine, my_images, my_labels, part="patch_embed", steps=2, lr=1e-4):
    print(step, fp.verify(secret, fp.as_query(copy)).kept)
print(fp.roc_auc([1.0, 0.9], [0.0, 0.1]), fp.roc_curve([1.0, 0.9], [0.0, 0.1]))  # 1.0: perfect separation
# the fingerprint chapter's suspects, name -> (model, derived from the owner's?), and verifications as JSON rows
suspects = fp.make_suspects(get_profile("teaching"), mine)
assert [name for name, (_, derived) in suspects.items() if derived] == ["owner", "exact copy", "float16 copy",
                                                                       "int8 copy"]
assert {"zoo-vit-s-seed1", "zoo-vit-b", "zoo-resnet"} <= set(suspects)  # trained apart from the owner's model
row = fp.verification_row(secret, suspects["exact copy"][0], output="logits")  # JSON-ready: kept, n, p_value, ...
assert row["kept"] == row["n"] == 10 and row["is_yours"] and row["queries"] == 20
rows = fp.verification_rows(secret, suspects["zoo-vit-b"][0])  # output -> row, for logits, probs and label
assert set(rows) == set(fp.OUTPUTS) and not any(row["is_yours"] for row in rows.values())
assert fp.BACKEND_DEPENDENT_SUSPECTS == ("float16 copy", "int8 copy")  # their counts vary with the CPU's kernels
