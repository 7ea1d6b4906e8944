import torch

from nullspace_utils import exact, models, watermark

model = models.load_model("zoo-vit-s")
image = torch.rand(3, 112, 112) * 0.5 + 0.25
mark = watermark.text_mark("NULL", 112)  # (3, 112, 112) in [0, 1]
result = watermark.embed(model, image, mark)  # a WatermarkResult (ADMM solver)
assert result.box_violation == 0 and result.embedding_residual < 1e-4
print(watermark.compare_predictions(model, image[None], result.image[None]))  # match 1.0
# the same by hand: one linear program per patch, on (patches, C r^2) rows
patches = watermark.to_patches(image[None], 16)  # (49, 768)
target = watermark.to_patches(mark[None], 16)
matrix = exact.patch_embedding_matrix(model).float()
solved = watermark.solve_patches(matrix, patches, target, iterations=100)  # (49, 768) in [0, 1]
assert (matrix @ (solved - patches).T).abs().max() < 1e-4  # every patch keeps its embedding
rebuilt = watermark.from_patches(solved, (1, 3, 112, 112), 16)  # back to an image (1, 3, 112, 112)
print(watermark.evaluate(model, torch.rand(4, 3, 112, 112) * 0.5 + 0.25, mark, iterations=50)["exact"])
