import torch

from nullspace_utils import box_solver

# one equation y1 + 2 y2 = 1.1 in two unknowns: min ||y - target||_1 on that line, inside the box [0, 1]^2
matrix = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
start = torch.tensor([[0.7, 0.2]], dtype=torch.float64)  # feasible: A y = A start holds at y = start
target = torch.tensor([[0.1, 0.9]], dtype=torch.float64)
solved = box_solver.solve_patches(matrix, start, target, p=1)  # checked entry: rows (P, n), float64 kept
assert torch.allclose(solved, torch.tensor([[0.1, 0.5]], dtype=torch.float64), atol=1e-6)  # the LP optimum
assert (matrix @ (solved - start).T).abs().max() < 1e-12  # A y = A start to float64 error

# many rows at once: ADMM (float32 iterations, a float64 polish) against HiGHS's exact LP and SLSQP
generator = torch.Generator().manual_seed(0)
matrix = torch.randn(3, 12, generator=generator, dtype=torch.float64)
box_solver.check_independent_rows(matrix)  # W W^T must be invertible: dependent rows are refused
start = torch.rand(5, 12, generator=generator, dtype=torch.float64)
target = torch.rand(5, 12, generator=generator, dtype=torch.float64)
box_solver.check_settings(iterations=300, polish=50, rho=box_solver.RHO, precision="float32")  # one of PRECISIONS
fast = box_solver.admm(matrix.float(), start.float(), target.float(), 1, 300, 50, box_solver.RHO,
                       out_dtype=torch.float64)  # unchecked: what watermark.embed runs on every patch
with box_solver.cuda_graphs():  # on a GPU: iterations recorded once per shape, replayed (the CPU: unchanged)
    again = box_solver.admm(matrix.float(), start.float(), target.float(), 1, 300, 50, box_solver.RHO,
                            out_dtype=torch.float64)
assert torch.equal(again, fast)  # the same solve (on a GPU, to float32 rounding: other kernels may be picked)
optimum = box_solver.highs(matrix.numpy(), start.numpy(), target.numpy())  # one LP per row (p = 1 only)
gap = float((fast - target).abs().sum()) / float(abs(torch.from_numpy(optimum) - target).sum()) - 1
assert -1e-6 < gap < 1e-3  # within 0.1 % of the LP optimum, never (beyond its tolerance) below it
slow, violation = box_solver.slsqp(matrix.numpy(), start.numpy(), target.numpy(), 1, 200)  # clipped to [0, 1]
assert violation < 1e-6 and box_solver.box_violation(slow) == 0.0  # how far SLSQP left the box before its clip
assert box_solver.box_violation(torch.tensor([-0.25, 1.1])) == 0.25
assert "tf32" in box_solver.PRECISIONS
