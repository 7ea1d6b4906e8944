import numpy as np
import pytest
import torch

from nullspace_utils import linalg


def low_rank(rng, m, n, r):
    return rng.normal(size=(m, r)) @ rng.normal(size=(r, n))


@pytest.mark.parametrize("m,n,r", [(1, 3, 1), (3, 5, 3), (5, 3, 2), (6, 6, 4), (10, 40, 7), (40, 10, 10),
                                   (96, 768, 96)])
def test_nullspace_of_low_rank_matrices(m, n, r):
    rng = np.random.default_rng(m * 1000 + n)
    A = low_rank(rng, m, n, r)
    N = linalg.nullspace(A)
    assert N.shape == (n, n - r)
    assert linalg.rank(A) == r == np.linalg.matrix_rank(A)
    assert linalg.nullity(A) == n - r
    np.testing.assert_allclose(A @ N, 0, atol=1e-10 * np.abs(A).max())
    np.testing.assert_allclose(N.T @ N, np.eye(n - r), atol=1e-12)


def test_full_column_rank_has_empty_basis():
    A = np.random.default_rng(0).normal(size=(8, 5))
    assert linalg.nullspace(A).shape == (5, 0)
    assert linalg.nullity(A) == 0


def test_zero_matrix_nullspace_is_everything():
    N = linalg.nullspace(np.zeros((2, 4)))
    np.testing.assert_allclose(N @ N.T, np.eye(4), atol=1e-12)


def test_torch_in_torch_out_same_dtype():
    A = torch.randn(4, 9, generator=torch.Generator().manual_seed(0))
    N = linalg.nullspace(A)
    assert isinstance(N, torch.Tensor) and N.dtype == torch.float32 and N.shape == (9, 5)
    assert torch.allclose(A @ N, torch.zeros(4, 5), atol=1e-5)


def test_tolerance_decides_near_singular_rank():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(2, 3))
    M = np.vstack([base, base[0] + base[1] + 1e-8 * np.array([1.0, -1.0, 0.5])])
    assert linalg.rank(M) == 3
    assert linalg.rank(M, rtol=1e-6) == 2
    assert linalg.nullspace(M, rtol=1e-6).shape == (3, 1)
    assert linalg.nullspace(M).shape == (3, 0)


def test_default_rtol_matches_numpy_on_exactly_singular():
    M = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0]])
    assert linalg.rank(M) == np.linalg.matrix_rank(M) == 1


def test_projector_properties():
    rng = np.random.default_rng(2)
    A = low_rank(rng, 3, 6, 3)
    P = linalg.nullspace_projector(A)
    x = rng.normal(size=6)
    np.testing.assert_allclose(P @ P, P, atol=1e-12)
    np.testing.assert_allclose(P, P.T, atol=1e-12)
    np.testing.assert_allclose(A @ P, 0, atol=1e-10)
    np.testing.assert_allclose(A @ (x - P @ x), A @ x, atol=1e-10)
    np.testing.assert_allclose(linalg.project_onto_nullspace(A, x), P @ x, atol=1e-12)


def test_singular_values_sorted():
    s = linalg.singular_values(np.diag([1.0, 3.0, 2.0]))
    np.testing.assert_allclose(s, [3.0, 2.0, 1.0])


@pytest.mark.parametrize(
    "bad,error,match",
    [
        (np.ones(3), ValueError, "2-D"),
        (np.ones((2, 2, 2)), ValueError, "2-D"),
        (np.array([[1.0, np.nan]]), ValueError, "NaN"),
        (np.array([[1.0, np.inf]]), ValueError, "NaN or infinite"),
        (np.zeros((0, 3)), ValueError, "empty"),
        ([[1.0, 2.0]], TypeError, "numpy array or a torch tensor"),
        (np.array([["a", "b"]]), ValueError, "real numbers"),
    ],
)
def test_bad_input_errors(bad, error, match):
    with pytest.raises(error, match=match):
        linalg.nullspace(bad)


def test_bad_rtol_and_projection_shape():
    with pytest.raises(ValueError, match="rtol"):
        linalg.rank(np.eye(2), rtol=2.0)
    with pytest.raises(ValueError, match="shape"):
        linalg.project_onto_nullspace(np.eye(3), np.ones(4))


def test_results_follow_the_library_of_the_input():
    A = np.array([[1.0, 2.0, 3.0]])
    At = torch.from_numpy(A)
    assert isinstance(linalg.nullspace_projector(A), np.ndarray)
    assert isinstance(linalg.nullspace_projector(At), torch.Tensor)
    v = np.ones(3)
    assert isinstance(linalg.project_onto_nullspace(At, v), np.ndarray)  # like the vectors, not the matrix
    assert isinstance(linalg.project_onto_nullspace(A, torch.ones(3)), torch.Tensor)
    assert linalg.default_rtol(At.shape) == linalg.default_rtol((1, 3)) == 3 * np.finfo(np.float64).eps  # torch.Size


def test_split_by_nullspace_parts_add_up_and_the_matrix_sees_only_the_first():
    rng = np.random.default_rng(3)
    A, rows = low_rank(rng, 4, 9, 3), rng.normal(size=(5, 9))
    seen, hidden = linalg.split_by_nullspace(A, rows)
    assert np.allclose(seen + hidden, rows)
    assert np.allclose(A @ hidden.T, 0) and np.allclose(A @ seen.T, A @ rows.T)
    assert np.allclose(hidden, linalg.project_onto_nullspace(A, rows.T).T)  # P x, row by row
    assert np.allclose(seen @ linalg.nullspace(A), 0)  # the seen part is orthogonal to the nullspace
    seen_t, hidden_t = linalg.split_by_nullspace(torch.from_numpy(A), torch.from_numpy(rows))
    assert isinstance(hidden_t, torch.Tensor) and torch.allclose(hidden_t, torch.from_numpy(hidden))
