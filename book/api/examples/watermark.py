import torch

from nullspace_utils import box_solver, exact, metrics, models, watermark

model = models.load_model("zoo-vit-s")
image = torch.rand(3, 112, 112) * 0.5 + 0.25
mark = watermark.text_mark("NULL", 112)  # (3, 112, 112) in [0, 1]
result = watermark.embed(model, image, mark)  # a WatermarkResult (ADMM solver, 100 iterations)
assert isinstance(result, watermark.WatermarkResult) and result.solver == "admm"
assert result.box_violation == 0 and result.embedding_residual < 1e-4  # a valid image, the same tokens
assert metrics.compare_predictions(model, image[None], result.image[None])["match"] == 1.0  # same prediction
# many images at once: chunks sized to the device's memory, with a progress bar if asked
batch = watermark.embed(model, torch.rand(4, 3, 112, 112), mark, chunk_images=2)
assert batch.image.shape == (4, 3, 112, 112) and batch.objective.shape == (4,)
# the same by hand: one linear program per patch, on (patches, C r^2) rows
patches = exact.to_patches(image[None], 16)  # (49, 768)
target = exact.to_patches(mark[None], 16)
matrix = exact.patch_embedding_matrix(model).float()
solved = box_solver.solve_patches(matrix, patches, target)  # (49, 768) in [0, 1]: the box solver embed uses
assert solved.shape == (49, 768) and solved.min() >= 0 and solved.max() <= 1
assert (matrix @ (solved - patches).T).abs().max() < 1e-4  # every patch keeps its embedding
rebuilt = exact.from_patches(solved, (1, 3, 112, 112), 16)  # back to an image (1, 3, 112, 112)
assert torch.allclose(rebuilt[0], result.image, atol=1e-5)  # what embed did

# the paper's own procedure (A.2), as its authors' code runs it: per channel, in normalised units, SLSQP
bases = watermark.channel_bases(model)  # per channel c, the (256, 160) basis of its d x r^2 block's nullspace
assert [b.shape for b in bases] == [(256, 160)] * 3
rows = exact.to_patches(image[None].double(), 16)[:1].reshape(1, 3, 256).numpy()  # one patch, (P, C, r*r)
goal = exact.to_patches(mark[None].double(), 16)[:1].reshape(1, 3, 256).numpy()
paper = watermark.paper_slsqp(bases, rows, goal, model.mean, model.std, maxiter=20)  # a PaperSlsqp
assert isinstance(paper, watermark.PaperSlsqp) and paper.pixels.shape == (1, 3, 256)  # NOT clipped to [0, 1]
assert box_solver.box_violation(paper.pixels) < 1e-3  # how far it left [0, 1] before any clip
