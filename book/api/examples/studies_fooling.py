from nullspace_utils import fooling, xai
from nullspace_utils.data import stack_dataset
from nullspace_utils.profiles import get_profile
from nullspace_utils.studies import fooling as fooling_study

# the chapter's pairs: three (source, target) pairs of different classes, the red channel freed, the paper's L1
settings = fooling_study.SETTINGS["teaching"]
assert settings == fooling_study.FoolingSettings(images=40, pairs=((0, 7), (12, 3), (25, 18)), channel=0, p=1)
profile = get_profile("teaching")
images, _ = stack_dataset(profile.dataset("val", n=settings.images))
sources, targets = fooling_study.pair_images(images, settings)
assert sources.shape == targets.shape == (3, 3, 112, 112)

# the pieces the chapter computes, gathered into the evidence the reproducibility rows are formatted from
vit = profile.load_model(profile.vit_models[0])
disguised = {profile.vit_models[0]: fooling.disguise(vit, sources, targets, p=settings.p)}
batches = (sources, disguised[profile.vit_models[0]].image, targets)
maps = {**fooling_study.token_maps(vit, batches), **fooling_study.captum_maps(vit, batches)}
assert list(maps)[:3] == list(fooling_study.TOKEN_METHODS) and set(xai.METHODS) <= set(maps)
found = fooling_study.gather(profile.vit_models[0], vit, sources, targets, disguised, maps)  # a FoolingEvidence
assert isinstance(found, fooling_study.FoolingEvidence) and found.embedding_error < 1e-5
# the same map to float rounding: below IDENTICAL (TOKEN_IDENTICAL for token-level maps) of the source map's peak
assert fooling_study.tolerance("saliency") == fooling_study.IDENTICAL < fooling_study.TOKEN_IDENTICAL
assert all(fooling_study.identical(found, method) for method in fooling_study.GRADIENT_METHODS)
assert not any(fooling_study.identical(found, method) for method in fooling_study.INPUT_METHODS)
assert fooling_study.correlation_range(found, ["LRP to pixels"]).startswith("0.9")

# measure() does all of that from scratch, for every ViT; claims() are the page's rows
fresh = fooling_study.measure(profile)
assert fresh.out_of_box[profile.vit_models[0]] == found.out_of_box[profile.vit_models[0]]
rows = fooling_study.claims(fresh)  # evidence.Claim rows: §7 (Fig. 5, A.3), then A.4
counts = fooling_study.equation_counts(fooling_study.PAPER_VITS)  # timm's ViT-S/B/L-32: (d, r²), built without weights
assert counts["vit_large_patch32_224"] == (1024, 1024)  # the square case
assert fooling_study.paper_counts_line(counts).endswith("square case: vit_large_patch32_224")
assert [row.verdict for row in rows] == ["reproduced", "partly"]
assert [row.figure for row in rows] == ["fooling-explanations", "fooling-methods"]

# the numbers behind the exercise solutions
answers = fooling_study.exercise_answers(vit, sources, targets, disguised[profile.vit_models[0]],
                                         (maps["LRP to pixels"][0], maps["LRP to pixels"][1]))
lines = fooling_study.exercise_lines(answers)
assert len(lines) == 4 and lines[1].startswith("ex. 2: occlusion") and "True" in lines[1]
