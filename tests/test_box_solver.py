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


def _textbook_step(z, u, offset, target, matrix, rho, u_scale, alpha, p):
    """One ADMM iteration written as the algorithm reads: project z - u onto {W y = W x}, over-relax, take the
    proximal step in the box, update the dual (then scale it)."""
    values = z - u
    y = values - (values @ matrix.T - offset) @ torch.linalg.solve(matrix @ matrix.T, matrix)
    shifted = alpha * y + (1 - alpha) * z + u
    if p == 1:
        z_next = target + torch.nn.functional.softshrink(shifted - target, 1 / rho)
    else:
        z_next = (rho * shifted + target) / (1 + rho)
    z_next = z_next.clamp(0, 1)
    return z_next, (shifted - z_next) * u_scale


@pytest.mark.parametrize("p", [1, 2])
def test_admm_step_is_the_textbook_iteration(p):
    """The step keeps z and a = z - u (never u or y) and carries W a - Wx to the next iteration; it must still be
    the iteration above, in float32 (eager and in the form written for torch.compile) and (up to bfloat16 rounding)
    with bfloat16 matmuls, and its carried correction that of the a it returns."""
    generator = torch.Generator().manual_seed(1)
    matrix = torch.randn(4, 24, generator=generator, dtype=torch.float64)
    start, target = (torch.rand(30, 24, generator=generator, dtype=torch.float64) for _ in range(2))
    z = torch.rand(30, 24, generator=generator, dtype=torch.float64)
    u = 0.1 * torch.randn(30, 24, generator=generator, dtype=torch.float64)
    offset = start @ matrix.T
    back = torch.linalg.solve(matrix @ matrix.T, matrix)
    expected_z, expected_u = _textbook_step(z, u, offset, target, matrix, 3.0, 0.5, 1.6, p)
    cases = [(torch.float32, 1e-5, False, 0.5), (torch.float32, 1e-5, True, torch.tensor(0.5)),
             (torch.bfloat16, 0.05, False, 0.5)]  # bfloat16: 8-bit mantissa
    for dtype, tolerance, compiled, u_scale in cases:  # compiled: the form written for torch.compile, run eagerly
        correction = box_solver._correction((z - u).float(), offset.float(), matrix.T.contiguous().to(dtype))
        got_z, got_a, carried = box_solver._admm_step(
            z.float(), (z - u).float(), correction, offset.float(), target.float(), matrix.T.contiguous().to(dtype),
            back.to(dtype), 3.0, u_scale, 1.6, p, compiled)
        assert got_z.dtype == got_a.dtype == carried.dtype == torch.float32
        assert (got_z.double() - expected_z).abs().max() < tolerance
        assert (got_a.double() - (expected_z - expected_u)).abs().max() < tolerance  # a = z - u
        exact = got_a.double() @ matrix.T - offset
        assert (carried.double() - exact).abs().max() < tolerance * exact.abs().max()  # relative to its size


def test_admm_loop_grows_the_step_and_shrinks_the_dual_at_the_right_iterations():
    """admm without polish rounds against the textbook loop: after every RHO_UPDATE_EVERY-th step the dual is
    divided by the step's growth and the step grows (over 12 iterations a growth of 200: a rescaling one
    iteration early or late would show)."""
    generator = torch.Generator().manual_seed(3)
    matrix = torch.randn(3, 16, generator=generator, dtype=torch.float64)
    start, target = (torch.rand(8, 16, generator=generator, dtype=torch.float64) for _ in range(2))
    iterations = 12
    first, growth = box_solver._rho_schedule(box_solver.RHO, iterations)
    assert growth == pytest.approx(200.0)
    offset = start @ matrix.T
    back = torch.linalg.solve(matrix @ matrix.T, matrix)
    z, u, rho = (target - (target @ matrix.T - offset) @ back).clamp(0, 1), torch.zeros_like(start), first
    for iteration in range(iterations):
        update = (iteration + 1) % box_solver.RHO_UPDATE_EVERY == 0
        z, u = _textbook_step(z, u, offset, target, matrix, rho, 1 / growth if update else 1.0, 1.6, 1)
        rho = rho * growth if update else rho
    expected = box_solver._polish(z, start, matrix, back, offset, 0)  # no rounds: the float64 projection only
    got = box_solver.admm(matrix.float(), start.float(), target.float(), 1, iterations, 0, box_solver.RHO,
                          out_dtype=torch.float64)
    assert (got - expected).abs().max() < 1e-4


class _MatmulRows(torch.overrides.TorchFunctionMode):
    """Records the rows of the left operand of every ``@`` run inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[int] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in ("__matmul__", "matmul"):
            self.rows.append(args[0].shape[0])
        return func(*args, **(kwargs or {}))


def test_polish_drops_the_rows_that_are_done():
    """A row that is feasible leaves the polish at the first check (round 5): the later rounds multiply only the
    rows still moving, and every row ends as it would polished alone (no row written to another's place)."""
    generator = torch.Generator().manual_seed(4)
    matrix = torch.randn(3, 16, generator=generator, dtype=torch.float64)
    start = torch.rand(5, 16, generator=generator, dtype=torch.float64)
    pixels = (start + torch.randn(5, 16, generator=generator, dtype=torch.float64)).clamp(0, 1)
    pixels[2] = start[2]  # already exact and inside the box
    back = torch.linalg.solve(matrix @ matrix.T, matrix)
    offset = start @ matrix.T
    with _MatmulRows() as recorded:
        together = box_solver._polish(pixels, start, matrix, back, offset, 12)
    # two matmuls a round, 12 rounds (the float64 projection's matmuls come after): 5 rows in rounds 1-5, 4 in
    # rounds 6-10 (the exact row left), fewer in rounds 11-12 (the rows done by round 10 left)
    rounds = recorded.rows[:24]
    assert rounds[:10] == [5] * 10 and rounds[10:20] == [4] * 10 and max(rounds[20:]) < 4
    assert torch.equal(together[2], start[2])
    for row in range(5):
        alone = box_solver._polish(pixels[row : row + 1], start[row : row + 1], matrix, back, offset[row : row + 1],
                                   12)
        assert torch.allclose(together[row], alone[0], rtol=0, atol=1e-12)
    # in the box; off the embedding by the clamp of what was still moving after 12 rounds (a few 1e-7)
    assert ((together - start) @ matrix.T).abs().max() < 1e-5 and together.min() >= 0 and together.max() <= 1


def test_compiled_admm_matches_eager(monkeypatch):
    """``compile_step=True`` passes the step size and the dual's scale as 0-d tensors (no recompilation as they
    change): the same iterates as the eager loop's numbers. Compiled here with aot_eager (no C compiler needed)."""
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda function, **options: compile_(function, backend="aot_eager",
                                                                                 **options))
    generator = torch.Generator().manual_seed(2)
    matrix = torch.randn(3, 12, generator=generator)
    start, target = torch.rand(6, 12, generator=generator), torch.rand(6, 12, generator=generator)
    for p in (1, 2):
        eager = box_solver.admm(matrix, start, target, p, 20, 0, box_solver.RHO)
        compiled = box_solver.admm(matrix, start, target, p, 20, 0, box_solver.RHO, compile_step=True)
        assert (eager - compiled).abs().max() < 1e-5


def test_cuda_graphs_replay_each_problem_with_its_own_inputs(monkeypatch):
    """Inside ``cuda_graphs``, a problem's iterations are recorded once per shape and settings, and every later
    call of that shape replays them on its own rows: the answer of each call is the eager loop's (a stale input
    copy would return the first problem's answer). The recording is faked on the CPU: the "graph" runs the
    recorded function again into its output tensor, as a replay writes into the graph's memory."""
    recorded = []

    def fake_record(work, warm_up, device):
        warm_up()
        output = work()
        recorded.append(device)
        return (lambda: output.copy_(work())), output

    monkeypatch.setattr(box_solver, "_records_graphs", lambda device: True)
    monkeypatch.setattr(box_solver, "_record_cuda_graph", fake_record)
    generator = torch.Generator().manual_seed(4)
    matrix = torch.randn(3, 12, generator=generator)
    problems = [(torch.rand(rows, 12, generator=generator), torch.rand(rows, 12, generator=generator))
                for rows in (6, 6, 4, 6)]
    eager = [box_solver.admm(matrix, start, target, 1, 20, 5, box_solver.RHO) for start, target in problems]
    with box_solver.cuda_graphs():
        with box_solver.cuda_graphs():  # nested: the outer block's graphs
            graphed = [box_solver.admm(matrix, start, target, 1, 20, 5, box_solver.RHO) for start, target in problems]
        graphed.append(box_solver.admm(matrix, *problems[0], 2, 20, 5, box_solver.RHO))  # other settings
        # the inner block ended and the outer one kept its graphs: a shape recorded inside is replayed, not recorded
        assert torch.equal(box_solver.admm(matrix, *problems[3], 1, 20, 5, box_solver.RHO), eager[3])
    assert len(recorded) == 3  # 6 rows, 4 rows, then 6 rows with p = 2: once each
    for got, want in zip(graphed, eager, strict=False):
        assert torch.equal(got, want)
    assert torch.equal(graphed[-1], box_solver.admm(matrix, *problems[0], 2, 20, 5, box_solver.RHO))
    box_solver.admm(matrix, *problems[0], 1, 20, 5, box_solver.RHO)  # outside the block: nothing recorded
    assert len(recorded) == 3 and box_solver._CUDA_GRAPHS.get() is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (the CI has none)")
def test_cuda_graphs_solve_as_the_eager_loop_on_a_gpu():
    """On a GPU, replayed iterations give the eager loop's answer up to float32 rounding (kernels may differ)."""
    generator = torch.Generator().manual_seed(5)
    matrix = torch.randn(8, 48, generator=generator)
    problems = [(torch.rand(64, 48, generator=generator), torch.rand(64, 48, generator=generator)) for _ in range(2)]
    devices = ["cuda:0"] + (["cuda:1"] if torch.cuda.device_count() > 1 else [])  # cuda:1: not the current GPU
    for device, precision in [(device, precision) for device in devices for precision in ("float32", "tf32")]:
        moved = matrix.to(device)
        with box_solver.cuda_graphs():  # tf32: the command line's default on a GPU
            graphed = [box_solver.admm(moved, start.to(device), target.to(device), 1, 50, 20, box_solver.RHO,
                                       precision=precision) for start, target in problems]
        for (start, target), got in zip(problems, graphed, strict=True):
            start, target = start.to(device), target.to(device)
            want = box_solver.admm(moved, start, target, 1, 50, 20, box_solver.RHO, precision=precision)
            if precision == "float32":
                assert (got - want).abs().max() < 1e-4
            else:  # TF32 rounding moves the iterates more; the objective agrees
                assert abs(float((got - target).abs().sum() / (want - target).abs().sum()) - 1) < 1e-3
            assert ((got - start) @ moved.T).abs().max() < 1e-4 and got.device == torch.device(device)


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
