"""The box-constrained solver on raw rows (nullspace_utils.box_solver), which the watermark and the disguise share."""

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from nullspace_utils import box_solver


def _toy() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One equation y1 + 2 y2 = 1.1 in two unknowns: its L1-closest point to (0.1, 0.9) in the box is (0.1, 0.5)."""
    matrix = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    start = torch.tensor([[0.7, 0.2]], dtype=torch.float64)
    target = torch.tensor([[0.1, 0.9]], dtype=torch.float64)
    return matrix, start, target


def test_solve_patches_is_exact_in_float64():
    matrix, start, target = _toy()
    solved = box_solver.solve_patches(matrix, start, target, rho=[1.0, 200.0])  # a pair as JSON stores it
    assert solved.dtype == torch.float64
    assert (matrix @ (solved - start).T).abs().max() < 1e-12  # float64 error, not float32's
    assert torch.allclose(solved, torch.tensor([[0.1, 0.5]], dtype=torch.float64), atol=1e-6)  # the LP optimum


def test_admm_highs_and_slsqp_agree_on_random_rows():
    generator = torch.Generator().manual_seed(0)
    matrix = torch.randn(3, 12, generator=generator, dtype=torch.float64)
    start = torch.rand(5, 12, generator=generator, dtype=torch.float64)
    target = torch.rand(5, 12, generator=generator, dtype=torch.float64)
    exact = box_solver.highs(matrix.numpy(), start.numpy(), target.numpy())
    fast = box_solver.admm(matrix.float(), start.float(), target.float(), 1, 300, 50, box_solver.RHO,
                           out_dtype=torch.float64)
    slow, violation = box_solver.slsqp(matrix.numpy(), start.numpy(), target.numpy(), 1, 200)
    optimum = np.abs(exact - target.numpy()).sum()
    assert abs(float((fast - target).abs().sum()) - optimum) < 1e-3 * optimum
    assert np.abs(slow - target.numpy()).sum() >= optimum - 1e-6 and violation < 1e-6
    for solved in (torch.from_numpy(exact), fast):
        assert (solved.min() >= 0) and (solved.max() <= 1)
        assert ((solved - start) @ matrix.T).abs().max() < 1e-5


def test_settings_and_rows_are_checked():
    for rho in ((1.0,), (1.0, -2.0), (0.0, 1.0), "10"):
        with pytest.raises(ValueError, match="rho"):
            box_solver.check_settings(iterations=10, polish=5, rho=rho)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="precision"):
        box_solver.check_settings(iterations=10, polish=5, rho=1.0, precision="float16")
    with pytest.raises(ValueError, match="linearly dependent"):
        box_solver.check_independent_rows(torch.tensor([[1.0, 2.0], [2.0, 4.0]]))
    matrix, start, target = _toy()
    with pytest.raises(ValueError, match="p must be"):
        box_solver.solve_patches(matrix, start, target, p=3)


def test_box_violation():
    assert box_solver.box_violation(torch.tensor([0.0, 0.5, 1.0])) == 0.0
    assert box_solver.box_violation(torch.tensor([-0.25, 1.1])) == pytest.approx(0.25)
    assert box_solver.box_violation(torch.tensor([0.2, 1.5]).numpy()) == pytest.approx(0.5)


def test_the_solver_sits_below_watermark_and_fooling():
    """box_solver imports neither of its users; fooling no longer goes through watermark for it."""
    root = Path(__file__).resolve().parents[1] / "nullspace_utils"

    def imported(module: str) -> set[str]:
        tree = ast.parse((root / f"{module}.py").read_text())
        return {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and node.module == "nullspace_utils" for alias in node.names}

    assert not imported("box_solver") & {"watermark", "fooling"}
    assert "box_solver" in imported("watermark") and "box_solver" in imported("fooling")
    assert "watermark" not in imported("fooling")
