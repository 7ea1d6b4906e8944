import matplotlib

matplotlib.use("Agg")
import torch  # noqa: E402

from nullspace_utils import data, plotting  # noqa: E402

image, noise = torch.rand(3, 32, 32), torch.randn(3, 32, 32)
plotting.show_images([image, noise], ["image", "noise"], symmetric=[False, True])
print(plotting.to_display(noise, symmetric=True).shape)  # (32, 32, 3) in [0, 1], 0 at mid-grey
results = plotting.table([["ViT-S", "99.2 %"], ["ResNet", "100.0 %"]], ["model", "accuracy"])  # a Table
print(results)  # aligned text; Jupyter and the book show results._repr_html_(), an HTML <table>
assert isinstance(results, plotting.Table) and results.to_html().count("<tr>") == 3
plotting.class_grid(data.synthetic_dataset("val", n=20), data.CLASS_NAMES, per_class=2)
heat = torch.rand(32, 32)
print(plotting.overlay(image, heat).shape)  # (32, 32, 3): a map drawn over an image
plotting.show_maps([[heat, heat]], ["one image"], ["method A", "method B"], images=[[image, image]])
plotting.line_panels([{"title": "t", "ylabel": "y", "lines": {"a": ([1, 2], [3, 4], "o-")}}], xlabel="x")
import matplotlib.pyplot as plt  # noqa: E402

fig, axes = plt.subplots(1, 3, figsize=(12, 3))  # a figure you assemble yourself ...
plotting.readable(fig)  # ... keeps every text at 8 pt or more once shrunk to the page (7.2 inches)
rows = [{"lim": lim, "learned": {"match": 1 - lim, "logit_mse": lim}, "shuffled": {"match": 0.5, "logit_mse": 1.0},
         "uniform": {"match": 0.5}, "initial_norm": 1.0, "final_norm": 0.9} for lim in (0.1, 0.5)]
plotting.noise_sweep({"ViT-S": rows})  # paper Fig. 2 from sweep rows
plotting.robustness_panels([("(b)", {"vit": rows, "cnn": rows})], vits=("vit",))  # paper Fig. 3
plotting.matrix_heatmap({"a": {"a": 1.0, "b": 0.2}, "b": {"a": 0.3, "b": 0.9}}, ["a", "b"])  # transfer
plotting.change_strips({"owner": [1e-7, 2e-7], "other": [0.1, 0.3]}, tol=1e-3)  # fingerprint evidence
plotting.roc_panels({"logits": {"all": ([0, 0, 1], [0, 1, 1], 1.0)}})
