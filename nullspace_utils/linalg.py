r"""Plain linear algebra of nullspaces (paper §2).

Everything here works on a single 2-D matrix :math:`A` of shape (m, n), the linear
map :math:`x \mapsto A x` from :math:`\mathbb{R}^n` to :math:`\mathbb{R}^m`. Numpy arrays and torch tensors
are both accepted; results come back in the same library as the input.

The nullspace of :math:`A` is the set of vectors :math:`v` with :math:`A v = 0`. It is a
subspace of :math:`\mathbb{R}^n` (it holds 0 and is closed under addition and scaling), and the
rank-nullity theorem says :math:`\operatorname{rank}(A) + \dim \operatorname{null}(A) = n`.
"""

from __future__ import annotations

from typing import Union, overload

import numpy as np
import torch

__all__ = [
    "Matrix",
    "default_rtol",
    "singular_values",
    "rank",
    "nullspace",
    "nullity",
    "nullspace_projector",
    "project_onto_nullspace",
    "split_by_nullspace",
]

Matrix = Union[np.ndarray, torch.Tensor]


def _as_float64_numpy(matrix: Matrix, *, name: str = "matrix") -> np.ndarray:
    """Check that ``matrix`` is a finite 2-D array and return it as float64 numpy."""
    if isinstance(matrix, torch.Tensor):
        array = matrix.detach().cpu().to(torch.float64).numpy()
    elif isinstance(matrix, np.ndarray):
        if not np.issubdtype(matrix.dtype, np.number) or np.iscomplexobj(matrix):
            raise ValueError(f"{name} must hold real numbers, got dtype {matrix.dtype}.")
        array = matrix.astype(np.float64, copy=False)
    else:
        raise TypeError(
            f"{name} must be a numpy array or a torch tensor, got {type(matrix).__name__}; "
            "wrap lists with np.asarray(...) first."
        )
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (a matrix of shape (m, n)), got shape {tuple(array.shape)}; "
            "reshape it, e.g. weight.reshape(weight.shape[0], -1) for a conv kernel."
        )
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {tuple(array.shape)}); a nullspace needs m, n >= 1.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values; a nullspace is undefined for it.")
    return array


@overload
def _like(result: np.ndarray, reference: torch.Tensor) -> torch.Tensor: ...
@overload
def _like(result: np.ndarray, reference: np.ndarray) -> np.ndarray: ...
@overload
def _like(result: np.ndarray, reference: Matrix) -> Matrix: ...
def _like(result: np.ndarray, reference: Matrix) -> Matrix:
    """Return ``result`` as the same library (and for torch, the same device) as ``reference``."""
    if isinstance(reference, torch.Tensor):
        dtype = reference.dtype if reference.is_floating_point() else torch.float64
        return torch.from_numpy(np.ascontiguousarray(result)).to(device=reference.device, dtype=dtype)
    return result


def default_rtol(shape: tuple[int, ...]) -> float:
    r"""The relative tolerance used when none is given: ``max(m, n) * eps(float64)``.

    This is the rule of ``numpy.linalg.matrix_rank``: singular values below
    ``rtol * largest singular value`` count as zero.

    Args:
        shape: the matrix's shape, (m, n).

    Returns:
        :math:`\max(m, n)\,\varepsilon_{\text{float64}}`.
    """
    return max(shape) * float(np.finfo(np.float64).eps)


def singular_values(matrix: Matrix) -> np.ndarray:
    """All singular values of ``matrix`` in float64, largest first.

    Args:
        matrix: a 2-D numpy array or torch tensor (m, n).
    """
    return np.linalg.svd(_as_float64_numpy(matrix), compute_uv=False)


def _rank_from_singular_values(sigma: np.ndarray, shape: tuple[int, ...], rtol: float | None) -> int:
    if rtol is None:
        rtol = default_rtol(shape)
    if not (0.0 <= rtol < 1.0):
        raise ValueError(f"rtol must lie in [0, 1), got {rtol}.")
    if sigma.size == 0 or sigma[0] == 0.0:
        return 0
    return int(np.count_nonzero(sigma > rtol * sigma[0]))


def rank(matrix: Matrix, rtol: float | None = None) -> int:
    """Numerical rank: the number of singular values above ``rtol * sigma_max`` (paper §2).

    With ``rtol=None`` the tolerance is :func:`default_rtol`, so the answer agrees
    with ``numpy.linalg.matrix_rank``.

    Args:
        matrix: a 2-D numpy array or torch tensor (m, n).
        rtol: relative tolerance: singular values at or below ``rtol`` times the largest count as zero;
            ``None`` uses :func:`default_rtol`.
    """
    array = _as_float64_numpy(matrix)
    return _rank_from_singular_values(np.linalg.svd(array, compute_uv=False), array.shape, rtol)


def nullity(matrix: Matrix, rtol: float | None = None) -> int:
    """Dimension of the nullspace, ``n - rank`` (the rank-nullity theorem).

    Args:
        matrix: a 2-D numpy array or torch tensor (m, n).
        rtol: relative tolerance: singular values at or below ``rtol`` times the largest count as zero;
            ``None`` uses :func:`default_rtol`.
    """
    return _as_float64_numpy(matrix).shape[1] - rank(matrix, rtol)


def _nullspace_basis(array: np.ndarray, rtol: float | None) -> np.ndarray:
    """The (n, k) orthonormal nullspace basis of a checked float64 ``array`` (m, n)."""
    # full_matrices=True so that V holds a basis of all of R^n, also when m < n.
    _, sigma, vh = np.linalg.svd(array, full_matrices=True)
    r = _rank_from_singular_values(sigma, array.shape, rtol)
    return vh[r:].T.copy()  # (n, n - r)


@overload
def nullspace(matrix: torch.Tensor, rtol: float | None = None) -> torch.Tensor: ...
@overload
def nullspace(matrix: np.ndarray, rtol: float | None = None) -> np.ndarray: ...
def nullspace(matrix: Matrix, rtol: float | None = None) -> Matrix:
    """An orthonormal basis of the nullspace of ``matrix`` (m, n), as the columns of an (n, k) result.

    Computed in float64 from the SVD :math:`A = U S V^\\top`: the right singular vectors
    whose singular values are below :math:`\\text{rtol} \\cdot \\sigma_{\\max}` span the (numerical)
    nullspace, paper §2. ``k = n - rank(A, rtol)``; ``k = 0`` gives an (n, 0) result.

    Args:
        matrix: a 2-D numpy array or torch tensor (m, n).
        rtol: relative tolerance: singular values at or below ``rtol`` times the largest count as zero;
            ``None`` uses :func:`default_rtol`.

    Returns:
        The basis as columns, (n, k), in the library (and for torch the device) of ``matrix``.

    >>> A = np.array([[1.0, 1.0, 0.0]])
    >>> N = nullspace(A)
    >>> N.shape
    (3, 2)
    >>> bool(np.allclose(A @ N, 0))
    True
    """
    return _like(_nullspace_basis(_as_float64_numpy(matrix), rtol), matrix)


@overload
def nullspace_projector(matrix: torch.Tensor, rtol: float | None = None) -> torch.Tensor: ...
@overload
def nullspace_projector(matrix: np.ndarray, rtol: float | None = None) -> np.ndarray: ...
def nullspace_projector(matrix: Matrix, rtol: float | None = None) -> Matrix:
    r"""The (n, n) orthogonal projector :math:`P = N N^\top` onto the nullspace of ``matrix``.

    :math:`P x` is the part of :math:`x` that ``matrix`` cannot see: :math:`A P x = 0`
    and :math:`A x = A (x - P x)`.

    Args:
        matrix: a 2-D numpy array or torch tensor (m, n).
        rtol: relative tolerance: singular values at or below ``rtol`` times the largest count as zero;
            ``None`` uses :func:`default_rtol`.
    """
    basis = _nullspace_basis(_as_float64_numpy(matrix), rtol)
    return _like(basis @ basis.T, matrix)


@overload
def project_onto_nullspace(matrix: Matrix, vectors: torch.Tensor, rtol: float | None = None) -> torch.Tensor: ...
@overload
def project_onto_nullspace(matrix: Matrix, vectors: np.ndarray, rtol: float | None = None) -> np.ndarray: ...
def project_onto_nullspace(matrix: Matrix, vectors: Matrix, rtol: float | None = None) -> Matrix:
    """Project ``vectors`` (n,) or (n, b) onto the nullspace of ``matrix`` (m, n); the result is of the
    same library as ``vectors``.

    Args:
        matrix: a 2-D numpy array or torch tensor (m, n).
        vectors: one vector (n,) or b vectors as columns (n, b).
        rtol: relative tolerance: singular values at or below ``rtol`` times the largest count as zero;
            ``None`` uses :func:`default_rtol`.
    """
    array = _as_float64_numpy(matrix)
    if isinstance(vectors, torch.Tensor):
        values = vectors.detach().cpu().to(torch.float64).numpy()
    else:
        values = np.asarray(vectors, dtype=np.float64)
    if values.ndim not in (1, 2) or values.shape[0] != array.shape[1]:
        raise ValueError(
            f"vectors must have shape ({array.shape[1]},) or ({array.shape[1]}, b) to match a matrix "
            f"of shape {array.shape}, got {tuple(values.shape)}."
        )
    basis = _nullspace_basis(array, rtol)
    return _like(basis @ (basis.T @ values), vectors)


@overload
def split_by_nullspace(matrix: Matrix, rows: torch.Tensor, rtol: float | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]: ...
@overload
def split_by_nullspace(matrix: Matrix, rows: np.ndarray, rtol: float | None = None
                       ) -> tuple[np.ndarray, np.ndarray]: ...
def split_by_nullspace(matrix: Matrix, rows: Matrix, rtol: float | None = None) -> tuple[Matrix, Matrix]:
    """Split each row x of ``rows`` (b, n) into ``x - P x`` and ``P x`` (:func:`nullspace_projector`, P): the part
    ``matrix`` (m, n) sees, in its row space, and the part it cannot see, in its nullspace. The two parts add up to
    ``rows``, and ``matrix`` maps the first exactly as it maps ``rows``.

    Args:
        matrix: a 2-D numpy array or torch tensor (m, n).
        rows: b vectors as rows (b, n), of the same library (and, for torch, dtype) as ``matrix``.
        rtol: relative tolerance: singular values at or below ``rtol`` times the largest count as zero;
            ``None`` uses :func:`default_rtol`.

    Returns:
        ``(row_space_part, nullspace_part)``, each (b, n).
    """
    hidden = rows @ nullspace_projector(matrix, rtol)  # the projector is symmetric: (P x^T)^T = x P
    return rows - hidden, hidden
