import torch

from nullspace_utils import box_solver, exact, metrics, models, watermark

model = models.load_model("zoo-vit-s")
image = torch.rand(3, 112, 112) * 0.5 + 0.25
mark = watermark.text_mark("NULL", 112)  # white text on black, (3, 112, 112)
result = watermark.embed(model, image, mark)  # eq. 7 with p = 1, by ADMM
assert isinstance(result, watermark.WatermarkResult) and "admm" in watermark.SOLVERS
assert result.box_violation == 0 and result.embedding_residual < 1e-4  # valid image, same tokens
assert metrics.compare_predictions(model, image[None], result.image[None])["match"] == 1.0
batch = watermark.embed(model, torch.rand(4, 3, 112, 112), mark, chunk_images=2)  # a batch
# compile=None (default) compiles the iteration with torch.compile only where it pays: on a GPU, large calls
assert watermark.compile_pays("cuda", watermark.COMPILE_FROM_ROWS) and not watermark.compile_pays("cpu", 10**9)

# the same by hand: one linear program per patch, on (patches, C r^2) rows
patches, target = exact.to_patches(image[None], 16), exact.to_patches(mark[None], 16)  # (49, 768)
matrix = exact.patch_embedding_matrix(model).float()
solved = box_solver.solve_patches(matrix, patches, target)  # the solver embed uses
rebuilt = exact.from_patches(solved, (1, 3, 112, 112), 16)
assert torch.allclose(rebuilt[0], result.image, atol=1e-5)

# the paper's procedure (A.2) as its authors' code runs it: per channel, normalised units, SLSQP
bases = watermark.channel_bases(model)  # per channel, the (256, 160) basis of its block's nullspace
rows = exact.to_patches(image[None].double(), 16)[:1].reshape(1, 3, 256).numpy()  # one patch
goal = exact.to_patches(mark[None].double(), 16)[:1].reshape(1, 3, 256).numpy()
paper = watermark.paper_slsqp(bases, rows, goal, model.mean, model.std, maxiter=20)
assert isinstance(paper, watermark.PaperSlsqp)  # its pixels are NOT clipped to [0, 1]
